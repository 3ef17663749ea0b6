import os
import sqlite3
import threading
import time
import tracemalloc
from dataclasses import replace

import msgpack
import pytest

from app.core import contentindex
from app.core import index as index_mod
from app.core.index import (
    MIGRATIONS,
    PAGE_BYTES,
    SPARSE_RECHECK_KEY,
    Index,
    IndexTooNew,
    wire_cost,
)
from app.core.model import BLOCK_SIZE, FileEntry, Kind
from app.net.framing import MAX_FRAME

DEV = "AAAAAAA-BBBBBBB-CCCCCCC-DDDDDDD-EEEEEEE"


@pytest.fixture
def idx(tmp_path):
    with Index(tmp_path / "index.db", DEV) as ix:
        yield ix


def _no_descriptor(*args, **kwargs):
    """sqlite3.connect out of file descriptors."""
    raise sqlite3.OperationalError("unable to open database file")


def entry(path, n=1, **kw):
    blocks = kw.pop("blocks", os.urandom(32) * n)
    return FileEntry(path, blocks=blocks, hash=os.urandom(32), version={DEV: n}, **kw)


def test_round_trip_every_field(idx):
    e = FileEntry(
        path="dir/ünï cødé.txt",
        kind=Kind.FILE,
        size=123456789012,
        mtime_ns=1_700_000_000_123_456_789,
        mode=0o755,
        hash=os.urandom(32),
        blocks=os.urandom(32 * 3),
        target="",
        version={DEV: 3, "OTHER": 7},
        modified_by="OTHER",
        deleted=False,
        inode=2**64 - 5,  # st_ino is unsigned 64-bit
        error="cannot read: Permission denied",
    )
    link = FileEntry("l", Kind.LINK, 4, -5, 0o777, os.urandom(32), target="../😀",
                     version={DEV: 1}, modified_by=DEV, deleted=True, inode=0)
    idx.put_local([e, link])
    got = idx.get(e.path)
    assert got == e  # includes the seq written back
    assert got.version == {DEV: 3, "OTHER": 7}
    assert idx.get("l") == link
    assert idx.get("missing") is None
    assert idx.all_local() == [e, link]


def test_all_local_ordered_by_path_with_tombstones(idx):
    idx.put_local([entry("b"), entry("a"), replace(entry("c"), deleted=True)])
    assert [e.path for e in idx.all_local()] == ["a", "b", "c"]
    assert idx.all_local()[2].deleted


def test_seq_assignment(idx):
    assert idx.max_seq() == 0
    batch = [entry("a"), entry("b"), entry("c")]
    idx.put_local(batch)
    assert [e.seq for e in batch] == [1, 2, 3]
    assert idx.max_seq() == 3
    again = entry("a", 2)
    idx.put_local([again])
    assert again.seq == 4 and idx.get("a").seq == 4
    idx.put_local([])
    assert idx.max_seq() == 4
    seqs = [e.seq for e in idx.all_local()]
    assert len(set(seqs)) == len(seqs)


def test_failed_put_local_rolls_back(idx):
    idx.put_local([entry("a")])
    bad = [entry("b"), FileEntry("c")]
    bad[1].version = object()  # cannot be encoded: fails inside the transaction
    with pytest.raises(TypeError):
        idx.put_local(bad)
    assert idx.get("b") is None
    assert bad[0].seq == 0
    assert idx.max_seq() == 1


def test_local_since_paging(idx):
    idx.put_local([entry(f"f{i:02}") for i in range(25)])
    idx.put_local([entry("f03", 2)])  # f03 moves to the end
    pages, seq = [], 0
    while page := idx.local_since(seq, limit=10):
        pages.append(page)
        seq = page[-1].seq
    assert [len(p) for p in pages] == [10, 10, 5]
    flat = [e for p in pages for e in p]
    assert [e.seq for e in flat] == sorted(e.seq for e in flat)
    assert flat[-1].path == "f03"
    assert len({e.path for e in flat}) == 25
    assert idx.local_since(idx.max_seq()) == []


def test_set_inode_is_not_a_new_version(idx):
    idx.put_local([entry("a")])
    idx.set_inode("a", 42)
    got = idx.get("a")
    assert got.inode == 42 and got.seq == 1 and idx.max_seq() == 1


def test_find_block(idx):
    b0, b1 = os.urandom(32), os.urandom(32)
    idx.put_local([entry("a", blocks=b0 + b1)])
    assert idx.find_block(b1) == ("a", 1)
    assert idx.find_block(b0) == ("a", 0)
    assert idx.find_block(os.urandom(32)) is None
    idx.put_local([entry("a", 2, blocks=b1)])  # content changed: b0 gone
    assert idx.find_block(b0) is None
    assert idx.find_block(b1) == ("a", 0)
    idx.put_local([replace(entry("a", 3, blocks=b1), deleted=True)])
    assert idx.find_block(b1) is None
    idx.put_local([entry("d", kind=Kind.DIR, blocks=b1)])  # only files count
    assert idx.find_block(b1) is None


