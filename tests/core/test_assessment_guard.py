"""The mass-deletion guard as the assessment applies it to a window of a real index:
a plan of directories alone is never held and costs no count of the whole folder."""

from __future__ import annotations

import os
from dataclasses import replace

from app.core.ignore import Ignore
from app.core.index import Index, RemoteLimits
from app.core.model import FileEntry, Kind
from app.core.planner import DELETE, FETCH
from app.engine.assessment import Inputs, assess

ME = "AAAAAAA-BBBBBBB-CCCCCCC-DDDDDDD-EEEEEEE"
PEER = "PPPPPPP-BBBBBBB-CCCCCCC-DDDDDDD-EEEEEEE"
FILES = 30


def folder(path, planned: int) -> Index:
    """Ours: an empty directory `a` and FILES files in `k`; the peer deleted all of it."""
    ix = Index(path, ME, RemoteLimits(planned=planned))
    ours = [FileEntry("a", Kind.DIR, version={ME: 1}, modified_by=ME),
            FileEntry("k", Kind.DIR, version={ME: 1}, modified_by=ME)]
    ours += [FileEntry(f"k/f{i:02d}", size=10, blocks=os.urandom(32), hash=os.urandom(32),
                       version={ME: 1}, modified_by=ME) for i in range(FILES)]
    ix.put_local(ours)
    gone = [replace(e, version={ME: 1, PEER: 1}, modified_by=PEER, deleted=True, seq=n + 1)
            for n, e in enumerate(ix.get_many([e.path for e in ours]).values())]
    ix.put_remote(PEER, b"id", gone, len(gone))
    return ix


def inputs(tmp_path) -> Inputs:
    (tmp_path / "root").mkdir(exist_ok=True)
    return Inputs(frozenset([PEER]), frozenset(), Ignore(tmp_path / "root"), frozenset(),
                  frozenset(), False)


def test_a_window_of_directories_alone_is_not_held_nor_counted(tmp_path, monkeypatch):
    with folder(tmp_path / "index.db", planned=1) as ix:  # the window: "a" alone
        asked = []
        count = ix.pending_deletions
        monkeypatch.setattr(ix, "pending_deletions",
                            lambda *a, **kw: asked.append(1) or count(*a, **kw))
        out = assess(ix, (), inputs(tmp_path))
        assert [(a.op, a.path) for a in out.actions] == [(DELETE, "a")]
        assert out.held is None and asked == []
        assert count() == {PEER: FILES}  # what counting would have found: over half


def test_the_same_deletion_with_the_files_is_held_with_them(tmp_path):
    with folder(tmp_path / "index.db", planned=100) as ix:  # the window: everything
        out = assess(ix, (), inputs(tmp_path))
        assert out.actions == []
        assert out.held is not None and out.held.deletes == FILES
        assert {"a", "k"} <= out.held.paths


def renamed(path, moved_meanwhile: int) -> tuple[Index, list[str]]:
    """Ours: `old/f00`..`f29`. The peer announced 20 new files of its own, then the
    directory renamed to `new` (its files first, then the old ones' deletions). A window
    of 30 live rows and 30 deletions: the new files' 20, the renamed first 10; all 30
    deletions, the last 20 with no fetch in the plan to pair with (they wait)."""
    ix = Index(path, ME, RemoteLimits(planned=30))
    ours = [FileEntry(f"old/f{i:02d}", size=10, blocks=os.urandom(32), hash=os.urandom(32),
                      version={ME: 1}, modified_by=ME) for i in range(FILES)]
    ix.put_local(ours)
    theirs = [FileEntry(f"z/n{i:02d}", size=10, blocks=os.urandom(32), hash=os.urandom(32),
                        version={PEER: 1}, modified_by=PEER) for i in range(20)]
    theirs += [replace(e, path="new" + e.path[3:], version={PEER: 2}, modified_by=PEER)
               for e in ours]
    theirs += [replace(e, version={ME: 1, PEER: 2}, modified_by=PEER, deleted=True)
               for e in ours]
    theirs = [replace(e, seq=n + 1) for n, e in enumerate(theirs)]
    ix.put_remote(PEER, b"id", theirs, len(theirs))
    return ix, [e.path for e in ours[FILES - moved_meanwhile:]]


def test_a_move_made_while_the_plan_is_made_is_no_deletion(tmp_path, monkeypatch):
    """The pull beside the assessment moves the last 20 files (both halves in the index)
    after the window was read: the plan still sees them wait for their move, not as 20
    lone deletions of 30 files that the guard would hold back (and count the folder's
    pending deletions for: 4-6 s a window at a million)."""
    ix, moved = renamed(tmp_path / "index.db", moved_meanwhile=20)
    with ix:
        remote = ix.remote_entries(moved + ["new" + p[3:] for p in moved])
        find = ix.live_with_content

        def pull_beside(blocks):  # as puller._rename_many records a move
            ix.put_local([e for p in moved for e in (remote["new" + p[3:]][PEER],
                                                     remote[p][PEER])])
            return find(blocks)

        monkeypatch.setattr(ix, "live_with_content", pull_beside)
        out = assess(ix, (), inputs(tmp_path))
        assert out.held is None
        assert sorted(a.path for _, a in out.renames) == [f"new/f{i:02d}" for i in range(10)]
        assert [a.op for a in out.actions] == ["fetch"] * 20  # z/n00..n19; no deletion
        monkeypatch.undo()
        again = assess(ix, (), inputs(tmp_path))  # the moves made are seen now
        assert again.held is None and len(again.renames) == 10
        assert sorted(a.path for a in again.actions) == [f"z/n{i:02d}" for i in range(20)]


