"""Ordinary local users for permission tests: root ignores mode bits, they do not.

`LocalUsers` makes (once, `useradd -M -r`) two users: `me`, who runs p2psync, and
`other`, another user of the same machine (a squatter, a snoop). Their processes run
under setpriv with the system python3 and this checkout on PYTHONPATH, like
tests/integration/test_modes.py. `base` is a dir both may enter; `tmp` in it is a
sticky world-writable dir like /tmp that every process of the test gets as TMPDIR
(the shared temp dir, without touching the real /tmp's names). Callers skip where
this cannot be set up.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import site
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.procs import REPO, SECRET

PYTHON = "/usr/bin/python3"
ME, OTHER = "p2psync-test", "p2psync-test2"


class Unavailable(Exception):
    """No ordinary users here (not root, no setpriv, or the checkout is not readable)."""


def _user(name: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        r = subprocess.run(["useradd", "-M", "-r", "-s", "/usr/sbin/nologin", name],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise Unavailable(f"cannot add a user: {r.stderr.strip()}") from None
        return pwd.getpwnam(name)


@dataclass
class UserProc:
    """A long-running process of one user, its stderr lines collected as they come."""

    proc: subprocess.Popen
    lines: list[str] = field(default_factory=list)

    def log(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, pattern: str, timeout: float = 15.0) -> re.Match:
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if m := rx.search(line):
                    return m
            if self.proc.poll() is not None and not self._pumping.is_alive():
                break
            time.sleep(0.02)
        raise AssertionError(f"no line matching {pattern!r}:\n{self.log()}")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            return self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def start_pump(self) -> None:
        self._pumping = threading.Thread(target=self._pump, daemon=True)
        self._pumping.start()

    def _pump(self) -> None:
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))


class LocalUsers:
    def __init__(self) -> None:
        if os.geteuid() != 0 or shutil.which("setpriv") is None:
            raise Unavailable("needs root and setpriv")
        if sys.version_info[:2] != (3, 11):
            raise Unavailable("the system python3 must match this venv's (3.11)")
        self.me, self.other = _user(ME), _user(OTHER)
        self.base = Path(tempfile.mkdtemp(prefix="p2psync-local-", dir="/tmp"))
        os.chmod(self.base, 0o755)
        self.tmp = self.base / "tmp"
        self.tmp.mkdir()
        os.chmod(self.tmp, 0o1777)
        self.home = self.base / "home"  # `me`'s: folders and config dirs
        self.home.mkdir()
        self.chown(self.home, self.me)
        self._procs: list[UserProc] = []
        probe = self.run(self.me, PYTHON, "-c", "import app.cli.main, msgpack, blake3")
        if probe.returncode != 0:
            self.close()
            raise Unavailable(f"this checkout is not usable by an ordinary user: "
                              f"{probe.stderr[-200:]}")

    def close(self) -> None:
        for p in self._procs:
            p.stop()
        shutil.rmtree(self.base, ignore_errors=True)

    @staticmethod
    def chown(path: Path, user: pwd.struct_passwd) -> None:
        os.chown(path, user.pw_uid, user.pw_gid, follow_symlinks=False)

    def mkdir(self, path: Path, user: pwd.struct_passwd, mode: int = 0o700) -> Path:
        path.mkdir(parents=True, exist_ok=True)
        self.chown(path, user)
        os.chmod(path, mode)
        return path

    def cmd(self, user: pwd.struct_passwd, *argv: str, umask: int = 0o022,
            tmp: Path | None = None) -> list[str]:
        path = os.pathsep.join([str(REPO), *site.getsitepackages()])
        return ["setpriv", "--reuid", str(user.pw_uid), "--regid", str(user.pw_gid),
                "--clear-groups", "--", "env", "-u", "XDG_RUNTIME_DIR", "-u", "TMPDIR",
                "-u", "P2PSYNC_SECRET", f"PYTHONPATH={path}", f"HOME={self.home}",
                f"TMPDIR={tmp or self.tmp}", "P2PSYNC_DISCOVERY_TARGETS=127.255.255.255",
                "sh", "-c", f'umask {umask:03o} && exec "$@"', "sh", *argv]

    def run(self, user: pwd.struct_passwd, *argv: str, umask: int = 0o022,
            tmp: Path | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(self.cmd(user, *argv, umask=umask, tmp=tmp),
                              capture_output=True, text=True, timeout=timeout)

    def start(self, user: pwd.struct_passwd, *argv: str, umask: int = 0o022) -> UserProc:
        proc = subprocess.Popen(self.cmd(user, *argv, umask=umask), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        up = UserProc(proc)
        up.start_pump()
        self._procs.append(up)
        return up

    # --- p2psync as `me` -----------------------------------------------------------
    def p2psync(self, *args: str, umask: int = 0o022,
                tmp: Path | None = None) -> subprocess.CompletedProcess:
        return self.run(self.me, PYTHON, "-m", "app", *args, umask=umask, tmp=tmp)

    def start_run(self, folder: Path, config: Path, umask: int = 0o022) -> UserProc:
        return self.start(self.me, PYTHON, "-m", "app", "run", "--folder", str(folder),
                          "--config-dir", str(config), "--listen", "127.0.0.1:0",
                          "--no-discovery", "--secret", SECRET, umask=umask)

    def control_socket(self, folder: Path, config: Path) -> Path:
        """Where `me`'s node for `folder` puts its control socket (asked as `me`)."""
        code = ("import sys; from pathlib import Path; from app.engine.config import Config;"
                "print(Config(sys.argv[2]).folder_paths(Path(sys.argv[1])).control_socket)")
        r = self.run(self.me, PYTHON, "-c", code, str(folder), str(config))
        assert r.returncode == 0, r.stderr
        return Path(r.stdout.strip())
