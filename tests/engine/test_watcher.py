"""The folder watcher reports changes, and nothing for files that are only read."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from app.engine.watcher import FolderWatcher
from tests.procs import wait_until


class Reports:
    """What the node does: on a wake-up, take the changed paths."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.got = threading.Event()
        self.watcher: FolderWatcher | None = None

    def __call__(self) -> None:
        assert self.watcher is not None
        self.paths.extend(self.watcher.changed())
        self.got.set()


def test_reads_are_silent_writes_are_reported(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    served = tmp_path / "sub" / "served.txt"
    served.write_text("read me")
    reports = Reports()
    watcher = reports.watcher = FolderWatcher(tmp_path, reports)
    watcher.start()
    try:
        time.sleep(0.2)  # the watches are set
        for _ in range(50):  # what serving a file to a peer does
            served.read_bytes()
        time.sleep(0.3)
        assert reports.paths == []

        (tmp_path / "sub" / "new.txt").write_text("hello")
        assert reports.got.wait(5)
        assert "sub/new.txt" in reports.paths
        assert "sub/served.txt" not in reports.paths

        served.chmod(0o755)  # a mode change alone is a change to sync
        wait_until(lambda: "sub/served.txt" in reports.paths, 5, 0.02)
    finally:
        watcher.stop()


def test_a_burst_of_changes_wakes_the_node_once_per_burst_not_per_event(tmp_path: Path) -> None:
    wakes = threading.Semaphore(0)
    watcher = FolderWatcher(tmp_path, wakes.release)
    watcher.start()
    try:
        time.sleep(0.2)
        for i in range(300):  # about 1,500 inotify events
            (tmp_path / f"f{i:03d}").write_bytes(b"x")
        seen: set[str] = set()
        woken = 0
        deadline = time.monotonic() + 10
        while len(seen) < 300 and time.monotonic() < deadline:
            if wakes.acquire(timeout=0.5):
                woken += 1
                seen |= watcher.changed()
        assert seen == {f"f{i:03d}" for i in range(300)}
        time.sleep(0.5)
        while wakes.acquire(blocking=False):  # wake-ups nobody has taken yet count too
            woken += 1
        assert woken < 100  # not one per event: a wake-up waits for the node to drain
    finally:
        watcher.stop()


def test_a_renamed_directory_is_reported_as_itself_not_entry_by_entry(tmp_path: Path) -> None:
    """The scan of the two names finds what moved; a path per entry below (watchdog's
    walk of the moved tree) cost memory and time in proportion to the directory."""
    tree = tmp_path / "photos" / "2024"
    tree.mkdir(parents=True)
    for i in range(2000):
        (tree / f"img{i:04d}.jpg").write_bytes(b"x")
    reports = Reports()
    watcher = reports.watcher = FolderWatcher(tmp_path, reports)
    watcher.start()
    try:
        time.sleep(0.3)  # the watches are set
        (tmp_path / "photos").rename(tmp_path / "pictures")
        (tmp_path / "pictures" / "new.txt").write_text("made after the move")
        wait_until(lambda: "pictures/new.txt" in reports.paths, 5, 0.02)
        time.sleep(0.5)  # anything else watchdog would report has come by now
        assert set(reports.paths) == {"photos", "pictures", "pictures/new.txt"}
    finally:
        watcher.stop()


def test_a_directory_moved_in_is_reported_as_itself(tmp_path: Path) -> None:
    watched, outside = tmp_path / "watched", tmp_path / "outside"
    watched.mkdir()
    (outside / "album").mkdir(parents=True)
    for i in range(500):
        (outside / "album" / f"{i}.jpg").write_bytes(b"x")
    reports = Reports()
    watcher = reports.watcher = FolderWatcher(watched, reports)
    watcher.start()
    try:
        time.sleep(0.3)
        (outside / "album").rename(watched / "album")
        wait_until(lambda: "album" in reports.paths, 5, 0.02)
        (watched / "album" / "later.jpg").write_bytes(b"y")  # its watch is set
        wait_until(lambda: "album/later.jpg" in reports.paths, 5, 0.02)
        time.sleep(0.5)
        assert set(reports.paths) == {"album", "album/later.jpg"}
    finally:
        watcher.stop()


def test_a_file_written_unnamed_and_linked_is_reported_by_its_name_only(tmp_path: Path) -> None:
    """What the puller does (O_TMPFILE, times set, linked): the events under the unnamed
    file's "#<inode>" name are not paths to scan; the name it gets is."""
    from app.core import platform
    from app.core.dirfds import DirFds

    if not platform.UNNAMED_TEMPS:
        pytest.skip("no unnamed temp files here")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "#12").write_text("a user's file of such a name")
    reports = Reports()
    watcher = reports.watcher = FolderWatcher(tmp_path, reports)
    watcher.start()
    try:
        time.sleep(0.3)
        with DirFds(tmp_path, create=False) as dirs:
            d = dirs.open("sub")
            for i in range(20):
                fd, name = platform.open_temp(d, f".p2psync-{i}.tmp", 0o644)
                assert name is None  # unnamed
                try:
                    os.write(fd, b"pulled")
                    platform.set_times_in(d, None, fd, 1_000_000_000)
                    platform.link_unnamed(d, fd, f"pulled{i:02d}.txt")
                finally:
                    os.close(fd)
        (tmp_path / "sub" / "#12").write_text("edited")  # reported: it exists
        wait_until(lambda: "sub/#12" in reports.paths, 5, 0.02)
        time.sleep(0.3)
        assert set(reports.paths) == {f"sub/pulled{i:02d}.txt" for i in range(20)} | {"sub/#12"}
    finally:
        watcher.stop()


