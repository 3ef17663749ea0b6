"""Names a Windows device cannot hold, on a real NTFS file system with Windows rules.

The receiving folder is an NTFS image mounted with `lowntfs-3g -o
windows_names,ignore_case`: there `aux.txt`, `a:b`, `what?` and `trailing.` are
refused (EINVAL) and `README.md` and `Readme.md` are one name, as on Windows. The
sender is an ordinary Linux folder holding all of them. Real processes over loopback.
What must hold: the good file syncs; of the case twins one takes the name and the
other's content comes in as its conflict copy (nothing overwritten); the rest are
`error` here with the reason, `sync` exits 5 naming each, and the sender keeps every
one of its files unchanged (no deletion, no rename). Skips where FUSE or the NTFS
tools are missing; the image is unmounted on every path.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest

from tests.procs import start_run, status_json, sync, tree, wait_until

REFUSED = {"aux.txt": "reserved name", "a:b": "':' is not allowed",
           "what?": "'?' is not allowed", "trailing.": "ending in a dot"}


@pytest.fixture
def ntfs_folder(tmp_path):
    """A folder on a fresh NTFS image mounted with Windows' name rules; unmounted after."""
    tools = [shutil.which(t) or shutil.which(t, path="/usr/sbin:/sbin")
             for t in ("mkntfs", "lowntfs-3g")]
    if not all(tools) or not os.path.exists("/dev/fuse"):
        pytest.skip("needs FUSE (/dev/fuse) and ntfs-3g's mkntfs and lowntfs-3g")
    mkntfs, lowntfs = tools
    img, mnt = tmp_path / "nt.img", tmp_path / "B"
    mnt.mkdir()
    subprocess.run(["truncate", "-s", "64M", str(img)], check=True)
    subprocess.run([mkntfs, "-q", "-F", "-f", str(img)], check=True, capture_output=True)
    r = subprocess.run([lowntfs, "-o", "windows_names,ignore_case", str(img), str(mnt)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount an NTFS image here: {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        for _ in range(50):  # a node that just stopped may still hold it for a moment
            if subprocess.run(["umount", str(mnt)], capture_output=True).returncode == 0:
                break
            time.sleep(0.1)
        else:
            subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_the_mount_has_windows_rules(ntfs_folder):
    """What the rest relies on: the mount refuses and folds names as Windows does."""
    for name in REFUSED:
        with pytest.raises(OSError):
            (ntfs_folder / name).write_text("x")
    (ntfs_folder / "CamelCase").write_text("x")
    assert (ntfs_folder / "CAMELCASE").read_text() == "x"


def test_names_windows_refuses_are_errors_here_and_untouched_there(tmp_path, ntfs_folder):
    a = tmp_path / "A"
    a.mkdir()
    files = {"README.md": b"upper\n", "Readme.md": b"mixed case\n", "aux.txt": b"aux\n",
             "a:b": b"colon\n", "what?": b"question\n", "trailing.": b"dot\n",
             "good.txt": b"good\n"}
    for name, data in files.items():
        (a / name).write_bytes(data)
    (a / "good.txt").chmod(0o755)  # an executable bit crosses; a disk's 0777 does not
    before, modes = tree(a), _modes(a)
    node_a = start_run(a, tmp_path / "cfgA")
    try:
        r = sync(ntfs_folder, tmp_path / "cfgB", node_a.address, timeout=60)
        assert r.returncode == 5, r.stderr
        for name, why in REFUSED.items():
            assert any(f"{name}: " in ln and why in ln for ln in r.stderr.splitlines()), \
                (name, r.stderr)
        assert "Traceback" not in r.stderr

        got = tree(ntfs_folder)  # names as the mount lists them: lower case
        assert got["good.txt"] == b"good\n"
        assert got["readme.md"] in (b"upper\n", b"mixed case\n")
        copies = [n for n in got if n.startswith("readme.sync-conflict-")]
        assert len(copies) == 1, got
        assert {got["readme.md"], got[copies[0]]} == {b"upper\n", b"mixed case\n"}
        assert not any(n.lower() in got for n in REFUSED)

        rows = {f["path"]: f for f in status_json(ntfs_folder, tmp_path / "cfgB")["files"]}
        for name, why in REFUSED.items():
            assert rows[name]["state"] == "error" and why in rows[name]["why"], rows[name]
        assert rows["good.txt"]["state"] == "synced"

        # the sender keeps all of its files as they were, and gets the conflict copy
        wait_until(lambda: any(".sync-conflict-" in n for n in tree(a)), 20, 0.2,
                   f"the copy never reached the sender; log:\n{node_a.log()}")
        after = tree(a)
        assert {n: after[n] for n in before} == before
        assert {n: m for n, m in _modes(a).items() if n in modes} == modes
        a_rows = {f["path"]: f for f in status_json(a, tmp_path / "cfgA")["files"]}
        assert all(not (a_rows[n].get("why") or "").startswith("deleted") for n in files)

        # nothing is fetched again while nothing changed: a second sync says the same
        r2 = sync(ntfs_folder, tmp_path / "cfgB", node_a.address, timeout=60)
        assert r2.returncode == 5, r2.stderr
        assert tree(a) == after
        assert {n: m for n, m in _modes(a).items() if n in modes} == modes
        b_rows = {f["path"]: f for f in status_json(ntfs_folder, tmp_path / "cfgB")["files"]}
        assert b_rows["good.txt"]["state"] == b_rows["README.md"]["state"] == "synced"
        assert len([n for n in tree(ntfs_folder) if ".sync-conflict-" in n]) == 1
    finally:
        assert node_a.stop() == 0, node_a.log()
    assert "Traceback" not in node_a.log()


def test_a_running_node_on_ntfs_refuses_once_and_replans_a_renamed_file(tmp_path,
                                                                          ntfs_folder):
    """A refused name is not fetched again and again; renamed at the source, it comes."""
    a = tmp_path / "A"
    a.mkdir()
    (a / "a:b").write_bytes(b"colon\n")
    (a / "fine.txt").write_bytes(b"fine\n")
    node_a = start_run(a, tmp_path / "cfgA")
    node_b = start_run(ntfs_folder, tmp_path / "cfgB", "--peer", node_a.address)
    try:
        wait_until(lambda: (ntfs_folder / "fine.txt").exists(), 30, 0.1, node_b.log())
        node_b.wait_for_log(r"cannot sync a:b here: ':' is not allowed", timeout=20)
        time.sleep(5)  # a retry every 2 s would say it again, or fetch it
        assert sum("a:b" in ln for ln in node_b.lines) == 1, node_b.log()
        (a / "a:b").rename(a / "a-b")
        wait_until(lambda: (ntfs_folder / "a-b").exists(), 30, 0.1, node_b.log())
        assert (ntfs_folder / "a-b").read_bytes() == b"colon\n"
        wait_until(lambda: "a:b" not in {
            f["path"] for f in status_json(ntfs_folder, tmp_path / "cfgB")["files"]
            if f["state"] == "error"}, 20, 0.2, "the old name stayed an error")
    finally:
        assert node_b.stop() == 0, node_b.log()
        assert node_a.stop() == 0, node_a.log()


def test_a_case_twin_of_a_file_held_here_comes_in_as_its_conflict_copy(tmp_path,
                                                                          ntfs_folder):
    """One arriving where the other exists: both contents kept, neither overwritten."""
    a = tmp_path / "A"
    a.mkdir()
    (a / "Notes.txt").write_bytes(b"theirs\n")
    (ntfs_folder / "NOTES.txt").write_bytes(b"mine\n")
    node_a = start_run(a, tmp_path / "cfgA")
    try:
        r = sync(ntfs_folder, tmp_path / "cfgB", node_a.address, timeout=60)
        assert r.returncode == 5, r.stderr
        # a file made here is listed in lower case by this mount, so indexed so
        assert "Notes.txt: same name here as 'notes.txt'" in r.stderr
        got = tree(ntfs_folder)
        assert got["notes.txt"] == b"mine\n"
        copies = [n for n in got if n.startswith("notes.sync-conflict-")]
        assert [got[n] for n in copies] == [b"theirs\n"], got
        # the sender keeps its file, and now holds ours beside it, under our name
        wait_until(lambda: tree(a).get("notes.txt") == b"mine\n", 20, 0.2, node_a.log())
        assert tree(a)["Notes.txt"] == b"theirs\n"
    finally:
        assert node_a.stop() == 0, node_a.log()


def test_an_edit_under_another_case_is_an_edit_of_the_file(tmp_path, ntfs_folder):
    """The mount lists `readme.md` and a user writes `ReadMe.md`: still the indexed
    `README.md`, changed; never a second file, never a deletion of the first."""
    a = tmp_path / "A"
    a.mkdir()
    (a / "README.md").write_bytes(b"one\n")
    node_a = start_run(a, tmp_path / "cfgA")
    node_b = start_run(ntfs_folder, tmp_path / "cfgB", "--peer", node_a.address)
    try:
        wait_until(lambda: (ntfs_folder / "README.md").exists(), 30, 0.1, node_b.log())
        (ntfs_folder / "ReadMe.md").write_bytes(b"two\n")
        wait_until(lambda: (a / "README.md").read_bytes() == b"two\n", 30, 0.2,
                   f"the edit never reached the sender; log:\n{node_b.log()}")
        time.sleep(1)
        assert tree(a) == {"README.md": b"two\n"}
        rows = status_json(ntfs_folder, tmp_path / "cfgB")["files"]
        assert [f["path"] for f in rows] == ["README.md"]
    finally:
        assert node_b.stop() == 0, node_b.log()
        assert node_a.stop() == 0, node_a.log()


def test_a_twin_copy_resolved_elsewhere_is_not_made_again(tmp_path, ntfs_folder):
    """The device that holds both names keeps the original: the copy goes everywhere,
    and the case-insensitive device does not fetch it again (the twin stays an error)."""
    a = tmp_path / "A"
    a.mkdir()
    (a / "README.md").write_bytes(b"upper\n")
    (a / "Readme.md").write_bytes(b"mixed\n")
    node_a = start_run(a, tmp_path / "cfgA")
    try:
        assert sync(ntfs_folder, tmp_path / "cfgB", node_a.address).returncode == 5
        wait_until(lambda: any(".sync-conflict-" in n for n in tree(a)), 20, 0.2,
                   node_a.log())
        [copy] = [n for n in tree(a) if ".sync-conflict-" in n]
        (a / copy).unlink()  # "keep this one", by hand
        wait_until(lambda: copy not in {f["path"] for f in status_json(
            a, tmp_path / "cfgA")["files"]}, 20, 0.2, node_a.log())
        for _ in range(2):  # the deletion comes, and nothing comes back after it
            r = sync(ntfs_folder, tmp_path / "cfgB", node_a.address)
            assert r.returncode == 5, r.stderr
            assert not any(".sync-conflict-" in n for n in tree(ntfs_folder))
        assert "Readme.md: same name here as 'README.md' (this device ignores case)" \
            in r.stderr
        assert tree(a) == {"README.md": b"upper\n", "Readme.md": b"mixed\n"}
    finally:
        assert node_a.stop() == 0, node_a.log()


def _modes(folder) -> dict[str, int]:
    return {n: os.lstat(folder / n).st_mode & 0o777 for n in os.listdir(folder)
            if n != ".p2psync"}


def test_the_probe_finds_windows_rules_on_the_mount(ntfs_folder):
    from app.core import namerules

    (ntfs_folder / ".p2psync").mkdir()
    rules = namerules.probe(ntfs_folder)
    assert (rules.case_sensitive, rules.refused_chars, rules.refuse_reserved,
            rules.refuse_trailing) == (False, namerules.WINDOWS_CHARS, True, True)
    assert not rules.keeps_modes and rules.mtime_step_ns == 100
    assert os.listdir(ntfs_folder / ".p2psync") == []
