"""The mass-deletion guard between real processes on loopback (see CONTRACT.md).

Device A is a `run` node; B is a one-shot `sync` (or a second `run` node). A deletion
of more than half of the files (and more than 10), or a folder that lost its
`.p2psync/` marker together with its files, is held back until `--allow-mass-delete`.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from tests.integration.test_two_devices import (
    HOUR_AGO,
    device_id,
    ok_sync,
    rows,
    status,
    versions,
    wait_indexed,
    write,
)
from tests.procs import sync, tree, wait_until

HELD_RX = "held back a mass deletion"




def files(folder: Path, n: int, sub: str = "") -> list[str]:
    rels = [f"{sub}f{i:03}.txt" for i in range(n)]
    for rel in rels:
        write(folder / rel, f"content of {rel}\n", HOUR_AGO)
    return rels


def file_names(folder: Path) -> set[str]:
    return {rel for rel, v in tree(folder).items() if isinstance(v, bytes)}


def held_sync(tmp_path: Path, node, name: str = "B", *extra: str):
    r = sync(tmp_path / name, tmp_path / f"cfg{name}", node.address, extra=extra)
    assert r.returncode == 6, f"exit {r.returncode}:\n{r.stderr}\nrun node:\n{node.log()}"
    return r


def test_more_than_half_deleted_is_held_until_allowed(tmp_path, run_node):
    a, b = tmp_path / "A", tmp_path / "B"
    rels = files(a, 300)
    node = run_node("A", "--name", "desk")
    ok_sync(tmp_path, node)
    assert len(file_names(b)) == 300

    gone = rels[:200]
    for rel in gone:
        (a / rel).unlink()
    wait_indexed(node, *gone)
    r = held_sync(tmp_path, node)
    short = device_id(tmp_path / "cfgA")[:7]
    last = r.stderr.strip().splitlines()[-1]
    assert last == (f"p2psync: held back a mass deletion: 200 of 300 files deleted on desk "
                    f"({short}); nothing was deleted. Repeat with --allow-mass-delete to "
                    "apply it."), r.stderr
    assert len(file_names(b)) == 300  # nothing was deleted
    assert versions(b) == {}
    listed = rows(status(b, tmp_path / "cfgB"))
    assert listed[gone[0]]["state"] == "remote_change"
    assert listed[rels[250]]["state"] == "synced"
    assert len(file_names(a)) == 100  # and nothing came back on A

    r = sync(b, tmp_path / "cfgB", node.address, extra=("--allow-mass-delete",))
    assert r.returncode == 0, r.stderr
    assert file_names(b) == file_names(a) == set(rels[200:])
    kept = versions(b)  # deleted files are kept in .p2psync/versions, as usual
    assert len(kept) == 200
    assert any(re.fullmatch(r"f000~\d{8}-\d{6}\.txt", p) for p in kept), sorted(kept)[:3]


def test_up_to_ten_or_up_to_half_go_through(tmp_path, run_node):
    a, b = tmp_path / "A", tmp_path / "B"
    rels = files(a, 24)
    node = run_node("A")
    ok_sync(tmp_path, node)

    for rel in rels[:12]:  # exactly half of 24 (more than 10): no mass deletion
        (a / rel).unlink()
    wait_indexed(node, *rels[:12])
    r = ok_sync(tmp_path, node)
    assert HELD_RX not in r.stderr
    assert file_names(b) == set(rels[12:])

    for rel in rels[12:22]:  # 10 of the 12 left (more than half, but only 10)
        (a / rel).unlink()
    wait_indexed(node, *rels[12:22])
    ok_sync(tmp_path, node)
    assert file_names(b) == file_names(a) == set(rels[22:])
    assert len(versions(b)) == 22
    assert HELD_RX not in node.log()


def test_emptied_folder_without_its_marker_is_refused(tmp_path, run_node):
    a, b = tmp_path / "A", tmp_path / "B"
    rels = files(a, 20)
    node = run_node("A", "--allow-mass-delete")  # A would apply any deletion B sent
    ok_sync(tmp_path, node)
    assert (b / ".p2psync").is_dir()  # the marker

    for p in b.iterdir():  # emptied, marker included (as an unmounted disk's mount point)
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    r = held_sync(tmp_path, node, "B", "--name", "laptop")
    short = device_id(tmp_path / "cfgB")[:7]
    assert r.stderr.strip().splitlines()[-1] == (
        "p2psync: the folder looks unmounted or emptied (its .p2psync marker is gone): 20 of "
        f"20 files are missing on this device, laptop ({short}); nothing was deleted. "
        "Repeat with --allow-mass-delete to apply it."), r.stderr
    assert file_names(a) == set(rels)  # A keeps every file
    assert os.listdir(b) == []  # and nothing was written into B's folder
    assert len(rows(status(b, tmp_path / "cfgB"))) == 20  # nor recorded as deleted

    r = sync(b, tmp_path / "cfgB", node.address, extra=("--allow-mass-delete",))
    assert r.returncode == 0, r.stderr
    assert file_names(a) == file_names(b) == set()
    assert (b / ".p2psync").is_dir()
    assert len(versions(a)) == 20


def test_run_keeps_syncing_the_rest_and_says_it_once(tmp_path, run_node):
    a, b = tmp_path / "A", tmp_path / "B"
    rels = files(a, 20, "docs/") + files(a, 10)
    node = run_node("A", "--name", "desk")
    nb = run_node("B", "--peer", node.address)
    wait_until(lambda: file_names(b) == set(rels), 30, 0.1, f"B never got A's files:\n"
               f"{nb.log()}")
    # one move out of the folder: one scan on A records all 20 deletions
    os.rename(a / "docs", tmp_path / "trash")
    nb.wait_for_log(HELD_RX + r": 20 of 30 files deleted on desk \(", 30)
    write(a / "new.txt", "made after the deletion\n")
    wait_until(lambda: (b / "new.txt").exists(), 30, 0.1, f"new.txt never came:\n"
               f"{nb.log()}")
    write(a / "f001.txt", "edited after the deletion\n")
    wait_until(lambda: (b / "f001.txt").read_text() == "edited after the deletion\n", 30,
               0.1, f"the edit never came:\n{nb.log()}")
    assert file_names(b) == set(rels) | {"new.txt"}  # the held files are still there
    assert sum(HELD_RX in line for line in nb.lines) == 1, nb.log()


def test_deletions_announced_in_several_batches_are_judged_together(tmp_path, run_node):
    """1,500 deletions reach B as two index batches (1,000 + 500): neither batch alone
    is more than half of the 2,000 files, all of them together are."""
    a, b = tmp_path / "A", tmp_path / "B"
    rels = files(a, 2000)
    node = run_node("A")
    ok_sync(tmp_path, node)
    os.mkdir(tmp_path / "trash")
    for rel in rels[:1500]:
        os.rename(a / rel, tmp_path / "trash" / rel)
    wait_indexed(node, rels[0], rels[1499])
    r = held_sync(tmp_path, node)
    assert "1500 of 2000 files deleted on" in r.stderr
    assert len(file_names(b)) == 2000


def test_a_folder_emptied_while_watched_is_held_whole(tmp_path, run_node):
    """`rm -rf` on a watching device is recorded scan by scan and sent page by page;
    each page alone was under the bar (212 of 1,000 files went through before the rest
    was held). The peer's deletions are judged once they stop coming: all held."""
    a, b = tmp_path / "A", tmp_path / "B"
    rels = [rel for d in range(10) for rel in files(a, 100, f"d{d}/")]
    node = run_node("A", "--name", "desk")
    nb = run_node("B", "--peer", node.address)
    wait_until(lambda: file_names(b) == set(rels), 60, 0.1, f"B never got A's files:\n"
               f"{nb.log()}")
    for d in range(10):
        shutil.rmtree(a / f"d{d}")
    nb.wait_for_log(HELD_RX + r": 1000 of 1000 files deleted on desk \(", 30)
    assert file_names(b) == set(rels), nb.log()
    assert not (b / ".p2psync" / "versions").exists() or \
        not any((b / ".p2psync" / "versions").rglob("*.txt")), "B archived deletions"
