"""`pip install .` gives the package with everything in resources/ (icons)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

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
