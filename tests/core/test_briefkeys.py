"""The brief keys of `files` and their sums per directory (app/core/briefkeys.py).

What must hold, whatever writes the rows: every key is its row's (or there is none),
and each directory's sums are those of its live rows, with a count of the live rows
that have no key. A survey trusts a directory whose sums its disk matches; a key or
sum gone wrong must only ever make that match fail.
"""

import os
import random
import sqlite3

import pytest

from app.core import briefkeys, scanner
from app.core import index as index_mod
from app.core.ignore import Ignore
from app.core.index import Index, inode_to_db
from app.core.model import FileEntry, Kind
from app.core.paths import TEMP_PREFIX

DEV = "DEVAAAA-BBBBBBB-CCCCCCC-DDDDDDD-EEEEEEE"
_COLS = "path, kind, size, mtime_ns, mode, inode, ctime_ns, deleted, error, brief_key"


def sums_of_rows(db: sqlite3.Connection) -> dict[str, tuple[int, int, int]]:
    """dir -> (keyed rows, sum of keys, live rows without a key), from the rows; and
    every key checked against its row."""
    out: dict[str, tuple[int, int, int]] = {}
    for path, kind, size, mtime, mode, inode, ctime, deleted, error, key in \
            db.execute(f"SELECT {_COLS} FROM files"):
        if key is not None:
            assert key == briefkeys.row_key(path, kind, size, mtime, mode, inode, ctime,
                                            deleted, error), path
        if deleted:
            assert key is None, path
            continue
        parent = path[:path.rfind("/") + 1]
        n, total, unkeyed = out.get(parent, (0, 0, 0))
        out[parent] = (n + (key is not None), total + (key or 0), unkeyed + (key is None))
    return out


def sums_stored(db: sqlite3.Connection) -> dict[str, tuple[int, int, int]]:
    return {d: (n, lo + (hi << 32), u) for d, n, lo, hi, u in
            db.execute("SELECT dir, n, lo, hi, unkeyed FROM dir_briefs") if n or u or lo or hi}


def entry(path: str, rng: random.Random) -> FileEntry:
    kind = rng.choice([Kind.FILE, Kind.FILE, Kind.FILE, Kind.DIR, Kind.LINK])
    return FileEntry(path, kind, size=rng.randint(0, 9), mtime_ns=rng.randint(1, 9),
                     mode=rng.choice([0o644, 0o755]), target="t" if kind == Kind.LINK else "",
                     deleted=rng.random() < 0.15,
                     inode=rng.choice([rng.randint(1, 99), 2**64 - 5]), ctime_ns=rng.randint(1, 9),
                     error="cannot read: x" if rng.random() < 0.1 else "",
                     version={DEV: rng.randint(1, 10**6)}, modified_by=DEV)


@pytest.mark.parametrize("seed", range(6))
def test_the_sums_are_those_of_the_rows_whatever_writes_them(tmp_path, seed):
    rng = random.Random(seed)
    paths = ["top", "a/x", "a/y", "a/b/z", "a/b/w", "a b/x", "é/ü"]
    with Index(tmp_path / "i.db", DEV) as ix:
        db = ix._main
        for _ in range(150):
            op = rng.randrange(7)
            path = rng.choice(paths)
            if op <= 1:
                ix.put_local([entry(p, rng) for p in rng.sample(paths, rng.randint(1, 4))])
            elif op == 2:
                ix.set_stats([(path, rng.randint(1, 99), rng.randint(1, 9), 0o600)])
            elif op == 3:
                ix.set_inode(path, rng.randint(1, 99), rng.randint(1, 9))
            elif op == 4:  # a write that forgets the key: the row is left without one
                db.execute("UPDATE files SET ctime_ns = ctime_ns + 1, size = ? WHERE path = ?",
                           (rng.randint(0, 9), path))
            elif op == 5:
                db.execute("DELETE FROM files WHERE path = ?", (path,))
            else:  # renamed in place (nothing does so today)
                to = rng.choice(paths)
                db.execute("UPDATE OR IGNORE files SET path = ? WHERE path = ?", (to, path))
            assert sums_stored(db) == sums_of_rows(db)
        assert any(n for n, _, _ in sums_of_rows(db).values())


def test_a_write_that_forgets_the_key_leaves_its_directory_without_a_digest(tmp_path):
    with Index(tmp_path / "i.db", DEV) as ix:
        ix.put_local([FileEntry("d/a", size=1, inode=5, ctime_ns=7),
                      FileEntry("d/b", size=2, inode=6, ctime_ns=7),
                      FileEntry("d", Kind.DIR, mode=0o755)])
        db = ix._main
        n, total = briefkeys.digest(db, "d/")
        assert n == 2 and total == briefkeys.file_key("a", 1, 0, 0o644, 5, 7) + \
            briefkeys.file_key("b", 2, 0, 0o644, 6, 7)
        assert briefkeys.digest(db, "") == (1, briefkeys.dir_key("d", 0o755))
        db.execute("UPDATE files SET mtime_ns = 3 WHERE path = 'd/a'")
        assert briefkeys.digest(db, "d/") is None
        ix.set_inode("d/a", 5, 7)  # a write that makes keys: one again
        assert briefkeys.digest(db, "d/")[1] == briefkeys.file_key("a", 1, 3, 0o644, 5, 7) + \
            briefkeys.file_key("b", 2, 0, 0o644, 6, 7)


