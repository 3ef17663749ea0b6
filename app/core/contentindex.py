"""Where each content is, by the first 8 bytes of its block list, in three levels.

An SQL index on `substr(blocks, 1, 8)` (schema 3 and 4) cost more than the rest of
the index together at scale: its keys are random, so each new entry lands on its own
page of a B-tree that at a million files is thousands of pages, and a commit of 500
entries wrote ~500 pages to the WAL (and the checkpoint wrote them again). The index
work of a 1,000,000-file first sync wrote 27 GB in 106 s with the two content indexes,
1.3 GB in 28 s without them (bench/bench_index.py).

So entries go in levels, as in an LSM tree: triggers put each new one in `content0`
(a few thousand entries, a few dozen pages rewritten per commit); once it holds
LEVEL0 entries they move to `content1` in sorted order, and once that holds LEVEL1
they move to `content2`, so each page of a larger level takes many entries at once.
A lookup asks all three levels.

An entry is never removed when its row changes (that would be a random write again):
every lookup checks each candidate against its row (the row has that prefix, and is
live), so a stale entry is only dead weight. content2 is built again from the rows
when it holds more than twice the entries they could give (`merge`).

Entries: src 0 is a local file, k1 its `files` rowid (k2 0); src 1 is a peer's row in
`remote_files`, (k1, k2) = (device, seq): that pair is how `remote_todo` finds it.
(The rowid of `files` is not an alias: a VACUUM may renumber it. Nothing here runs
one; whatever does must `rebuild` after it.)
"""

from __future__ import annotations

import sqlite3

LEVEL0 = 4096  # content0 moves to content1 at this many entries
LEVEL1 = 65536  # content1 moves to content2 at this many
LOCAL, REMOTE = 0, 1  # src

_LEVELS = ("content0", "content1", "content2")
_LIVE_FILE = "{t}.kind = 0 AND NOT {t}.deleted AND {t}.blocks != x''"
_LIVE_REMOTE = "NOT {t}.deleted AND {t}.blocks != x''"
_FILE_KEY = ("0", "substr({t}.blocks, 1, 8)", "{t}.rowid", "0")  # (src, prefix, k1, k2)
_REMOTE_KEY = ("1", "substr({t}.blocks, 1, 8)", "{t}.device", "{t}.seq")


def _key(key: tuple[str, ...], t: str) -> str:
    return ", ".join(part.format(t=t) for part in key)


def _add(key: tuple[str, ...]) -> str:
    """A trigger's insert of the new row's entry into content0, unless it is there.

    An upsert's DO NOTHING, which holds whatever the statement that fires the trigger
    says: an OR IGNORE in its place takes that statement's conflict policy, and an
    upsert's aborted on the entry of a file deleted and brought back. Not a NOT EXISTS
    probe either: that made an insert of a file's row cost three times a plain one
    (schema 5: 7.7 us a row, 5.3 us this way, 2.5 us without the trigger)."""
    return (f"INSERT INTO content0 SELECT {_key(key, 'new')} WHERE true "
            "ON CONFLICT DO NOTHING;")


_TABLES = [
    f"CREATE TABLE {t} (src INTEGER NOT NULL, prefix BLOB NOT NULL, k1 INTEGER NOT NULL, "
    "k2 INTEGER NOT NULL, PRIMARY KEY (src, prefix, k1, k2)) WITHOUT ROWID" for t in _LEVELS]
_TRIGGERS = {
    "content_file_new": f"""CREATE TRIGGER content_file_new AFTER INSERT ON files
        WHEN {_LIVE_FILE.format(t='new')}
        BEGIN {_add(_FILE_KEY)} END""",
    "content_file_changed": f"""CREATE TRIGGER content_file_changed
        AFTER UPDATE OF kind, deleted, blocks ON files
        WHEN {_LIVE_FILE.format(t='new')} AND NOT ({_LIVE_FILE.format(t='old')}
            AND substr(old.blocks, 1, 8) = substr(new.blocks, 1, 8))
        BEGIN {_add(_FILE_KEY)} END""",
    "content_remote_new": f"""CREATE TRIGGER content_remote_new AFTER INSERT ON remote_files
        WHEN {_LIVE_REMOTE.format(t='new')}
        BEGIN {_add(_REMOTE_KEY)} END""",
    "content_remote_changed": f"""CREATE TRIGGER content_remote_changed
        AFTER UPDATE OF deleted, blocks, device, seq ON remote_files
        WHEN {_LIVE_REMOTE.format(t='new')} AND NOT ({_LIVE_REMOTE.format(t='old')}
            AND substr(old.blocks, 1, 8) = substr(new.blocks, 1, 8)
            AND old.device = new.device AND old.seq = new.seq)
        BEGIN {_add(_REMOTE_KEY)} END""",
}


