"""A rewrite that keeps size, mtime and inode (cp -p, touch -r) is still a change."""

from __future__ import annotations

import os
import sqlite3
import time

from app.core import index as index_mod
from app.core.ignore import Ignore
from app.core.index import Index
from app.core.scanner import scan


def test_a_rewrite_restoring_the_mtime_is_rescanned(tmp_path):
    root = tmp_path / "share"
    root.mkdir()
    f = root / "doc.txt"
    f.write_bytes(b"version one")
    idx = Index(tmp_path / "i.db", "DEV")
    assert [e.path for e in scan(root, idx, Ignore(root)).changed] == ["doc.txt"]
    before = idx.get("doc.txt")
    st = os.stat(f)
    time.sleep(0.01)  # let the ctime clock move on
    with open(f, "r+b") as fh:  # same inode, same size
        fh.write(b"version two")
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))  # what cp -p / touch -r do
    assert (os.stat(f).st_size, os.stat(f).st_mtime_ns, os.stat(f).st_ino) == \
        (st.st_size, st.st_mtime_ns, st.st_ino)
    result = scan(root, idx, Ignore(root))
    assert [e.path for e in result.changed] == ["doc.txt"]
    assert idx.get("doc.txt").hash != before.hash
    assert scan(root, idx, Ignore(root)).hashed_bytes == 0  # and then it is quiet again


def test_an_index_of_schema_1_is_migrated_and_rescans_once(tmp_path):
    db = tmp_path / "old.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value)")
    for stmt in index_mod._statements(index_mod.MIGRATIONS[0]):
        con.execute(stmt)
    con.execute("INSERT INTO meta VALUES ('schema_version', 1)")
    con.commit()
    con.close()
    idx = Index(db, "DEV")
    assert idx.schema_version == len(index_mod.MIGRATIONS) >= 2
    root = tmp_path / "share"
    root.mkdir()
    (root / "a.txt").write_text("a")
    scan(root, idx, Ignore(root))
    assert idx.get("a.txt").ctime_ns == os.stat(root / "a.txt").st_ctime_ns
