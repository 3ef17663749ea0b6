"""`sync --dry-run` between real processes on loopback (see CONTRACT.md).

Device A is a `run` node, B a one-shot `sync`. The preview must list exactly what the
real sync that follows does, on both sides, and change nothing anywhere: not B's
folder, not its index files, not its `.p2psync/`, and not A's folder either.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from tests.hostile import FakeListener
from tests.integration.test_mass_delete import files
from tests.integration.test_two_devices import (
    HOUR_AGO,
    device_id,
    ok_sync,
    wait_indexed,
    write,
)
from tests.procs import SECRET, env, p2psync_cmd, sync, tmpfs, tree, wait_until


def dry_run(tmp_path: Path, node, *extra: str, name: str = "B") -> dict:
    r = sync(tmp_path / name, tmp_path / f"cfg{name}", node.address,
             extra=("--dry-run", "--json", *extra))
    assert r.returncode == 0, f"exit {r.returncode}:\n{r.stderr}\nrun node:\n{node.log()}"
    return json.loads(r.stdout)


def snapshot(folder: Path, config: Path) -> dict:
    """Every byte, mode and mtime of the folder (.p2psync/ included) and of the config dir's
    index database files; and the names in the config dir (no scratch copy left)."""
    out: dict = {}
    for top, tag in ((folder, "folder"), (config / "index", "index")):
        if not top.exists():
            continue
        for dirpath, dirnames, filenames in os.walk(top):
            for name in dirnames + filenames:
                p = os.path.join(dirpath, name)
                st = os.lstat(p)
                data = Path(p).read_bytes() if os.path.isfile(p) and \
                    not os.path.islink(p) else None
                out[f"{tag}/{os.path.relpath(p, top)}"] = (st.st_mode, st.st_mtime_ns,
                                                            st.st_size, data)
    out["config"] = sorted(os.listdir(config)) if config.exists() else None
    return out


def by_action(report: dict) -> dict[str, dict[str, dict]]:
    out: dict[str, dict[str, dict]] = {}
    for a in report["actions"]:
        out.setdefault(a["action"], {})[a["path"]] = a
    return out


def changes(before: dict, after: dict) -> tuple[set[str], set[str]]:
    """(paths new or changed, paths gone) between two `tree`s."""
    return ({p for p, v in after.items() if before.get(p) != v},
            {p for p in before if p not in after})


def test_dry_run_lists_what_the_sync_then_does_and_changes_nothing(tmp_path, run_node):
    a, b = tmp_path / "A", tmp_path / "B"
    for rel in ("keep.txt", "f1.txt", "f2.txt", "f3.txt", "lose.txt", "win.txt", "gone.txt"):
        write(a / rel, f"first {rel}\n" * 10, HOUR_AGO)
    node = run_node("A", "--name", "desk")
    ok_sync(tmp_path, node)

    now = time.time()
    write(a / "f1.txt", "changed on A\n" * 100, now)
    (a / "moved").mkdir()
    os.rename(a / "f2.txt", a / "moved" / "f2.txt")
    (a / "f3.txt").unlink()
    write(a / "new.txt", b"n" * 300_000, now)
    (a / "newdir").mkdir()
    write(a / "lose.txt", "A wins this one\n", now + 100)  # the newer change wins the name
    write(a / "win.txt", "A loses this one\n", HOUR_AGO + 10)
    wait_indexed(node, "f1.txt", "f2.txt", "moved/f2.txt", "f3.txt", "new.txt", "lose.txt",
                 "win.txt")
    write(b / "lose.txt", "B loses this one\n", now)
    write(b / "win.txt", "B wins this one\n", now)
    (b / "gone.txt").unlink()
    write(b / "mine.txt", "made on B\n", now)
    (b / "moved-on-b").mkdir()
    os.rename(b / "keep.txt", b / "moved-on-b" / "keep.txt")  # A renames its copy

    before_b, before_a = snapshot(b, tmp_path / "cfgB"), tree(a)
    report = dry_run(tmp_path, node)
    assert snapshot(b, tmp_path / "cfgB") == before_b  # byte for byte, index and .p2psync too
    assert tree(a) == before_a  # and nothing reached the peer

    a_id = device_id(tmp_path / "cfgA")
    b_id = device_id(tmp_path / "cfgB")
    assert report["folder"] == str(b)
    assert report["peers"] == [{"device_id": a_id, "name": "desk"}]
    assert report["held_back"] is None
    acts = by_action(report)
    assert set(acts) == {"fetch", "mkdir", "rename", "delete", "conflict", "send",
                         "delete_on_peer"}, report
    renames = {x["path"]: x for x in report["actions"] if x["action"] == "rename"}
    assert set(acts["fetch"]) == {"f1.txt", "new.txt"}
    assert acts["fetch"]["new.txt"]["bytes"] == 300_000
    assert acts["fetch"]["f1.txt"]["bytes"] == len("changed on A\n" * 100)
    assert set(acts["mkdir"]) == {"moved", "newdir"}
    assert renames == {
        "moved/f2.txt": {"path": "moved/f2.txt", "action": "rename", "peer": a_id,
                         "bytes": 0, "from": "f2.txt"},
        "moved-on-b/keep.txt": {"path": "moved-on-b/keep.txt", "action": "rename",
                                "peer": a_id, "bytes": 0, "from": "keep.txt",
                                "on_peer": True}}
    assert set(acts["delete"]) == {"f3.txt"}
    assert set(acts["send"]) == {"mine.txt", "moved-on-b"}
    assert acts["send"]["mine.txt"]["bytes"] == len("made on B\n")
    assert set(acts["delete_on_peer"]) == {"gone.txt"}
    conflicts = acts["conflict"]
    assert set(conflicts) == {"lose.txt", "win.txt"}
    assert conflicts["lose.txt"]["copy"].startswith("lose.sync-conflict-")
    assert conflicts["lose.txt"]["copy"].endswith(f"-{b_id[:7]}.txt")  # our losing version
    assert conflicts["win.txt"]["copy"].endswith(f"-{a_id[:7]}.txt")  # the peer's
    assert all(x["peer"] == a_id for x in report["actions"])
    total = sum(x["bytes"] for x in report["actions"])
    counts = {k: len(v) for k, v in acts.items()} | {"rename": 1, "rename_on_peer": 1}
    assert report["totals"] == {a_id: {"actions": counts, "bytes": total}}

    before_b = tree(b)
    ok_sync(tmp_path, node)
    changed_b, gone_b = changes(before_b, tree(b))
    changed_a, gone_a = changes(before_a, tree(a))
    ours, theirs = conflicts["lose.txt"]["copy"], conflicts["win.txt"]["copy"]
    # here: what was fetched, made, renamed and conflicted; the peer's copy comes along
    assert changed_b == {"f1.txt", "new.txt", "newdir", "moved", "moved/f2.txt", "lose.txt",
                         ours, theirs}
    assert gone_b == {"f3.txt", "f2.txt"}
    assert tree(b)[ours] == b"B loses this one\n"
    # there: what was sent, the conflict B won (with A's copy), and B's copy
    assert changed_a == {"mine.txt", "win.txt", theirs, ours, "moved-on-b",
                         "moved-on-b/keep.txt"}
    assert tree(a)[theirs] == b"A loses this one\n"
    assert gone_a == {"gone.txt", "keep.txt"}


def test_first_dry_run_of_a_new_folder_leaves_no_trace(tmp_path, run_node):
    a, b = tmp_path / "A", tmp_path / "B"
    write(a / "x/y.txt", "y\n", HOUR_AGO)
    node = run_node("A")
    b.mkdir()
    write(b / "local.txt", "here first\n", HOUR_AGO)
    config = tmp_path / "cfgB"
    report = dry_run(tmp_path, node)
    assert not (b / ".p2psync").exists()  # no marker made
    assert list((config / "index").iterdir()) == []  # no index database, no scratch left
    assert sorted(os.listdir(config)) == [".lock", "cert.pem", "index", "key.pem",
                                          "settings.json"]
    acts = by_action(report)
    assert set(acts) == {"fetch", "mkdir", "send"}
    assert set(acts["fetch"]) == {"x/y.txt"} and set(acts["mkdir"]) == {"x"}
    assert set(acts["send"]) == {"local.txt"}


def test_held_back_mass_deletion_shows_in_the_preview(tmp_path, run_node):
    a = tmp_path / "A"
    rels = files(a, 30)
    node = run_node("A", "--name", "desk")
    ok_sync(tmp_path, node)
    for rel in rels[:20]:
        (a / rel).unlink()
    wait_indexed(node, *rels[:20])

    report = dry_run(tmp_path, node)
    a_id = device_id(tmp_path / "cfgA")
    assert report["held_back"] == {"deletes": 20, "of": 30, "from": a_id}
    assert report["actions"] == []  # nothing that would run

    allowed = dry_run(tmp_path, node, "--allow-mass-delete")
    assert allowed["held_back"] is None
    assert {x["path"] for x in allowed["actions"] if x["action"] == "delete"} == set(rels[:20])

    r = sync(tmp_path / "B", tmp_path / "cfgB", node.address, extra=("--dry-run",))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == f"Preview of a sync of {tmp_path / 'B'} (nothing was changed):"
    assert lines[1:] == [
        "  nothing to do: in sync",
        f"desk ({a_id[:7]}): nothing to do",
        f"held back by the mass-deletion guard: 20 of 30 files deleted on desk ({a_id[:7]}) "
        "(a sync exits 6; --allow-mass-delete applies it)"]
    assert sync(tmp_path / "B", tmp_path / "cfgB", node.address).returncode == 6


def test_json_without_dry_run_is_a_usage_error(tmp_path):
    r = sync(tmp_path / "B", tmp_path / "cfgB", "127.0.0.1:9", extra=("--json",))
    assert r.returncode == 2
    assert r.stderr.strip() == "p2psync: sync: --json goes with --dry-run"


def test_a_file_that_cannot_be_synced_is_an_error_with_its_why(tmp_path, run_node):
    a = tmp_path / "A"
    write(a / "small.txt", "fits\n", HOUR_AGO)
    write(a / "big.bin", os.urandom(12 * 1024 * 1024), HOUR_AGO)
    node = run_node("A")
    with tmpfs(tmp_path / "B", "8m") as b:
        r = sync(b, tmp_path / "cfgB", node.address)
        assert r.returncode == 5, r.stderr  # big.bin does not fit: no space left
        report = dry_run(tmp_path, node)
        a_id = device_id(tmp_path / "cfgA")
        [error] = report["actions"]
        assert error["path"] == "big.bin" and error["action"] == "error"
        assert error["peer"] == a_id and error["bytes"] == 0
        assert error["why"].startswith("no space left here"), error
        r = sync(b, tmp_path / "cfgB", node.address)
        assert r.returncode == 5 and "big.bin: no space left here" in r.stderr, r.stderr


def test_a_peer_that_leaves_or_is_too_slow_ends_the_preview_with_one_line(tmp_path, run_node):
    a, b = tmp_path / "A", tmp_path / "B"
    write(a / "x.txt", "x\n", HOUR_AGO)
    write(b / "y.txt", "y\n", HOUR_AGO)
    node = run_node("A")
    r = sync(b, tmp_path / "cfgB", node.address, timeout=0, extra=("--dry-run",))
    assert r.returncode == 1
    assert r.stderr.splitlines()[-1] == \
        "p2psync: timed out after 0 s waiting for the peers' indexes", r.stderr

    # a member that proves the key and hangs up at once
    leaver = FakeListener("127.0.0.1", tmp_path / "leaver", guess=SECRET)
    try:
        r = sync(b, tmp_path / "cfgB", f"127.0.0.1:{leaver.port}", extra=("--dry-run",))
    finally:
        leaver.close()
    assert r.returncode == 1, r.stderr
    assert r.stderr.splitlines()[-1] == \
        "p2psync: lost the connection to the peer before the preview was ready", r.stderr
    assert r.stdout == "" and not (b / ".p2psync").exists()
    assert sorted(os.listdir(tmp_path / "cfgB" / "index")) == []  # no scratch copy left
    assert sorted(os.listdir(tmp_path / "cfgB")) == [".lock", "cert.pem", "index", "key.pem",
                                                     "settings.json"]

    with socket.create_server(("127.0.0.1", 0)) as mute:  # takes the connection, says nothing
        proc = subprocess.Popen(  # and Ctrl-C while it waits
            p2psync_cmd("sync", "--dry-run", "--folder", str(b), "--config-dir",
                        str(tmp_path / "cfgB"), "--no-discovery", "--secret", SECRET,
                        "--peer", f"127.0.0.1:{mute.getsockname()[1]}"),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env())
        wait_until(lambda: any(n.startswith("preview-") for n in os.listdir(tmp_path / "cfgB")),
                   30)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err
    assert err.splitlines()[-1] == "p2psync: interrupted: nothing was changed", err
    assert sorted(os.listdir(tmp_path / "cfgB")) == [".lock", "cert.pem", "index", "key.pem",
                                                     "settings.json"]


def test_a_mass_deletion_made_here_shows_as_held_back_by_the_peer(tmp_path, run_node):
    a, b = tmp_path / "A", tmp_path / "B"
    rels = files(a, 30)
    node = run_node("A", "--name", "desk")
    ok_sync(tmp_path, node)
    for rel in rels[:20]:
        (b / rel).unlink()
    (b / "new.txt").write_text("new on B\n")

    report = dry_run(tmp_path, node)
    a_id, b_id = device_id(tmp_path / "cfgA"), device_id(tmp_path / "cfgB")
    assert report["held_back"] == {"deletes": 20, "of": 30, "from": b_id, "on": a_id}
    assert [(x["action"], x["path"]) for x in report["actions"]] == [("send", "new.txt")]

    r = sync(b, tmp_path / "cfgB", node.address, extra=("--dry-run",))
    assert r.stdout.splitlines()[-1] == (
        f"held back by the mass-deletion guard of desk ({a_id[:7]}): 20 of its 30 files "
        "deleted here (it asks before deleting them)"), r.stdout

    before = tree(a)
    ok_sync(tmp_path, node)  # the peer holds the deletions back, and takes the rest
    changed, gone = changes(before, tree(a))
    assert changed == {"new.txt"} and gone == set()
    # of 30 or 31: the deletions are judged once they stop coming (Node._note_deletions),
    # by then new.txt may be in
    node.wait_for_log(r"held back a mass deletion: 20 of 3[01] files")