def test_find_block_uses_index(idx):
    plan = idx._db.execute(
        "EXPLAIN QUERY PLAN SELECT path, idx FROM blocks WHERE hash = ? LIMIT 1", (b"x",)
    ).fetchall()
    assert "blocks_hash" in str(plan)
    for sql in (contentindex.local_files("prefix IN (?1)", "f.path"),
                contentindex.pending_remote("prefix IN (?1)", "r.path")):
        plan = str(idx._db.execute("EXPLAIN QUERY PLAN " + sql, (b"x",)).fetchall())
        assert "SCAN" not in plan, plan  # every level probed, never read whole


def test_remote_state_and_entries(idx):
    assert idx.remote_state("R1") == (b"", 0)
    assert idx.remote_devices() == []
    r1 = [entry("a"), entry("b")]
    r1[0].seq, r1[1].seq = 5, 6
    idx.put_remote("R1", b"id-1", r1, 6)
    assert idx.remote_state("R1") == (b"id-1", 6)
    assert idx.remote_get("R1", "a") == r1[0]
    idx.put_remote("R2", b"id-2", [entry("a", 4)], 1)
    assert set(idx.remote_for_path("a")) == {"R1", "R2"}
    assert idx.remote_for_path("a")["R2"].version == {DEV: 4}
    assert idx.remote_devices() == ["R1", "R2"]
    # same index_id: upsert, others kept
    idx.put_remote("R1", b"id-1", [entry("a", 9)], 7)
    assert idx.remote_get("R1", "a").version == {DEV: 9}
    assert idx.remote_get("R1", "b") is not None
    assert idx.remote_state("R1") == (b"id-1", 7)


def test_forgetting_a_device_drops_all_it_announced_and_only_that(idx):
    idx.put_local([entry("mine")])
    mine = idx.get("mine")
    for device, sid in (("R1", b"id-1"), ("R2", b"id-2")):
        idx.put_remote(device, sid, [entry("a"), entry("b")], 3, ours=[("mine", 3, mine.seq)])
        idx.saw_device(device, 1000.0)
    assert set(idx.remote_for_path("mine")) == {"R1", "R2"}  # remote_same rows
    assert idx.forget_devices(["R1"], unless_seen_since=999.0) == {}  # seen since: kept
    # R3: no time recorded, not known to be gone
    assert idx.forget_devices(["R1", "R3"], unless_seen_since=1001.0) == {"R1": 1000.0}
    assert idx.remote_devices() == ["R2"] and idx.remote_state("R1") == (b"", 0)
    assert set(idx.remote_for_path("a")) == set(idx.remote_for_path("mine")) == {"R2"}
    assert idx.remote_usage("R1") == (0, 0) and idx.remote_usage("R2")[0] == 2
    idx.put_remote("R1", b"id-1", [entry("c")], 1)  # back: a new device to us
    assert set(idx.remote_for_path("c")) == {"R1"} and idx.remote_get("R1", "a") is None


def test_put_remote_new_index_id_resets(idx):
    idx.put_remote("R1", b"old", [entry("a"), entry("b")], 2)
    idx.put_remote("R2", b"x", [entry("a")], 1)
    idx.put_remote("R1", b"new", [entry("c")], 1)
    assert idx.remote_get("R1", "a") is None and idx.remote_get("R1", "b") is None
    assert idx.remote_get("R1", "c") is not None
    assert idx.remote_state("R1") == (b"new", 1)
    assert idx.remote_get("R2", "a") is not None  # other devices untouched


def test_differing_paths(idx):
    same, older = entry("same"), entry("changed")
    idx.put_local([same, older, entry("onlylocal")])
    idx.put_remote("R1", b"i", [replace(same), replace(older, version={DEV: 2}),
                                entry("onlyremote")], 3)
    idx.put_remote("R2", b"j", [replace(same), replace(older)], 2)
    assert idx.differing_paths() == ["changed", "onlyremote"]
    assert idx.differing_paths("R1") == ["changed", "onlyremote"]
    assert idx.differing_paths("R2") == []
    assert idx.differing_paths("nobody") == []


