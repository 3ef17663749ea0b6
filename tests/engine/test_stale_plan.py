"""A plan carried out after a scan recorded a local edit: the edit is a conflict, never
a replaced version.

A round plans from the index, then waits for the disk lock; a scan holding it (a
one-shot `sync`'s first scan, a watcher's rescan) may record an edit of a path the
plan replaces. The file then matches its new index entry on disk, so the disk checks
pass: the edit went to `.p2psync/versions` as if the peer's version had superseded it,
and no conflict copy was made (the portable run's long-names test, now and then).
Each step checks that the version it brings still supersedes the index's entry.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import replace
from pathlib import Path

import pytest

from app.core import scanner
from app.core.apply import VERSIONS_DIR
from app.core.ignore import Ignore
from app.core.index import Index
from app.core.model import BLOCK_SIZE, FileEntry
from app.core.paths import META_DIR, TEMP_PREFIX
from app.core.planner import DELETE, FETCH, Action
from app.core.versions import Order, bump, compare
from app.engine.puller import Puller

ME = "AAAAAAA-BBBBBBB-CCCCCCC-DDDDDDD-EEEEEEE"
PEER = "PEER000-0000000-0000000-0000000-0000000"
HOUR_AGO = 1_700_000_000 * 10**9


def put(root: Path, rel: str, data: bytes, mtime_ns: int) -> None:
    (root / rel).write_bytes(data)
    os.utime(root / rel, ns=(mtime_ns, mtime_ns))


def scan(root: Path, index: Index) -> None:
    scanner.scan(root, index, Ignore(root))


def peers_version(index: Index, rel: str, content_of: str) -> FileEntry:
    """The peer's next version of rel, holding the content of our file content_of (so
    the round finds its blocks here and needs no connection)."""
    local = index.get(rel)
    base = local.version if local is not None else {}
    return replace(index.get(content_of), path=rel, version=bump(base, PEER),
                   modified_by=PEER, mtime_ns=HOUR_AGO + 500 * 10**9, seq=0, inode=0,
                   ctime_ns=0)


def run_round(root: Path, index: Index, actions: list[Action]):
    """The round's result, and the temp files the puller keeps for a resume."""
    async def main():
        puller = Puller(root, index, asyncio.Lock(), dict, lambda rel: None,
                        lambda kind, data: None)
        try:
            return await puller.run_round(actions), set(puller.temps)
        finally:
            puller.close()

    return asyncio.run(main())


def temp_files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob(f"{TEMP_PREFIX}*")
            if META_DIR not in p.relative_to(root).parts}


@pytest.mark.parametrize("size", [100, 3 * BLOCK_SIZE + 7], ids=["small", "blocks"])
@pytest.mark.parametrize("planned", ["replace", "create", "delete"])
def test_an_edit_recorded_after_the_plan_is_not_replaced(tmp_path, size, planned):
    root = tmp_path / "folder"
    root.mkdir()
    put(root, "theirs.bin", b"t" * size, HOUR_AGO)
    if planned != "create":
        put(root, "f.bin", b"o" * size, HOUR_AGO)
    with Index(tmp_path / "index.db", ME) as index:
        scan(root, index)
        if planned == "delete":
            old = index.get("f.bin")
            target = replace(old, deleted=True, version=bump(old.version, PEER),
                             modified_by=PEER)
            action = Action(DELETE, "f.bin", target, [PEER])
        else:
            action = Action(FETCH, "f.bin", peers_version(index, "f.bin", "theirs.bin"),
                            [PEER])

        put(root, "f.bin", b"my edit " * (size // 8), HOUR_AGO + 100 * 10**9)
        scan(root, index)  # the edit is indexed before the round runs
        mine = index.get("f.bin")
        assert compare(action.target.version, mine.version) == Order.CONCURRENT

        result, kept = run_round(root, index, [action])

        assert (root / "f.bin").read_bytes() == b"my edit " * (size // 8)
        # nothing left behind but a large file's temp, kept (and listed) for a resume
        assert temp_files(root) == kept and (not kept or size > BLOCK_SIZE)
        assert index.get("f.bin") == mine
        assert "f.bin" in result.failed and result.done == 0
        assert not (root / VERSIONS_DIR).exists() or not os.listdir(root / VERSIONS_DIR)


def test_a_plan_that_still_holds_is_carried_out(tmp_path):
    """The check lets through what it must: the index unchanged since the plan."""
    root = tmp_path / "folder"
    root.mkdir()
    put(root, "theirs.bin", b"t" * 100, HOUR_AGO)
    put(root, "f.bin", b"o" * 100, HOUR_AGO)
    with Index(tmp_path / "index.db", ME) as index:
        scan(root, index)
        action = Action(FETCH, "f.bin", peers_version(index, "f.bin", "theirs.bin"), [PEER])
        result, _ = run_round(root, index, [action])
        assert result.done == 1 and not result.failed
        assert (root / "f.bin").read_bytes() == b"t" * 100
        assert index.get("f.bin").version == action.target.version


def test_a_move_whose_directory_went_here_meanwhile_is_rescanned_not_blocked(tmp_path):
    """The peer moved r1/e/z.txt to r1/g/z.txt; here r1/e was renamed since the index
    saw it (a `sync` watches nothing). The move found no old directory and blocked the
    new path, "the directory `r1/g/` is missing and could not be made": a sentence about
    the wrong directory, and a round every few milliseconds that failed the same way
    until the sync timed out (found by scripts/fuzz_live.py --c-sync)."""
    root = tmp_path / "folder"
    (root / "r1/e").mkdir(parents=True)
    put(root, "r1/e/z.txt", b"z" * 40, HOUR_AGO)
    with Index(tmp_path / "index.db", ME) as index:
        scan(root, index)
        old = index.get("r1/e/z.txt")
        gone = Action(DELETE, old.path, replace(old, deleted=True, version=bump(
            old.version, PEER), modified_by=PEER), [PEER])
        moved = Action(FETCH, "r1/g/z.txt", peers_version(index, "r1/g/z.txt", old.path),
                       [PEER])
        (root / "r1/e").rename(root / "r1/q")  # not scanned
        rescans: list[str] = []

        async def main():
            puller = Puller(root, index, asyncio.Lock(), dict, rescans.append,
                            lambda kind, data: None)
            try:
                return await puller.run_round([], [(gone, moved)])
            finally:
                puller.close()

        result = asyncio.run(main())
        assert result.blocked == {} and result.done == 0
        assert "changed on disk" in result.failed["r1/g/z.txt"]
        assert "r1/e/z.txt" in rescans
        assert (root / "r1/q/z.txt").read_bytes() == b"z" * 40
        assert not (root / "r1/g").exists() or not os.listdir(root / "r1/g")
