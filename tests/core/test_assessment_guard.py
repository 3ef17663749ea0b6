"""The mass-deletion guard as the assessment applies it to a window of a real index:
a plan of directories alone is never held and costs no count of the whole folder."""

from __future__ import annotations

import os
from dataclasses import replace

from app.core.ignore import Ignore
from app.core.index import Index, RemoteLimits
from app.core.model import FileEntry, Kind
from app.core.planner import DELETE
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
