"""One number for what a survey compares of an entry, and one row for a directory's.

A survey of an unchanged million files spent a quarter of its time reading a row of
the index per file (SQLite's steps and the Python tuples), to compare it with the
file's lstat. So each live file or directory row of `files` carries a `brief_key`, a
63-bit digest of its brief as a survey sees it (name, kind, size, mtime, permissions,
inode, ctime; a directory's name and permissions only), and `dir_briefs` holds per
directory how many keyed rows are directly below it, the sum of their keys (in two
halves, so that SQLite's 64-bit sums cannot overflow), and how many live rows have no
key (a link, an entry with an error). Triggers keep the sums: no Python path that
writes a row can leave them behind. A survey sums the keys of a directory's lstats
and compares one row (`app/core/survey.py`); a directory with a row without a key, or
whose sums differ, is compared row by row, so a key that is missing or wrong costs
time, never a change missed.

A row whose brief fields change without a new key loses its key (`brief_key_stale`):
a write that forgot the key makes its directory slow to survey, not wrong. The key is
Python's hash of a tuple of integers, the same in every process of one interpreter;
`SCHEME` tells whether the stored keys are this interpreter's (`Index` makes them
again when not).
"""

from __future__ import annotations

import os
import sqlite3
import stat
import sys
import zlib
from collections.abc import Sequence

from app.core.paths import TEMP_PREFIX

KEY_MASK = (1 << 63) - 1
_LOW = 0xFFFFFFFF
FILE_KIND, DIR_KIND = 0, 1  # as in `files.kind`
SCHEME_KEY = "brief_key_scheme"  # meta: SCHEME when the keys were made


def name_crc(name: str) -> int:
    return zlib.crc32(name.encode("utf-8", "surrogateescape"))


def file_key(name: str, size: int, mtime_ns: int, mode: int, inode: int, ctime_ns: int
             ) -> int:
    return hash((name_crc(name), size, mtime_ns, mode, inode, ctime_ns)) & KEY_MASK


def dir_key(name: str, mode: int) -> int:
    return hash((name_crc(name), -1, mode)) & KEY_MASK


def row_key(path: str, kind: int, size: int, mtime_ns: int, mode: int, inode: int,
            ctime_ns: int, deleted: int, error: str) -> int | None:
    """The key of a row of `files` (inode as stored); None for what a survey never
    matches whole: tombstones, entries with an error, links."""
    if deleted or error:
        return None
    name = path[path.rfind("/") + 1:]
    if kind == FILE_KIND:
        return file_key(name, size, mtime_ns, mode, inode, ctime_ns)
    if kind == DIR_KIND:
        return dir_key(name, mode)
    return None


SCHEME = str(file_key("p2psync", 1, 2, 0o644, 3, 4))

# the directory of a path with its "/" ("" for the root): what is left when the
# characters of the last name are stripped from the end
_PARENT = "rtrim({t}.path, replace({t}.path, '/', ''))"
# what a live row adds to its directory's (n, lo, hi, unkeyed): a row with no key makes
# the directory one a survey compares row by row (`digest` says None)
_ADD = ("INSERT INTO dir_briefs (dir, n, lo, hi, unkeyed) SELECT {parent}, "
        "new.brief_key IS NOT NULL, coalesce(new.brief_key & 4294967295, 0), "
        "coalesce(new.brief_key >> 32, 0), new.brief_key IS NULL WHERE NOT new.deleted "
        "ON CONFLICT (dir) DO UPDATE SET n = n + excluded.n, lo = lo + excluded.lo, "
        "hi = hi + excluded.hi, unkeyed = unkeyed + excluded.unkeyed;")
_SUB = ("UPDATE dir_briefs SET n = n - (old.brief_key IS NOT NULL), "
        "lo = lo - coalesce(old.brief_key & 4294967295, 0), "
        "hi = hi - coalesce(old.brief_key >> 32, 0), unkeyed = unkeyed - (old.brief_key IS NULL) "
        "WHERE dir = {parent} AND NOT old.deleted;")
_BRIEF_COLS = ("path", "kind", "size", "mtime_ns", "mode", "deleted", "inode", "ctime_ns",
               "error")

_TABLE = ("CREATE TABLE IF NOT EXISTS dir_briefs (dir TEXT PRIMARY KEY, n INTEGER NOT NULL, "
          "lo INTEGER NOT NULL, hi INTEGER NOT NULL, unkeyed INTEGER NOT NULL) WITHOUT ROWID")