def test_a_pulled_batch_costs_the_watcher_one_event_a_file(tmp_path: Path) -> None:
    """The puller makes each file in `.p2psync/staging`, which is not watched, and links
    it into place: the link is the one event; the unnamed file's times and close (two
    more events each, under "#<inode>") are never reported."""
    from app.core import hashing, paths, platform
    from app.core.batchwrite import SmallFile, write_small_files

    if not platform.UNNAMED_TEMPS:
        pytest.skip("no unnamed temp files here")
    (tmp_path / paths.META_DIR).mkdir()
    (tmp_path / "sub").mkdir()
    reports = Reports()
    watcher = reports.watcher = FolderWatcher(tmp_path, reports)
    seen: list[str] = []
    dispatched, taken = watcher.handler.on_any_event, watcher.handler.take

    def every_event(event):  # type: ignore[no-untyped-def]
        seen.append(os.path.relpath(event.src_path, tmp_path))
        dispatched(event)

    def every_take(path, may_be_unnamed):  # type: ignore[no-untyped-def]
        seen.append(os.path.relpath(os.fsdecode(path), tmp_path))
        taken(path, may_be_unnamed)

    # both ways an event reaches the handler: watchdog's dispatch, and straight from
    # the inotify thread (everything but moves)
    watcher.handler.on_any_event = every_event  # type: ignore[method-assign]
    watcher.handler.take = every_take  # type: ignore[method-assign]
    watcher.start()
    try:
        time.sleep(0.3)
        names = [f"sub/pulled{i:02d}.txt" for i in range(20)]
        write_small_files(tmp_path, [
            SmallFile(n, b"pulled", hashing.block_hash(b"pulled"), 0o644, 1_000_000_000, None,
                      {"PEER": 1})
            for n in names])
        wait_until(lambda: set(reports.paths) == set(names), 5, 0.02)
        time.sleep(0.3)
        assert sorted(seen) == sorted(names)
    finally:
        watcher.stop()


@pytest.fixture
def tiny_event_queue():
    """A context in which new inotify instances get a queue of 16 events (the kernel's
    default is 16,384): a burst of changes overflows it. Linux and root only."""
    knob = Path("/proc/sys/fs/inotify/max_queued_events")
    if not knob.exists() or not os.access(knob, os.W_OK):
        pytest.skip("needs a writable /proc/sys/fs/inotify/max_queued_events (Linux, root)")
    before = knob.read_text()

    @contextlib.contextmanager
    def tiny():
        try:
            knob.write_text("16")
        except OSError as e:  # a read-only /proc/sys in a container
            pytest.skip(f"cannot lower max_queued_events: {e}")
        try:
            yield
        finally:
            knob.write_text(before)

    return tiny


