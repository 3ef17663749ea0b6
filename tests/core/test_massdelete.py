"""The mass-deletion guard's decision (pure), the folder marker, and "Keep them"."""

from __future__ import annotations

import os
import shutil

import pytest

from app.core import marker
from app.core.index import Index
from app.core.keep import keep_local
from app.core.massdelete import (
    THRESHOLD,
    UNMOUNTED,
    describe,
    hold_mass_deletions,
    unmounted,
)
from app.core.model import FileEntry, Kind
from app.core.planner import DELETE, FETCH, MKDIR, Action, plan_path
from app.core.versions import Order, compare

ME, A, C = "ME" * 4, "AA" * 4, "CC" * 4


def live(rel: str, content: str = "", kind: Kind = Kind.FILE) -> FileEntry:
    h = (content or rel).encode().ljust(32, b"\0")[:32]
    return FileEntry(rel, kind, len(content or rel), 1, 0o644, h, version={ME: 1},
                     modified_by=ME)


def delete(rel: str, by: str = A, kind: Kind = Kind.FILE) -> Action:
    return Action(DELETE, rel, FileEntry(rel, kind, deleted=True, version={ME: 1, by: 1},
                                         modified_by=by), [by])


def fetch(rel: str, like: FileEntry) -> Action:
    return Action(FETCH, rel, FileEntry(rel, Kind.FILE, like.size, 2, 0o644, like.hash,
                                        version={A: 1}, modified_by=A), [A])


def plan_of(n_deleted: int, by: str = A) -> tuple[list[Action], dict[str, FileEntry]]:
    actions = [delete(f"f{i}", by) for i in range(n_deleted)]
    return actions, {a.path: live(a.path) for a in actions}


def names(device: str) -> str:
    return {A: "desk (AAAAAAA)", C: "nas (CCCCCCC)", ME: "me (MEMEMEM)"}[device]


# --- the threshold ------------------------------------------------------------------------
@pytest.mark.parametrize(("deleted", "files", "held"), [
    (10, 10, False),  # everything, but only 10 files: always fine
    (11, 22, False),  # exactly half
    (11, 21, True),  # more than half, more than 10
    (150, 300, False),
    (151, 300, True),
    (200, 300, True),
    (300, 300, True),
])
def test_more_than_half_and_more_than_ten_are_held(deleted, files, held):
    actions, local = plan_of(deleted)
    keep = Action(FETCH, "new.txt", live("new.txt"), [A])
    run, out = hold_mass_deletions([*actions, keep], local, files)
    if not held:
        assert out is None and len(run) == deleted + 1
        return
    assert run == [keep]  # everything else of the plan still runs
    assert out.reason == THRESHOLD
    assert (out.deletes, out.of, out.by, out.device) == (deleted, files, ((A, deleted),), A)
    assert out.paths == {a.path for a in actions}
    assert out.as_json() == {"deletes": deleted, "of": files, "from": A}


def test_deletions_are_grouped_by_the_device_that_made_them():
    actions = [delete(f"a{i}", A) for i in range(8)] + [delete(f"c{i}", C) for i in range(12)]
    local = {a.path: live(a.path) for a in actions}
    run, held = hold_mass_deletions(actions, local, 30)
    assert run == [] and held.by == ((C, 12), (A, 8))
    assert describe(held, names) == ("held back a mass deletion: 12 of 30 files deleted on "
                                     "nas (CCCCCCC) and 8 on desk (AAAAAAA); nothing was "
                                     "deleted")


def test_directories_do_not_count_but_are_held_with_the_files():
    actions, local = plan_of(12)
    dirs = [delete(f"d{i}", kind=Kind.DIR) for i in range(30)]
    local.update({d.path: live(d.path, kind=Kind.DIR) for d in dirs})
    run, held = hold_mass_deletions(dirs, local, 20)
    assert held is None and run == dirs  # directories alone never trip the guard
    mkdir = Action(MKDIR, "x", live("x", kind=Kind.DIR), [A])
    run, held = hold_mass_deletions([*actions, *dirs, mkdir], local, 20)
    assert run == [mkdir]
    assert held.deletes == 12 and len(held.paths) == 42


def test_moves_are_not_deletions():
    actions, local = plan_of(20)
    moves = [fetch(f"moved/f{i}", local[f"f{i}"]) for i in range(20)]
    run, held = hold_mass_deletions([*actions, *moves], local, 20)
    assert held is None and len(run) == 40
    # half of them moved, the other half really gone: 10 deletions of 20 files pass
    run, held = hold_mass_deletions([*actions, *moves[:10]], local, 20)
    assert held is None
    # one more real deletion than moves allow for: 11 of 20 are held, the moves run
    run, held = hold_mass_deletions([*actions, *moves[:9]], local, 20)
    assert held is not None and held.deletes == 11
    assert sorted(a.op for a in run) == [DELETE] * 9 + [FETCH] * 9


