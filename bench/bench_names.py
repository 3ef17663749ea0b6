"""What a device's file-name rules cost a scan: Linux's, and a case-insensitive disk's.

`app.core.scanner.scan` asks `app.core.namerules.Spelling` how to index each listed
name. With Linux's rules that costs nothing per entry; where case does not count
(Windows, macOS, an NTFS disk), the names of each listed directory are looked up in
the index by `lower(path)` (one query per 500 names, never a map of the whole index).
This script builds a folder of N small files in 100 directories, with mixed-case
names, and times a first scan and a rescan with no change, for Linux's rules, Windows'
rules, and Windows' rules with every name listed in lower case (what lowntfs-3g's
`ignore_case` shows: every name then takes the spelling the index holds). Runs alternate; it prints
the median and the range of each figure and asserts nothing (bench/README.md).

Usage:  PYTHONPATH=. python bench/bench_names.py [--files 20000] [--runs 3] [--dir D]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from app.core import scanner
from app.core.ignore import Ignore
from app.core.index import Index
from app.core.namerules import LINUX, WINDOWS, NameRules

DEVICE = "BENCHAA-BBBBBBB-CCCCCCC-DDDDDDD-EEEEEEE"


def _folder(root: Path, n: int, lower: bool) -> None:
    for i in range(n):
        name = f"Dir{i % 100:02}/File{i:06}.Txt"
        p = root / (name.lower() if lower else name)
        p.parent.mkdir(exist_ok=True)
        p.write_bytes(b"x")


def _one(base: Path, n: int, rules: NameRules, lower: bool) -> tuple[float, float]:
    """(first scan, rescan) seconds; with `lower`, the index holds the mixed-case names
    and the disk lists them in lower case (lowntfs-3g's view of what the puller wrote):
    the rescan timed is the steady one, after a scan took the renames' new ctimes."""
    work = Path(tempfile.mkdtemp(dir=base))
    try:
        root = work / "f"
        root.mkdir()
        _folder(root, n, lower=False)
        index = Index(work / "i.db", DEVICE)
        ignore = Ignore(root)
        started = time.perf_counter()
        scanner.scan(root, index, ignore, names=rules)
        first = time.perf_counter() - started
        if lower:  # the same files, listed in lower case: a scan must change nothing
            for d in os.listdir(root):
                for f in os.listdir(root / d):
                    os.rename(root / d / f, root / d / f.lower())
                os.rename(root / d, root / d.lower())
            if scanner.scan(root, index, ignore, names=rules).changed:  # new ctimes: hashed
                raise SystemExit("names listed in lower case changed the index")
        started = time.perf_counter()
        changed = scanner.scan(root, index, ignore, names=rules).changed
        again = time.perf_counter() - started
        if changed:
            raise SystemExit(f"a rescan changed {len(changed)} path(s): the bench is wrong")
        return first, again
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=20_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()))
    args = ap.parse_args()
    cases = {"linux": (LINUX, False), "windows": (WINDOWS, False),
             "windows_lowercase_listing": (WINDOWS, True)}
    figures: dict[str, list[tuple[float, float]]] = {name: [] for name in cases}
    for _ in range(args.runs):
        for name, (rules, lower) in cases.items():
            figures[name].append(_one(args.dir, args.files, rules, lower))
    for name, runs in figures.items():
        for k, label in ((0, "first_scan_s"), (1, "rescan_s")):
            values = [r[k] for r in runs]
            print(f"{name}.{label} {statistics.median(values):.3f}   "
                  f"(min {min(values):.3f}, max {max(values):.3f}, {args.files} files)")


if __name__ == "__main__":
    main()
