"""A share key a person typed that is easy to guess: one warning line, from real processes."""

from __future__ import annotations

import re
import subprocess

from app.cli.main import build_parser
from app.gui.launch import launch_options
from tests.procs import env, p2psync_cmd, start_run

GENERATED = r"[A-HJ-NP-Z2-9]{6}(?:-[A-HJ-NP-Z2-9]{6}){3}"


def sync_cmd(tmp_path, *extra: str, environ: dict | None = None) -> subprocess.CompletedProcess:
    (tmp_path / "B").mkdir(exist_ok=True)
    return subprocess.run(
        p2psync_cmd("sync", "--folder", str(tmp_path / "B"), "--config-dir",
                    str(tmp_path / "cfg"), "--peer", "127.0.0.1:9", "--no-discovery", *extra),
        capture_output=True, text=True, env=environ or env(), timeout=60)


def warnings(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "easy to guess" in line]


def test_a_weak_secret_gets_one_warning_line_that_says_why_and_what_instead(tmp_path):
    r = sync_cmd(tmp_path, "--secret", "123456")
    assert r.returncode == 3, r.stderr  # the sync itself goes on as before
    [line] = warnings(r.stderr)
    assert line.startswith("p2psync: warning: this share key is easy to guess (it is one of "
                           "the most common passwords)")
    assert re.search(rf"--secret {GENERATED} ", line) and "p2psync invite" in line
    assert "Traceback" not in r.stderr


def test_a_weak_key_from_the_environment_is_warned_of_too(tmp_path):
    r = sync_cmd(tmp_path, environ={**env(), "P2PSYNC_SECRET": "482913"})
    assert [w for w in warnings(r.stderr) if "only 6 digits" in w], r.stderr


def test_a_strong_or_stored_key_gets_no_warning(tmp_path):
    r = sync_cmd(tmp_path, "--secret", "PQ7RT-9XKM2-BV4NW-HZ3LA")
    assert r.returncode == 3 and warnings(r.stderr) == [], r.stderr
    # a key stored for the folder was not typed this time: nothing to say
    sync_cmd(tmp_path, "--secret", "letmein")
    r = sync_cmd(tmp_path)
    assert r.returncode == 3 and warnings(r.stderr) == [], r.stderr


def test_run_warns_once_and_keeps_running(tmp_path):
    node = start_run(tmp_path / "A", tmp_path / "cfgA", secret="password1")
    try:
        assert node.proc.poll() is None
        assert len(warnings(node.log())) == 1, node.log()
    finally:
        assert node.stop() == 0


def test_the_app_launched_with_a_weak_secret_warns_on_stderr(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("P2PSYNC_SECRET", raising=False)
    args = build_parser().parse_args(["gui", "--config-dir", str(tmp_path / "cfg"),
                                      "--secret", "qwerty123"])
    opts = launch_options(args)
    assert opts.secret == "qwerty123"
    [line] = warnings(capsys.readouterr().err)
    assert "p2psync invite" in line
    args = build_parser().parse_args(["gui", "--config-dir", str(tmp_path / "cfg"),
                                      "--secret", "PQ7RT-9XKM2-BV4NW-HZ3LA"])
    launch_options(args)
    assert warnings(capsys.readouterr().err) == []
