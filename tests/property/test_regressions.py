"""Narrow, deterministic cases of what the random-history property found.

Same set-up as test_random_histories.py: A is a listening node on loopback that
rescans before each sync, B syncs like `p2psync sync` (a fresh Node per sync).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from pathlib import Path

from app.engine.oneshot import sync_once
from tests.property.test_random_histories import (
    T0,
    _config,
    _identity_templates,
    _node,
    check_sync,
    conflict_copy_name,
    run_history,
    snapshot,
    start_a,
    temps,
)

SHORT_TIMEOUT = 6.0


class Pair:
    """Device A (listening) and device B (one-shot syncs), with folders under base."""

    def __init__(self, base: Path) -> None:
        one, two = _identity_templates()
        self.cfg = {"A": _config(one, base / "cfgA"), "B": _config(two, base / "cfgB")}
        self.root = {"A": base / "A", "B": base / "B"}
        for r in self.root.values():
            r.mkdir()
        self.a = _node("A", self.root["A"], self.cfg["A"], listen=True)
        self.ids: dict[str, str] = {}
        self.synced: dict = {}
        self.count = 0

    async def start(self) -> None:
        await start_a(self.a)

    async def restart_a(self) -> None:
        """A new A node on the same folder and config: it scans the folder now."""
        await self.a.stop()
        self.a = _node("A", self.root["A"], self.cfg["A"], listen=True)
        await start_a(self.a)

    async def sync(self, timeout: float = SHORT_TIMEOUT, check: bool = True,
                   meanwhile=None) -> None:
        """One sync of B with A; `meanwhile()` runs after A's rescan, before B connects."""
        self.count += 1
        before = {d: snapshot(self.root[d]) for d in "AB"}
        b = _node("B", self.root["B"], self.cfg["B"], listen=False)
        try:
            await b.start()
            await self.a.scan_now()
            if meanwhile is not None:
                meanwhile()
            await sync_once(b, [("127.0.0.1", self.a.listen_address[1])], timeout=timeout)
        finally:
            await b.stop()
        self.ids = {"A": self.a.device_id, "B": b.device_id}
        if check:
            self.synced = check_sync(f"after sync {self.count}", self.synced, before,
                                     self.root, self.ids)

    def write(self, dev: str, rel: str, data: bytes, mtime_ns: int) -> None:
        p = self.root[dev] / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        os.utime(p, ns=(mtime_ns, mtime_ns))


def run(scenario) -> None:
    base = Path(tempfile.mkdtemp(prefix="p2psync-reg-"))

    async def main() -> None:
        pair = Pair(base)
        await pair.start()
        try:
            await scenario(pair)
        finally:
            await pair.a.stop()

    try:
        asyncio.run(main())
    finally:
        shutil.rmtree(base, ignore_errors=True)


MS = 1_000_000


def test_second_conflict_in_the_same_second_keeps_its_own_copy():
    """Found by the property: the second copy got the first one's name, and the engine
    archived the losing version into .p2psync/versions/ as if it were kept already
    (fixed in 344236c: the next free second)."""

    async def scenario(pair: Pair) -> None:
        pair.write("A", "a.txt", b"base", T0)
        await pair.sync()
        # both edit; B's edit is older: B loses, its content becomes a conflict copy
        pair.write("B", "a.txt", b"B one", T0 + 100 * MS)
        pair.write("A", "a.txt", b"A one", T0 + 200 * MS)
        await pair.sync()
        first = conflict_copy_name("a.txt", T0 + 100 * MS, pair.ids["B"])
        assert snapshot(pair.root["B"])[first][1] == b"B one"
        # again, within the same second: B loses again, with different content
        pair.write("B", "a.txt", b"B two", T0 + 300 * MS)
        pair.write("A", "a.txt", b"A two", T0 + 400 * MS)
        await pair.sync()
        for dev in "AB":
            tree = snapshot(pair.root[dev])
            assert tree["a.txt"][1] == b"A two"
            copies = {p: v[1] for p, v in tree.items() if ".sync-conflict-" in p}
            assert b"B one" in copies.values(), (dev, copies)
            assert b"B two" in copies.values(), (
                f"{dev}: the second losing version is not beside a.txt: {copies}")

    run(scenario)


