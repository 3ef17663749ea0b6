"""`p2psync invite` and `p2psync join CODE` as real processes on loopback.

The inviting process prints its code alone on stdout's first line; the joining one finds
it by its beacon (LAN discovery on 127.255.255.255, a port of the test's own) or by
--peer, and then syncs once. Every wait is on a process or a file, never a fixed sleep.
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.procs import SECRET, env, p2psync_cmd, start_run, sync, wait_until

CODE_RX = re.compile(r"^\d{1,2}-[a-z]+-[a-z]+$")
WORDS_RX = re.compile(r"^p2psync: confirmation words: ([a-z]+ [a-z]+ [a-z]+)$", re.M)


@dataclass
class Inviter:
    proc: subprocess.Popen
    code: str = ""
    err: list[str] = field(default_factory=list)

    def finish(self, timeout: float = 60) -> tuple[int, str]:
        rc = self.proc.wait(timeout)
        self._reader.join(5)
        return rc, "\n".join(self.err)


def invite(tmp_path: Path, port: int, *extra: str, environ: dict | None = None,
           stdin: str | None = None, name: str = "alpha") -> Inviter:
    folder = tmp_path / name
    folder.mkdir(exist_ok=True)
    proc = subprocess.Popen(
        p2psync_cmd("invite", "--folder", str(folder), "--config-dir",
                    str(tmp_path / f"cfg-{name}"), "--listen", "127.0.0.1:0",
                    "--discovery-port", str(port), "--name", name, *extra),
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environ or env())
    inviter = Inviter(proc)
    inviter._reader = threading.Thread(target=lambda: inviter.err.extend(
        line.rstrip("\n") for line in proc.stderr), daemon=True)
    inviter._reader.start()
    inviter.code = proc.stdout.readline().strip()
    assert CODE_RX.match(inviter.code), (inviter.code, inviter.finish())
    if stdin is not None:
        proc.stdin.write(stdin)
        proc.stdin.flush()
    return inviter


def join(tmp_path: Path, code: str, port: int, *extra: str, name: str = "beta",
         stdin: str | None = None, timeout: float = 90) -> subprocess.CompletedProcess:
    folder = tmp_path / name
    folder.mkdir(exist_ok=True)
    return subprocess.run(
        p2psync_cmd("join", code, "--folder", str(folder), "--config-dir",
                    str(tmp_path / f"cfg-{name}"), "--discovery-port", str(port),
                    "--name", name, *extra),
        input=stdin if stdin is not None else "", capture_output=True, text=True, env=env(),
        timeout=timeout)


def port_for(tmp_path: Path) -> int:
    return 25000 + (hash(str(tmp_path)) % 2000)


def wrong(code: str) -> str:
    number, first, second = code.split("-")
    return f"{number}-{first}-{'zebra' if second != 'zebra' else 'apple'}"


def stored_key(config: Path) -> list[str]:
    settings = json.loads((config / "settings.json").read_text())
    return [f["secret"] for f in settings["folders"].values()]


def test_the_right_code_pairs_both_and_the_folder_syncs(tmp_path):
    port = port_for(tmp_path)
    (tmp_path / "alpha").mkdir()
    (tmp_path / "alpha" / "notes.txt").write_text("from alpha")
    inviter = invite(tmp_path, port, "--yes")
    joined = join(tmp_path, inviter.code, port, "--yes")
    rc, err = inviter.finish()
    assert joined.returncode == 0, joined.stderr
    assert rc == 0, err
    assert (tmp_path / "beta" / "notes.txt").read_text() == "from alpha"
    # both show the other's name and the same words
    assert "pairing with beta (" in err and "pairing with alpha (" in joined.stderr
    [words_a] = WORDS_RX.findall(err)
    [words_b] = WORDS_RX.findall(joined.stderr)
    assert words_a == words_b
    # the key went over and is stored for the folder; the sync used it
    assert stored_key(tmp_path / "cfg-beta") == stored_key(tmp_path / "cfg-alpha")
    assert "beta has synced with this device" in err
    assert "Traceback" not in err + joined.stderr


def test_join_with_peer_needs_no_discovery_on_either_side(tmp_path):
    (tmp_path / "alpha").mkdir()
    (tmp_path / "alpha" / "a.txt").write_text("by address")
    inviter = invite(tmp_path, 9, "--yes", "--no-discovery")

    def port() -> str:
        return next((m.group(1) for line in list(inviter.err)
                     if (m := re.search(r"listening on 127\.0\.0\.1:(\d+)", line))), "")

    wait_until(lambda: port() != "", timeout=20)
    joined = join(tmp_path, inviter.code, 9, "--yes", "--no-discovery",
                  "--peer", f"127.0.0.1:{port()}")
    rc, err = inviter.finish()
    assert (rc, joined.returncode) == (0, 0), (err, joined.stderr)
    assert (tmp_path / "beta" / "a.txt").read_text() == "by address"


def test_a_wrong_code_fails_both_sides_with_exit_4_and_burns_the_code(tmp_path):
    port = port_for(tmp_path)
    inviter = invite(tmp_path, port, "--yes")
    bad = join(tmp_path, wrong(inviter.code), port, "--yes")
    rc, err = inviter.finish()
    assert bad.returncode == 4, bad.stderr
    assert rc == 4, err
    assert bad.stderr.strip().splitlines()[-1] == (
        "p2psync: wrong code: alpha's invitation is over now (one try per code); ask for a "
        "new code")
    assert err.splitlines()[-1] == ("p2psync: beta at 127.0.0.1 tried a wrong code: this "
                                    "invitation is over; make a new one to try again")
    # the right code is no use now: nobody shows that invitation any more
    late = join(tmp_path, inviter.code, port, "--yes")
    assert late.returncode == 3, late.stderr
    assert f"no device nearby shows invitation {inviter.code.split('-')[0]}" in late.stderr
    assert not (tmp_path / "cfg-beta" / "settings.json").exists() or \
        stored_key(tmp_path / "cfg-beta") == []


def test_an_expired_code_ends_the_invitation_and_a_join_then_fails(tmp_path):
    port = port_for(tmp_path)
    inviter = invite(tmp_path, port, "--yes", environ={**env(), "P2PSYNC_INVITE_TTL": "2"})
    rc, err = inviter.finish()
    assert rc == 1, err
    assert err.splitlines()[-1] == (f"p2psync: the code {inviter.code} expired after 2 s: "
                                    "no device joined")
    late = join(tmp_path, inviter.code, port, "--yes")
    assert late.returncode == 3, late.stderr


@pytest.mark.parametrize("who", ["alpha", "beta"])
def test_a_no_at_the_prompt_on_either_side_ends_both_with_exit_4(tmp_path, who):
    port = port_for(tmp_path)
    inviter = invite(tmp_path, port, stdin="n\n" if who == "alpha" else "y\n")
    joined = join(tmp_path, inviter.code, port, stdin="n\n" if who == "beta" else "y\n")
    rc, err = inviter.finish()
    assert (rc, joined.returncode) == (4, 4), (err, joined.stderr)
    asked_alpha = "Do the same words show on beta? Pair with it? [y/N] "
    asked_beta = "Do the same words show on alpha? Pair with it? [y/N] "
    assert asked_alpha in err and asked_beta in joined.stderr
    # the "n" is read and shown; the other side's "y" only if it was read before the end
    if who == "alpha":
        assert asked_alpha + "n\n" in err
    else:
        assert asked_beta + "n\n" in joined.stderr
    if who == "alpha":
        assert joined.stderr.splitlines()[-1] == "p2psync: alpha declined the pairing"
        assert err.splitlines()[-1] == "p2psync: you declined to pair with beta"
    else:
        assert joined.stderr.splitlines()[-1] == "p2psync: you declined to pair with alpha"
        assert err.splitlines()[-1] == "p2psync: beta declined the pairing"


def test_join_with_peer_at_a_node_without_an_invitation_is_refused(tmp_path):
    node = start_run(tmp_path / "desk", tmp_path / "cfg-desk", "--name", "desk")
    try:
        r = join(tmp_path, "7-apple-river", 9, "--peer", node.address, "--yes")
    finally:
        assert node.stop() == 0, node.log()
    assert r.returncode == 4, r.stderr
    assert r.stderr.strip() == (f"p2psync: desk at {node.address} has no open invitation (it "
                                "expired, was used or was cancelled): ask for a new code")


def test_a_mistyped_code_is_bad_usage_with_the_word_it_meant(tmp_path):
    r = join(tmp_path, "7-aple-river", 9, "--peer", "127.0.0.1:9")
    assert r.returncode == 2
    assert r.stderr == ("p2psync: \u201caple\u201d is not a word of pairing codes (did you "
                        "mean \u201capple\u201d?)\n")


def test_invite_on_a_folder_whose_node_runs_already_says_so(tmp_path):
    node = start_run(tmp_path / "alpha", tmp_path / "cfg-alpha", "--name", "alpha")
    try:
        r = subprocess.run(p2psync_cmd("invite", "--folder", str(tmp_path / "alpha"),
                                       "--config-dir", str(tmp_path / "cfg-alpha"),
                                       "--listen", "127.0.0.1:0", "--no-discovery"),
                           capture_output=True, text=True, env=env(), timeout=60)
    finally:
        assert node.stop() == 0, node.log()
    assert r.returncode == 2, r.stderr
    assert r.stdout == ""
    assert "already running for this folder" in r.stderr and r.stderr.count("\n") == 1


def test_a_mistyped_generated_key_on_the_command_line_is_one_line_and_exit_2(tmp_path):
    from app.net.sharekey import new_key

    key = new_key()
    typo = key[:10] + ("A" if key[10] != "A" else "B") + key[11:]
    r = sync(tmp_path / "B", tmp_path / "cfgB", "127.0.0.1:9", secret=typo)
    assert r.returncode == 2, r.stderr
    assert r.stderr == ("p2psync: --secret looks like a share key p2psync generated, but the "
                        "2nd group has a typo: copy it again from the device that shows it\n")
    ok = sync(tmp_path / "B", tmp_path / "cfgB", "127.0.0.1:9", secret=SECRET)
    assert ok.returncode == 3, ok.stderr  # a key of before (no check) goes on as always