def test_differing_paths_is_fast_when_nothing_differs(idx):
    local = [entry(f"d{i // 100}/f{i}") for i in range(10_000)]
    idx.put_local(local)
    idx.put_remote("R1", b"i", [replace(e) for e in local], 10_000)
    start = time.perf_counter()
    assert idx.differing_paths() == []
    assert idx.differing_paths("R1") == []
    elapsed = time.perf_counter() - start
    assert elapsed < 0.5, elapsed  # a few ms in practice; generous for slow CI


def test_ignored_and_meta(idx):
    idx.set_ignored(["b", "a"])
    assert idx.ignored() == ["a", "b"]
    idx.set_ignored(["c"])
    assert idx.ignored() == ["c"]
    assert idx.get_meta("nope", 5) == 5
    idx.set_meta("k", b"\x00\x01")
    idx.set_meta("n", 12)
    assert idx.get_meta("k") == b"\x00\x01" and idx.get_meta("n") == 12
    assert idx.get_meta("device_id") == DEV


def test_reopen_keeps_everything(tmp_path):
    db = tmp_path / "index.db"
    with Index(db, DEV) as ix:
        ix.put_local([entry("a")])
        index_id = ix.index_id
        assert len(index_id) == 16
        assert ix.schema_version == len(MIGRATIONS)
        assert ix.get_meta("schema_version") == len(MIGRATIONS)
    with Index(db, DEV) as ix:
        assert ix.index_id == index_id
        assert ix.get("a") is not None and ix.max_seq() == 1
    with Index(tmp_path / "other.db", DEV) as ix:
        assert ix.index_id != index_id
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_new_migration_applied_on_reopen(tmp_path, monkeypatch):
    db = tmp_path / "index.db"
    with Index(db, DEV) as ix:
        ix.put_local([entry("a")])
    extra = MIGRATIONS + ["CREATE TABLE extra (x INTEGER);\nINSERT INTO extra VALUES (7);"]
    monkeypatch.setattr(index_mod, "MIGRATIONS", extra)
    with Index(db, DEV) as ix:
        assert ix.schema_version == len(extra)
        assert ix._db.execute("SELECT x FROM extra").fetchone() == (7,)
        assert ix.get("a") is not None
    with Index(db, DEV) as ix:  # not applied twice
        assert ix._db.execute("SELECT COUNT(*) FROM extra").fetchone() == (1,)


def test_an_index_of_files_made_before_the_sparse_fix_asks_for_their_hashes_again(
        tmp_path, monkeypatch):
    """Schema 8: an index that holds files may hold sparse ones hashed wrong (see
    app.core.scanner's sparse_recheck); a new one, or one with none, holds none."""
    monkeypatch.setattr(index_mod, "MIGRATIONS", MIGRATIONS[:7])
    for name, files in (("files", [entry("a")]), ("dirs", [FileEntry("d", Kind.DIR)])):
        with Index(tmp_path / f"{name}.db", DEV) as ix:
            ix.put_local(files)
    monkeypatch.setattr(index_mod, "MIGRATIONS", MIGRATIONS)
    with Index(tmp_path / "files.db", DEV) as ix:
        assert ix.get_meta(SPARSE_RECHECK_KEY) == 1
    for name in ("dirs", "new"):
        with Index(tmp_path / f"{name}.db", DEV) as ix:
            assert ix.get_meta(SPARSE_RECHECK_KEY) is None


def test_failed_migration_rolls_back(tmp_path, monkeypatch):
    db = tmp_path / "index.db"
    Index(db, DEV).close()
    bad = MIGRATIONS + ["CREATE TABLE half (x INTEGER);\nTHIS IS NOT SQL;"]
    monkeypatch.setattr(index_mod, "MIGRATIONS", bad)
    with pytest.raises(sqlite3.Error):
        Index(db, DEV)
    monkeypatch.setattr(index_mod, "MIGRATIONS", MIGRATIONS)
    with Index(db, DEV) as ix:
        assert ix.schema_version == len(MIGRATIONS)
        tables = {r[0] for r in ix._db.execute("SELECT name FROM sqlite_master")}
        assert "half" not in tables


def test_newer_schema_refused(tmp_path):
    db = tmp_path / "index.db"
    with Index(db, DEV) as ix:
        ix.set_meta("schema_version", len(MIGRATIONS) + 1)
    with pytest.raises(IndexTooNew):
        Index(db, DEV)


def test_threads_share_one_index(idx):
    errors = []

    def writer(prefix):
        try:
            for i in range(50):
                idx.put_local([entry(f"{prefix}{i}")])
                idx.get(f"{prefix}{i}")
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(p,)) for p in "abcd"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    seqs = sorted(e.seq for e in idx.all_local())
    assert seqs == list(range(1, 201))