def test_events_lost_to_a_full_queue_are_reported_as_anything_may_have_changed(
        tmp_path: Path, tiny_event_queue) -> None:
    """The kernel drops events when its queue is full (one IN_Q_OVERFLOW instead): which
    paths changed is then unknown, and `changed()` says so (None) rather than return
    the paths it happened to get. The watcher goes on reporting afterwards."""
    got: list[set[str] | None] = []
    written = threading.Event()

    def wake() -> None:
        # on the watcher's reader thread: held, it reads nothing and the queue fills
        # (without it the reader sometimes kept up with the writes: no overflow)
        written.wait(10)
        got.append(watcher.changed())

    with tiny_event_queue():  # the queue's size is fixed when the instance is made
        watcher = FolderWatcher(tmp_path, wake)
    watcher.start()
    try:
        time.sleep(0.2)
        for i in range(2000):  # 4,000 events
            (tmp_path / f"f{i:04d}").write_bytes(b"x")
        written.set()
        wait_until(lambda: None in got, 10, 0.02, f"no overflow reported: {len(got)} wake-ups")
        wait_until(_quiet(got), 10, 0.02, "the queue never drained")
        (tmp_path / "after.txt").write_text("y")
        wait_until(lambda: any(g and "after.txt" in g for g in got), 5, 0.02, f"got {got}")
    finally:
        watcher.stop()


def _quiet(got: list) -> Callable[[], bool]:  # type: ignore[type-arg]
    """A condition: no wake-up for 0.5 s (with a queue of 16, one overflow may follow
    another while the reader takes in the first)."""
    seen = [len(got), time.monotonic()]

    def quiet() -> bool:
        if len(got) != seen[0]:
            seen[:] = [len(got), time.monotonic()]
        return time.monotonic() - seen[1] > 0.5
    return quiet


def test_a_watching_node_rescans_the_whole_folder_when_events_were_lost(
        tmp_path: Path, tiny_event_queue, caplog, monkeypatch) -> None:
    """Without it the files whose events the kernel dropped would wait for the periodic
    full rescan (FULL_RESCAN_EVERY, a minute) to reach the peers."""
    import asyncio

    from app.engine import watcher as watcher_module
    from app.engine.config import Config
    from app.engine.node import FULL_RESCAN_EVERY, Node, NodeOptions

    root = tmp_path / "A"
    root.mkdir()
    names = [f"f{i:04d}" for i in range(2000)]
    written = threading.Event()

    class HeldWatcher(FolderWatcher):
        """Its reader waits at the first wake-up until all is written: the queue fills."""

        def __init__(self, folder: Path, wake) -> None:
            def held() -> None:
                written.wait(10)
                wake()
            super().__init__(folder, held)

    monkeypatch.setattr(watcher_module, "FolderWatcher", HeldWatcher)  # the node's import

    def write_all() -> None:
        for name in names:
            (root / name).write_bytes(b"x")
        written.set()

    async def main() -> list[str]:
        node = Node(NodeOptions(folder=root, config=Config(tmp_path / "cfg"), secret="k",
                                name="a", watch=True))
        with tiny_event_queue():
            await node.start()
        try:
            await asyncio.sleep(0.3)
            await asyncio.to_thread(write_all)
            deadline = time.monotonic() + FULL_RESCAN_EVERY / 4
            while time.monotonic() < deadline:
                missing = [n for n in names if node.index.get(n) is None]
                if not missing:
                    break
                await asyncio.sleep(0.2)
            return missing
        finally:
            await node.stop()

    caplog.set_level("WARNING", logger="app.engine.node")
    assert asyncio.run(main()) == []
    assert "the folder watcher lost events: rescanning the whole folder" in caplog.text


def test_a_rescan_of_files_the_disk_and_index_agree_on_does_not_wait_for_the_disk_lock(
        tmp_path: Path) -> None:
    """A watching node is told of every file its pull writes; those rescans waited for
    the lock the pull publishes under (~0.6 s of a 10,000-file pull). A file that did
    change is still scanned, under the lock."""
    import asyncio

    from app.engine.config import Config
    from app.engine.node import Node, NodeOptions

    root = tmp_path / "A"
    root.mkdir()
    (root / "a.txt").write_bytes(b"as indexed")
    node = Node(NodeOptions(folder=root, config=Config(tmp_path / "cfg"), secret="k",
                            name="a"))

    async def main() -> list[str]:
        await node.scan_now()
        async with node.disk_lock:  # a pull publishing files
            result = await asyncio.wait_for(node.scan_now({"a.txt"}), 5)
            assert result.changed_count == 0
            (root / "a.txt").write_bytes(b"edited by the user")
            waiting = asyncio.create_task(node.scan_now({"a.txt"}))
            await asyncio.sleep(0.3)
            assert not waiting.done()
        return [e.path for e in (await waiting).changed]

    try:
        assert asyncio.run(main()) == ["a.txt"]
    finally:
        node.puller.close()
        node.index.close()


