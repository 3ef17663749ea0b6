"""Every write site with a short write, ENOSPC or EIO from its Nth call: never a wrong file.

Two real engines in one process sync over TLS on loopback (A serves, B runs the
one-shot sync the way `p2psync sync` does). B's round holds every kind of write the
puller does: a batch of small files (new and replacing old ones), a large file
(written off the loop, O_DIRECT where the disk takes it), a mid-size one (on the
loop), an edited large file (unchanged blocks copied in the kernel), and a conflict
(the single-file path). A fixture wraps the os calls those writes go through and
makes one of them fail from its Nth call on.

After the faulty sync, on both sides, every final path holds a complete version some
device had (never a truncated or mixed file); A's files are untouched. Once the
fault is gone the next sync converges, and no temp file is left anywhere: nothing the
failures took (fetch slots, descriptors, temp files, the disk lock) was kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import random
import threading
from pathlib import Path

import pytest

from app.core import paths, platform
from app.engine.config import Config
from app.engine.node import Node, NodeOptions
from app.engine.oneshot import sync_once
from app.errors import P2PError
from tests.procs import tree

SECRET = "FAULTS-TEST-KEY"
MIB = 1024 * 1024
OLD = 1_600_000_000
NEW = 1_700_000_000


class Faults:
    """Wraps os calls; `arm(site, kind, nth)` makes calls from the nth on misbehave."""

    SITES = ("pwrite", "copy_file_range", "fdatasync", "link", "rename")

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.lock = threading.Lock()
        self.site = ""
        self.kind = ""
        self.nth = 0
        self.calls = 0
        self.fired = 0
        monkeypatch.setattr(platform, "_syncfs", None)  # flushes go through os.fdatasync
        for site in self.SITES:
            monkeypatch.setattr(os, site, self._wrap(site, getattr(os, site)))

    def arm(self, site: str, kind: str, nth: int) -> None:
        with self.lock:
            self.site, self.kind, self.nth, self.calls, self.fired = site, kind, nth, 0, 0

    def disarm(self) -> None:
        with self.lock:
            self.site = ""

    def _fire(self, site: str) -> bool:
        with self.lock:
            if site != self.site:
                return False
            self.calls += 1
            if self.calls < self.nth:
                return False
            self.fired += 1
            return True

    def _wrap(self, site: str, real):
        def call(*args, **kwargs):
            if not self._fire(site):
                return real(*args, **kwargs)
            if self.kind == "enospc":
                raise OSError(errno.ENOSPC, "No space left on device (injected)")
            if self.kind == "eio":
                raise OSError(errno.EIO, "Input/output error (injected)")
            if site == "pwrite":  # short: the disk takes half of it
                fd, data, offset = args
                view = memoryview(data)
                return real(fd, view[:max(1, len(view) // 2)], offset)
            if site == "copy_file_range":
                src, dst, count, *rest = args
                return real(src, dst, max(1, count // 2), *rest, **kwargs)
            raise AssertionError(site)
        return call


def _write(path: Path, data: bytes, mtime: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.utime(path, (mtime, mtime))


def _node(name: str, root: Path, config: Path, listen: bool) -> Node:
    return Node(NodeOptions(folder=root, config=Config(config), secret=SECRET, name=name,
                            listen=("127.0.0.1", 0) if listen else None))


async def _sync_b(tmp: Path, a: Node, timeout: float = 30) -> None:
    b = _node("B", tmp / "B", tmp / "cfgB", listen=False)
    try:
        await b.start()
        await a.scan_now()
        await sync_once(b, [("127.0.0.1", a.listen_address[1])], timeout)
    finally:
        await b.stop()


def _setup(tmp: Path) -> None:
    """Both folders after a first sync: the shared base the faulty round changes."""
    for name in ("A", "B"):
        root = tmp / name
        for i in range(12):
            _write(root / f"s/old{i:02}.txt", f"old {i}\n".encode() * (i + 1), OLD)
        _write(root / "edit.bin", bytes(range(256)) * 4096, OLD)
        _write(root / "c.txt", b"base\n", OLD)


def _changes(tmp: Path) -> dict[str, bytes]:
    """A's new round (what B must fetch), and B's own edit of c.txt (a conflict)."""
    rnd = random.Random(11)
    a = tmp / "A"
    for i in range(12):
        _write(a / f"s/old{i:02}.txt", rnd.randbytes(rnd.randrange(1, 3000)), NEW)
    for i in range(20):
        _write(a / f"s/new{i:02}.txt", rnd.randbytes(rnd.randrange(0, 5000)), NEW)
    _write(a / "big.bin", rnd.randbytes(3 * MIB + 5), NEW)
    _write(a / "mid.bin", rnd.randbytes(600 * 1024), NEW)
    edited = bytearray((a / "edit.bin").read_bytes())
    edited[300_000:300_010] = b"0123456789"
    _write(a / "edit.bin", bytes(edited), NEW)
    _write(a / "c.txt", b"A's edit, newer\n", NEW + 5)
    _write(tmp / "B" / "c.txt", b"B's edit, older\n", NEW)
    return {k: v for k, v in tree(a).items() if isinstance(v, bytes)}


def _temps(root: Path) -> list[str]:
    return [str(p) for p in root.rglob(".p2psync-*.tmp")]


CASES = [(site, kind, nth) for site, kinds, nths in [
    ("pwrite", ("short", "enospc", "eio"), (1, 9)),
    ("copy_file_range", ("short", "eio"), (1, 2)),  # two runs of unchanged blocks
    ("fdatasync", ("eio",), (1, 9)),
    ("link", ("enospc", "eio"), (1, 9)),
    ("rename", ("eio",), (1, 9)),
] for kind in kinds for nth in nths]


@pytest.mark.parametrize(("site", "kind", "nth"), CASES)
def test_a_failed_write_never_leaves_a_wrong_file(tmp_path, monkeypatch, site, kind, nth):
    faults = Faults(monkeypatch)

    async def main() -> None:
        _setup(tmp_path)
        a = _node("A", tmp_path / "A", tmp_path / "cfgA", listen=True)
        await a.start()
        try:
            await _sync_b(tmp_path, a)
            base_b = tree(tmp_path / "B")
            want = _changes(tmp_path)
            b_before = tree(tmp_path / "B")
            faults.arm(site, kind, nth)
            with contextlib.suppress(P2PError):  # exit 5: what matters is what is on disk
                await _sync_b(tmp_path, a, timeout=20)
            faults.disarm()
            # never a wrong file: each final path holds A's version or B's own one
            for rel, data in tree(tmp_path / "B").items():
                if not isinstance(data, bytes) or ".sync-conflict-" in rel or \
                        paths.is_temp_name(rel.rpartition("/")[2]):  # kept for a resume
                    continue
                assert data in (want.get(rel), b_before.get(rel), base_b.get(rel)), rel
            missing = set(b_before) - set(tree(tmp_path / "B"))
            assert not missing, f"a failed write left these paths empty: {missing}"
            assert {k: v for k, v in tree(tmp_path / "A").items()
                    if isinstance(v, bytes) and ".sync-conflict-" not in k} == want
            await _sync_b(tmp_path, a)  # the fault is gone: it all goes through
            assert tree(tmp_path / "A") == tree(tmp_path / "B")
            final = tree(tmp_path / "B")
            assert {k: v for k, v in final.items() if k in want} == want
            copies = [v for k, v in final.items() if ".sync-conflict-" in k]
            assert copies == [b"B's edit, older\n"]  # the losing edit is kept
            assert _temps(tmp_path / "A") == [] and _temps(tmp_path / "B") == []
        finally:
            await a.stop()

    asyncio.run(main())
    assert faults.fired, f"the fault at {site} never fired: the test tests nothing"
