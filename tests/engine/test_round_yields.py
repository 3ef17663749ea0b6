"""A round of thousands of simple steps lets the event loop breathe between them.

A million-file directory renamed ends with 10,000 directories to remove: done one
after the other with no await that yields, the loop was blocked for 14 s and the
peer dropped the connection ("no answer"). Counted, not timed: a task that only
yields must get a turn between the steps.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from app.core import hashing, scanner
from app.core.ignore import Ignore
from app.core.index import Index
from app.core.model import FileEntry, Kind
from app.core.planner import DELETE, FETCH, MKDIR, Action
from app.core.versions import bump
from app.engine import puller as puller_module
from app.engine.puller import Puller, RoundResult

ME = "AAAAAAA-BBBBBBB-CCCCCCC-DDDDDDD-EEEEEEE"
PEER = "PEER000-0000000-0000000-0000000-0000000"


def deletions_of_dirs(root: Path, index: Index, count: int) -> list[Action]:
    """count directories made in root and indexed, and a peer's deletion of each."""
    for i in range(count):
        (root / f"d{i:03}").mkdir(parents=True)
    scanner.scan(root, index, Ignore(root))
    dirs = [e for e in index.all_local() if e.kind == Kind.DIR]
    assert len(dirs) == count
    return [Action(DELETE, e.path, replace(e, deleted=True, modified_by=PEER,
                                           version=bump(e.version, PEER)))
            for e in dirs]


def new_puller(root: Path, index: Index) -> Puller:
    return Puller(root, index, asyncio.Lock(), dict, lambda rel: None, lambda kind, data: None)


def run_round(root: Path, index: Index, actions: list[Action]) -> RoundResult:
    """One round of a puller with no peers: only what is here can be used."""
    async def main() -> RoundResult:
        puller = new_puller(root, index)
        try:
            return await puller.run_round(actions)
        finally:
            puller.close()

    return asyncio.run(main())


def noting_threads(where: list[tuple[str, str]]) -> Callable:
    """watched(name, fn): fn, noting (name, the thread it runs on) in `where` first."""
    def watched(name: str, fn: Callable) -> Callable:
        def call(*args, **kw):
            where.append((name, threading.current_thread().name))
            return fn(*args, **kw)
        return call
    return watched


def copy_of_a_file_here(root: Path, index: Index, data: bytes) -> Action:
    """original.bin holding data, scanned into index; and what a peer's copy of it
    plans here: copy.bin, of the same content."""
    (root / "original.bin").write_bytes(data)
    scanner.scan(root, index, Ignore(root))
    _, file_hash, blocks = hashing.hash_file(root / "original.bin")
    return Action(FETCH, "copy.bin", FileEntry(
        "copy.bin", size=len(data), mode=0o644, hash=file_hash, blocks=blocks,
        mtime_ns=1_700_000_000_000_000_000, version={PEER: 1}, modified_by=PEER))


def test_removing_many_directories_yields_between_them(tmp_path):
    root = tmp_path / "folder"
    with Index(tmp_path / "index.db", ME) as index:
        actions = deletions_of_dirs(root, index, 300)

        async def main() -> tuple[int, int]:
            puller = new_puller(root, index)
            turns = 0

            async def other_work() -> None:
                nonlocal turns
                while True:
                    turns += 1
                    await asyncio.sleep(0)

            task = asyncio.create_task(other_work())
            await asyncio.sleep(0)
            try:
                result = await puller.run_round(actions)
            finally:
                task.cancel()
                puller.close()
            return result.done, turns

        done, turns = asyncio.run(main())
    assert done == 300 and not any(root.iterdir())
    assert turns >= 150, f"other work ran {turns} times during 300 steps"