def test_get_many_answers_for_the_paths_it_has(idx):
    many = [entry(f"d/{i:04d}") for i in range(1200)]  # more than one IN (...) list
    idx.put_local(many)
    got = idx.get_many([e.path for e in many] + ["d/none"])
    assert len(got) == 1200 and "d/none" not in got
    assert got["d/0777"] == idx.get("d/0777")
    assert idx.get_many([]) == {}


def test_the_blocks_of_a_huge_file_are_stored_in_bounded_memory(idx):
    """A 100 GiB file has 819,200 block hashes: as one list of rows, storing its entry
    took 132 MB (a 25 GiB file here: 33 MB)."""
    n = 200_000
    e = entry("vm.img", blocks=os.urandom(32 * n), size=n * BLOCK_SIZE)
    tracemalloc.start()
    try:
        idx.put_local([e])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * 2**20, f"{peak / 2**20:.0f} MB"
    assert idx.find_blocks([e.block_hashes()[n - 1]]) == {e.block_hashes()[-1]: ("vm.img", n - 1)}


def test_find_blocks_finds_each_hash_once(idx):
    a, b = entry("a", blocks=os.urandom(64)), entry("b", blocks=os.urandom(32))
    idx.put_local([a, b])
    ha, hb = a.block_hashes(), b.block_hashes()
    found = idx.find_blocks([ha[1], hb[0], os.urandom(32)])
    assert found == {ha[1]: ("a", 1), hb[0]: ("b", 0)}


def test_generation_moves_with_every_write_only(idx):
    g = idx.generation
    idx.get("a")
    idx.get_many(["a"])
    assert idx.generation == g
    idx.put_local([entry("a")])
    assert idx.generation == g + 1
    idx.put_remote("PEER", b"id", [entry("b")], 5)
    assert idx.generation == g + 2


def test_shared_stats_only_for_live_readable_files(idx):
    idx.put_local([
        replace(entry("ok", size=7), mtime_ns=5, inode=2**64 - 1, ctime_ns=9),
        replace(entry("gone", size=3), deleted=True),
        replace(entry("unreadable", size=5), error="cannot read"),
        FileEntry("dir", Kind.DIR, version={DEV: 1}),
    ])
    shared = idx.shared_stats(["ok", "gone", "unreadable", "dir", "never"])
    assert list(shared) == ["ok"]
    assert shared["ok"].stat == (7, 5, 2**64 - 1, 9)  # the inode as st_ino has it (unsigned)


def test_shared_stats_carry_the_block_list_of_one_block_files_only(idx):
    one, two = entry("one", size=7), entry("two", 2, size=BLOCK_SIZE + 1)
    idx.put_local([one, two])
    shared = idx.shared_stats(["one", "two"])
    assert shared["one"].blocks == one.blocks
    assert shared["two"].blocks is None  # read when a block of it is asked
    assert idx.file_blocks("two") == two.blocks


# --- schema 3: what a file costs, and the way there from schema 2


def _v2_database(path, rows, remote_rows):
    """A schema-2 index as the previous release wrote it (device IDs in full)."""
    from app.core import versions

    db = sqlite3.connect(path)
    for step in MIGRATIONS[:2]:
        for stmt in index_mod._statements(step):
            db.execute(stmt)
    db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value)")
    db.executemany("INSERT INTO meta VALUES (?, ?)", [
        ("schema_version", 2), ("index_id", b"0123456789abcdef"), ("device_id", DEV)])

    def row(e):
        return (e.path, int(e.kind), e.size, e.mtime_ns, e.mode, e.hash, e.blocks, e.target,
                versions.encode(e.version), e.modified_by, int(e.deleted), e.seq,
                index_mod.inode_to_db(e.inode),
                e.error, e.ctime_ns)

    cols = ("path, kind, size, mtime_ns, mode, hash, blocks, target, version, modified_by, "
            "deleted, seq, inode, error, ctime_ns")
    db.executemany(f"INSERT INTO files ({cols}) VALUES ({', '.join('?' * 15)})",
                   [row(e) for e in rows])
    db.executemany("INSERT INTO blocks (hash, path, idx) VALUES (?, ?, ?)",
                   [(e.blocks[i * 32:(i + 1) * 32], e.path, i) for e in rows
                    for i in range(e.block_count())])
    db.executemany(f"INSERT INTO remote_files (device, {cols}) VALUES ({', '.join('?' * 16)})",
                   [(d, *row(e)) for d, e in remote_rows])
    db.execute("INSERT INTO remotes VALUES ('PEER', x'01', 9)")
    db.commit()
    db.close()


