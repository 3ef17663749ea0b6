"""The devices view: one row per device, where it listens, its role only while connected.

The other device listens on 127.0.0.2 only, while its connections (and its LAN
announcements) come from 127.0.0.1: the loopback image of a machine that listens on
one address and talks from another. Dialling it where its packets come from is
refused; it must be dialled where it says it listens, and shown there.
"""

from __future__ import annotations

import re
import socket

from tests.gui.test_app import WAIT, make_window, me_row, started  # noqa: F401
from tests.procs import SECRET, start_run

ID_RX = re.compile(r"^[A-Z2-7]{7}(-[A-Z2-7]{7}){4}$")


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def desktop(tmp_path, udp: int, port: int = 0):
    return start_run(tmp_path / "B", tmp_path / "cfgB", "--name", "desktop",
                     "--discovery-port", str(udp), "--listen", f"127.0.0.2:{port}",
                     discovery=True)


def test_one_row_per_device_at_its_listening_address_and_a_restart(qtbot, tmp_path,
                                                                   make_window):  # noqa: F811
    udp = free_udp_port()
    folder = tmp_path / "A"
    folder.mkdir()
    w = make_window(folder, secret=SECRET, discovery=True, discovery_port=udp)
    started(qtbot, w)
    b = desktop(tmp_path, udp)
    listening = f"127.0.0.2:{b.port}"
    try:
        def row() -> dict:
            return next((p for p in w.peers_model.peers() if p["name"] == "desktop"), {})

        qtbot.waitUntil(lambda: row().get("state") == "connected"
                        and row().get("role") in ("server", "client")
                        and me_row(w).get("role") in ("server", "client"), timeout=WAIT)
        # a few refreshes later: still one row per device, no ghost, the right address
        ticks = []
        w.worker.peers.connect(lambda _: ticks.append(1))
        qtbot.waitUntil(lambda: len(ticks) >= 3, timeout=WAIT)
        rows = w.peers_model.peers()
        assert [r["name"] for r in rows] == ["laptop", "desktop"], rows
        assert all(ID_RX.match(r["device_id"]) for r in rows), rows
        assert row()["address"] == listening  # not 127.0.0.1, not its outgoing port
        assert me_row(w)["address"] == w.info["listen"]
        assert row().get("complete") == 1.0 and row()["need_files"] == 0

        # it stops: offline, no role, when it was last seen and why it went
        b.stop()
        qtbot.waitUntil(lambda: row().get("state") == "offline", timeout=WAIT)
        assert row()["role"] == "" and row()["last_seen"] > 0
        assert "offline · last seen " in w.peers_model.index(
            1, w.peers_model.COL_STATE).data()
        assert "1 known device" in w.subtitle.text()  # not "no other device yet"

        # it comes back, at the same address: connected again, at that address only
        b = desktop(tmp_path, udp, b.port)
        qtbot.waitUntil(lambda: row().get("state") == "connected", timeout=WAIT)
        assert [r["name"] for r in w.peers_model.peers()] == ["laptop", "desktop"]
        assert row()["address"] == listening
        dialled_wrong = [a for a in w.worker.node.roles.dial_failures
                         if a == ("127.0.0.1", b.port)]
        assert dialled_wrong == []
    finally:
        assert b.stop() == 0, b.log()


def test_a_rows_reason_leaves_out_its_address_ipv6_too():
    from app.gui.peerrows import _reason

    assert _reason("[::1]:9: connection refused", "::1:9") == "connection refused"
    assert _reason("127.0.0.1:9: timed out", "127.0.0.1:9") == "timed out"