def test_an_entry_with_an_error_a_link_or_a_huge_inode(tmp_path):
    with Index(tmp_path / "i.db", DEV) as ix:
        ix.put_local([FileEntry("e", error="cannot read: denied"), FileEntry("l", Kind.LINK),
                      FileEntry("i/big", inode=2**64 - 1, ctime_ns=1)])
        db = ix._main
        assert briefkeys.digest(db, "") is None  # two live rows without a key
        assert sums_of_rows(db)[""] == (0, 0, 2)
        # keyed as stored: lstat's inode differs, and a survey compares that one row by row
        assert briefkeys.digest(db, "i/") == \
            (1, briefkeys.file_key("big", 0, 0, 0o644, inode_to_db(2**64 - 1), 1))


def test_an_index_of_schema_6_gets_its_keys(tmp_path, monkeypatch):
    db_path = tmp_path / "i.db"
    monkeypatch.setattr(index_mod, "MIGRATIONS", index_mod.MIGRATIONS[:6])
    with Index(db_path, DEV) as ix:
        rows = [index_mod._file_row(ix._main_devices, e, s) for s, e in enumerate(
            [FileEntry("a/x", size=3, inode=4, ctime_ns=5), FileEntry("a", Kind.DIR),
             FileEntry("a/gone", deleted=True), FileEntry("l", Kind.LINK)], 1)]
        ix._main.execute("BEGIN")
        for r in rows:
            ix._main.execute(f"INSERT INTO files ({index_mod._FILE_COLS}) VALUES "
                             f"({index_mod._marks(index_mod._FILE_COLS)})", r)
        ix._main.execute("COMMIT")
    monkeypatch.undo()
    with Index(db_path, DEV) as ix:
        db = ix._main
        assert ix.schema_version == len(index_mod.MIGRATIONS)
        assert sums_stored(db) == sums_of_rows(db) == \
            {"a/": (1, briefkeys.file_key("x", 3, 0, 0o644, 4, 5), 0),
             "": (1, briefkeys.dir_key("a", 0o644), 1)}


def test_keys_of_another_interpreter_are_made_again(tmp_path):
    """Python's hash of a tuple is the key: another version may hash otherwise."""
    with Index(tmp_path / "i.db", DEV) as ix:
        ix.put_local([FileEntry("a/x", size=3, inode=4, ctime_ns=5)])
        ix._main.execute("UPDATE files SET brief_key = 12345")  # as another one made it
        ix._main.execute("UPDATE meta SET value = 'other' WHERE key = ?", (briefkeys.SCHEME_KEY,))
        assert briefkeys.digest(ix._main, "a/") == (1, 12345)
    with Index(tmp_path / "i.db", DEV) as ix:
        db = ix._main
        assert sums_stored(db) == sums_of_rows(db) == \
            {"a/": (1, briefkeys.file_key("x", 3, 0, 0o644, 4, 5), 0)}
        assert ix.get_meta(briefkeys.SCHEME_KEY) == briefkeys.SCHEME


def test_a_listing_s_digest_is_the_index_s_of_the_same_entries(tmp_path):
    """The survey's side (`listing_digest`, the keys inline) against the index's
    (`row_key` of rows as the scan wrote them): equal for unchanged entries, None for
    what only the row-by-row comparison can judge."""
    root = tmp_path / "f"
    (root / "d" / "sub").mkdir(parents=True)
    for name in ("a", "b b", "é", "x" * 200):
        (root / "d" / name).write_bytes(name.encode())
    os.chmod(root / "d" / "a", 0o600)
    os.chmod(root / "d" / "sub", 0o700)
    with Index(tmp_path / "i.db", DEV) as ix:
        scanner.scan(root, ix, Ignore(root))
        indexed = briefkeys.digest(ix._main, "d/")

    def listing() -> tuple[list[os.DirEntry[str]], list[os.stat_result | None]]:
        listed = sorted(os.scandir(root / "d"), key=lambda de: de.name)
        return listed, [os.lstat(de.path) for de in listed]

    listed, stats = listing()
    assert indexed is not None and briefkeys.listing_digest(listed, stats) == indexed
    assert briefkeys.listing_digest(listed[::-1], stats[::-1]) == indexed  # any order
    assert briefkeys.listing_digest([], []) is None
    assert briefkeys.listing_digest(listed, [*stats[:-1], None]) is None  # not stat-ed

    os.utime(root / "d" / "b b", ns=(1, 2))
    assert briefkeys.listing_digest(*listing()) != indexed
    for odd in (TEMP_PREFIX + "1.tmp", "link"):
        if odd == "link":
            os.symlink("a", root / "d" / odd)
        else:
            (root / "d" / odd).write_bytes(b"")
        assert briefkeys.listing_digest(*listing()) is None
        os.unlink(root / "d" / odd)
