"""Two real devices (a `run` node and a `sync`) over TLS on loopback, real files.

Device A is a `run` node (it watches its folder); device B is a one-shot `sync`
(it scans its folder when it starts). Every test checks one behaviour of the
contract (shared CONTRACT.md), seen from the outside: the files in both folders,
exit codes, `status --json`, and the INFO log lines the commands print.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import re
import shutil
import signal
import stat
import subprocess
import time
from pathlib import Path

import pytest

from app.core.modes import UMASK
from tests.procs import SECRET, env, p2psync_cmd, status_json, sync, tree, wait_until

ID_RX = re.compile(r"^[A-Z2-7]{7}(-[A-Z2-7]{7}){4}$")
STAMP = r"\d{8}-\d{6}"
HOUR_AGO = time.time() - 3600


# --- helpers -----------------------------------------------------------------------------


def ok_sync(tmp_path: Path, node, name: str = "B") -> subprocess.CompletedProcess:
    """One `sync` of tmp_path/NAME with the run node; it must succeed."""
    r = sync(tmp_path / name, tmp_path / f"cfg{name}", node.address)
    assert r.returncode == 0, f"sync failed ({r.returncode}):\n{r.stderr}\nrun node:\n{node.log()}"
    return r


def device_id(config: Path) -> str:
    out = subprocess.run(p2psync_cmd("id", "--config-dir", str(config)), capture_output=True,
                         text=True, env=env(), check=True).stdout
    return out.strip()


status = status_json  # the name the tests here (and those importing them) use


def rows(report: dict) -> dict[str, dict]:
    return {f["path"]: f for f in report["files"]}


def wait_indexed(node, *rels: str, timeout: float = 15.0) -> None:
    """Until the run node's index holds what its disk holds for rels (watcher -> scan).

    Judged from `status --json`: a file present on disk must be listed with its size
    and mtime; a path gone from disk must no longer be listed.
    """
    def done() -> bool:
        listed = rows(status(node.folder, node.config))
        for rel in rels:
            p = node.folder / rel
            if not os.path.lexists(p):
                if rel in listed:
                    return False
                continue
            st = os.lstat(p)
            row = listed.get(rel)
            if row is None or row["mtime"] != st.st_mtime_ns / 1e9 or (
                    stat.S_ISREG(st.st_mode) and row["size"] != st.st_size):
                return False
        return True

    wait_until(done, timeout, 0.1, f"run node never indexed {rels}; log:\n{node.log()}")


def wait_new_scan(node, mark: int, timeout: float = 15.0) -> None:
    """Until the run node logs "scan: N local change(s)" after its log line number mark.

    For changes `status` cannot show (a mode, a directory): make exactly one change
    the watcher turns into one scan.
    """
    rx = re.compile(r"scan: \d+ local change")
    wait_until(lambda: any(rx.search(line) for line in node.lines[mark:]), timeout, 0.02,
               f"no scan after line {mark}; log:\n{node.log()}")


def write(path: Path, data: bytes | str, mtime: float | None = None, mode: int | None = None):
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    path.write_bytes(data)
    if mode is not None:
        os.chmod(path, mode)
    if mtime is not None:
        os.utime(path, (mtime, mtime))


def temp_files(folder: Path) -> list[str]:
    """Every `.p2psync-*.tmp` anywhere below folder (`.p2psync/` included)."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in filenames + dirnames:
            if fnmatch.fnmatch(name, ".p2psync-*.tmp"):
                found.append(os.path.relpath(os.path.join(dirpath, name), folder))
    return found


def meta(folder: Path) -> dict[str, tuple[int, bool]]:
    """rel -> (st_mtime_ns, executable) of every regular file (no .p2psync).

    Only the executable bit syncs; the other permission bits are each device's own.
    """
    out = {}
    for rel, v in tree(folder).items():
        if isinstance(v, bytes):
            st = os.lstat(folder / rel)
            out[rel] = (st.st_mtime_ns, bool(st.st_mode & 0o111))
    return out


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def assert_converged(a: Path, b: Path) -> None:
    """Same names, contents, links, empty dirs, mtimes and exec bits; no temp file left."""
    assert tree(a) == tree(b)
    assert meta(a) == meta(b)
    assert temp_files(a) == [] and temp_files(b) == []