_TRIGGERS = {
    "dir_brief_new": f"""CREATE TRIGGER dir_brief_new AFTER INSERT ON files
        WHEN NOT new.deleted
        BEGIN {_ADD.format(parent=_PARENT.format(t='new'))} END""",
    "dir_brief_changed": f"""CREATE TRIGGER dir_brief_changed
        AFTER UPDATE OF brief_key, path, deleted ON files
        WHEN old.brief_key IS NOT new.brief_key OR old.path IS NOT new.path
            OR old.deleted IS NOT new.deleted
        BEGIN {_SUB.format(parent=_PARENT.format(t='old'))}
              {_ADD.format(parent=_PARENT.format(t='new'))} END""",
    "dir_brief_gone": f"""CREATE TRIGGER dir_brief_gone AFTER DELETE ON files
        WHEN NOT old.deleted
        BEGIN {_SUB.format(parent=_PARENT.format(t='old'))} END""",
    "brief_key_stale": f"""CREATE TRIGGER brief_key_stale
        AFTER UPDATE OF {', '.join(_BRIEF_COLS)} ON files
        WHEN new.brief_key IS NOT NULL AND new.brief_key IS old.brief_key AND
            ({' OR '.join(f'old.{c} IS NOT new.{c}' for c in _BRIEF_COLS)})
        BEGIN UPDATE files SET brief_key = NULL WHERE rowid = new.rowid; END""",
}
# the SQL expression of a row's key (on a connection `register`ed)
_ROW_KEY_SQL = ("p2psync_brief_key(path, kind, size, mtime_ns, mode, inode, ctime_ns, deleted, "
               "error)")


def register(db: sqlite3.Connection) -> None:
    """`p2psync_brief_key(...)`, for the statements that make keys in SQL."""
    db.create_function("p2psync_brief_key", 9, row_key, deterministic=True)


def create(db: sqlite3.Connection) -> None:
    """Schema 7: the column, the table and its triggers, the keys of every row."""
    db.execute("ALTER TABLE files ADD COLUMN brief_key INTEGER")
    db.execute(_TABLE)
    rebuild(db)


def rebuild(db: sqlite3.Connection) -> None:
    """Every row's key made again, and the sums from them (triggers off meanwhile:
    one statement a row would be a million upserts)."""
    register(db)
    for name in _TRIGGERS:
        db.execute(f"DROP TRIGGER IF EXISTS {name}")
    db.execute(f"UPDATE files SET brief_key = {_ROW_KEY_SQL}")
    db.execute("DELETE FROM dir_briefs")
    parent = _PARENT.format(t="files")
    db.execute(f"INSERT INTO dir_briefs (dir, n, lo, hi, unkeyed) SELECT {parent}, "
               "count(brief_key), coalesce(sum(brief_key & 4294967295), 0), "
               "coalesce(sum(brief_key >> 32), 0), count(*) - count(brief_key) FROM files "
               f"WHERE NOT deleted GROUP BY {parent}")
    for stmt in _TRIGGERS.values():
        db.execute(stmt)
    db.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE "
               "SET value = excluded.value", (SCHEME_KEY, SCHEME))


def digest(db: sqlite3.Connection, pre: str) -> tuple[int, int] | None:
    """(how many live rows, the sum of their keys) directly below the directory `pre`
    (with its "/"; "" for the root); None where it has none, or one without a key."""
    if sys.hash_info.width < 64:  # a 32-bit interpreter's keys: too many would collide
        return None
    row = db.execute("SELECT n, lo, hi, unkeyed FROM dir_briefs WHERE dir = ?",
                     (pre,)).fetchone()
    if row is None or row[3] or not row[0]:
        return None
    return row[0], row[1] + (row[2] << 32)


def listing_digest(listed: Sequence[os.DirEntry[str]], stats: Sequence[os.stat_result | None]
                   ) -> tuple[int, int] | None:
    """(how many, the sum of their keys) of a directory's entries and their lstats, as
    `digest` gives the index's, with no tuple made a file; None where one could not be
    stat-ed, is neither a file nor a directory, or is named as our temp files (no row is
    one: the comparison row by row looks at those)."""
    total = 0
    for de, st in zip(listed, stats, strict=True):
        if st is None:
            return None
        mode = st.st_mode
        kind = mode & 0o170000  # stat.S_IFMT, without its call
        if kind == stat.S_IFREG and not de.name.startswith(TEMP_PREFIX):
            total += file_key(de.name, st.st_size, st.st_mtime_ns, mode & 0o777, st.st_ino,
                              st.st_ctime_ns)
        elif kind == stat.S_IFDIR:
            total += dir_key(de.name, mode & 0o777)
        else:
            return None
    return (len(stats), total) if stats else None