def test_deletions_a_plan_settles_are_not_counted_by_its_guard(tmp_path):
    """We edited 20 of 30 files the peer deleted: our edits win, those 20 deletions plan
    to nothing (settled). The 10 others run (no more than MIN_DELETES): the guard must
    not count the settled 20 that its snapshot still sees pending."""
    ix = Index(tmp_path / "index.db", ME, RemoteLimits(planned=25))
    with ix:
        ours = [FileEntry(f"k/f{i:02d}", size=10, blocks=os.urandom(32), hash=os.urandom(32),
                          version={ME: 1}, modified_by=ME) for i in range(FILES)]
        ix.put_local(ours)
        gone = [replace(e, version={ME: 1, PEER: 1}, modified_by=PEER, deleted=True, seq=n + 1)
                for n, e in enumerate(ours)]
        ix.put_remote(PEER, b"id", gone, len(gone))
        ix.put_local([replace(e, version={ME: 2}, mtime_ns=1) for e in ours[:20]])
        out = assess(ix, (), inputs(tmp_path))  # the window: the 20 edited, 5 more
        assert out.held is None
        assert sorted(a.path for a in out.actions) == [f"k/f{i:02d}" for i in range(20, 25)]
        assert ix.pending_deletions() == {PEER: 10}  # settled: the 20 are counted no more


def replaced(path, planned: int) -> Index:
    """Ours: a directory `k` of FILES files; the peer deleted them and made `k` a file."""
    ix = Index(path, ME, RemoteLimits(planned=planned))
    ours = [FileEntry("k", Kind.DIR, version={ME: 1}, modified_by=ME)]
    ours += [FileEntry(f"k/f{i:02d}", size=10, blocks=os.urandom(32), hash=os.urandom(32),
                       version={ME: 1}, modified_by=ME) for i in range(FILES)]
    ix.put_local(ours)
    theirs = [replace(e, version={ME: 1, PEER: 1}, modified_by=PEER, deleted=True)
              for e in ours[1:]]
    theirs.append(FileEntry("k", size=10, blocks=os.urandom(32), hash=os.urandom(32),
                            version={ME: 1, PEER: 2}, modified_by=PEER))
    ix.put_remote(PEER, b"id", [replace(e, seq=n + 1) for n, e in enumerate(theirs)],
                  len(theirs))
    return ix


def test_a_file_replacing_a_directory_waits_for_the_deletions_inside_it(tmp_path):
    """Until they are all in the plan: run before them, or with some of them held back,
    it would find the directory not empty and keep it (Puller._kept_dir), bringing it
    back on the peer that replaced it."""
    with replaced(tmp_path / "window.db", planned=1) as ix:  # the window: "k" alone
        assert assess(ix, (), inputs(tmp_path)).actions == []
    with replaced(tmp_path / "held.db", planned=100) as ix:  # the guard holds them back
        out = assess(ix, (), inputs(tmp_path))
        assert out.actions == [] and out.held is not None and out.held.deletes == FILES
    allowed = replace(inputs(tmp_path), allow_mass_delete=True)
    with replaced(tmp_path / "all.db", planned=100) as ix:
        actions = assess(ix, (), allowed).actions
        assert sorted(a.path for a in actions if a.op == DELETE) == \
            [f"k/f{i:02d}" for i in range(FILES)]
        [k] = [a for a in actions if a.path == "k"]
        assert k.op == FETCH and k.replaces_dir


def test_a_window_whose_rows_cannot_be_settled_is_planned_all_the_same(tmp_path):
    """Settling the rows that plan to nothing is an index write, only there so that no
    later window reads them again: on a full disk it fails, and the plan goes on without
    it (the failure once ended the plan, and the node's pulls with it)."""
    import sqlite3

    with Index(tmp_path / "index.db", ME) as ix:
        ignored, new = (FileEntry(name, size=3, blocks=os.urandom(32), hash=os.urandom(32),
                                  version={PEER: 1}, modified_by=PEER, seq=seq)
                        for seq, name in ((1, "cache.tmp"), (2, "new.txt")))
        ix.put_remote(PEER, b"id", [ignored, new], 2)
        (tmp_path / "root").mkdir()
        (tmp_path / "root" / ".p2psyncignore").write_text("*.tmp\n")  # planned to nothing
        tried = []

        def full(rows):
            if rows := list(rows):
                tried.append(rows)
                raise sqlite3.OperationalError("database or disk is full")

        ix.settle = full
        out = assess(ix, (), inputs(tmp_path))
        assert [(a.op, a.path) for a in out.actions] == [(FETCH, "new.txt")]
        assert tried  # cache.tmp planned to nothing: it was to be settled
