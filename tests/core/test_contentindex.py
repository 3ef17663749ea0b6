"""Content lookups through the three levels of app.core.contentindex, with levels small
enough that a few hundred entries go through every merge and the rebuild."""

import os
from dataclasses import replace

import pytest

from app.core import contentindex
from app.core import index as index_mod
from app.core.index import Index
from app.core.model import FileEntry

DEV, PEER = "AAAAAAA-BBBBBBB-CCCCCCC-DDDDDDD-EEEEEEE", "PEER"


@pytest.fixture
def idx(tmp_path, monkeypatch):
    monkeypatch.setattr(contentindex, "LEVEL0", 8)
    monkeypatch.setattr(contentindex, "LEVEL1", 32)
    with Index(tmp_path / "index.db", DEV) as ix:
        yield ix


def entry(path, blocks, n=1, seq=0, **kw):
    return FileEntry(path, size=10, blocks=blocks, hash=os.urandom(32), version={DEV: n},
                     seq=seq, **kw)


def level_sizes(ix):
    return [ix._db.execute(f"SELECT count(*) FROM content{i}").fetchone()[0] for i in range(3)]


def test_every_level_is_asked_and_a_stale_entry_is_never_an_answer(idx):
    content = {f"f{i:03d}": os.urandom(32) for i in range(100)}
    items = list(content.items())
    for i in range(0, 100, 3):
        idx.put_local([entry(p, b) for p, b in items[i:i + 3]])
    sizes = level_sizes(idx)
    assert sizes[1] > 0 and sizes[2] > 0, sizes  # it went through both merges
    assert idx.find_blocks(list(content.values())) == {b: (p, 0) for p, b in items}
    # changed, deleted, made a directory: the old content is found nowhere
    new = os.urandom(32)
    idx.put_local([entry("f000", new, 2), replace(entry("f001", content["f001"], 2),
                                                  deleted=True)])
    assert idx.find_blocks([content["f000"], content["f001"], new]) == {new: ("f000", 0)}
    assert idx.live_with_content([content["f002"], content["f000"]]) == {
        content["f002"]: ["f002"]}


def test_a_file_deleted_and_brought_back_is_found_again(idx):
    """Its entry is still in content0: the trigger must not add it twice (an upsert
    makes a duplicate an error, whatever the trigger says)."""
    b = os.urandom(32)
    idx.put_local([entry("a", b)])
    idx.put_local([replace(entry("a", b, 2), deleted=True)])
    assert idx.find_blocks([b]) == {}
    idx.put_local([entry("a", b, 3), entry("a", b, 4)])  # and twice in one batch
    assert idx.find_blocks([b]) == {b: ("a", 0)}
    theirs = replace(entry("r", b), version={PEER: 1}, seq=7)
    idx.put_remote(PEER, b"id", [theirs, theirs], 7)  # the same row announced twice
    assert idx.wanted_elsewhere([entry("a", b, 4)]) == {"a"}


def test_a_pending_remote_row_is_found_until_we_hold_it(idx):
    """wanted_elsewhere: the other half of a move, through every level."""
    mine = [entry(f"old/{i:03d}", os.urandom(32), seq=i + 1) for i in range(60)]
    idx.put_local(mine)
    theirs = [replace(e, path="new" + e.path[3:], version={PEER: 1}, seq=100 + i)
              for i, e in enumerate(mine)]
    for i in range(0, 60, 7):
        idx.put_remote(PEER, b"id", theirs[i:i + 7], 100 + i + 7)
    assert level_sizes(idx)[2] > 0
    assert idx.wanted_elsewhere(mine) == {e.path for e in mine}
    # the new paths arrive here (the moves done): nothing is wanted elsewhere any more
    idx.put_local([replace(e, seq=0) for e in theirs])
    assert idx.wanted_elsewhere(mine) == set()


