"""The platform layer: each fallback does what its fast path does, with the same safety,
and the Windows realities (injected here: we cannot run Windows) become reasons."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import threading
import time

import pytest

from app.core import hashing, paths, platform
from app.core.batchwrite import SmallFile, write_small_files
from app.core.dirfds import DirFds

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def portable(monkeypatch):
    """The layer as P2PSYNC_PORTABLE=1 (and Windows) has it."""
    for name, value in (("PORTABLE", True), ("DIR_FDS", False), ("NOFOLLOW", 0),
                        ("UNNAMED_TEMPS", False), ("_POSITIONED", False), ("_syncfs", None),
                        ("SEEK_DATA", None), ("SEEK_HOLE", None), ("UNIX_SOCKETS", False)):
        monkeypatch.setattr(platform, name, value)
    monkeypatch.setattr(platform, "TEMP_FLAGS", platform.TEMP_FLAGS & ~os.O_NOFOLLOW)


class WinError(PermissionError):
    """What Windows raises: an OSError with a winerror (Linux has no such attribute)."""

    def __init__(self, winerror: int) -> None:
        super().__init__(errno.EACCES, "Access is denied")
        self.winerror = winerror


def test_the_switch_turns_every_fast_path_off():
    code = ("from app.core import platform as p, holes\n"
            "print(p.PORTABLE, p.DIR_FDS, p.UNNAMED_TEMPS, p.UNIX_SOCKETS, p._POSITIONED,"
            " p._syncfs, p.SEEK_DATA, holes._SEEK_DATA, p.NOFOLLOW)\n"
            "import os\nfd = os.open('.', os.O_RDONLY)\nprint(p.reopen_direct(fd))")
    env = {**os.environ, "P2PSYNC_PORTABLE": "1", "PYTHONPATH": REPO}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True).stdout.split()
    assert out == ["True", "False", "False", "False", "False", "None", "None", "None", "0",
                   "None"]
    env["P2PSYNC_PORTABLE"] = "0"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True).stdout.split()
    assert out[:3] == ["False", "True", "True"]  # Linux: the fast paths


def test_positioned_reads_and_writes_without_pread(tmp_path, portable):
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT)
    try:
        assert platform.pwrite(fd, b"0123456789", 0) == 10
        assert platform.pwrite(fd, b"ab", 4) == 2
        assert platform.pread(fd, 4, 3) == b"3ab6"
        view = memoryview(bytearray(5))
        assert platform.pread_into(fd, view, 7) == 3  # short at the end of the file
        assert bytes(view[:3]) == b"789"
    finally:
        os.close(fd)


def test_positioned_io_is_one_step_for_many_threads(tmp_path, portable):
    """seek + read from many threads on one descriptor never reads another's offset."""
    blocks = [bytes([i]) * 4096 for i in range(64)]
    (tmp_path / "f").write_bytes(b"".join(blocks))
    fd = os.open(tmp_path / "f", os.O_RDONLY)
    bad = []

    def reader(k: int) -> None:
        for _ in range(200):
            i = (k * 7 + _) % 64
            if platform.pread(fd, 4096, i * 4096) != blocks[i]:
                bad.append(i)

    threads = [threading.Thread(target=reader, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    os.close(fd)
    assert bad == []


def test_the_copy_fallback_goes_through_one_bounded_buffer(tmp_path, portable, monkeypatch):
    monkeypatch.setattr(platform, "COPY_BUFFER", 1000)
    data = os.urandom(5000)
    (tmp_path / "src").write_bytes(data)
    src = os.open(tmp_path / "src", os.O_RDONLY)
    dst = os.open(tmp_path / "dst", os.O_RDWR | os.O_CREAT)
    try:
        offset, copied = 1500, 0
        while copied < 3000:
            n = platform.copy_range(src, dst, 3000 - copied, offset + copied)
            assert 0 < n <= 1000
            copied += n
        assert platform.pread(dst, 3000, 1500) == data[1500:4500]
    finally:
        os.close(src)
        os.close(dst)


def test_no_holes_are_looked_for_without_seek_data(tmp_path, portable):
    from app.core import holes

    (tmp_path / "f").write_bytes(b"")
    os.truncate(tmp_path / "f", 10 * 1024 * 1024)
    st = os.stat(tmp_path / "f")
    assert platform.allocated(st) is None
    assert platform.disk_bytes(st) == st.st_size  # counted as all data: never too little
    assert not holes.may_have_holes(st)  # so the whole file is read, as it is elsewhere


def test_the_lock_fallback_is_exclusive_even_for_shared_holders(tmp_path, portable):
    order = []
    with platform.locked(tmp_path / "lock", shared=True):
        t = threading.Thread(target=lambda: _hold(tmp_path / "lock", order))
        t.start()
        time.sleep(0.3)
        order.append("first done")
    t.join()
    assert order == ["first done", "second in"]


def _hold(path, order):
    with platform.locked(path, shared=True):
        order.append("second in")


def test_the_path_check_refuses_links_and_ways_out(tmp_path, portable):
    root = tmp_path / "share"
    (root / "real").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, root / "out")
    os.symlink("real", root / "inside-link")  # a link, even one that stays inside
    (root / "real/file").write_text("x")
    os.symlink("/etc/passwd", root / "real/pw")
    with DirFds(root, create=True) as dirs:
        for rel in ("out", "inside-link", "out/deeper"):
            with pytest.raises(paths.BadPath):
                dirs.open(rel)
        d = dirs.open("real")
        with pytest.raises(OSError) as e:
            platform.open_in(d, "pw", os.O_RDONLY)
        assert e.value.errno == errno.ELOOP
        fd = platform.open_in(d, "file", platform.READ_FLAGS)
        os.close(fd)
        # the directory swapped for a link after it was checked: the next step refuses
        os.rename(root / "real", root / "moved")
        os.symlink(outside, root / "real")
        with pytest.raises(OSError):
            platform.open_in(d, "new", platform.TEMP_FLAGS, 0o600)
        with pytest.raises(OSError):
            platform.rename_in(d, "a", "b")
    assert os.listdir(outside) == []


def _small(rel: str, data: bytes) -> SmallFile:
    return SmallFile(rel, data, hashing.block_hash(data), 0o644, 1_600_000_000 * 10**9,
                     None, {"PEER": 1})


def test_a_file_in_use_by_another_program_is_retried_later_with_that_reason(
        tmp_path, portable, monkeypatch):
    """Windows refuses to replace a file another program holds open: a sharing
    violation. The file keeps its content, the temp file goes, the reason says why."""
    from app.core import apply
    from app.core.model import FileEntry, Kind

    (tmp_path / "doc.txt").write_bytes(b"open in Word")

    def indexed() -> FileEntry:
        st = os.lstat(tmp_path / "doc.txt")
        return FileEntry("doc.txt", Kind.FILE, st.st_size, st.st_mtime_ns, st.st_mode & 0o777,
                         inode=st.st_ino, ctime_ns=st.st_ctime_ns)

    real_rename = os.rename

    def rename(src, dst, *a, **kw):
        if "doc.txt" in (os.path.basename(src), os.path.basename(dst)):
            raise WinError(32)  # ERROR_SHARING_VIOLATION
        return real_rename(src, dst, *a, **kw)

    monkeypatch.setattr(os, "rename", rename)
    f = _small("doc.txt", b"new version")
    f.local = indexed()
    [result] = write_small_files(tmp_path, [f])
    assert isinstance(result, platform.InUse), result
    assert "in use by another program" in str(result)
    assert (tmp_path / "doc.txt").read_bytes() == b"open in Word"
    assert not any(n.endswith(".tmp") for n in os.listdir(tmp_path))
    # where there are no hard links the old version is moved aside first: refused too
    monkeypatch.setattr(apply, "hard_link", lambda src, dest: False)
    f.local = indexed()  # the kept hard link moved its ctime: as the next scan sees it
    [result] = write_small_files(tmp_path, [f])
    assert isinstance(result, platform.InUse), result
    assert (tmp_path / "doc.txt").read_bytes() == b"open in Word"
    assert not any(n.endswith(".tmp") for n in os.listdir(tmp_path))


def test_windows_errors_are_told_apart(tmp_path, monkeypatch):
    assert platform.in_use(WinError(32)) and platform.in_use(WinError(33))
    assert platform.in_use(WinError(5))  # MoveFileEx on a file open without share-delete
    assert not platform.in_use(PermissionError(errno.EACCES, "denied"))  # POSIX: a real no

    def refuse(*a, **kw):
        raise WinError(1314)  # ERROR_PRIVILEGE_NOT_HELD

    monkeypatch.setattr(os, "symlink", refuse)
    with pytest.raises(platform.NoSymlinks) as e:
        platform.symlink("target", tmp_path / "link")
    assert "Developer Mode" in str(e.value)
    assert not os.path.lexists(tmp_path / "link")

    def replace_in_use(src, dst):
        raise WinError(32)

    monkeypatch.setattr(os, "rename", replace_in_use)
    monkeypatch.setattr(os, "replace", replace_in_use)
    (tmp_path / "a").write_text("a")
    with pytest.raises(platform.InUse) as e2:
        platform.replace(tmp_path / "a", tmp_path / "b")
    assert str(e2.value) == platform.IN_USE_WHY
    assert (tmp_path / "a").read_text() == "a"


def test_long_paths_get_the_windows_prefix_only_where_needed():
    short = "C:\\Users\\me\\share\\a.txt"
    assert platform.long_path(short, windows=True) == short
    deep = "C:\\Users\\me\\share\\" + "\\".join(["d" * 50] * 6) + "\\file.txt"
    assert platform.long_path(deep, windows=True) == "\\\\?\\" + deep
    unc = "\\\\server\\share\\" + "x" * 300
    assert platform.long_path(unc, windows=True) == "\\\\?\\UNC\\server\\share\\" + "x" * 300
    assert platform.long_path("\\\\?\\" + deep, windows=True) == "\\\\?\\" + deep
    assert platform.long_path(deep, windows=False) == deep  # nothing changes elsewhere


def test_no_executable_bit_is_no_change(monkeypatch):
    from app.core import modes

    assert not modes.same_synced_bits(0o755, 0o644)
    monkeypatch.setattr(platform, "EXEC_BIT", False)
    assert modes.same_synced_bits(0o755, 0o644)  # Windows shows no x: not a local edit


def test_stop_signals_reach_the_loop_without_loop_signal_handlers(monkeypatch):
    """Windows' event loop has no add_signal_handler: a plain handler hands over."""
    import asyncio
    import signal

    async def main() -> bool:
        loop = asyncio.get_running_loop()

        def refuse(*a, **kw):
            raise NotImplementedError

        monkeypatch.setattr(loop, "add_signal_handler", refuse)
        stop = asyncio.Event()
        platform.on_stop_signals(loop, stop.set)
        os.kill(os.getpid(), signal.SIGINT)
        await asyncio.wait_for(stop.wait(), 5)
        return stop.is_set()

    old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        assert asyncio.run(main())
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
