"""Real p2psync processes for integration tests: `run` nodes and one-shot `sync`s.

Every node gets its own folder and config dir (so several devices share one machine),
listens on 127.0.0.1 with a free port, and is always stopped by the fixture that made it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SECRET = "TESTS-HARE7-KEY4X-NQ2ZW"  # a generated-style key: no weak-key warning in logs


def p2psync_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "app", *args]


def env() -> dict:
    e = dict(os.environ)
    e["PYTHONPATH"] = str(REPO) + os.pathsep + e.get("PYTHONPATH", "")
    e.pop("P2PSYNC_SECRET", None)
    e.setdefault("P2PSYNC_DISCOVERY_TARGETS", "127.255.255.255")  # never the real LAN
    return e


@dataclass
class RunNode:
    folder: Path
    config: Path
    proc: subprocess.Popen
    port: int = 0
    lines: list[str] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def log(self) -> str:
        return "\n".join(self.lines)

    def wait_for_log(self, pattern: str, timeout: float = 10.0) -> re.Match:
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                m = rx.search(line)
                if m:
                    return m
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        raise AssertionError(f"no log line matching {pattern!r}; log:\n{self.log()}")

    def wait_listening(self, timeout: float = 10.0) -> None:
        self.port = int(self.wait_for_log(r"listening on [\d.]+:(\d+)", timeout).group(1))

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


def start_run(folder: Path, config: Path, *extra: str, secret: str = SECRET,
              port: int = 0, discovery: bool = False, listen_wait: float = 10.0) -> RunNode:
    """A `run` node; it listens once its first scan is done (`listen_wait` s at most:
    a folder of many files needs more on a busy machine)."""
    node = spawn_run(folder, config, *extra, secret=secret, port=port, discovery=discovery)
    node.wait_listening(listen_wait)
    return node


def spawn_run(folder: Path, config: Path, *extra: str, secret: str = SECRET,
              port: int = 0, discovery: bool = False) -> RunNode:
    """A `run` node just started: not listening yet."""
    folder.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        p2psync_cmd("run", "--folder", str(folder), "--config-dir", str(config),
                    "--listen", f"127.0.0.1:{port}", "--secret", secret,
                    *(() if discovery else ("--no-discovery",)), *extra),
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env())
    node = RunNode(folder, config, proc)
    threading.Thread(target=_pump, args=(proc, node.lines), daemon=True).start()
    return node


def _pump(proc: subprocess.Popen, lines: list[str]) -> None:
    for line in proc.stderr:
        lines.append(line.rstrip("\n"))


# The latest `sync` runs (folder, exit code, log), for a failing test's report: a
# flaky failure on a CI machine is understood from these or not at all.
SYNCS: list[tuple[str, int, str]] = []
SYNCS_KEPT = 6


def sync(folder: Path, config: Path, *peers: str, secret: str = SECRET,
         timeout: float = 60, extra: tuple[str, ...] = (),
         discovery: bool = False) -> subprocess.CompletedProcess:
    args = ["sync", "--folder", str(folder), "--config-dir", str(config),
            *(() if discovery else ("--no-discovery",)),
            "--secret", secret, "--timeout", str(timeout), *extra]
    for p in peers:
        args += ["--peer", p]
    folder.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(p2psync_cmd(*args), capture_output=True, text=True, env=env(),
                       timeout=timeout + 30)
    SYNCS.append((str(folder), r.returncode, r.stderr))
    del SYNCS[:-SYNCS_KEPT]
    return r


def tree(folder: Path) -> dict[str, bytes | str]:
    """Relative path -> content (files), "<dir>" (dirs), "-> target" (links); no .p2psync.

    An entry gone between the listing and its read is left out: polled while a sync
    runs, the walk meets temp files that are renamed into place a moment later (such a
    tree is then short of the file, so it equals no finished one).
    """
    out: dict[str, bytes | str] = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        rel_dir = os.path.relpath(dirpath, folder)
        if rel_dir == ".":
            dirnames[:] = [d for d in dirnames if d != ".p2psync"]
        for name, is_dir in [(d, True) for d in dirnames] + [(f, False) for f in filenames]:
            p = os.path.join(dirpath, name)
            try:
                out[os.path.normpath(os.path.join(rel_dir, name))] = (
                    f"-> {os.readlink(p)}" if os.path.islink(p)
                    else "<dir>" if is_dir else Path(p).read_bytes())
            except FileNotFoundError:
                continue
    return out


def wait_until(cond, timeout: float = 15.0, interval: float = 0.05, msg: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(interval)
    raise AssertionError(msg or "condition not met in time")


def live_node(node: RunNode) -> dict | None:
    """What `p2psync status --json` says of the node running for node's folder."""
    r = subprocess.run(p2psync_cmd("status", "--folder", str(node.folder), "--config-dir",
                                   str(node.config), "--json"),
                       capture_output=True, text=True, env=env(), timeout=20)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)["node"]


def status_json(folder: Path, config: Path) -> dict:
    """What `p2psync status --folder FOLDER --config-dir CONFIG --json` prints."""
    r = subprocess.run(p2psync_cmd("status", "--folder", str(folder), "--config-dir",
                                   str(config), "--json"),
                       capture_output=True, text=True, env=env(), timeout=30)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


@contextlib.contextmanager
def tmpfs(mnt: Path, size: str, inodes: int | None = None):
    """A tmpfs of `size` (e.g. "20m") mounted at mnt, unmounted after; skips the test
    where mounting is refused (not root, no mount). `inodes`: at most so many files
    and directories (the root among them)."""
    import pytest

    mnt.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (f",nr_inodes={inodes}" if inodes else "")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mnt)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(disk: Path) -> Path:
    """Every byte left on the disk taken by one file outside the folder."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * 65536)
    except OSError:
        pass
    finally:
        os.close(fd)
    return filler
