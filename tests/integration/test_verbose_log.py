"""-v shows p2psync's own debug lines; the libraries' per-event ones wait for -vv."""

from __future__ import annotations

from tests.procs import start_run


def _log_of_a_watched_write(tmp_path, *verbosity: str) -> str:
    node = start_run(tmp_path / "A", tmp_path / "cfg", *verbosity)
    try:
        node.wait_for_log(r"watching .* for changes")  # the watches are set
        (tmp_path / "A" / "new.txt").write_text("hello")
        # a move: the events watchdog pairs (and logs); the others skip its queues
        (tmp_path / "A" / "new.txt").rename(tmp_path / "A" / "moved.txt")
        node.wait_for_log(r"scan: \d+ local change")
    finally:
        assert node.stop() == 0, node.log()
    return node.log()


def test_v_logs_the_engine_not_a_line_per_inotify_event(tmp_path):
    log = _log_of_a_watched_write(tmp_path, "-v")
    assert " DEBUG: " in log  # p2psync's own debug lines
    assert "watchdog" not in log and "filelock" not in log, log


def test_vv_logs_the_libraries_too(tmp_path):
    log = _log_of_a_watched_write(tmp_path, "-vv")
    assert "watchdog" in log