def test_schema_2_is_migrated_with_every_field(tmp_path):
    from app.core.hashing import file_hash_from_blocks

    small = FileEntry("d/small.txt", size=5, mtime_ns=7, mode=0o755, blocks=b"s" * 32,
                      hash=file_hash_from_blocks(b"s" * 32), version={DEV: 2, "PEER": 1},
                      modified_by="PEER", seq=1, inode=2**64 - 3, ctime_ns=11)
    big = FileEntry("big", size=300_000, blocks=b"a" * 32 + b"b" * 32 + b"c" * 32,
                    hash=b"h" * 32, version={DEV: 1}, modified_by=DEV, seq=2)
    gone = FileEntry("gone", deleted=True, version={DEV: 3}, modified_by=DEV, seq=3)
    theirs = replace(big, version={"PEER": 5}, modified_by="PEER", seq=8, inode=0)
    _v2_database(tmp_path / "index.db", [small, big, gone],
                 [("PEER", replace(small, seq=4, inode=0, ctime_ns=0)), ("PEER", theirs)])
    with Index(tmp_path / "index.db", DEV) as ix:
        assert ix.schema_version == len(MIGRATIONS) and ix.index_id == b"0123456789abcdef"
        assert ix.all_local() == [big, small, gone]
        assert ix.remote_get("PEER", "d/small.txt").version == small.version  # ours: same
        assert ix.remote_get("PEER", "big") == replace(theirs, ctime_ns=0)
        assert ix.differing_paths() == ["big"]
        assert ix.remote_state("PEER") == (b"\x01", 9)
        assert ix.remote_usage("PEER")[0] == 1
        assert ix.find_blocks([b"b" * 32, b"s" * 32]) == {b"b" * 32: ("big", 1),
                                                          b"s" * 32: ("d/small.txt", 0)}
        assert ix._db.execute("SELECT COUNT(*) FROM blocks").fetchone() == (3,)


def test_a_synced_small_file_costs_a_few_hundred_bytes(tmp_path):
    """Both halves of a two-device share: our entries and a peer's copy of each."""
    from app.core.hashing import block_hash, file_hash_from_blocks

    n = 20_000
    with Index(tmp_path / "index.db", DEV) as ix:
        entries = []
        for i in range(n):
            b = block_hash(b"%d" % i)
            entries.append(FileEntry(f"t/d{i // 100:05}/f{i:07}.txt", size=120,
                                     mtime_ns=1_700_000_000_000_000_000 + i, mode=0o644,
                                     hash=file_hash_from_blocks(b), blocks=b,
                                     version={"PEER-0000000-0000000-0000000-0000000": 1},
                                     modified_by="PEER-0000000-0000000-0000000-0000000",
                                     inode=10_000_000 + i, ctime_ns=1_700_000_000_000_000_000))
        for i in range(0, n, 1000):
            ix.put_local(entries[i:i + 1000])
            ix.put_remote("PEER-0000000-0000000-0000000-0000000", b"p",
                          [replace(e, seq=i + k + 1) for k, e in enumerate(entries[i:i + 1000])],
                          i + 1000)
        ix._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        pages = ix._db.execute("PRAGMA page_count").fetchone()[0] - \
            ix._db.execute("PRAGMA freelist_count").fetchone()[0]
        size = pages * ix._db.execute("PRAGMA page_size").fetchone()[0]
        assert ix.differing_paths() == []
    per_file = size / n
    print(f"index: {per_file:.0f} bytes per file")
    assert per_file < 300


def test_batched_statements_use_the_indexes(idx):
    """A row value IN a list of values makes SQLite scan the table: a plain IN leads."""
    plans = []
    real = idx._main

    class Spy:
        def __getattr__(self, name):
            return getattr(real, name)

        def execute(self, sql, args=()):
            if sql.lstrip().startswith(("DELETE", "UPDATE")) and " IN " in sql:
                plans.append((sql, str(real.execute("EXPLAIN QUERY PLAN " + sql,
                                                    args).fetchall())))
            return real.execute(sql, args)

    idx._main = Spy()
    idx.put_local([entry("a"), entry("b", blocks=os.urandom(64))])
    idx.put_remote("R1", b"i", [entry("a", 2), entry("c")], 2)
    idx.put_local([entry("a", 2)])
    idx.settle([("R1", "c", 0)])
    idx._main = real
    assert plans
    for sql, plan in plans:
        assert "SCAN remote_files" not in plan and "SCAN remote_same" not in plan and \
            "SCAN blocks" not in plan, (sql, plan)


def test_a_thread_that_cannot_open_a_reader_reads_on_the_main_connection(idx, monkeypatch):
    """Out of descriptors, a worker thread's first read crashed the pull round."""
    idx.put_local([entry("a.txt")])
    monkeypatch.setattr(index_mod.sqlite3, "connect", _no_descriptor)
    out = []
    t = threading.Thread(target=lambda: out.append(idx.get("a.txt")))
    t.start()
    t.join()
    assert out and out[0] is not None and out[0].path == "a.txt"