def create(db: sqlite3.Connection) -> None:
    """Schema 5: the levels and their triggers in place of the two content indexes."""
    db.execute("DROP INDEX IF EXISTS files_content")
    db.execute("DROP INDEX IF EXISTS remote_content")
    for stmt in [*_TABLES, *_TRIGGERS.values()]:
        db.execute(stmt)
    rebuild(db)


def renew_triggers(db: sqlite3.Connection) -> None:
    """Schema 6: the triggers of schema 5 made again with today's `_add`."""
    for name, stmt in _TRIGGERS.items():
        db.execute(f"DROP TRIGGER IF EXISTS {name}")
        db.execute(stmt)


def merge(db: sqlite3.Connection) -> None:
    """Move full levels down; inside the writer's transaction, after its writes."""
    if _count(db, "content0") < LEVEL0:
        return
    _move(db, "content0", "content1")
    if _count(db, "content1") < LEVEL1:
        return
    _move(db, "content1", "content2")
    rows = db.execute("SELECT count(*) FROM files").fetchone()[0] + \
        db.execute("SELECT coalesce(sum(entries), 0) FROM remotes").fetchone()[0]
    if _count(db, "content2") > 2 * rows + LEVEL1:
        rebuild(db)


def rebuild(db: sqlite3.Connection) -> None:
    """Every level from the rows: what is left is exactly the live entries, in content2."""
    for t in _LEVELS:
        db.execute(f"DELETE FROM {t}")
    db.execute(f"INSERT OR IGNORE INTO content2 SELECT {_key(_FILE_KEY, 'f')} FROM files f "
               f"WHERE {_LIVE_FILE.format(t='f')} UNION ALL "
               f"SELECT {_key(_REMOTE_KEY, 'r')} FROM remote_files r "
               f"WHERE {_LIVE_REMOTE.format(t='r')} ORDER BY 1, 2, 3, 4")


def local_files(where: str, cols: str) -> str:
    """SELECT `cols` (of `f`, a live local file) of the files whose prefix meets `where`
    (say "prefix IN (?1, ?2)"). A file may come twice (its entry in two levels)."""
    return " UNION ALL ".join(
        f"SELECT {cols} FROM {t} c CROSS JOIN files f ON f.rowid = c.k1 "
        f"WHERE c.src = {LOCAL} AND c.{where} AND substr(f.blocks, 1, 8) = c.prefix "
        f"AND {_LIVE_FILE.format(t='f')}" for t in _LEVELS)


def pending_remote(where: str, cols: str, alias: str = "r", also: str = "") -> str:
    """SELECT `cols` (of `alias`, a pending live remote row) of the peers' rows whose
    prefix meets `where` (and that meet `also`), found through `remote_todo` (pending
    rows only). A row may come twice: one SELECT per level, not a join with their
    UNION, whose temporary B-tree per call, asked once for each of a million pending
    deletions (`Index.pending_deletions`), doubled the time."""
    return " UNION ALL ".join(
        f"SELECT {cols} FROM {t} c CROSS JOIN remote_files {alias} INDEXED BY remote_todo "
        f"ON {alias}.device = c.k1 AND {alias}.deleted = 0 AND {alias}.seq = c.k2 "
        f"WHERE c.src = {REMOTE} AND c.{where} AND {alias}.pending "
        f"AND substr({alias}.blocks, 1, 8) = c.prefix AND {alias}.blocks != x'' {also}"
        for t in _LEVELS)


def _count(db: sqlite3.Connection, table: str) -> int:
    return db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def _move(db: sqlite3.Connection, src: str, dst: str) -> None:
    db.execute(f"INSERT OR IGNORE INTO {dst} SELECT * FROM {src}")
    db.execute(f"DELETE FROM {src}")