def test_confirmed_paths_run_and_do_not_count():
    actions, local = plan_of(200)
    allowed = {a.path for a in actions}
    run, held = hold_mass_deletions(actions, local, 300, allowed=allowed)
    assert held is None and run == actions
    run, held = hold_mass_deletions([*actions, delete("late", C)],
                                    {**local, "late": live("late")}, 300, allowed=allowed)
    assert held is None and len(run) == 201  # one new deletion alone is no mass deletion


def test_unmounted_message_names_this_device():
    held = unmounted(300, 300, ME)
    assert held.reason == UNMOUNTED and held.key() == (UNMOUNTED, ((ME, 300),), 0)
    assert describe(held, names) == ("the folder looks unmounted or emptied (its .p2psync "
                                     "marker is gone): 300 of 300 files are missing on this "
                                     "device, me (MEMEMEM); nothing was deleted")


def test_key_ignores_the_file_count():
    actions, local = plan_of(20)
    _, one = hold_mass_deletions(actions, local, 25)
    _, two = hold_mass_deletions(actions, local, 30)
    assert one.key() == two.key() and one.of != two.of
    dirs = [delete("d", kind=Kind.DIR)]
    _, three = hold_mass_deletions([*actions, *dirs], {**local, "d": live("d", kind=Kind.DIR)}, 30)
    assert three.key() != two.key() and three.deletes == two.deletes  # a directory joined


# --- the marker -----------------------------------------------------------------------------
@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "share"
    root.mkdir()
    index = Index(tmp_path / "index.db", ME)
    yield root, index
    index.close()


def put_files(root, index, n: int) -> None:
    entries = []
    for i in range(n):
        (root / f"f{i}").write_text(f"f{i}")
        entries.append(live(f"f{i}"))
    index.put_local(entries)


def test_marker_is_made_once_and_its_loss_with_the_files_is_caught(folder):
    root, index = folder
    assert marker.check(root, index) is None  # a new folder gets its marker
    assert (root / ".p2psync").is_dir() and index.get_meta(marker.MADE) == 1
    put_files(root, index, 5)
    assert marker.check(root, index) is None
    for p in root.iterdir():  # emptied, marker included (or a mount point, unmounted)
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    assert marker.check(root, index) == marker.Missing(5, 5)
    assert not (root / ".p2psync").exists()  # nothing is written there
    root.rmdir()  # the folder itself gone: the same
    assert marker.check(root, index) == marker.Missing(5, 5)


def test_marker_gone_but_every_file_there_is_just_made_again(folder):
    root, index = folder
    marker.check(root, index)
    put_files(root, index, 5)
    (root / ".p2psync").rmdir()
    assert marker.check(root, index) is None
    assert (root / ".p2psync").is_dir()


def test_index_from_before_the_marker(folder):
    root, index = folder
    put_files(root, index, 5)
    assert marker.check(root, index) is None  # files there: it gets its marker now
    assert index.get_meta(marker.MADE) == 1
    index.set_meta(marker.MADE, None)
    shutil.rmtree(root / ".p2psync")
    for i in range(5):
        os.unlink(root / f"f{i}")
    # no note of a marker, but a wholly empty folder whose index lists files: held too
    assert marker.check(root, index) == marker.Missing(5, 5)


# --- keep them ------------------------------------------------------------------------------
def test_keep_local_beats_the_deletion_so_the_deleting_side_fetches_it(folder):
    root, index = folder
    put_files(root, index, 3)
    for rel in ("f0", "f1", "f2"):
        e = index.get(rel)
        os.utime(root / rel, ns=(e.mtime_ns, e.mtime_ns))
        index.set_inode(rel, os.lstat(root / rel).st_ino)
    tomb = FileEntry("f0", deleted=True, version={ME: 1, A: 2}, modified_by=A)
    index.put_remote(A, b"a-index", [tomb, FileEntry("f1", deleted=True, version={ME: 1, A: 3},
                                                     modified_by=A)], 2)
    (root / "f1").write_text("changed here meanwhile")
    kept = keep_local(root, index, {"f0", "f1", "nothere"})
    # f1 changed on disk: the next scan decides, not what the index remembers
    assert [e.path for e in kept] == ["f0"]
    mine = index.get("f0")
    assert mine.modified_by == ME and compare(mine.version, tomb.version) == Order.NEWER
    # the deleting device now plans to fetch our copy back
    action = plan_path(tomb, {ME: mine})
    assert action is not None and action.op == FETCH