def test_the_index_write_that_ends_a_round_is_not_done_on_the_loop(tmp_path, monkeypatch):
    """A COMMIT waits for the disk: on the loop, the index writes of a million-file
    round held it for 100-136 ms."""
    root = tmp_path / "folder"
    with Index(tmp_path / "index.db", ME) as index:
        actions = deletions_of_dirs(root, index, 20)
        monkeypatch.setattr(puller_module, "COMMIT_BATCH", 6)  # three writes during the round
        writers: list[str] = []
        real = index.put_local
        monkeypatch.setattr(index, "put_local", lambda entries: writers.append(
            threading.current_thread().name) or real(entries))

        async def main() -> None:
            puller = new_puller(root, index)
            try:
                await puller.run_round(actions)
            finally:
                puller.close()

        asyncio.run(main())
        assert not any(root.iterdir()) and len(index.all_local()) == 20  # tombstones
    assert len(writers) == 4 and all(name.startswith("p2psync-write") for name in writers), \
        writers


def test_mkdir_and_rmdir_of_a_round_are_not_done_on_the_loop(tmp_path, monkeypatch):
    """They wait for the file system's journal: a renamed million's mkdirs held the loop
    136 ms."""
    root = tmp_path / "folder"
    with Index(tmp_path / "index.db", ME) as index:
        deletions = deletions_of_dirs(root, index, 5)
        made = [Action(MKDIR, f"new{i}", FileEntry(f"new{i}", Kind.DIR, mode=0o755,
                                                   version={PEER: 1}, modified_by=PEER))
                for i in range(5)]
        where: list[tuple[str, str]] = []
        watched = noting_threads(where)
        monkeypatch.setattr(puller_module.os, "rmdir", watched("rmdir", os.rmdir))
        monkeypatch.setattr(puller_module.apply, "ensure_dirs",
                            watched("mkdir", puller_module.apply.ensure_dirs))

        async def main() -> None:
            puller = new_puller(root, index)
            try:
                await puller.run_round(deletions + made)
            finally:
                puller.close()

        asyncio.run(main())
        assert sorted(p.name for p in root.iterdir()) == [f"new{i}" for i in range(5)]
    assert sorted(name for name, _ in where) == ["mkdir"] * 5 + ["rmdir"] * 5
    assert all(thread.startswith("p2psync-write") for _, thread in where), where


def test_a_rounds_directories_are_made_in_batches_each_failing_alone(tmp_path, monkeypatch):
    """One writer-thread step per MKDIR_BATCH directories, not one each (a tiny first
    sync spent 0.9 s of 12 making 1,000 directories one at a time); a directory that
    cannot be made (a file of the user's is at its path) fails alone and is rescanned,
    and a parent is made before its children."""
    root = tmp_path / "folder"
    root.mkdir()
    (root / "d05").write_text("the user's file")
    names = [f"d{i:02}" for i in range(10)] + ["d03/inner", "d03/inner/deeper"]
    made = [Action(MKDIR, rel, FileEntry(rel, Kind.DIR, mode=0o755, version={PEER: 1},
                                         modified_by=PEER)) for rel in names]
    monkeypatch.setattr(puller_module, "MKDIR_BATCH", 4)
    rescans: list[str] = []
    with Index(tmp_path / "index.db", ME) as index:
        steps: list[int] = []
        real = Puller._mkdir_many
        monkeypatch.setattr(Puller, "_mkdir_many",
                            lambda self, chunk: steps.append(len(chunk)) or real(self, chunk))

        async def main():
            puller = Puller(root, index, asyncio.Lock(), dict, rescans.append,
                            lambda kind, data: None)
            try:
                return await puller.run_round(sorted(made, key=lambda a: a.path))
            finally:
                puller.close()

        result = asyncio.run(main())
        indexed = {e.path for e in index.all_local()}
    assert steps == [4, 4, 4]
    assert result.done == 11 and list(result.failed) == ["d05"] and rescans == ["d05"]
    assert (root / "d05").read_text() == "the user's file"
    assert (root / "d03/inner/deeper").is_dir()
    assert indexed == set(names) - {"d05"}