def test_a_change_reported_while_the_watcher_starts_does_not_silence_it(
        tmp_path: Path, monkeypatch) -> None:
    """The watcher wakes the node once per burst: when its paths are taken, the next
    burst wakes it again. A wake-up that came while the watcher was starting (in a
    thread: the node did not hold it yet) was dropped, nothing took the paths, and so
    no change woke the node again: every edit waited for the periodic full rescan."""
    import asyncio

    from app.engine import watcher as watcher_module
    from app.engine.config import Config
    from app.engine.node import FULL_RESCAN_EVERY, Node, NodeOptions

    root = tmp_path / "A"
    root.mkdir()

    class EarlyWatcher(FolderWatcher):
        """A change made, and its wake-up given, before `start` returns."""

        def __init__(self, folder: Path, wake) -> None:
            self.woken = threading.Event()

            def noted() -> None:
                wake()
                self.woken.set()
            super().__init__(folder, noted)

        def start(self) -> None:
            super().start()
            (root / "early").write_bytes(b"x")
            assert self.woken.wait(5)

    monkeypatch.setattr(watcher_module, "FolderWatcher", EarlyWatcher)  # the node's import

    async def main() -> float | None:
        node = Node(NodeOptions(folder=root, config=Config(tmp_path / "cfg"), secret="k",
                                name="a", watch=True))
        await node.start()
        try:
            await asyncio.sleep(0.3)
            (root / "late").write_bytes(b"y")
            started = time.monotonic()
            while time.monotonic() - started < FULL_RESCAN_EVERY / 4:
                if node.index.get("late") is not None:
                    return time.monotonic() - started
                await asyncio.sleep(0.1)
            return None
        finally:
            await node.stop()

    assert asyncio.run(main()) is not None


def test_watchdog_s_error_line_of_a_read_during_stop_is_not_shown(caplog) -> None:
    import logging

    import app.engine.watcher  # noqa: F401 - the filter comes with it

    caplog.set_level("ERROR")
    inotify_log = logging.getLogger("watchdog.observers.inotify")
    inotify_log.error("InotifyEmitter.queue_events() called when the thread is inactive")
    inotify_log.error("something else")
    assert [r.getMessage() for r in caplog.records] == ["something else"]


def test_a_file_written_in_place_and_kept_open_is_reported(tmp_path: Path) -> None:
    """A database, a log a program appends to: written, never closed. Seen only at the
    periodic full rescan (a minute) when the watcher waited for a close; and so was a
    file cut by truncate(2) on its path, which is a write with no open at all."""
    kept = tmp_path / "app.db"
    kept.write_bytes(b"x" * 4096)
    cut = tmp_path / "cut.log"
    cut.write_bytes(b"y" * 4096)
    reports = Reports()
    watcher = reports.watcher = FolderWatcher(tmp_path, reports)
    watcher.start()
    fd = os.open(kept, os.O_WRONLY)
    try:
        time.sleep(0.3)  # the watches are set
        os.pwrite(fd, b"a page written in place", 1024)
        wait_until(lambda: "app.db" in reports.paths, 5, 0.02, f"reported: {reports.paths}")
        os.truncate(cut, 100)
        wait_until(lambda: "cut.log" in reports.paths, 5, 0.02, f"reported: {reports.paths}")
    finally:
        os.close(fd)
        watcher.stop()


