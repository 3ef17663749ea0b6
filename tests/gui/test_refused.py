"""A wrong share key shows in the app, on both sides: the accepting window names the device
(as it called itself) and its address, and why it was turned away (`auth_refused`); the
dialing window names the device that refused it (`dial_refused`)."""

from __future__ import annotations

import asyncio

from app.engine.config import Config
from app.gui.window import LaunchOptions, MainWindow
from app.net.handshake import HandshakeError, handshake
from tests import hostile
from tests.gui.test_app import WAIT, close_and_wait, make_window, started  # noqa: F401
from tests.procs import start_run

KEY = "the-right-key"


def guess(port: int, tries: int, source: str, base) -> list[str]:
    """Wrong keys from `source`: what each try came to."""

    async def go() -> list[str]:
        ident = hostile.new_identity(base)
        out = []
        for i in range(tries):
            try:
                reader, writer = await hostile.open_tls(port, ident, source)
            except OSError as e:  # ssl.SSLError too: turned away before TLS
                out.append(type(e).__name__)
                continue
            try:
                await handshake(reader, writer, ident, f"guess-{i}", "guesser", initiator=True)
                out.append("in")
            except HandshakeError as e:
                out.append(e.code)
            finally:
                hostile.close(writer)
        return out

    return asyncio.run(go())


def test_wrong_keys_show_in_activity_and_peers(qtbot, tmp_path, make_window):  # noqa: F811
    folder = tmp_path / "A"
    folder.mkdir()
    w = make_window(folder, secret=KEY)
    port = int(started(qtbot, w).rpartition(":")[2])
    source = hostile.new_source()
    outcomes = guess(port, 7, source, tmp_path)
    assert outcomes[:5] == ["auth"] * 5 and set(outcomes[5:]) == {"SSLError"}, outcomes

    def lines() -> list[str]:
        return [line for line in w.activity.lines if source in line]

    qtbot.waitUntil(lambda: len(lines()) == 2, timeout=WAIT)
    assert lines()[0] == f"Refused a connection from guesser at {source}: wrong share key"
    assert lines()[1].startswith(f"Refused 4 more connection(s) from {source}")
    assert "refused for the next 60 s" in lines()[1]

    def row() -> dict | None:
        return next((p for p in w.peers_model.peers() if p.get("address") == source), None)

    # the view is refreshed every second: it may show 5 refusals before it shows all 7
    qtbot.waitUntil(lambda: row() is not None and row()["state"] == "refused"
                    and row()["reason"].endswith(" s (7 refused)"), timeout=WAIT)
    assert row()["name"] == "guesser"
    assert row()["reason"].startswith("wrong share key: locked out for ")
    assert row()["device_id"] == ""  # an address, not a made-up device ID
    close_and_wait(qtbot, w)


def test_a_window_with_a_wrong_key_shows_who_refused_it_and_that_device_logs_it(
        qtbot, tmp_path):
    """The window dials a `run` node of another key: its activity and peers view say
    "refused by desk at ADDR: wrong share key"; the node's log names the window's device."""
    desk = start_run(tmp_path / "desk", tmp_path / "cfg-desk", "--name", "desk")
    folder = tmp_path / "laptop"
    folder.mkdir()
    w = MainWindow(LaunchOptions(config=Config(tmp_path / "cfg-laptop"), folder=folder,
                                 secret="MISTYPED-KEY-OF-LAPTOP", name="laptop",
                                 listen=("127.0.0.1", 0), peers=[("127.0.0.1", desk.port)],
                                 discovery=False, log_file=tmp_path / "p2psync.log"))
    w.show()
    try:
        expected = f"Refused by desk at {desk.address}: wrong share key"
        qtbot.waitUntil(lambda: any(line.startswith(expected) for line in w.activity.lines),
                        timeout=WAIT)

        def row() -> dict | None:
            return next((p for p in w.peers_model.peers() if p.get("state") == "refused"),
                        None)

        qtbot.waitUntil(lambda: row() is not None, timeout=WAIT)
        assert row()["name"] == "desk" and row()["address"] == desk.address
        assert row()["reason"] == f"refused by desk at {desk.address}: wrong share key"
        desk.wait_for_log(r"refused a connection from laptop at 127\.0\.0\.1:\d+: the peer "
                          r"does not know this share key")
    finally:
        close_and_wait(qtbot, w)
        w.deleteLater()
        assert desk.stop() == 0, desk.log()
