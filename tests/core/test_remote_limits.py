"""What a peer may announce: per-entry limits (model) and a budget per device (index)."""

from __future__ import annotations

import pytest

from app.core import versions
from app.core.index import Index, RemoteLimits, entry_cost
from app.core.model import BLOCK_SIZE, MAX_VECTOR, EntryRefused, FileEntry, Kind
from app.core.planner import ADOPT, plan_path

ME = "ME"


def wire(path: str = "a", **kw) -> list:
    e = FileEntry(path, Kind.FILE, size=kw.pop("size", 1), hash=b"h" * 32,
                  blocks=kw.pop("blocks", b"b" * 32), version=kw.pop("version", {"P": 1}),
                  modified_by="P", seq=1, **kw)
    return e.to_wire()


# --- per entry ------------------------------------------------------------------------
@pytest.mark.parametrize("version", [
    {}, {"P": 0}, {"P": 127}, {"P": 128}, {"P": 255}, {"P": 256}, {"P": 65535},
    {"P": 65536}, {"P": 2**32 - 1}, {"P": 2**32}, {"P": 2**53}, {"P": 2**64 - 1},
    {"P" * 31: 1, "Q" * 32: 300}, {"é" * 128: 5, "中" * 90: 70000},
    {f"D{i:03d}" + "x" * i: i * 1000 for i in range(15)},
    {f"D{i:03d}" + "x" * i: i * 1000 for i in range(16)},
    {f"D{i}": i for i in range(256)}, {"r" * 70000: 1},
])
def test_an_entry_costs_its_vector_encoded_in_full(version):
    """The length of the canonical encoding is counted, not encoded: it must be the same."""
    e = FileEntry.from_wire(wire(version={"P": 1}))
    e.version = version
    assert entry_cost(e) == entry_cost(e, versions.encode(version))


def test_a_vector_of_more_devices_than_the_limit_is_refused_not_malformed():
    ok = {f"D{i}": 1 for i in range(MAX_VECTOR)}
    assert len(FileEntry.from_wire(wire(version=ok)).version) == MAX_VECTOR
    with pytest.raises(EntryRefused) as e:
        FileEntry.from_wire(wire(version={**ok, "one-more": 1}))
    assert e.value.kind == "vector"
    assert str(e.value) == f"a version vector of {MAX_VECTOR + 1} devices (at most 256)"


def test_a_long_link_target_and_a_block_list_that_does_not_fit_are_refused():
    link = FileEntry("l", Kind.LINK, target="t" * 4097, version={"P": 1}, seq=1).to_wire()
    with pytest.raises(EntryRefused) as e:
        FileEntry.from_wire(link)
    assert e.value.kind == "target"
    for size, blocks in ((BLOCK_SIZE + 1, b"b" * 32), (1, b"b" * 64), (0, b"b" * 32)):
        with pytest.raises(EntryRefused) as e:
            FileEntry.from_wire(wire(size=size, blocks=blocks))
        assert e.value.kind == "blocks"
    tomb = FileEntry("t", deleted=True, blocks=b"b" * 32, version={"P": 1}, seq=1).to_wire()
    with pytest.raises(EntryRefused):
        FileEntry.from_wire(tomb)
    assert FileEntry.from_wire(wire(size=BLOCK_SIZE + 1, blocks=b"b" * 64)).size == BLOCK_SIZE + 1


def test_wrong_types_are_still_malformed():
    for bad in (wire(version={"P": -1}), wire(version={"x" * 65: 1}), wire(version=[1])):
        with pytest.raises(ValueError) as e:
            FileEntry.from_wire(bad)
        assert not isinstance(e.value, EntryRefused)


# --- per device ---------------------------------------------------------------------------
def entry(path: str, n: int = 1, **kw) -> FileEntry:
    kw.setdefault("version", {"P": n})
    return FileEntry(path, modified_by="P", seq=n, **kw)


@pytest.fixture
def small(tmp_path):
    with Index(tmp_path / "i.db", ME, RemoteLimits(entries=5, bytes=1 << 30)) as ix:
        yield ix


def test_new_paths_beyond_the_entry_budget_are_refused_updates_are_not(small):
    assert small.put_remote("P", b"i", [entry(f"f{i}") for i in range(8)], 8) == 3
    assert [small.remote_get("P", f"f{i}") is not None for i in range(8)] == [True] * 5 + \
        [False] * 3
    assert small.remote_usage("P")[0] == 5
    assert small.put_remote("P", b"i", [entry("f0", 2), entry("new", 2)], 9) == 1
    assert small.remote_get("P", "f0").version == {"P": 2}
    assert small.remote_state("P") == (b"i", 9)  # what it sent is seen, refused or not
    assert small.put_remote("Q", b"q", [entry(f"f{i}") for i in range(5)], 5) == 0  # its own
    assert small.put_remote("P", b"new-history", [entry("x")], 1) == 0  # starts over
    assert small.remote_usage("P")[0] == 1


def test_the_byte_budget_counts_what_entries_take_and_survives_a_reopen(tmp_path):
    wide = [entry(f"w{i}", version={f"D{i:03}-{j:03}": 1 for j in range(200)})
            for i in range(5)]
    limits = RemoteLimits(entries=1000, bytes=3 * entry_cost(wide[0]))
    with Index(tmp_path / "i.db", ME, limits) as ix:
        assert ix.put_remote("P", b"i", wide, 5) == 2
        used = ix.remote_usage("P")
        assert used[0] == 3 and used[1] <= limits.bytes
    with Index(tmp_path / "i.db", ME, limits) as ix:  # counted again from the rows
        assert ix.remote_usage("P") == used
        assert ix.put_remote("P", b"i", [entry("small")], 6) == 1
        assert ix.put_remote("P", b"i", [entry("w0", 2)], 7) == 0  # shrinks: fine