def test_pending_deletions_leave_out_the_halves_of_a_move(idx):
    mine = [entry(f"old/{i:03d}", os.urandom(32), seq=i + 1) for i in range(40)]
    idx.put_local(mine)
    gone = [replace(e, deleted=True, version={DEV: 1, PEER: 1}, modified_by=PEER,
                    seq=200 + i) for i, e in enumerate(mine)]
    moved = [replace(e, path="new" + e.path[3:], version={PEER: 2}, modified_by=PEER,
                     seq=300 + i) for i, e in enumerate(mine[:30])]
    idx.put_remote(PEER, b"id", gone + moved, 400)
    assert idx.pending_deletions() == {PEER: 10}  # the 30 moved are not deletions


def test_stale_entries_are_dropped_once_they_outnumber_the_rows(idx):
    """One file rewritten 500 times: the levels stay near the one live entry."""
    for n in range(1, 501):
        idx.put_local([entry("doc", os.urandom(32), n)])
        # content2: at most twice the rows and a level; content1 and content0 below theirs
        assert sum(level_sizes(idx)) <= 2 * 1 + 2 * contentindex.LEVEL1 + contentindex.LEVEL0
    last = idx.get("doc").blocks
    assert idx.find_blocks([last]) == {last: ("doc", 0)}


def test_rebuilt_from_the_rows_it_holds_exactly_the_live_entries(idx):
    live = [entry(f"f{i}", os.urandom(32)) for i in range(20)]
    idx.put_local(live)
    idx.put_local([replace(live[0], deleted=True, version={DEV: 2})])
    idx.put_remote(PEER, b"id", [replace(entry("r", os.urandom(32)), version={PEER: 1},
                                         seq=5)], 5)
    with idx.lock:
        idx._db.execute("BEGIN IMMEDIATE")
        contentindex.rebuild(idx._db)
        idx._db.execute("COMMIT")
    assert level_sizes(idx) == [0, 0, 20]  # 19 live files and the peer's row
    assert idx.find_blocks([e.blocks for e in live]) == {
        e.blocks: (e.path, 0) for e in live[1:]}


def test_an_index_of_schema_5_gets_the_triggers_of_today(tmp_path, monkeypatch):
    """Schema 6 made the triggers again: what one made before holds is still found,
    and a new entry goes in the way `contentindex._add` adds it now."""
    db = tmp_path / "i.db"
    a, c = os.urandom(32), os.urandom(32)
    monkeypatch.setattr(index_mod, "MIGRATIONS", index_mod.MIGRATIONS[:5])
    with Index(db, DEV) as ix:
        ix._main.execute("DROP TRIGGER content_file_new")  # as schema 5 shipped it
        ix._main.execute(
            "CREATE TRIGGER content_file_new AFTER INSERT ON files WHEN new.kind = 0 AND "
            "NOT new.deleted AND new.blocks != x'' BEGIN INSERT INTO content0 SELECT 0, "
            "substr(new.blocks, 1, 8), new.rowid, 0 WHERE NOT EXISTS (SELECT 1 FROM content0 "
            "WHERE src = 0 AND prefix = substr(new.blocks, 1, 8) AND k1 = new.rowid "
            "AND k2 = 0); END")
        ix._main.execute(f"INSERT INTO files ({index_mod._FILE_COLS}) VALUES "  # no brief key yet
                         f"({index_mod._marks(index_mod._FILE_COLS)})",
                         index_mod._file_row(ix._main_devices, entry("a", a), 1))
    monkeypatch.undo()
    with Index(db, DEV) as ix:
        assert ix.schema_version == len(index_mod.MIGRATIONS)
        triggers = dict(ix._main.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' "
            "AND name LIKE 'content%'"))
        assert set(triggers) == {"content_file_new", "content_file_changed",
                                 "content_remote_new", "content_remote_changed"}
        assert all("ON CONFLICT DO NOTHING" in sql for sql in triggers.values())
        ix.put_local([entry("c", c)])
        assert ix.find_blocks([a, c]) == {a: ("a", 0), c: ("c", 0)}