def test_a_snapshot_reads_one_state_while_writes_go_on(idx):
    """Reads inside see the index as at the first; writes (another thread's, this one's)
    go through meanwhile and are seen once it ends; a snapshot inside one is the same."""
    idx.put_local([entry("a")])
    with idx.snapshot():
        assert idx.get("a") is not None
        t = threading.Thread(target=idx.put_local, args=([entry("b")],))
        t.start()
        t.join(10)
        idx.put_local([entry("c")])
        with idx.snapshot():
            assert idx.get_many(["a", "b", "c"]).keys() == {"a"}
        assert idx.get("b") is None and idx.live_file_count() == 1
    assert idx.get_many(["a", "b", "c"]).keys() == {"a", "b", "c"}


def test_a_snapshot_without_a_reader_reads_under_the_lock(idx, monkeypatch):
    """Out of descriptors: the reads (and this thread's writes) use the main connection."""
    idx.put_local([entry("a")])
    monkeypatch.setattr(index_mod.sqlite3, "connect", _no_descriptor)
    out = []

    def snap():
        with idx.snapshot():
            idx.put_local([entry("b")])
            out.append(sorted(idx.get_many(["a", "b"])))

    t = threading.Thread(target=snap)
    t.start()
    t.join(10)
    assert out == [["a", "b"]]


def pin_reader(idx):
    """This thread's reader held at the index as it is now: a statement left running
    keeps a WAL reader at its snapshot (sqlite3's `in_transaction` says nothing of it).
    Keep the cursor returned as long as it must stay pinned."""
    with idx._reading():
        cursor = idx._db.execute("SELECT path FROM files UNION ALL SELECT ''")
        assert cursor.fetchone() is not None  # a row left at least: the statement runs on
    return cursor


def test_max_seq_is_the_latest_commit_even_to_a_reader_left_behind(idx):
    """A peer that holds our index up to the seq our state tells agrees with us: a seq
    read on a reader left behind would let it agree with an index we no longer have."""
    idx.put_local([entry("a"), entry("b")])
    pinned = pin_reader(idx)
    t = threading.Thread(target=idx.put_local, args=([entry("c")],))
    t.start()
    t.join(10)
    assert idx.get("c") is None  # this thread's reader is behind
    assert idx.max_seq() == 3
    del pinned


def test_renewed_readers_read_the_latest_commit(idx):
    idx.put_local([entry("a"), entry("b")])
    pinned = pin_reader(idx)
    idx.put_local([entry("c")])  # through the main connection, this thread's own write
    assert idx.get("c") is None
    idx.renew_readers()
    assert idx.get("c") is not None and idx.remote_state("X") == (b"", 0)
    with idx.snapshot():  # a renewal asked for inside a read waits for its end
        idx.renew_readers()
        assert idx.get("c") is not None
    assert len(idx._readers) == 1
    del pinned


def test_brief_ranges_hold_a_directory_and_what_is_below_it_only(idx):
    """A chunk at a time, either way, and never the siblings that sort between `t` and
    `t/` (`t-x/...`, `t.a`): read as two ranges, not one OR (see brief_range)."""
    paths = ["s", "t", "t-x", "t-x/a", "t.a", "t/a", "t/b", "t/b/c", "t/b/d", "t0", "u"]
    idx.put_local([entry(p) for p in paths])
    under_t = ["t", "t/a", "t/b", "t/b/c", "t/b/d"]
    for limit in (1, 2, 3, 10):
        got, after = [], ""
        while chunk := idx.brief_range(after, "t", limit):
            got += [b[0] for b in chunk]
            after = chunk[-1][0]
        assert got == under_t
        got, before = [], "\U0010ffff"
        while chunk := idx.brief_range_desc(before, "t", limit):
            got += [b[0] for b in chunk]
            before = chunk[-1][0]
        assert got == under_t[::-1]
    assert [b[0] for b in idx.brief_range("t/a", "t")] == ["t/b", "t/b/c", "t/b/d"]
    assert [b[0] for b in idx.brief_range("", "t/b/c")] == ["t/b/c"]
    assert [b[0] for b in idx.brief_range_desc("t/b/c", "t")] == ["t/b", "t/a", "t"]
    assert [b[0] for b in idx.brief_range("", "t-x")] == ["t-x", "t-x/a"]


