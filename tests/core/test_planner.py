"""The planner's choice between concurrent versions is the same on every device: of two
devices holding each other's version, exactly one takes the other's."""

from __future__ import annotations

import itertools

import pytest

from app.core import hashing
from app.core.model import FileEntry, Kind
from app.core.planner import plan_path

A = "AAAAAAA-AAAAAAA-AAAAAAA-AAAAAAA-AAAAAAA"
B = "BBBBBBB-BBBBBBB-BBBBBBB-BBBBBBB-BBBBBBB"
DAY = 86_400 * 10**9


def file(data: bytes, mode: int = 0o644, mtime: int = DAY, by: str = A,
         version: dict | None = None, deleted: bool = False) -> FileEntry:
    blocks = b"" if deleted else hashing.block_hash(data)
    return FileEntry("f", Kind.FILE, 0 if deleted else len(data), mtime, mode,
                     b"" if deleted else hashing.file_hash_from_blocks(blocks), blocks,
                     version=version or {A: 1}, modified_by=by, deleted=deleted)


def sides(a: FileEntry, b: FileEntry):
    """What A plans holding `a` with B's `b` announced, and what B plans the other way."""
    return plan_path(a, {B: b}), plan_path(b, {A: a})


def test_a_chmod_by_the_author_of_the_version_it_meets_is_kept_on_both_sides():
    """Seen with two live nodes: B took A's change (and merged its own into it); A, not
    having seen that yet, recorded a chmod of the file: one author, one mtime, two
    concurrent versions. Each side took the other's, so A lost its chmod and B kept it,
    both with one merged version: they never looked at the file again."""
    on_a = file(b"x", mode=0o755, version={A: 4})  # the chmod, recorded on A
    on_b = file(b"x", mode=0o644, version={A: 3, B: 2})  # A's older change, merged on B
    took_a, took_b = sides(on_a, on_b)
    assert took_a is None  # A keeps its chmod...
    assert took_b is not None and took_b.target.mode == 0o755  # ...and B takes it
    assert took_b.target.version == {A: 4, B: 2} and not took_b.conflict_copy


def test_different_contents_of_one_author_and_mtime_end_as_one_file_and_a_copy():
    on_a = file(b"mine", version={A: 4})
    on_b = file(b"theirs", version={A: 3, B: 2})
    took_a, took_b = sides(on_a, on_b)
    assert (took_a is None) != (took_b is None)
    taken = took_a or took_b
    assert taken.conflict_copy  # the side that gives way keeps its content beside it


KINDS = [file(b"x"), file(b"y"), file(b"x", mode=0o755), file(b"x", mtime=2 * DAY),
         file(b"x", by=B), file(b"", deleted=True),
         FileEntry("f", Kind.DIR, mtime_ns=DAY, mode=0o755, modified_by=A),
         FileEntry("f", Kind.LINK, mtime_ns=DAY, mode=0o777, target="t", modified_by=A),
         FileEntry("f", Kind.LINK, mtime_ns=DAY, mode=0o777, target="u", modified_by=A)]


@pytest.mark.parametrize(("one", "other"), list(itertools.combinations(range(len(KINDS)), 2)))
def test_of_two_different_concurrent_entries_exactly_one_side_gives_way(one, other):
    a = FileEntry(**{**_fields(KINDS[one]), "version": {A: 2}})
    b = FileEntry(**{**_fields(KINDS[other]), "version": {A: 1, B: 1}})
    took_a, took_b = sides(a, b)
    assert (took_a is None) != (took_b is None)


def _fields(e: FileEntry) -> dict:
    return {f: getattr(e, f) for f in e.__slots__}


def directory(version: dict, deleted: bool = False) -> FileEntry:
    return FileEntry("f", Kind.DIR, 0, DAY, 0o755, b"", b"", version=version, modified_by=A,
                     deleted=deleted)


def test_a_file_that_replaced_our_directory_is_marked_so():
    """A newer file where we hold a directory: the puller keeps the directory while it
    holds anything (Puller._kept_dir), so the action says what it replaces."""
    took = plan_path(directory({A: 1}), {B: file(b"x", version={A: 1, B: 1}, by=B)})
    assert took is not None and took.replaces_dir and took.target.kind == Kind.FILE
    gone = plan_path(directory({A: 1}, deleted=True), {B: file(b"x", version={A: 1, B: 1})})
    assert gone is not None and not gone.replaces_dir  # nothing of ours is there
    a_file = plan_path(file(b"y", version={A: 1}), {B: file(b"x", version={A: 1, B: 1})})
    assert a_file is not None and not a_file.replaces_dir
    deletion = plan_path(directory({A: 1}), {B: directory({A: 1, B: 1}, deleted=True)})
    assert deletion is not None and not deletion.replaces_dir  # `_delete` keeps it then


def test_a_concurrent_file_never_replaces_our_directory():
    assert plan_path(directory({A: 2}), {B: file(b"x", version={A: 1, B: 1}, by=B)}) is None
