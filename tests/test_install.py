"""`pip install .` gives the working app: the package with everything in resources/
(icons), PySide6 as a dependency below the release known to crash, and one clear line
when Qt cannot load."""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_the_wheel_carries_the_resources(tmp_path):
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w",
                        str(tmp_path), str(REPO)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    wheel = next(tmp_path.glob("p2psync-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {p.relative_to(REPO / "resources").as_posix()
               for p in (REPO / "resources").rglob("*") if p.suffix in (".svg", ".png")}
    assert shipped, "resources/ holds no icons?"
    missing = {f for f in shipped if f"app/assets/{f}" not in names}
    assert not missing, f"not in the wheel: {sorted(missing)}"
    assert "app/cli/main.py" in names and "app/gui/window.py" in names
    entry = zipfile.ZipFile(wheel).read(
        next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "p2psync = app.cli.main:main" in entry


# --- `pip install .` gives the working app -----------------------------------------------
QT_REQUIREMENT = "PySide6-Essentials>=6.6,<6.12"


def _app_env(tmp_path: Path) -> dict:
    e = dict(os.environ)
    e.pop("PYTHONPATH", None)  # the installed package, not this source tree
    e.pop("P2PSYNC_SECRET", None)
    e.update(QT_QPA_PLATFORM="offscreen", XDG_CONFIG_HOME=str(tmp_path / "xdg-config"),
             XDG_STATE_HOME=str(tmp_path / "xdg-state"), HOME=str(tmp_path / "home"),
             P2PSYNC_DISCOVERY_TARGETS="127.255.255.255")
    return e


def _start_app(p2psync: Path, tmp_path: Path, *extra: str, env: dict | None = None):
    folder = tmp_path / "Shared"
    folder.mkdir(exist_ok=True)
    return subprocess.Popen(
        [str(p2psync), "--folder", str(folder), "--config-dir", str(tmp_path / "cfg"),
         "--secret", "INSTA-LLTES-TKEY2-QWERT", "--listen", "127.0.0.1:0", "--no-discovery",
         "--name", "fresh", *extra],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
        env=env or _app_env(tmp_path), cwd=tmp_path)


@pytest.mark.slow
def test_pip_install_in_a_fresh_venv_runs_the_app_and_says_when_qt_is_missing(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-input"]
    r = subprocess.run([*pip, "-c", str(REPO / "constraints.txt"), str(REPO)],
                       capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    requires = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import importlib.metadata as m; "
         "print('\\n'.join(m.requires('p2psync')))"],
        capture_output=True, text=True, check=True, timeout=60, cwd=tmp_path).stdout
    qt = next(line for line in requires.splitlines() if line.startswith("PySide6-Essentials"))
    assert sorted(qt.removeprefix("PySide6-Essentials").split(",")) == ["<6.12", ">=6.6"]

    # `p2psync` with no command is the desktop app: it starts, syncs, and stops on SIGTERM
    app = _start_app(venv / "bin" / "p2psync", tmp_path)
    try:
        lines = []
        for line in app.stderr:
            lines.append(line)
            if "listening on 127.0.0.1:" in line:  # its engine runs
                break
        assert any("desktop app started" in x for x in lines), "".join(lines)
        assert "listening on 127.0.0.1:" in lines[-1], "".join(lines)
        app.send_signal(signal.SIGTERM)
        rest = app.stderr.read()
        assert app.wait(60) == 0, "".join(lines) + rest
        assert "Traceback" not in "".join(lines) + rest
    finally:
        if app.poll() is None:
            app.kill()

    # without Qt: one line that names it and how to install it, no traceback
    subprocess.run([*pip[:3], "uninstall", "-y", "-q", "PySide6-Essentials"], check=True,
                   capture_output=True, timeout=300)
    gone = _start_app(venv / "bin" / "p2psync", tmp_path)
    err = gone.stderr.read()
    assert gone.wait(60) == 1, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert f"the desktop app needs {QT_REQUIREMENT}, which is not installed here" in err
    assert f"pip install '{QT_REQUIREMENT}'" in err


def _library(name: str) -> Path | None:
    out = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True).stdout
    for line in out.splitlines():
        if line.strip().startswith(name + " ") and "=> " in line:
            return Path(line.rpartition("=> ")[2]).resolve()
    return None


@pytest.mark.parametrize("library, package, platform", [
    ("libEGL.so.1", "libegl1", "offscreen"),  # QtGui itself cannot load
    ("libxcb-cursor.so.0", "libxcb-cursor0", "xcb"),  # the window's platform plugin
])
def test_a_broken_system_library_is_named_with_its_package(tmp_path, library, package,
                                                            platform):
    """A library Qt needs made unreadable for this one process (a private mount namespace)."""
    path = _library(library)
    if os.geteuid() != 0 or shutil.which("unshare") is None or path is None:
        pytest.skip(f"needs root, unshare and {library}")
    env = _app_env(tmp_path)
    env.update(QT_QPA_PLATFORM=platform, DISPLAY=":4321", PYTHONPATH=str(REPO))
    script = (f"mount --bind /dev/null {shlex.quote(str(path))} && exec "
              f"{shlex.quote(sys.executable)} -m app --folder {tmp_path} --config-dir "
              f"{tmp_path / 'cfg'} --secret INSTA-LLTES-TKEY2-QWERT --no-discovery")
    r = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 1, r.stderr
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr
    assert library in r.stderr and f"sudo apt-get install {package}" in r.stderr, r.stderr
