"""The preview's reads of the index: a peer's view of our entries, windows settled by path,
and the steps planned from both sides (app/engine/preview.py), on a real index."""

from __future__ import annotations

import os
from dataclasses import replace

import pytest

from app.core import scanner
from app.core.ignore import Ignore
from app.core.index import Index, RemoteLimits
from app.core.model import FileEntry
from app.engine.assessment import Inputs
from app.engine.preview import PeerSide, Preview

ME = "AAAAAAA-BBBBBBB-CCCCCCC-DDDDDDD-EEEEEEE"
PEER = "PPPPPPP-BBBBBBB-CCCCCCC-DDDDDDD-EEEEEEE"


@pytest.fixture
def idx(tmp_path):
    with Index(tmp_path / "index.db", ME, RemoteLimits(planned=3)) as ix:
        yield ix


def entry(path: str, version: dict, by: str = ME, data: bytes | None = None,
          **kw) -> FileEntry:
    blocks = os.urandom(32) if data is None else data
    return FileEntry(path, size=100, blocks=blocks, version=version, modified_by=by,
                     mtime_ns=1_700_000_000 * 10**9, **kw)


def preview(idx: Index, tmp_path, have: int = 0) -> Preview:
    (tmp_path / "root").mkdir(exist_ok=True)
    inputs = Inputs(frozenset([PEER]), frozenset(), Ignore(tmp_path / "root"), frozenset(),
                    frozenset(), False)
    return Preview(tmp_path, ME, idx, inputs, [PeerSide(PEER, "peer", have)], {})


def test_the_peer_view_and_the_steps_of_both_sides(idx, tmp_path):
    same, mine_newer, theirs_newer = entry("same", {ME: 1}), entry("mine", {ME: 2}), \
        entry("theirs", {ME: 1})
    idx.put_local([same, mine_newer, theirs_newer, entry("only-here", {ME: 1})])
    idx.put_remote(PEER, b"id", [
        replace(same, seq=1),  # exactly ours: a remote_same row
        replace(mine_newer, version={ME: 1}, seq=2),  # dominated: not kept at all
        replace(theirs_newer, version={ME: 1, PEER: 1}, modified_by=PEER, seq=3),
        entry("new-there", {PEER: 1}, by=PEER, seq=4),
    ], 4)
    view = {m.path: (t is not None, s) for m, t, s in idx.iter_peer_view(PEER)}
    assert view == {"mine": (False, False), "only-here": (False, False),
                    "same": (False, True), "theirs": (True, False)}

    p = preview(idx, tmp_path)
    steps = {(s.action, s.path) for s in p.steps()}
    assert steps == {("fetch", "theirs"), ("fetch", "new-there"), ("send", "mine"),
                     ("send", "only-here")}
    assert p.totals[PEER].counts == {"fetch": 2, "send": 2}
    assert p.totals[PEER].bytes == 300  # the new version of `theirs` has blocks we hold


def test_windows_move_on_until_every_row_was_planned(idx, tmp_path):
    """RemoteLimits(planned=3): six new files are two windows; the scratch copy's rows are
    settled by path as each window is planned, and the preview lists all six."""
    idx.put_remote(PEER, b"id", [entry(f"f{i}", {PEER: 1}, by=PEER, seq=i + 1)
                                 for i in range(6)], 6)
    assert len(idx.differing_entries()) == 3
    steps = [s.path for s in preview(idx, tmp_path).steps()]
    assert sorted(steps) == [f"f{i}" for i in range(6)]
    assert idx.differing_entries() == []  # all settled: in the scratch copy only
    idx.settle_paths(["nothing-there"])  # a path without rows settles nothing, and says nothing


def test_a_deletion_the_peer_has_not_seen_is_a_delete_on_peer(idx, tmp_path):
    idx.put_local([entry("gone", {ME: 1})])
    idx.put_local([replace(entry("gone", {ME: 2}), deleted=True)])
    seq = idx.get("gone").seq
    assert [(s.action, s.path) for s in preview(idx, tmp_path, have=seq - 1).steps()] == \
        [("delete_on_peer", "gone")]
    assert list(preview(idx, tmp_path, have=seq).steps()) == []  # seen: nothing left to do


def test_a_move_here_is_a_rename_on_the_peer_even_among_files_of_the_same_mtime(idx, tmp_path):
    """Files unpacked from an archive share their mtime: the move is paired with the
    deletion of the same name, and the other deletion stays a deletion."""
    root = tmp_path / "root"
    for name in ("a.txt", "b.txt", "c.txt"):
        (root / "docs").mkdir(parents=True, exist_ok=True)
        (root / "docs" / name).write_text(f"{name}\n" * 100)
        os.utime(root / "docs" / name, (1_700_000_000, 1_700_000_000))
    scanner.scan(root, idx, Ignore(root))
    ours = [(e.path, e.seq, e.seq) for e in idx.all_local()]
    idx.put_remote(PEER, b"id", [], 10, ours)  # the peer holds all of it as ours
    have = idx.max_seq()
    (root / "docs/a.txt").unlink()
    (root / "new").mkdir()
    os.rename(root / "docs/b.txt", root / "new/b.txt")
    scanner.scan(root, idx, Ignore(root))
    steps = {(s.kind, s.path, s.source, s.bytes) for s in preview(idx, tmp_path, have).steps()}
    assert steps == {("rename_on_peer", "new/b.txt", "docs/b.txt", 0),
                     ("delete_on_peer", "docs/a.txt", None, 0),
                     ("send", "new", None, 0)}