def test_a_batch_of_small_files_looks_for_their_content_here_off_the_loop(tmp_path, monkeypatch):
    """The index reads of a batch let go of the GIL at every row, and on the loop each
    could wait for a busy writer thread: a million's first sync had loop stalls of
    110-118 ms with the loop in a batch. Files whose content is already here are made
    from it, with no peer to ask."""
    root = tmp_path / "folder"
    (root / "have").mkdir(parents=True)
    contents = [f"content {i}\n".encode() for i in range(10)]
    for i, data in enumerate(contents):
        (root / "have" / f"{i}.txt").write_bytes(data)
    with Index(tmp_path / "index.db", ME) as index:
        scanner.scan(root, index, Ignore(root))
        actions = []
        for i, data in enumerate(contents):
            _, file_hash, blocks = hashing.hash_file(root / "have" / f"{i}.txt")
            actions.append(Action(FETCH, f"new/{i}.txt", FileEntry(
                f"new/{i}.txt", size=len(data), mode=0o644, hash=file_hash, blocks=blocks,
                mtime_ns=1_700_000_000_000_000_000, version={PEER: 1}, modified_by=PEER)))
        readers: list[str] = []
        for name in ("get_many", "find_blocks"):
            real = getattr(index, name)
            monkeypatch.setattr(index, name, lambda arg, real=real: readers.append(
                threading.current_thread().name) or real(arg))
        result = run_round(root, index, actions)  # no peers: only what is here
    assert result.done == 10 and result.bytes_reused == sum(map(len, contents))
    assert [(root / "new" / f"{i}.txt").read_bytes() for i in range(10)] == contents
    assert readers and threading.main_thread().name not in readers, readers


def test_a_large_files_blocks_found_here_are_sorted_and_copied_off_the_loop(tmp_path,
                                                                            monkeypatch):
    """A 512 MiB file copied on a peer held this node's loop 451 ms: every block was
    looked up in the index, read, checked and written on it. Now they are in a worker
    thread, and the copy is still made from the file here, with no peer to ask."""
    root = tmp_path / "folder"
    root.mkdir()
    data = os.urandom(9 * puller_module.BLOCK_SIZE + 1000)  # more than one block: a large file
    with Index(tmp_path / "index.db", ME) as index:
        copy = copy_of_a_file_here(root, index, data)
        where: list[tuple[str, str]] = []
        watched = noting_threads(where)
        for name in ("find_block", "find_blocks"):
            monkeypatch.setattr(index, name, watched(name, getattr(index, name)))
        monkeypatch.setattr(Puller, "_read_verified",
                            watched("read", Puller._read_verified))
        result = run_round(root, index, [copy])
    assert result.done == 1 and result.bytes_reused == len(data)
    assert (root / "copy.bin").read_bytes() == data
    assert {name for name, _ in where} == {"find_block", "find_blocks", "read"}
    assert threading.main_thread().name not in {thread for _, thread in where}, where


def test_a_cancelled_wait_for_disk_work_ends_only_after_the_work():
    """The caller closes the temp file's descriptor once the wait ends: ended at the
    cancellation, the thread would go on writing into whatever file gets that number."""
    started, release = threading.Event(), threading.Event()
    finished: list[bool] = []

    def work() -> None:
        started.set()
        release.wait(10)
        finished.append(True)

    async def main() -> None:
        task = asyncio.create_task(puller_module._until_done(None, work))
        await asyncio.to_thread(started.wait, 10)
        task.cancel()
        await asyncio.sleep(0.05)
        assert not task.done() and not finished
        release.set()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        assert task.cancelled() and finished == [True]

    asyncio.run(main())


def test_a_block_found_here_that_changed_since_it_was_indexed_is_not_copied(tmp_path):
    """The index says where a block was; the file may have been edited since (and not
    rescanned yet). Each block is checked as it is read: the edited one is not taken,
    and with no peer to fetch it from, the copy waits for one (its name is not made)."""
    root = tmp_path / "folder"
    root.mkdir()
    block = puller_module.BLOCK_SIZE
    data = os.urandom(9 * block + 1000)
    with Index(tmp_path / "index.db", ME) as index:
        copy = copy_of_a_file_here(root, index, data)
        with open(root / "original.bin", "r+b") as f:  # edited after the scan
            f.seek(4 * block)
            f.write(os.urandom(block))
        result = run_round(root, index, [copy])
    assert result.done == 0 and result.waiting == 1 and not result.failed
    assert result.bytes_reused == len(data) - block  # all but the edited block
    assert not (root / "copy.bin").exists()