def test_rewrite_keeping_size_and_mtime_does_not_wedge_the_sync():
    """Found by the property: after a scan, a rewrite with the same size and mtime (same
    inode) was served under the old hash; the peer could never verify a block and the
    sync ran into its timeout (fixed in 344236c: served blocks are checked against the
    requested hash, a mismatch forces a re-hash)."""

    async def scenario(pair: Pair) -> None:
        pair.write("A", "a.txt", b"x" * 1000, T0)
        await pair.restart_a()  # A indexes a.txt now (as a watcher or rescan would)
        pair.write("A", "a.txt", b"y" * 1000, T0)  # same size, same inode, mtime put back
        await pair.sync()
        assert snapshot(pair.root["B"]).get("a.txt", ("", b""))[1] == b"y" * 1000

    run(scenario)


def test_conflict_copy_at_a_name_deleted_before_is_kept():
    """Found while pinning the one above: a copy made at a name with a tombstone got the
    version {device: 1}, which the tombstone dominated; the peer kept its tombstone and
    this device deleted its fresh copy again, so the version the user had just chosen
    survived only in .p2psync/versions/ (fixed in 0a577d6)."""

    async def scenario(pair: Pair) -> None:
        pair.write("A", "a.txt", b"base", T0)
        await pair.sync()
        pair.write("B", "a.txt", b"B one", T0 + 100 * MS)
        pair.write("A", "a.txt", b"A one", T0 + 200 * MS)
        await pair.sync()
        copy = conflict_copy_name("a.txt", T0 + 100 * MS, pair.ids["B"])
        assert snapshot(pair.root["A"])[copy][1] == b"B one"
        # B settles the conflict for its own version: mv copy a.txt (mtime kept);
        # meanwhile A edits a.txt again, later: B's version loses once more, and its
        # conflict copy gets the name of the copy B just moved away
        os.replace(pair.root["B"] / copy, pair.root["B"] / "a.txt")
        pair.write("A", "a.txt", b"A two", T0 + 400 * MS)
        await pair.sync()
        for dev in "AB":
            tree = snapshot(pair.root[dev])
            assert tree["a.txt"][1] == b"A two"
            assert tree.get(copy, ("", b""))[1] == b"B one", (
                f"{dev}: the losing version is not beside a.txt: "
                f"{sorted(p for p in tree if 'conflict' in p)}")

    run(scenario)


def test_file_changed_during_a_sync_leaves_no_temp_file():
    """The user edits a file on A after A's scan, while B is about to fetch it: B's
    requests for the announced version find other bytes, A re-hashes, B fetches the
    new version, and the folders agree; the temp file of the first attempt must go
    (it stayed: Node.temps only knew the temp files of the last full scan; fixed in
    50d0c86)."""

    async def scenario(pair: Pair) -> None:
        old, new = b"x" * 300_000, b"y" * 200_000

        def edit_on_a() -> None:
            pair.write("A", "big.bin", new, T0 + 2 * 10**9)

        pair.write("A", "big.bin", old, T0)
        await pair.sync(check=False, meanwhile=edit_on_a)
        for dev in "AB":
            tree = snapshot(pair.root[dev])
            assert tree["big.bin"][1] == new, dev
            assert not temps(tree), f"{dev}: temp files left: {temps(tree)}"

    run(scenario)


def test_second_conflict_with_the_same_content_in_the_same_second_takes_its_mtime():
    """Found by the property (PROP_EXAMPLES=4000): the second losing version of b.txt had
    the same (empty) content as the first, within the same second, so both wanted one
    copy name; the engine took the existing copy for "kept already" and the copy kept
    the first conflict's mtime. The contract's copy is the losing version itself: the
    older copy goes to .p2psync/versions/ and the new one takes the name."""
    rounds = [[("append", "A", "a.txt", 1, 0)],
              [("write", "A", "a.txt", 0, 0),
               ("both", "b.txt", ("write", 0, 0), ("write", 1, 1))],
              [("both", "b.txt", ("write", 0, 0), ("append", 1, 1))]]
    base = Path(tempfile.mkdtemp(prefix="p2psync-reg-"))
    try:
        asyncio.run(run_history(base, rounds, swap=False))
    finally:
        shutil.rmtree(base, ignore_errors=True)
