"""P2PSYNC_PORTABLE=1: every Linux fast path off, as on Windows and macOS, for real.

Real `run` and `sync` processes with the switch on: the control channel is a loopback
TCP socket with a token (no AF_UNIX), files are written by path with a checked parent
(no dir_fd, O_NOFOLLOW, O_TMPFILE), copied through a buffer (no copy_file_range), read
with seek + read (no pread), flushed per file (no syncfs), and holes are not looked
for. CI also runs the integration tests a second time under the switch (scripts/test).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import stat
import threading

import pytest

from app.engine.control import _proof
from tests.procs import SECRET, live_node, status_json, sync, tree, wait_until

BIG = 3 * 128 * 1024 + 5  # four blocks, the last one short: the large-file path


@pytest.fixture(autouse=True)
def portable(monkeypatch):
    monkeypatch.setenv("P2PSYNC_PORTABLE", "1")


def _endpoint(cfg) -> tuple[object, dict]:
    files = list((cfg / "ctl").glob("*.tcp"))
    assert len(files) == 1, list((cfg / "ctl").iterdir())
    return files[0], json.loads(files[0].read_text())


def _ask(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(request)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data


def _request(nonce: str, proof: str) -> bytes:
    return json.dumps({"cmd": "status", "nonce": nonce, "proof": proof}).encode() + b"\n"


def test_status_asks_the_node_over_loopback_with_its_token(tmp_path, run_node):
    n = run_node("A")
    cfg = tmp_path / "cfgA"
    path, endpoint = _endpoint(cfg)
    assert not list((cfg / "ctl").glob("*.sock"))  # no Unix socket under the switch
    assert stat.S_IMODE(os.lstat(path).st_mode) == 0o600
    node = live_node(n)
    assert node is not None and node["role"] in ("server", "client", "electing")

    port, token = endpoint["port"], endpoint["token"]
    nonce = "n" * 32
    wrong = _proof("0" * len(token), "client", nonce)
    assert _ask(port, _request(nonce, wrong)) == b""  # a wrong token: closed without a word
    assert _ask(port, json.dumps({"cmd": "status", "token": token}).encode() + b"\n") \
        == b""  # the token itself is never what is sent
    assert _ask(port, b'{"cmd": "status"}\n') == b""
    assert _ask(port, b"not json\n") == b""
    right = json.loads(_ask(port, _request(nonce, _proof(token, "client", nonce))))
    assert right["role"] == node["role"]
    assert right["proof"] == _proof(token, "node", nonce)  # and the node proves it too

    assert n.stop() == 0, n.log()
    assert not path.exists()  # the node removed its endpoint
    assert status_json(n.folder, cfg)["node"] is None


def test_a_stale_endpoint_is_replaced_and_a_live_one_refuses_a_second_node(tmp_path, run_node):
    cfg = tmp_path / "cfgA"
    n = run_node("A")
    path, _ = _endpoint(cfg)
    # a second node for the same folder: refused, one line, exit 2
    second = start_run_fails(tmp_path / "A", cfg)
    assert second.returncode == 2, second.stderr
    assert "already running" in second.stderr and "Traceback" not in second.stderr
    assert n.stop() == 0, n.log()

    # a node that crashed left its endpoint, and another program holds its port now,
    # answering anything: not believed (it cannot prove the token), and replaced
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen(8)
        port = squatter.getsockname()[1]
        threading.Thread(target=_answer_anything, args=(squatter,), daemon=True).start()
        path.write_text(json.dumps({"port": port, "token": "x" * 64}))
        os.chmod(path, 0o600)
        assert status_json(tmp_path / "A", cfg)["node"] is None
        n2 = run_node("A")
        assert live_node(n2) is not None
        assert _endpoint(cfg)[1]["port"] != port


def _answer_anything(server: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while True:
            conn, _ = server.accept()
            with conn:
                conn.recv(4096)
                conn.sendall(b'{"role": "server", "peers": [], "proof": "0"}\n')


def start_run_fails(folder, cfg):
    import subprocess

    from tests.procs import env, p2psync_cmd

    return subprocess.run(p2psync_cmd("run", "--folder", str(folder), "--config-dir", str(cfg),
                                      "--listen", "127.0.0.1:0", "--no-discovery",
                                      "--secret", SECRET),
                          capture_output=True, text=True, env=env(), timeout=30)


def test_an_endpoint_others_can_read_is_refused(tmp_path, run_node):
    n = run_node("A")
    path, _ = _endpoint(tmp_path / "cfgA")
    os.chmod(path, 0o644)
    import subprocess

    from tests.procs import env, p2psync_cmd

    r = subprocess.run(p2psync_cmd("status", "--folder", str(n.folder), "--config-dir",
                                   str(tmp_path / "cfgA"), "--json"),
                       capture_output=True, text=True, env=env(), timeout=30)
    assert r.returncode == 2, r.stderr
    assert "open to other users" in r.stderr and "Traceback" not in r.stderr
    os.chmod(path, 0o600)


def test_files_sync_both_ways_with_every_fast_path_off(tmp_path, run_node):
    a = tmp_path / "A"
    a.mkdir()
    (a / "small.txt").write_text("small")
    (a / "dir/sub").mkdir(parents=True)
    (a / "dir/sub/big.bin").write_bytes(os.urandom(BIG))
    (a / "sparse.img").write_bytes(b"\0" * BIG)
    (a / "tool.sh").write_text("#!/bin/sh\n")
    os.chmod(a / "tool.sh", 0o755)
    os.symlink("small.txt", a / "link")
    n = run_node("A")
    r = sync(tmp_path / "B", tmp_path / "cfgB", n.address, timeout=60)
    assert r.returncode == 0, r.stderr
    assert tree(tmp_path / "B") == tree(a)
    assert os.stat(tmp_path / "B/tool.sh").st_mode & 0o111

    # an edit of one block of the big file: the other blocks are copied from the old
    # file here (the buffered copy, not copy_file_range), the edited one fetched
    before = _hash_of(a, tmp_path / "cfgA", "dir/sub/big.bin")
    big = bytearray((a / "dir/sub/big.bin").read_bytes())
    big[200_000:200_010] = b"0123456789"
    (a / "dir/sub/big.bin").write_bytes(bytes(big))
    (tmp_path / "B/small.txt").write_text("edited on B")
    wait_until(lambda: _hash_of(a, tmp_path / "cfgA", "dir/sub/big.bin") not in (before, None),
               timeout=30, msg="the run node never saw the edit")
    r = sync(tmp_path / "B", tmp_path / "cfgB", n.address, timeout=60)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "B/dir/sub/big.bin").read_bytes() == bytes(big)
    wait_until(lambda: (a / "small.txt").read_text() == "edited on B", timeout=30)
    assert tree(tmp_path / "B") == tree(a)
    leftovers = [f for _, _, fs in os.walk(tmp_path / "B") for f in fs if f.endswith(".tmp")]
    assert leftovers == []


def _hash_of(folder, cfg, rel: str) -> str | None:
    files = {f["path"]: f for f in status_json(folder, cfg)["files"]}
    return files[rel]["hash"] if rel in files else None


def test_a_link_planted_in_the_path_is_not_written_through(tmp_path, run_node):
    """Without dir_fd and O_NOFOLLOW, the path check must refuse a directory swapped
    for a link that leads out of the folder."""
    a = tmp_path / "A"
    (a / "docs").mkdir(parents=True)
    (a / "docs/note.txt").write_text("note")
    n = run_node("A")
    b = tmp_path / "B"
    outside = tmp_path / "outside"
    outside.mkdir()
    b.mkdir()
    os.symlink(outside, b / "docs")  # B has a link where A has a directory
    r = sync(b, tmp_path / "cfgB", n.address, timeout=30)
    assert "Traceback" not in r.stderr
    assert os.listdir(outside) == []  # nothing was written out of the folder
    assert n.proc.poll() is None
