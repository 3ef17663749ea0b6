"""Answering block requests in serving threads (app/engine/serving.py)."""

from __future__ import annotations

import os
import threading

from app.core import scanner
from app.core.hashing import block_hash
from app.core.ignore import Ignore
from app.core.index import Index
from app.core.model import BLOCK_SIZE
from app.engine.serving import OpenFiles

ME = "AAAAAAA-BBBBBBB-CCCCCCC-DDDDDDD-EEEEEEE"


def _shared(tmp_path, n: int):
    root = tmp_path / "folder"
    root.mkdir()
    for i in range(n):
        (root / f"f{i}.txt").write_bytes(b"content %d" % i)
    index = Index(tmp_path / "index.db", ME)
    scanner.scan(root, index, Ignore(root))
    items = [[i, f"f{i}.txt", 0, len(b"content %d" % i), block_hash(b"content %d" % i)]
             for i in range(n)]
    return root, index, items


def test_read_some_answers_each_request_and_says_where_the_next_frame_starts(tmp_path):
    root, index, items = _shared(tmp_path, 20)
    with index, OpenFiles(root, index, lambda rel: None, items) as files:
        out, nxt = files.read_some(items, 5)
    assert nxt == 20
    assert out == [[i, b"content %d" % i] for i in range(5, 20)]


def test_a_close_waits_for_the_read_in_flight_and_later_reads_get_nothing(tmp_path):
    root, index, items = _shared(tmp_path, 3)
    with index:
        files = OpenFiles(root, index, lambda rel: None, items)
        reading = threading.Event()
        release = threading.Event()
        real = files.read_block

        def slow(item):
            reading.set()
            release.wait(5)
            return real(item)

        files.read_block = slow
        got: list = []
        reader = threading.Thread(target=lambda: got.append(files.read_some(items, 0)))
        reader.start()
        assert reading.wait(5)
        closer = threading.Thread(target=files.__exit__)
        closer.start()
        closer.join(0.2)
        assert closer.is_alive()  # the descriptors stay open while the read runs
        release.set()
        reader.join(5)
        closer.join(5)
        assert got[0][0][0] == [0, b"content 0"]  # the read finished on open files
        assert files.read_some(items, 0) == ([], 3)  # nothing after the close
        files.__exit__()  # twice: nothing to do


def test_a_block_of_a_file_as_indexed_is_not_hashed_again_a_changed_one_is(tmp_path,
                                                                          monkeypatch):
    """The stat after the read is the indexed one: the block is what was indexed (the
    receiver checks it anyway). A rewrite that keeps size and mtime (cp -p) moves the
    ctime: that block is hashed, refused, and the file handed to a rescan."""
    from app.engine import serving

    if not serving.TRUST_STAT:
        import pytest
        pytest.skip("ctime is no change time here")
    root, index, items = _shared(tmp_path, 2)
    hashed: list[int] = []
    real = serving.hashing.block_hash
    monkeypatch.setattr(serving.hashing, "block_hash",
                        lambda data: hashed.append(len(data)) or real(data))
    rescanned: list[str] = []
    f1 = root / "f1.txt"
    st = os.stat(f1)
    with index, OpenFiles(root, index, rescanned.append, items) as files:
        assert files.read_block(items[0]) == b"content 0"
        assert hashed == []
        f1.write_bytes(b"CONTENT 1")  # same size
        os.utime(f1, ns=(st.st_atime_ns, st.st_mtime_ns))  # and mtime, as cp -p leaves it
        assert files.read_block(items[1]) is None  # not what was asked for
    assert hashed == [9]
    assert rescanned == ["f1.txt"]


def test_a_hash_we_do_not_hold_there_gets_nothing_even_from_a_file_as_indexed(tmp_path):
    """The stat says the file is as indexed, not that the asked hash is the indexed one:
    a block asked by a hash we never announced at that offset (a hostile peer's guess,
    or an older version's) is refused, and does not send the file to a rescan."""
    root, index, items = _shared(tmp_path, 2)
    rescanned: list[str] = []
    wrong = [[7, "f0.txt", 0, len(b"content 0"), block_hash(b"content 1")],
             [8, "f0.txt", 1, len(b"content 0") - 1, block_hash(b"ontent 1")]]  # a part
    with index, OpenFiles(root, index, rescanned.append, items + wrong) as files:
        assert files.read_block(wrong[0]) is None
        assert files.read_block(wrong[1]) is None
        assert files.read_block(items[0]) == b"content 0"
    assert rescanned == []


def test_a_batch_reads_no_block_list_of_a_one_block_file_and_a_longer_one_once(
        tmp_path, monkeypatch):
    """A one-block file's block list comes with its stat (one query for the batch); a
    longer file's is read when a block of it is first asked, once for the batch."""
    root, index, items = _shared(tmp_path, 5)
    big = os.urandom(BLOCK_SIZE + 10)
    (root / "big").write_bytes(big)
    scanner.scan(root, index, Ignore(root))
    items += [[90 + k, "big", k * BLOCK_SIZE, len(part), block_hash(part)]
              for k, part in enumerate((big[:BLOCK_SIZE], big[BLOCK_SIZE:]))]
    read: list[str] = []
    real = index.file_blocks
    monkeypatch.setattr(index, "file_blocks", lambda rel: read.append(rel) or real(rel))
    with index, OpenFiles(root, index, lambda rel: None, items) as files:
        out, _ = files.read_some(items, 0)
    assert [data for _, data in out] == [b"content %d" % i for i in range(5)] + \
        [big[:BLOCK_SIZE], big[BLOCK_SIZE:]]
    assert read == ["big"]


def test_a_changed_file_is_refused_and_rescanned_when_the_index_cannot_take_it(
        tmp_path, monkeypatch):
    """Forgetting the changed file's stat is an index write: on a full disk it fails.
    The block is still refused and the file handed to a rescan; the answer goes on
    (the failure once ended the whole answer with a task nobody awaited)."""
    import sqlite3

    from app.engine import serving

    if not serving.TRUST_STAT:
        import pytest
        pytest.skip("ctime is no change time here")
    root, index, items = _shared(tmp_path, 2)

    def full(*args, **kwargs):
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(index, "set_inode", full)
    rescanned: list[str] = []
    f0 = root / "f0.txt"
    st = os.stat(f0)
    with index, OpenFiles(root, index, rescanned.append, items) as files:
        f0.write_bytes(b"CONTENT 0")  # same size
        os.utime(f0, ns=(st.st_atime_ns, st.st_mtime_ns))
        out, start = files.read_some(items, 0)
    assert start == len(items)
    assert out == [[0, None], [1, b"content 1"]]
    assert rescanned == ["f0.txt"]


def test_a_file_gone_since_it_was_indexed_is_refused_and_rescanned(tmp_path):
    """Moved away by its user during a `sync`, which watches nothing: only the rescan
    this asks for tells the index (and so the peer, which asked for it in vain until
    the sync timed out)."""
    root, index, items = _shared(tmp_path, 2)
    rescanned: list[str] = []
    (root / "f0.txt").rename(root / "moved.txt")
    with index, OpenFiles(root, index, rescanned.append, items) as files:
        out, _ = files.read_some(items, 0)
    assert out == [[0, None], [1, b"content 1"]]
    assert rescanned == ["f0.txt"]