def test_a_long_write_costs_an_event_now_and_then_not_one_per_write(tmp_path: Path) -> None:
    """The reader waits a moment after reading a write, and the kernel merges the same
    file's next writes into that one event meanwhile: 2,000 write() calls read one by
    one cost the reader (watchdog's Python, on a core the writer or a pull wants) an
    event each."""
    reports = Reports()
    watcher = reports.watcher = FolderWatcher(tmp_path, reports)
    read: list[bytes] = []
    taken = watcher.handler.take

    def every_take(path, may_be_unnamed):  # type: ignore[no-untyped-def]
        read.append(path)
        taken(path, may_be_unnamed)

    watcher.handler.take = every_take  # type: ignore[method-assign]
    watcher.start()
    try:
        time.sleep(0.3)
        with open(tmp_path / "copy.bin", "wb", buffering=0) as out:
            read.clear()  # (its creation)
            for _ in range(2000):
                out.write(b"z" * 4096)
                time.sleep(0)  # let the reader run as a busy machine would
            wait_until(lambda: "copy.bin" in reports.paths, 5, 0.02)
        time.sleep(0.3)
        writes = [p for p in read if p.endswith(b"copy.bin")]
        assert 1 <= len(writes) < 200, len(writes)  # the close is one of them
    finally:
        watcher.stop()


def test_a_watcher_gives_back_its_inotify_instance_and_thread(tmp_path: Path) -> None:
    """Each watcher reads an inotify instance of its own (see _CoalescingInotify): a
    window that switches folders, or a node started again, must not leak one each time
    (the kernel allows 128 a user by default)."""
    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("needs /proc")
    before_fds, before_threads = _inotify_fds(), threading.active_count()
    for _ in range(5):
        watcher = FolderWatcher(tmp_path, lambda: None)
        watcher.start()
        (tmp_path / "f").write_bytes(b"x")
        watcher.stop()
    never_started = FolderWatcher(tmp_path, lambda: None)
    never_started.stop()
    wait_until(lambda: _inotify_fds() == before_fds, 5, 0.05, f"inotify fds: {_inotify_fds()}")
    wait_until(lambda: threading.active_count() == before_threads, 5, 0.05)


def test_a_watcher_that_cannot_start_is_given_back_by_the_node(tmp_path: Path,
                                                             monkeypatch) -> None:
    """Its inotify reader runs from the moment it is made: a start that fails (here the
    folder is gone when the watch is set, as inotify itself reports it) must not leave
    the reader's thread and descriptor behind."""
    import asyncio

    from app.engine import watcher as watcher_module
    from app.engine.config import Config
    from app.engine.node import Node, NodeOptions

    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("needs /proc")
    root = tmp_path / "A"
    root.mkdir()

    class Vanishing(FolderWatcher):
        def start(self) -> None:
            root.rename(tmp_path / "moved away")
            try:
                super().start()
            finally:
                (tmp_path / "moved away").rename(root)

    monkeypatch.setattr(watcher_module, "FolderWatcher", Vanishing)  # the node's import
    before_fds, before_threads = _inotify_fds(), threading.active_count()

    async def main() -> None:
        node = Node(NodeOptions(folder=root, config=Config(tmp_path / "cfg"), secret="k",
                                name="a", watch=True))
        try:
            with pytest.raises(OSError):
                await node.start()
        finally:
            await node.stop()

    asyncio.run(main())
    assert _inotify_fds() == before_fds
    wait_until(lambda: threading.active_count() == before_threads, 5, 0.05)


def _inotify_fds() -> int:
    found = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(FileNotFoundError):  # (the listing's own)
            found += os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:inotify"
    return found


def test_a_stopping_node_stops_its_watcher_off_the_loop(tmp_path: Path, monkeypatch) -> None:
    """Taking 10,000 directories' watches away held a node's loop 122 ms as it stopped
    (and a join waits up to 2 s): the peers' goodbyes and the rest of the stop wait."""
    import asyncio

    from app.engine.config import Config
    from app.engine.node import Node, NodeOptions

    stopped_in: list[str] = []
    real = FolderWatcher.stop

    def stop(self) -> None:
        stopped_in.append(threading.current_thread().name)
        real(self)

    monkeypatch.setattr(FolderWatcher, "stop", stop)
    root = tmp_path / "A"
    root.mkdir()

    async def main() -> None:
        node = Node(NodeOptions(folder=root, config=Config(tmp_path / "cfg"), secret="k",
                                name="a", watch=True))
        await node.start()
        await node.stop()

    asyncio.run(main())
    assert len(stopped_in) == 1 and stopped_in[0] != threading.main_thread().name