def test_a_page_cut_at_its_limit_says_more_follows_though_errors_made_it_short(idx):
    """Entries with an error set are not sent: a page of `limit` rows holding one comes
    short, and only its flag tells the peer that more of the index follows."""
    idx.put_local([entry("a"), replace(entry("b"), error="cannot read"), entry("c"),
                   entry("d")])
    items, last, more = idx.announce_since(0, 3)
    assert [i[0] for i in items] == ["a", "c"] and last == 3 and more
    items, last, more = idx.announce_since(last, 3)
    assert [i[0] for i in items] == ["d"] and last == 4 and not more
    assert idx.announce_since(last, 3) == ([], 4, False)


def test_pages_of_files_with_long_block_lists_are_cut_to_fit_a_frame(idx):
    """1,000 files of 1 GiB are 256 MiB of block hashes: as one page, a frame no peer
    takes (it was never sent, and the peer never heard of any of them). Pages end where
    their items reach PAGE_BYTES, one item at least, and say more follows."""
    gib = 8192  # blocks of a 1 GiB file
    idx.put_local([entry(f"v{i:02d}", gib, size=gib * BLOCK_SIZE) for i in range(40)]
                  + [entry("long", 3 * PAGE_BYTES // 32, size=1)])  # alone beyond a page
    got, seq, pages = [], 0, []
    while True:
        items, seq, more = idx.announce_since(seq, 1000)
        if not items:
            break
        pages.append(len(msgpack.packb(items, use_bin_type=True)))
        assert more or len(got) + len(items) == 41
        got += [i[0] for i in items]
    assert got == [f"v{i:02d}" for i in range(40)] + ["long"]
    assert len(pages) > 2 and max(pages[:-1]) <= PAGE_BYTES < pages[-1] < MAX_FRAME


def test_what_a_peer_has_exactly_is_announced_without_reading_its_block_list(idx):
    """An entry sent back as "what you have" needs its path and seqs only: the block
    list of a huge file (a 100 GiB file's is 25 MiB) is not read for it."""
    nblocks = 8 * 1024 * 1024 // 32  # 8 MiB of block hashes: a 32 GiB file
    idx.put_local([entry("huge", nblocks, size=nblocks * BLOCK_SIZE), entry("small")])
    ours = {e.path: e.seq for e in (idx.get("huge"), idx.get("small"))}
    idx.put_remote("PEER", b"peer-index", [], 9, ours=[("huge", 7, ours["huge"])])
    tracemalloc.start()
    try:
        items, _, _ = idx.announce_since(0, 100, "PEER")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert ["huge", ours["huge"], 7] in items
    assert [i[0] for i in items if len(i) != 3] == ["small"]
    assert peak < 1024 * 1024, peak
    # to another device, it is the whole entry, block list and all
    whole = {i[0]: i for i in idx.announce_since(0, 100, "OTHER")[0]}
    assert FileEntry.from_wire(whole["huge"]).blocks == idx.get("huge").blocks


def test_remotely_deleted_names_the_paths_a_peer_holds_a_tombstone_of(idx):
    idx.put_local([entry("kept"), entry("gone"), entry("changed")])
    idx.put_remote("PEER", b"peer-index", [
        FileEntry("gone", deleted=True, version={DEV: 1, "PEER": 1}, modified_by="PEER",
                  seq=1),
        replace(entry("changed", 2), version={DEV: 1, "PEER": 1}, modified_by="PEER", seq=2),
        FileEntry("never-ours", deleted=True, version={"PEER": 1}, modified_by="PEER",
                  seq=3)], 3)
    assert idx.remotely_deleted(["kept", "gone", "changed", "never-ours", "nowhere"]) == \
        {"gone", "never-ours"}


def test_a_holes_block_is_never_indexed_as_a_place_to_copy_from(idx):
    """Zero blocks stay holes, never copied from anywhere: a sparse disk image of holes
    only was a row per block of the same hash."""
    from app.core import hashing

    data = os.urandom(32)
    blocks = hashing.zero_hash() * 3 + data + hashing.zero_hash()
    idx.put_local([entry("disk.img", blocks=blocks, size=5 * BLOCK_SIZE)])
    assert idx.find_blocks([data]) == {data: ("disk.img", 3)}
    assert idx._db.execute("SELECT hash, idx FROM blocks").fetchall() == [(data, 3)]


def test_a_page_reads_no_more_rows_than_fill_it(idx):
    """The rows past a page's end are not read: 40 files of 4 GiB (a block list of 1 MiB
    each) asked for 1,000 rows at a time were all read at once, for a page of eight."""
    mib = 1024 * 1024
    idx.put_local([entry(f"disk{i:02}.img", mib // 32, size=mib // 32 * BLOCK_SIZE)
                   for i in range(40)])
    tracemalloc.start()
    try:
        items, last, more = idx.announce_since(0, 1000)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert more and 0 < len(items) < 40 and last == len(items)
    assert peak < 3 * PAGE_BYTES, f"{peak / mib:.1f} MiB"


def test_an_items_wire_cost_is_never_below_its_packed_size():
    """What the cut relies on: the worst spellings of a path, a link target and a
    vector of many devices cost at least what they take packed."""
    wide = "\U0001f600" * 1000
    cases = [entry("a"), entry(wide, 3), FileEntry(wide, Kind.LINK, target="\u00e9" * 4000),
             FileEntry("x", version={f"{chr(0x4e00 + i)}" * 64: 2**53 for i in range(256)},
                       modified_by="D" * 64, deleted=True)]
    for e in cases:
        assert wire_cost(e) >= len(msgpack.packb(e.to_wire(), use_bin_type=True))


def test_a_vector_is_stored_as_the_same_bytes_however_many_devices_it_names(tmp_path):
    """SQL compares stored vectors as blobs (ours against a peer's): a vector of one
    device (encoded on a shorter path) must come out as the general encoding would
    make it, which is also what older versions of p2psync stored."""
    with Index(tmp_path / "i.db", "ME") as idx:
        idx.put_local([FileEntry("a", version={"P": 300}, modified_by="P"),
                       FileEntry("b", version={"P": 2, "Q": 1}, modified_by="P")])
        db = idx._main
        refs = dict(db.execute("SELECT device, id FROM devices"))
        stored = dict(db.execute("SELECT path, version FROM files"))
    assert stored["a"] == msgpack.packb(sorted([(refs["P"], 300)]))
    assert stored["b"] == msgpack.packb(sorted([(refs["P"], 2), (refs["Q"], 1)]))


def test_stats_of_unchanged_entries_are_bookkeeping_only(idx):
    """What a scan saw of unchanged files (inode, ctime, mode), a few hundred rows a
    statement: the last word for a path counts, a path not indexed is left out, an
    inode past 2**63 (as some file systems give) keeps its value, and no entry gets a
    new version or seq (peers are told nothing)."""
    idx.put_local([entry(f"d/f{i:04}") for i in range(1000)])
    before = {e.path: (e.seq, e.version) for e in idx.all_local()}
    huge = 2**64 - 5
    idx.set_stats([(f"d/f{i:04}", 10_000 + i, 7, 0o600) for i in range(0, 1000, 2)]
                  + [("d/f0002", huge, 8, 0o640), ("not/indexed", 1, 1, 0o644)])
    got = {e.path: e for e in idx.all_local()}
    assert (got["d/f0000"].inode, got["d/f0000"].ctime_ns, got["d/f0000"].mode) == \
        (10_000, 7, 0o600)
    assert (got["d/f0002"].inode, got["d/f0002"].ctime_ns, got["d/f0002"].mode) == \
        (huge, 8, 0o640)
    assert got["d/f0001"].inode == entry("d/f0001").inode  # not in the scan's stats
    assert "not/indexed" not in got
    assert {p: (e.seq, e.version) for p, e in got.items()} == before


def test_keyed_statements_touch_exactly_their_keys_across_devices(tmp_path):
    """`_where_in` sends keys per device (and matches a third column as a row value):
    the rows it changes are exactly the keys given, whatever other devices hold."""
    db = sqlite3.connect(tmp_path / "t.db")
    db.execute("CREATE TABLE t (path TEXT, device INTEGER, seq INTEGER, gone INTEGER "
               "DEFAULT 0, PRIMARY KEY (path, device)) WITHOUT ROWID")
    rows = [(f"p{i}", d, i * 10 + d) for i in range(1000) for d in range(4)]
    db.executemany("INSERT INTO t (path, device, seq) VALUES (?, ?, ?)", rows)
    two = [(p, d) for p, d, _ in rows[::3]]
    index_mod._where_in(db, "UPDATE t SET gone = 1", "path, device", two)
    assert {(p, d) for p, d in db.execute("SELECT path, device FROM t WHERE gone")} == set(two)
    db.execute("UPDATE t SET gone = 0")
    three = [(p, d, s if k % 2 else s + 1) for k, (p, d, s) in enumerate(rows[::5])]
    index_mod._where_in(db, "UPDATE t SET gone = 1", "path, device, seq", three)
    assert {(p, d) for p, d in db.execute("SELECT path, device FROM t WHERE gone")} == \
        {(p, d) for k, (p, d, _) in enumerate(three) if k % 2}
    index_mod._where_in(db, "DELETE FROM t", "path", [("p1",), ("p2",)])
    assert db.execute("SELECT COUNT(*) FROM t").fetchone()[0] == 4000 - 8