def versions(folder: Path) -> dict[str, bytes]:
    """Relative path inside .p2psync/versions -> content."""
    root = folder / ".p2psync" / "versions"
    if not root.exists():
        return {}
    return {os.path.relpath(p, root): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def pulled_bytes(log_text: str) -> list[tuple[int, int]]:
    """(fetched, reused) of every 'pulled N change(s) ...' log line."""
    return [(int(f), int(r)) for f, r in re.findall(
        r"pulled \d+ change\(s\) in [\d.]+ s \((\d+) bytes fetched, (\d+) reused\)", log_text)]


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(4 * 1024 * 1024):
            h.update(chunk)
    return h.hexdigest()


def test_a_device_whose_index_was_made_anew_gets_every_file_again(tmp_path, run_node):
    """Its index moved away (what the app advises for a damaged one), a file gone
    meanwhile: A still answered "you have y.txt, as you announced it" for the entries
    the old index had announced back, the new index could not find them, and the
    `sync` said "in sync" without y.txt, for good."""
    a, b = tmp_path / "A", tmp_path / "B"
    a.mkdir()
    (a / "x.txt").write_text("x")
    (a / "y.txt").write_text("y")
    node = run_node("A")
    assert sync(b, tmp_path / "cfgB", node.address).returncode == 0
    assert (b / "y.txt").read_text() == "y"
    for db in (tmp_path / "cfgB" / "index").iterdir():
        db.rename(tmp_path / db.name)
    (b / "y.txt").unlink()
    r = sync(b, tmp_path / "cfgB", node.address)
    assert r.returncode == 0, r.stderr
    assert tree(b) == tree(a)


def test_a_device_that_dials_again_replaces_its_old_connection(tmp_path, run_node):
    """A device dials again while its old connection still looks alive here (its
    process stopped, a `sync` run again at once on a loaded machine): the new one
    wins. The old one was kept and the new `sync` ended with "the peer closed the
    connection" (CI, 2026-12-04)."""
    a = tmp_path / "A"
    a.mkdir()
    (a / "x.txt").write_text("x")
    node = run_node("A")
    first = subprocess.Popen(p2psync_cmd(
        "sync", "--folder", str(tmp_path / "B1"), "--config-dir", str(tmp_path / "cfgB"),
        "--peer", node.address, "--no-discovery", "--secret", SECRET, "--timeout", "60"),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env())
    (tmp_path / "B1").mkdir()
    try:
        wait_until(lambda: "connected to vm" in node.log() or "connected to " in node.log(),
                   20, 0.02, node.log())
        first.send_signal(signal.SIGSTOP)  # its connection stays open, unanswered
        r = sync(tmp_path / "B2", tmp_path / "cfgB", node.address, timeout=30)
        assert r.returncode == 0, r.stderr + node.log()
        assert (tmp_path / "B2" / "x.txt").read_text() == "x", r.stderr + node.log()
        assert "replaced by a second connection" in node.log() or \
            node.log().count("connected to ") >= 2
    finally:
        first.kill()
        first.wait()


# --- 1. files reach the other side -------------------------------------------------------
def test_files_flow_both_ways(tmp_path, run_node):
    a, b = tmp_path / "A", tmp_path / "B"
    a.mkdir()
    (a / "only-a.txt").write_text("from A")
    (a / "nested" / "deeper").mkdir(parents=True)
    (a / "nested" / "deeper" / "ünï cödé name.txt").write_text("x" * 1000)
    (a / "empty-dir").mkdir()
    (a / "empty.bin").write_bytes(b"")
    b.mkdir()
    (b / "only-b.txt").write_text("from B")
    device_a = run_node("A")
    r = sync(b, tmp_path / "cfgB", device_a.address)
    assert r.returncode == 0, r.stderr
    assert tree(a) == tree(b)
    assert tree(b)["only-a.txt"] == b"from A"
    assert tree(b)["empty-dir"] == "<dir>"
    assert os.stat(a / "only-a.txt").st_mtime_ns == os.stat(b / "only-a.txt").st_mtime_ns


def test_names_dirs_mtimes_and_exec_bit_both_ways(tmp_path, run_node):
    a, b = tmp_path / "A", tmp_path / "B"
    t = 1_600_000_000.123456789
    write(a / "deep/er/still deeper/file with spaces.txt", "A1", t)
    write(a / "日本語/ñandú €.md", "A2" * 5000, t + 1)
    write(a / "empty from A", b"", t + 2)
    write(a / "tools/run.sh", "#!/bin/sh\necho a\n", t + 3, mode=0o755)
    write(a / "ro.txt", "read only", t + 4, mode=0o444)
    (a / "empty dir A/inner empty").mkdir(parents=True)
    write(b / "from b/Ünïcödé ünd späces/ß.bin", os.urandom(300_000), t + 5)
    write(b / "empty from B.txt", b"", t + 6)
    write(b / "b-tool", "#!/bin/sh\necho b\n", t + 7, mode=0o750)
    (b / "empty dir B").mkdir()
    expected_mtimes = {rel: os.stat(a / rel).st_mtime_ns for rel in meta(a)}
    expected_mtimes |= {rel: os.stat(b / rel).st_mtime_ns for rel in meta(b)}
    node = run_node("A")

    ok_sync(tmp_path, node)

    # `sync` returns once both disks hold the agreed state: no waiting needed on A
    assert_converged(a, b)
    for folder in (a, b):
        t_ = tree(folder)
        assert t_["empty dir A/inner empty"] == "<dir>"
        assert t_["empty dir B"] == "<dir>"
        assert t_["empty from A"] == b"" and t_["empty from B.txt"] == b""
        assert {rel: m for rel, (m, _) in meta(folder).items()} == expected_mtimes
        assert os.access(folder / "tools/run.sh", os.X_OK)
    # each side keeps the modes its user gave; what a peer creates gets this device's
    # default (the umask) plus the executable bit where the source has it
    assert (mode(a / "tools/run.sh"), mode(b / "tools/run.sh")) == (0o755, 0o777 & ~UMASK)
    assert (mode(b / "b-tool"), mode(a / "b-tool")) == (0o750, 0o777 & ~UMASK)
    assert (mode(a / "ro.txt"), mode(b / "ro.txt")) == (0o444, 0o666 & ~UMASK)


def test_exec_bit_change_alone_syncs(tmp_path, run_node):
    a, b = tmp_path / "A", tmp_path / "B"
    write(a / "script.sh", "#!/bin/sh\n", HOUR_AGO, mode=0o644)
    write(a / "other.sh", "#!/bin/sh\n", HOUR_AGO, mode=0o755)
    node = run_node("A")
    ok_sync(tmp_path, node)
    assert os.stat(b / "script.sh").st_mode & 0o777 == 0o644

    os.chmod(b / "script.sh", 0o755)  # changed on the sync side
    mark = len(node.lines)
    os.chmod(a / "other.sh", 0o644)  # changed on the run side
    wait_new_scan(node, mark)
    ok_sync(tmp_path, node)

    assert os.stat(a / "script.sh").st_mode & 0o777 == 0o755
    assert os.stat(b / "other.sh").st_mode & 0o777 == 0o644
    assert_converged(a, b)


# --- 2. a change replaces the other side's copy, which is archived --------------------------
@pytest.mark.parametrize("changed_on", ["A", "B"])
def test_change_replaces_other_copy_and_archives_it(tmp_path, run_node, changed_on):
    a, b = tmp_path / "A", tmp_path / "B"
    write(a / "docs/report.txt", "old content", HOUR_AGO)
    write(a / "top.md", "old top", HOUR_AGO)
    node = run_node("A")
    ok_sync(tmp_path, node)

    side, other = (a, b) if changed_on == "A" else (b, a)
    write(side / "docs/report.txt", "new, longer content", HOUR_AGO + 60)
    write(side / "top.md", "new top", HOUR_AGO + 60)
    if changed_on == "A":
        wait_indexed(node, "docs/report.txt", "top.md")
    ok_sync(tmp_path, node)

    assert (other / "docs/report.txt").read_text() == "new, longer content"
    assert (other / "top.md").read_text() == "new top"
    assert_converged(a, b)
    assert not any(".sync-conflict-" in p for p in tree(a))  # seen before changed: no conflict
    old = versions(other)
    assert len(old) == 2, old
    [report] = [p for p in old if p.startswith("docs/")]
    assert re.fullmatch(rf"docs/report~{STAMP}\.txt", report), report
    assert old[report] == b"old content"
    [top] = [p for p in old if not p.startswith("docs/")]
    assert re.fullmatch(rf"top~{STAMP}\.md", top), top
    assert old[top] == b"old top"
    assert versions(side) == {}  # the side that made the change lost nothing to archive


# --- 3. deletions ------------------------------------------------------------------------
@pytest.mark.parametrize("deleted_on", ["A", "B"])
def test_deletion_propagates_and_does_not_come_back(tmp_path, run_node, deleted_on):
    a, b = tmp_path / "A", tmp_path / "B"
    write(a / "gone.txt", "delete me", HOUR_AGO)
    write(a / "olddir/inner.txt", "me too", HOUR_AGO)
    write(a / "kept.txt", "stays", HOUR_AGO)
    node = run_node("A")
    ok_sync(tmp_path, node)
    assert (b / "gone.txt").exists()

    side, other = (a, b) if deleted_on == "A" else (b, a)
    (side / "gone.txt").unlink()
    (side / "olddir/inner.txt").unlink()
    if deleted_on == "A":
        wait_indexed(node, "gone.txt", "olddir/inner.txt")
        mark = len(node.lines)
    (side / "olddir").rmdir()
    if deleted_on == "A":
        wait_new_scan(node, mark)  # the directory's own deletion
    ok_sync(tmp_path, node)

    for _ in range(2):  # and they stay deleted
        for folder in (a, b):
            assert not (folder / "gone.txt").exists()
            assert not (folder / "olddir").exists()
            assert (folder / "kept.txt").read_text() == "stays"
        assert_converged(a, b)
        ok_sync(tmp_path, node)
    old = versions(other)
    assert sorted(old.values()) == [b"delete me", b"me too"], old
    assert any(re.fullmatch(rf"gone~{STAMP}\.txt", p) for p in old), old
    assert any(re.fullmatch(rf"olddir/inner~{STAMP}\.txt", p) for p in old), old


# --- 4. conflicts ------------------------------------------------------------------------
@pytest.mark.parametrize(("winner", "rel"), [("A", "notes.txt"), ("B", "docs/plan v2.md")])
def test_concurrent_changes_keep_both_versions(tmp_path, run_node, winner, rel):
    a, b = tmp_path / "A", tmp_path / "B"
    write(a / rel, "base version", HOUR_AGO)
    node = run_node("A")
    ok_sync(tmp_path, node)
    ids = {"A": device_id(tmp_path / "cfgA"), "B": device_id(tmp_path / "cfgB")}
    loser = "B" if winner == "A" else "A"

    # both change the file without seeing each other; the winner's mtime is newer
    mtimes = {winner: HOUR_AGO + 200, loser: HOUR_AGO + 100}
    write(a / rel, "edit made on A", mtimes["A"])
    wait_indexed(node, rel)
    write(b / rel, "edit made on B", mtimes["B"])
    ok_sync(tmp_path, node)

    head, _, name = rel.rpartition("/")
    stem, ext = os.path.splitext(name)
    copy_rx = re.compile(rf"{re.escape(stem)}\.sync-conflict-{STAMP}-{ids[loser][:7]}"
                         rf"{re.escape(ext)}")
    for folder in (a, b):
        assert (folder / rel).read_text() == f"edit made on {winner}"
        parent = folder / head if head else folder
        copies = [p for p in os.listdir(parent) if ".sync-conflict-" in p]
        assert len(copies) == 1, (folder, copies)
        assert copy_rx.fullmatch(copies[0]), copies
        assert (parent / copies[0]).read_text() == f"edit made on {loser}"
    assert_converged(a, b)

    before = tree(a)
    ok_sync(tmp_path, node)  # the copies merge, they do not multiply
    assert tree(a) == tree(b) == before


def test_same_new_file_created_on_both_sides_is_a_conflict(tmp_path, run_node):
    a, b = tmp_path / "A", tmp_path / "B"
    write(a / "new.txt", "created on A", HOUR_AGO + 100)  # older: loses the name
    write(b / "new.txt", "created on B", HOUR_AGO + 200)
    write(a / "same.txt", "identical", HOUR_AGO)  # same content both sides: no conflict
    write(b / "same.txt", "identical", HOUR_AGO)
    node = run_node("A")
    id_a = device_id(tmp_path / "cfgA")

    ok_sync(tmp_path, node)

    for folder in (a, b):
        assert (folder / "new.txt").read_text() == "created on B"
        copies = [p for p in os.listdir(folder) if ".sync-conflict-" in p]
        assert len(copies) == 1 and re.fullmatch(rf"new\.sync-conflict-{STAMP}-{id_a[:7]}\.txt",
                                                 copies[0]), copies
        assert (folder / copies[0]).read_text() == "created on A"
    assert_converged(a, b)


@pytest.mark.parametrize("deleted_on", ["A", "B"])
def test_edit_wins_over_concurrent_deletion(tmp_path, run_node, deleted_on):
    a, b = tmp_path / "A", tmp_path / "B"
    write(a / "doc.txt", "base", HOUR_AGO)
    node = run_node("A")
    ok_sync(tmp_path, node)

    deleter, editor = (a, b) if deleted_on == "A" else (b, a)
    # the deletion is made later than the edit: it still must not destroy the edit
    write(editor / "doc.txt", "an edit nobody may lose", HOUR_AGO + 100)
    if editor == a:
        wait_indexed(node, "doc.txt")
    (deleter / "doc.txt").unlink()
    if deleter == a:
        wait_indexed(node, "doc.txt")
    ok_sync(tmp_path, node)
    ok_sync(tmp_path, node)

    for folder in (a, b):
        assert (folder / "doc.txt").read_text() == "an edit nobody may lose"
    assert_converged(a, b)


@pytest.mark.parametrize("replaced_on", ["A", "B"])
def test_a_directory_replaced_by_a_file_stays_while_it_holds_a_new_file(
        tmp_path, run_node, replaced_on):
    """One side replaces a directory by a file, the other adds a file inside it: the
    directory and the new file stay on both, the file that lost the place is kept in its
    side's versions, and the devices agree (found by scripts/fuzz_live.py: the side with
    the new file tried to replace a directory that was not empty, for ever)."""
    a, b = tmp_path / "A", tmp_path / "B"
    write(a / "g/old.txt", "in the directory", HOUR_AGO)
    write(a / "other.txt", "untouched", HOUR_AGO)
    node = run_node("A")
    ok_sync(tmp_path, node)

    replacer, adder = (a, b) if replaced_on == "A" else (b, a)
    shutil.rmtree(replacer / "g")
    write(replacer / "g", "a file where the directory was", HOUR_AGO + 100)
    write(adder / "g/new.txt", "a file nobody may lose", HOUR_AGO + 50)
    if replaced_on == "A":
        wait_indexed(node, "g/old.txt", "g")
    else:
        wait_indexed(node, "g/new.txt")
    ok_sync(tmp_path, node)
    ok_sync(tmp_path, node)

    for folder in (a, b):
        assert (folder / "g/new.txt").read_text() == "a file nobody may lose"
        assert not (folder / "g/old.txt").exists()
    assert_converged(a, b)
    assert b"a file where the directory was" in versions(replacer).values()


# --- 5. renames --------------------------------------------------------------------------
@pytest.mark.parametrize("renamed_on", ["B", "A"])
def test_rename_is_not_sent_again(tmp_path, run_node, renamed_on):
    a, b = tmp_path / "A", tmp_path / "B"
    size = 5 * 1024 * 1024
    write(a / "big.bin", os.urandom(size), HOUR_AGO)
    node = run_node("A")
    first = ok_sync(tmp_path, node)
    assert (b / "big.bin").stat().st_size == size
    assert sum(f for f, _ in pulled_bytes(first.stderr)) == size  # the log counts bytes

    side = a if renamed_on == "A" else b
    (side / "moved/sub").mkdir(parents=True)
    os.rename(side / "big.bin", side / "moved/sub/big renamed.bin")
    if renamed_on == "A":
        wait_indexed(node, "big.bin", "moved/sub/big renamed.bin")
    mark = len(node.lines)
    r = ok_sync(tmp_path, node)

    assert_converged(a, b)
    assert not (a / "big.bin").exists() and not (b / "big.bin").exists()
    # the receiving side reports how many bytes it had to fetch from the peer
    receiver_log = "\n".join(node.lines[mark:]) if renamed_on == "B" else r.stderr
    pulls = pulled_bytes(receiver_log)
    assert pulls, f"the receiving side logged no pull:\n{receiver_log}"
    assert sum(f for f, _ in pulls) == 0, receiver_log
    # and `sync` logs its traffic with the peer: far less than the file crossed the wire
    traffic = re.search(r"traffic with .*: (\d+) block bytes received, (\d+) bytes sent",
                        r.stderr)
    assert traffic, r.stderr
    received, sent = int(traffic[1]), int(traffic[2])
    assert received == 0 and sent < size // 10, traffic[0]


# --- 6. a large file ---------------------------------------------------------------------
@pytest.mark.slow
def test_large_file_arrives_byte_identical(tmp_path, run_node):
    a, b = tmp_path / "A", tmp_path / "B"
    size = 300 * 1024 * 1024 + 12345  # the last block is a short one
    a.mkdir()
    with open(a / "large.bin", "wb") as f:
        left = size
        while left:
            f.write(os.urandom(min(left, 8 << 20)))
            left -= min(left, 8 << 20)
    assert (a / "large.bin").stat().st_size == size
    os.utime(a / "large.bin", (HOUR_AGO, HOUR_AGO))
    node = run_node("A")

    ok_sync(tmp_path, node)

    assert (b / "large.bin").stat().st_size == size
    assert sha256(b / "large.bin") == sha256(a / "large.bin")
    assert os.stat(b / "large.bin").st_mtime_ns == os.stat(a / "large.bin").st_mtime_ns
    assert temp_files(a) == [] and temp_files(b) == []


# --- 7. symlinks -------------------------------------------------------------------------
def test_symlinks_synced_as_links_escaping_ones_not(tmp_path, run_node):
    a, b = tmp_path / "A", tmp_path / "B"
    write(a / "target.txt", "target", HOUR_AGO)
    write(a / "dir/file.txt", "in dir", HOUR_AGO)
    os.symlink("target.txt", a / "link-to-file")
    os.symlink("../target.txt", a / "dir/up-link")
    os.symlink("dir", a / "link-to-dir")
    os.symlink("missing-target", a / "dangling")
    os.symlink("../outside.txt", a / "escapes-up")
    os.symlink("/etc/hostname", a / "absolute")
    b.mkdir()
    os.symlink("../../b-outside", b / "b-escapes")
    os.symlink("target.txt", b / "b-link")
    node = run_node("A")

    ok_sync(tmp_path, node)

    inside = {"link-to-file": "target.txt", "dir/up-link": "../target.txt",
              "link-to-dir": "dir", "dangling": "missing-target", "b-link": "target.txt"}
    for folder in (a, b):
        for rel, target in inside.items():
            assert os.path.islink(folder / rel), (folder, rel)
            assert os.readlink(folder / rel) == target
    assert not os.path.lexists(b / "escapes-up") and not os.path.lexists(b / "absolute")
    assert not os.path.lexists(a / "b-escapes")
    assert tree(b)["link-to-dir"] == "-> dir"
    assert temp_files(a) == [] and temp_files(b) == []
    for folder, cfg, bad in ((a, "cfgA", ("escapes-up", "absolute")), (b, "cfgB", ("b-escapes",))):
        listed = rows(status(folder, tmp_path / cfg))
        for rel in bad:
            assert listed[rel]["state"] == "error", listed.get(rel)
        for rel in inside:
            assert listed[rel]["state"] == "synced", listed[rel]


# --- 8. .p2psyncignore and .p2psync/ -----------------------------------------------------
def test_ignore_file_rules_and_meta_dir(tmp_path, run_node):
    a, b = tmp_path / "A", tmp_path / "B"
    write(a / ".p2psyncignore", "# local junk\n*.log\nbuild/\n", HOUR_AGO)
    write(a / "keep.txt", "kept", HOUR_AGO)
    write(a / "debug.log", "A's log", HOUR_AGO)
    write(a / "sub/deep.log", "A's deep log", HOUR_AGO)
    write(a / "build/out.o", "object", HOUR_AGO)
    write(a / ".p2psync/private.txt", "never leaves A", HOUR_AGO)
    node = run_node("A")

    ok_sync(tmp_path, node)  # B gets the rules with the first sync
    assert (b / ".p2psyncignore").read_bytes() == (a / ".p2psyncignore").read_bytes()
    assert (b / "keep.txt").read_text() == "kept"
    for rel in ("debug.log", "sub/deep.log", "build", ".p2psync/private.txt"):
        assert not os.path.lexists(b / rel), rel

    # from now on B follows the same rules: its ignored files stay on B
    write(b / "debug.log", "B's own log", HOUR_AGO + 5)
    write(b / "b-only.log", "B's other log", HOUR_AGO)
    write(b / "build/b.o", "B's object", HOUR_AGO)
    write(b / "new.txt", "not ignored", HOUR_AGO)
    write(b / ".p2psync/from-b.txt", "never leaves B", HOUR_AGO)
    ok_sync(tmp_path, node)

    assert (a / "new.txt").read_text() == "not ignored"
    assert (a / "debug.log").read_text() == "A's log"
    assert (b / "debug.log").read_text() == "B's own log"
    assert not (a / "b-only.log").exists() and not (a / "build/b.o").exists()
    assert not (a / ".p2psync/from-b.txt").exists()
    assert not (b / ".p2psync/private.txt").exists()
    assert not any(".sync-conflict-" in p for p in list(tree(a)) + list(tree(b)))
    assert temp_files(a) == [] and temp_files(b) == []
    listed = rows(status(a, tmp_path / "cfgA"))
    assert listed["debug.log"]["state"] == "ignored"
    assert listed[".p2psyncignore"]["state"] == "synced"
    assert not any(p.startswith(".p2psync/") for p in listed)


# --- 9. status --json --------------------------------------------------------------------
def test_status_json_after_sync(tmp_path, run_node):
    a, b = tmp_path / "A", tmp_path / "B"
    write(a / "top.txt", "top", HOUR_AGO)
    write(a / "dir/sub dir/nested ü.txt", "nested", HOUR_AGO + 0.5)
    write(a / "empty", b"", HOUR_AGO)
    write(b / "from-b/x.bin", os.urandom(200_000), HOUR_AGO + 1)
    node = run_node("A")
    ok_sync(tmp_path, node)

    sa, sb = status(a, tmp_path / "cfgA"), status(b, tmp_path / "cfgB")
    expected = {"top.txt", "dir/sub dir/nested ü.txt", "empty", "from-b/x.bin"}
    for report, folder, cfg in ((sa, a, "cfgA"), (sb, b, "cfgB")):
        assert set(report) >= {"folder", "device_id", "node", "files"}
        assert Path(report["folder"]).resolve() == folder.resolve()
        assert report["device_id"] == device_id(tmp_path / cfg)
        listed = rows(report)
        assert set(listed) == expected  # regular files only, no directories
        for path, row in listed.items():
            assert not path.startswith("/") and "\\" not in path
            assert row["state"] == "synced", row
            assert re.fullmatch(r"[0-9a-f]+", row["hash"]), row
            assert isinstance(row["mtime"], float), row
            st = os.stat(folder / path)
            assert row["mtime"] == pytest.approx(st.st_mtime_ns / 1e9, abs=1e-6)
            assert row["size"] == st.st_size
    for path in expected:
        assert rows(sa)[path]["hash"] == rows(sb)[path]["hash"]
    assert len({r["hash"] for r in sa["files"]}) == len(expected)  # different contents
    assert temp_files(a) == [] and temp_files(b) == []
    assert sb["node"] is None  # the sync has exited
    assert sa["node"] is not None
    assert sa["node"]["role"] in ("server", "client", "electing")
    assert isinstance(sa["node"]["peers"], list)


def test_status_shows_live_peers_of_two_run_nodes(tmp_path, run_node):
    a = run_node("A")
    b = run_node("B", "--peer", a.address)
    id_a, id_b = device_id(tmp_path / "cfgA"), device_id(tmp_path / "cfgB")

    def peers(node) -> list[dict]:
        n = status(node.folder, node.config)["node"]
        return n["peers"] if n else []

    wait_until(lambda: [p["device_id"] for p in peers(a)] == [id_b], 15, 0.1, a.log())
    wait_until(lambda: [p["device_id"] for p in peers(b)] == [id_a], 15, 0.1, b.log())
    for node in (a, b):
        n = status(node.folder, node.config)["node"]
        assert n["role"] in ("server", "client", "electing")
        [p] = n["peers"]
        assert set(p) >= {"device_id", "name", "address", "role", "state"}
        assert p["role"] in ("server", "client", "electing")
    # and they keep the folders in sync live, both ways, through their watchers
    write(a.folder / "live-from-a.txt", "a", HOUR_AGO)
    write(b.folder / "live/from-b.txt", "b", HOUR_AGO)
    wait_until(lambda: (b.folder / "live-from-a.txt").exists()
               and (a.folder / "live/from-b.txt").exists(), 15, 0.05, a.log() + b.log())
    wait_until(lambda: tree(a.folder) == tree(b.folder), 15)


# --- 10. device ID -----------------------------------------------------------------------
def test_id_is_one_stable_line(tmp_path):
    def run_id(cfg: str) -> str:
        r = subprocess.run(p2psync_cmd("id", "--config-dir", str(tmp_path / cfg)),
                           capture_output=True, text=True, env=env(), timeout=30)
        assert r.returncode == 0, r.stderr
        return r.stdout

    first = run_id("cfgA")
    assert first.endswith("\n") and first.count("\n") == 1, repr(first)
    assert ID_RX.fullmatch(first.strip()), first
    assert run_id("cfgA") == first
    other = run_id("cfgB")
    assert ID_RX.fullmatch(other.strip()) and other != first


def test_id_is_the_one_the_node_uses(tmp_path, run_node):
    before = device_id(tmp_path / "cfgA")
    node = run_node("A")
    node.wait_for_log(re.escape(before))  # "sharing ... (device ID)"
    assert status(node.folder, node.config)["device_id"] == before
    assert device_id(tmp_path / "cfgA") == before


# --- interrupted transfers ---------------------------------------------------------------
def write_random(path: Path, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, 8 << 20)
            f.write(os.urandom(n))
            left -= n


def background_sync(tmp_path: Path, node, name: str = "B") -> subprocess.Popen:
    (tmp_path / name).mkdir(exist_ok=True)
    return subprocess.Popen(
        p2psync_cmd("sync", "--folder", str(tmp_path / name), "--config-dir",
                    str(tmp_path / f"cfg{name}"), "--no-discovery", "--secret", SECRET,
                    "--peer", node.address),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env())


def test_run_stopped_mid_transfer_exits_0_without_partial_file(tmp_path, run_node):
    a, b = tmp_path / "A", tmp_path / "B"
    write_random(b / "big.bin", 100 * 1024 * 1024)
    node = run_node("A")
    bg = background_sync(tmp_path, node)  # A pulls B's file
    try:
        wait_until(lambda: temp_files(a) or (a / "big.bin").exists() or bg.poll() is not None,
                   30, 0.002,
                   "A never started writing:\n" + node.log())
        assert temp_files(a), "the transfer finished before it could be interrupted"
        assert node.stop(signal.SIGTERM) == 0, node.log()
        # never a half-written file at its final path
        assert not (a / "big.bin").exists() or sha256(a / "big.bin") == sha256(b / "big.bin")
    finally:
        bg_code = bg.wait(30)
    err = bg.stderr.read()
    assert bg_code not in (0, None), f"sync said done though its peer left:\n{err}"
    assert "Traceback" not in err, err


def test_interrupted_sync_completes_on_next_sync(tmp_path, run_node):
    """A killed `sync` leaves a temp file; the next one resumes or redoes it, and converges.

    (Regression: before 6c0ad39 a reconnecting peer's known index started no pull.)
    """
    a, b = tmp_path / "A", tmp_path / "B"
    size = 100 * 1024 * 1024
    write_random(a / "big.bin", size)
    node = run_node("A")
    for _ in range(5):  # on a loaded machine this test may look too late: then again
        shutil.rmtree(b, ignore_errors=True)
        shutil.rmtree(tmp_path / "cfgB", ignore_errors=True)
        bg = background_sync(tmp_path, node)  # B pulls A's file
        try:
            wait_until(lambda bg=bg: temp_files(b) or (b / "big.bin").exists()
                       or bg.poll() is not None, 30, 0.002, "B never started writing")
            temps = [b / t for t in temp_files(b)]
            early = temps and all(t.stat().st_size < size // 2 for t in temps)
            bg.send_signal(signal.SIGTERM)  # the user kills it, the machine sleeps...
        finally:
            err = bg.communicate(timeout=30)[1]
        if (b / "big.bin").exists():  # the file in flight was finished as the sync stopped:
            assert sha256(b / "big.bin") == sha256(a / "big.bin"), err  # whole, or not at all
            early = False
        if early:
            break
    assert early, "the transfer was always past its middle before this test saw it"
    assert not (b / "big.bin").exists(), err

    r = sync(b, tmp_path / "cfgB", node.address, timeout=6)  # a few times what it needs

    assert r.returncode == 0, f"{r.stderr}\nrun node:\n{node.log()}"
    assert sha256(b / "big.bin") == sha256(a / "big.bin")
    assert_converged(a, b)