def test_a_deletion_of_a_path_we_never_had_is_not_acted_on_until_someone_has_it(small):
    tomb = FileEntry("gone", deleted=True, version={"P": 2}, modified_by="P", seq=2)
    small.put_remote("P", b"i", [tomb], 2)
    assert small.differing_paths() == []  # nothing to delete here, nothing to pass on
    small.put_remote("Q", b"q", [entry("gone", 1)], 1)  # another device still has it
    assert small.differing_paths() == ["gone"]
    [(rel, local, remotes)] = small.differing_entries()
    action = plan_path(local, remotes)
    assert action.op == ADOPT and action.target.deleted  # the deletion wins and goes on


def test_a_device_s_entries_are_planned_a_window_at_a_time(tmp_path):
    with Index(tmp_path / "i.db", ME, RemoteLimits(planned=3)) as ix:
        mine = [FileEntry(f"mine{i}", version={ME: 1}, modified_by=ME) for i in range(4)]
        ix.put_local(mine)
        new = [entry(f"new{i}", 10 - i) for i in range(5)]  # announced in seq order 6..10
        gone = [FileEntry(f"mine{i}", deleted=True, version={ME: 1, "P": 5},
                          modified_by="P", seq=i + 1) for i in range(2)]
        older = [FileEntry(f"mine{i}", version={"P": 1}, modified_by="P", seq=i)
                 for i in (2, 3)]  # concurrent changes that lose to ours
        ix.put_remote("P", b"i", older + gone + new, 30)
        ix.put_remote("Q", b"q", [FileEntry("q0", version={"Q": 1}, modified_by="Q", seq=1)],
                      1)
        planned = sorted(p for p, _, _ in ix.differing_entries())
        # P's three oldest live rows, its (two) deletions, and Q's own window
        assert planned == ["mine0", "mine1", "mine2", "mine3", "new4", "q0"]
        assert len(ix.differing_paths()) == 10  # status and the counts still see them all
        assert ix.announced_alive("P", ["new0", "mine0", "nothing"]) == {"new0"}
        # what planned to nothing (ours wins) is settled, and takes no slot any more
        ix.settle([("P", f"mine{i}", i) for i in (2, 3)])
        planned = sorted(p for p, _, _ in ix.differing_entries())
        assert planned == ["mine0", "mine1", "new2", "new3", "new4", "q0"]
        ix.put_local([FileEntry("new4", version={"P": 6}, modified_by="P")])  # one is done
        assert "new1" in {p for p, _, _ in ix.differing_entries()}  # the next one comes in
        ix.put_local([FileEntry("mine2", version={ME: 2, "P": 1}, modified_by=ME)])
        assert "mine2" not in ix.differing_paths()  # ours has seen theirs: it is gone
        ix.put_local([FileEntry("mine3", version={ME: 1, "Q": 1}, modified_by=ME)])
        assert "mine3" in {p for p, _, _ in ix.differing_entries()}  # planned again


def test_the_planning_window_counts_bytes_too(tmp_path):
    wide = [entry(f"w{i}", i + 1, version={f"D{i}-{j:03}": 1 for j in range(100)})
            for i in range(4)]
    with Index(tmp_path / "i.db", ME, RemoteLimits(planned_bytes=2 * entry_cost(wide[0]))) \
            as ix:
        ix.put_remote("P", b"i", wide, 4)
        assert sorted(p for p, _, _ in ix.differing_entries()) == ["w0", "w1"]
    with Index(tmp_path / "j.db", ME, RemoteLimits(planned_bytes=10)) as ix:
        ix.put_remote("P", b"i", wide, 4)  # one always goes, however large
        assert [p for p, _, _ in ix.differing_entries()] == ["w0"]


def test_the_window_past_another_is_the_one_that_follows_it(tmp_path):
    """`ends` gives where each device's windows (live rows, deletions) ended; `after`
    those seqs gives the next ones, while the rows of the first are still pending: the
    plan made during a round (Node._plan_ahead)."""
    with Index(tmp_path / "i.db", ME, RemoteLimits(planned=3)) as ix:
        mine = [FileEntry(f"mine{i}", version={ME: 1}, modified_by=ME) for i in range(4)]
        ix.put_local(mine)
        gone = [FileEntry(f"mine{i}", deleted=True, version={ME: 1, "P": 5},
                          modified_by="P", seq=20 + i) for i in range(4)]
        ix.put_remote("P", b"i", [entry(f"new{i}", 10 - i) for i in range(7)] + gone, 30)
        ends: dict = {}
        first = sorted(p for p, _, _ in ix.differing_entries(None, ends))
        assert first == ["mine0", "mine1", "mine2", "new4", "new5", "new6"]
        assert ends == {("P", False): 6, ("P", True): 22}
        more: dict = {}
        second = sorted(p for p, _, _ in ix.differing_entries(ends, more))
        assert second == ["mine3", "new1", "new2", "new3"]
        assert more == {("P", False): 9, ("P", True): 23}
        assert sorted(p for p, _, _ in ix.differing_entries(more)) == ["new0"]
        assert sorted(p for p, _, _ in ix.differing_entries()) == first  # all still pending
