#!/usr/bin/env python3
"""Adversarial data-safety fuzz of two or three live p2psync devices on loopback.

All folders are edited at once while the nodes sync; once the edits stop, all must
converge with no content lost (live, a conflict copy or in `.p2psync/versions`), no
temp file left and no error logged. With two watching nodes it found a chmod undone
with both sides "synced" (app/core/planner.py `_rank`) and a watcher silenced at start
(Node._start_watcher); with a third device (`--nodes 3`, `--c-sync`) a temp file left
in a renamed directory (Node._saw_temps), a directory replaced by a file that held a
new file (Puller._kept_dir), a file "still being written" for ever (Node.scan_now) and
a move whose old directory had gone blocked instead of rescanned (Puller._rename_many);
with a full disk under a node's index (`--full`) a COMMIT that left a device number
behind (Index._tx), a failed scan that ended the scans for good (Node._scan_loop), and
the tracebacks and waits of a `run` or `sync` on it; a file moved during a `sync`
refused until it timed out (OpenFiles._file).

usage: .venv/bin/python scripts/fuzz_live.py RUNDIR --seed S [--ops N] [--pace MS]
           [--mix mixed|file|dir|clash|meta|hammer]
           [--scenario plain|kill|stop|killa|stopa] [--big P] [--nodes 2|3 [--c-sync]]
           [--full MIB [--full-on A|B]] [--bulk N]

(kill / stop: B is killed with SIGKILL / stopped mid-edits and started again; killa /
stopa: the same for A, on its port. --nodes 3: a third node C dials A as B does, and
edits too; --c-sync: C runs `p2psync sync` after `sync` instead, as a script would.
--full: B's folder and config dir (A's with --full-on A) on a tmpfs of MIB, grown when
the edits stop: its files, versions and index meet a full disk, then must catch up;
left mounted at RUNDIR/bfs for a look, unmounted by the next run in RUNDIR.
--bulk N: A starts with N more files (bulk/dNNN/fNN, 50 a directory), and the others
start only once A's edits did, and edit once connected: their first sync, a new
device's (the small files come with A's index pages), runs while every folder is
edited, bulk/ too.)
Writes RUNDIR/{a,b,ac,bc}, RUNDIR/{A,B}.log (and c, cc, C.log; the nodes' stderr),
RUNDIR/ops.jsonl (every operation on each side, with the hashes it
wrote / destroyed), RUNDIR/result.json; prints the problems found (exit 1 if any).
2026-12-02: 85 runs found the first two, then 60 runs over every mix and scenario found
nothing; 138 runs of three devices found the other four; 24 + 30 + 20 + 15 runs with
`--full` found the rest (a run takes 10-90 s; run one at a time on a small machine).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
SECRET = "3R6ALT-EYZ92C-H6XRR6-8FE6XN-QW7PLM"
META = ".p2psync"

FILES_FILE = ["a.txt", "b.txt", "c", "d/x.txt", "d/y.txt", "d/e/z.txt", "g/h.txt",
              "k/a.txt", "d/e/w.bin", "m/n/o.txt"]
DIRS_FILE = ["d", "d/e", "g", "k", "m", "m/n", "q"]
CLASH_EXTRA = ["g", "d/e", "k/a.txt/p"]  # names that are sometimes files, sometimes dirs


def h(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def snapshot(root: Path, with_meta=False):
    """rel -> (kind, hash, size, xbit, mtime_ns)  (.p2psync/ left out unless with_meta)."""
    out = {}
    for dp, dns, fns in os.walk(root):
        rd = os.path.relpath(dp, root)
        rd = "" if rd == "." else rd
        if not with_meta and rd == "" and META in dns:
            dns.remove(META)
        for d in dns:
            rel = os.path.join(rd, d)
            p = os.path.join(dp, d)
            try:
                st = os.lstat(p)
            except OSError:
                continue
            if os.path.islink(p):
                out[rel] = ("link", os.readlink(p), 0, 0, 0)
            else:
                out[rel] = ("dir", None, 0, 0, 0)
        for f in fns:
            rel = os.path.join(rd, f)
            p = os.path.join(dp, f)
            try:
                st = os.lstat(p)
                if os.path.islink(p):
                    out[rel] = ("link", os.readlink(p), 0, 0, 0)
                    continue
                with open(p, "rb") as fh:
                    data = fh.read()
            except OSError:
                continue
            out[rel] = ("file", h(data), len(data), st.st_mode & 0o100, st.st_mtime_ns)
    return out


class Node:
    def __init__(self, run: Path, side: str, port_of_a: int | None, listen="127.0.0.1:0",
                 home: Path | None = None):
        self.run, self.side = run, side
        self.folder = (home or run) / side.lower()
        self.cfg = (home or run) / (side.lower() + "c")
        self.log = run / f"{side}.log"
        self.port_of_a = port_of_a
        self.listen = listen
        self.proc = None
        self.starts = 0

    def start(self):
        args = [PY, "-m", "app", "run", "--folder", str(self.folder), "--config-dir",
                str(self.cfg), "--listen", self.listen, "--no-discovery", "--secret",
                SECRET, "--name", self.side, "-v"]
        if self.port_of_a:
            args += ["--peer", f"127.0.0.1:{self.port_of_a}"]
        env = dict(os.environ, PYTHONPATH=str(REPO))
        with open(self.log, "ab") as fh:
            fh.write(f"=== fuzz: start #{self.starts} at {time.time():.3f}\n".encode())
            fh.flush()
            self.starts += 1
            self.proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=fh, stderr=fh)

    def sync(self, timeout=30):
        """One `p2psync sync` of this folder against A (for a node that runs none)."""
        args = [PY, "-m", "app", "sync", "--folder", str(self.folder), "--config-dir",
                str(self.cfg), "--no-discovery", "--secret", SECRET, "--name", self.side,
                "--peer", f"127.0.0.1:{self.port_of_a}", "--timeout", str(timeout), "-v"]
        env = dict(os.environ, PYTHONPATH=str(REPO))
        with open(self.log, "ab") as fh:
            fh.write(f"=== fuzz: sync #{self.starts} at {time.time():.3f}\n".encode())
            fh.flush()
            self.starts += 1
            rc = subprocess.run(args, cwd=REPO, env=env, stdout=fh, stderr=fh,
                                timeout=timeout + 60).returncode
            fh.write(f"=== fuzz: sync exited {rc}\n".encode())
        return rc

    def text(self):
        return self.log.read_text(errors="replace")

    def wait_for(self, pattern, timeout=30, after=0):
        t = time.time() + timeout
        while time.time() < t:
            m = re.search(pattern, self.text()[after:])
            if m:
                return m
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.side} exited {self.proc.returncode}")
            time.sleep(0.1)
        raise RuntimeError(f"{self.side}: timeout waiting for {pattern!r}")

    def stop(self, sig=signal.SIGTERM, timeout=30):
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return "hung(killed)"


class Side:
    """One user editing one folder, recording what it wrote and what it destroyed."""

    def __init__(self, name, root: Path, rng: random.Random, mix: str, big: float, oplog):
        self.name, self.root, self.rng, self.mix, self.big = name, root, rng, mix, big
        self.n = 0
        self.written = {}  # hash -> dict(size, path, t, op)
        self.destroyed = set()  # hashes this side's user overwrote/deleted (observed)
        self.oplog = oplog
        self.lock = threading.Lock()
        self.errors = 0

    # --- helpers
    def p(self, rel):
        return self.root / rel

    def live_files(self):
        out = []
        for dp, dns, fns in os.walk(self.root):
            if Path(dp) == self.root and META in dns:
                dns.remove(META)
            for f in fns:
                rel = os.path.relpath(os.path.join(dp, f), self.root)
                if not re.search(r"\.p2psync-[0-9a-f]{16}\.tmp$", f):
                    out.append(rel)
        return out

    def live_dirs(self):
        out = []
        for dp, dns, _fns in os.walk(self.root):
            if Path(dp) == self.root and META in dns:
                dns.remove(META)
            for d in dns:
                rel = os.path.relpath(os.path.join(dp, d), self.root)
                # keep/ stays, bulk/ too (its directories go and move): a whole
                # folder gone from A is a mass deletion the others rightly hold back
                if rel not in ("keep", "bulk") and not rel.startswith("keep/"):
                    out.append(rel)
        return out

    def content(self):
        self.n += 1
        r = self.rng.random()
        if r < self.big:
            size = self.rng.choice([128 * 1024 - 1, 128 * 1024 + 7, 300_000])
        elif r < self.big + 0.05:
            size = 0
        else:
            size = self.rng.randint(1, 60)
        head = f"{self.name}{self.n}:".encode()
        body = self.rng.randbytes(max(0, size - len(head)))
        return (head + body)[:size] if size else b""

    def destroy_file(self, path: Path):
        try:
            with open(path, "rb") as fh:
                self.destroyed.add(h(fh.read()))
        except OSError:
            pass

    def destroy_tree(self, path: Path):
        if path.is_file() or path.is_symlink():
            self.destroy_file(path)
            return
        for dp, _dns, fns in os.walk(path):
            for f in fns:
                self.destroy_file(Path(dp) / f)

    def record(self, data: bytes, rel, op):
        if data:
            self.written.setdefault(h(data), dict(size=len(data), path=rel, t=time.time(), op=op))

    def pick_file(self, exists_bias=0.6):
        if self.mix == "hammer":
            exists_bias = 0.15
        live = self.live_files()
        if live and self.rng.random() < exists_bias:
            return self.rng.choice(live)
        names = FILES_FILE + (CLASH_EXTRA if self.mix == "clash" else [])
        if self.mix == "hammer":
            names = ["a.txt", "b.txt"]
        return self.rng.choice(names)

    def pick_dir(self):
        live = self.live_dirs()
        if live and self.rng.random() < 0.7:
            return self.rng.choice(live)
        names = DIRS_FILE + (CLASH_EXTRA if self.mix == "clash" else [])
        return self.rng.choice(names)

    # --- operations
    def op_write(self):
        rel = self.pick_file()
        data = self.content()
        p = self.p(rel)
        p.parent.mkdir(parents=True, exist_ok=True)
        if p.is_dir():
            return ("write-skip-dir", rel)
        self.destroy_file(p)
        with open(p, "wb") as fh:
            fh.write(data)
        self.record(data, rel, "write")
        return ("write", rel, h(data)[:12], len(data))

    def edit_in_place(self, op: str, edit):
        """An existing file changed by edit(path); what it held counts as destroyed."""
        rel = self.pick_file(0.9)
        p = self.p(rel)
        if not p.is_file():
            return (f"{op}-skip", rel)
        self.destroy_file(p)
        edit(p)
        data = p.read_bytes()
        self.record(data, rel, op)
        return (op, rel, h(data)[:12], len(data))

    def op_append(self):
        def append(p: Path):
            add = f"+{self.name}{self.n}".encode()
            self.n += 1
            with open(p, "ab") as fh:
                fh.write(add)
        return self.edit_in_place("append", append)

    def op_truncate(self):
        def truncate(p: Path):
            size = p.stat().st_size
            new = self.rng.randint(0, max(0, size - 1)) if size else 0
            self.rng.random()  # (kept: the same random stream as before)
            # no truncate(2) by path: it waits for the ~60 s full rescan (known, accepted)
            with open(p, "r+b") as fh:
                fh.truncate(new)
        return self.edit_in_place("truncate", truncate)

    def op_delete(self):
        rel = self.pick_file(0.95)
        p = self.p(rel)
        if not p.is_file():
            return ("delete-skip", rel)
        self.destroy_file(p)
        p.unlink()
        return ("delete", rel)

    def op_rename(self):
        src = self.pick_file(1.0)
        dst = self.pick_file(0.3)
        if self.rng.random() < 0.3:
            dst = self.rng.choice(DIRS_FILE) + "/" + os.path.basename(src)
        ps, pd = self.p(src), self.p(dst)
        if not ps.is_file() or src == dst or pd.is_dir():
            return ("rename-skip", src, dst)
        pd.parent.mkdir(parents=True, exist_ok=True)
        if pd.exists():
            self.destroy_file(pd)
        os.rename(ps, pd)
        return ("rename", src, dst)

    def op_mkdir(self):
        rel = self.pick_dir()
        if self.rng.random() < 0.5:
            rel = rel + "/" + self.rng.choice(["s", "t", "u"])
        self.p(rel).mkdir(parents=True, exist_ok=True)
        return ("mkdir", rel)

    def op_rename_dir(self):
        src = self.pick_dir()
        ps = self.p(src)
        if not ps.is_dir():
            return ("rendir-skip", src)
        if self.rng.random() < 0.5:  # sibling rename
            dst = os.path.join(os.path.dirname(src), self.rng.choice(["r1", "r2", "d", "g", "k"]))
        else:  # move into another dir
            dst = os.path.join(self.pick_dir(), os.path.basename(src))
        pd = self.p(dst)
        if dst == src or dst.startswith(src + "/"):
            return ("rendir-skip", src, dst)
        try:
            pd.parent.mkdir(parents=True, exist_ok=True)
            if pd.exists():
                if pd.is_dir() and not any(pd.iterdir()):
                    pass  # rename over an empty dir works
                else:
                    return ("rendir-skip-exists", src, dst)
            os.rename(ps, pd)
        except OSError as e:
            return ("rendir-fail", src, dst, str(e))
        return ("rendir", src, dst)

    def op_rmtree(self):
        rel = self.pick_dir()
        p = self.p(rel)
        if not p.is_dir():
            return ("rmtree-skip", rel)
        self.destroy_tree(p)
        shutil.rmtree(p, ignore_errors=True)
        return ("rmtree", rel)

    def op_chmod(self):
        rel = self.pick_file(1.0)
        p = self.p(rel)
        if not p.is_file():
            return ("chmod-skip", rel)
        m = p.stat().st_mode
        m = m ^ 0o111 if self.rng.random() < 0.5 else m | 0o111
        os.chmod(p, m)
        return ("chmod", rel, oct(m & 0o777))

    def op_mtime(self):
        rel = self.pick_file(1.0)
        p = self.p(rel)
        if not p.is_file():
            return ("mtime-skip", rel)
        t = time.time() + self.rng.uniform(-3 * 86400, 5)
        os.utime(p, (t, t))
        return ("mtime", rel, round(t, 3))

    def step(self):
        file_ops = [(self.op_write, 6), (self.op_append, 2), (self.op_truncate, 1),
                    (self.op_delete, 2), (self.op_rename, 2), (self.op_chmod, 1),
                    (self.op_mtime, 1)]
        dir_ops = [(self.op_mkdir, 2), (self.op_rename_dir, 2), (self.op_rmtree, 1)]
        if self.mix == "meta":
            ops = [(self.op_write, 3), (self.op_chmod, 4), (self.op_mtime, 2),
                   (self.op_rename, 1), (self.op_append, 1), (self.op_delete, 0.5)]
        elif self.mix == "hammer":
            ops = [(self.op_write, 8), (self.op_append, 3), (self.op_truncate, 1),
                   (self.op_delete, 1), (self.op_rename, 1), (self.op_mtime, 0.5)]
        elif self.mix == "file":
            ops = file_ops + [(f, w * 0.2) for f, w in dir_ops]
        elif self.mix == "dir":
            ops = file_ops + [(f, w * 3) for f, w in dir_ops]
        else:
            ops = file_ops + dir_ops
        fs, ws = zip(*ops, strict=True)
        f = self.rng.choices(fs, ws)[0]
        t = time.time()
        try:
            res = f()
        except OSError as e:  # races with the node (a dir vanished under us, ...)
            self.errors += 1
            res = (f.__name__, "oserror", str(e))
        self.oplog.write(json.dumps({"t": round(t, 4), "side": self.name, "op": res}) + "\n")
        self.oplog.flush()


def editor(side: Side, nops: int, pace: float, stop: threading.Event, pause: threading.Event):
    for _ in range(nops):
        if stop.is_set():
            break
        while pause.is_set():
            time.sleep(0.05)
        with side.lock:
            side.step()
        time.sleep(side.rng.uniform(0, pace))


def quiet(roots: list[Path], limit=60, still=5, late=None):
    """Wait until all folders are identical (no .p2psync/) and unchanged for `still` s."""
    t_start = time.time()
    t_end = time.time() + limit
    last, since = None, time.time()
    while time.time() < t_end:
        snaps = [snapshot(r) for r in roots]
        same = all(s == snaps[0] for s in snaps[1:])
        if late is not None and not late and time.time() - t_start > 15 and not same:
            late.extend(_differences(roots, snaps))
        if snaps != last:
            last, since = snaps, time.time()
        elif same and time.time() - since >= still:
            return True, snaps
        time.sleep(0.5)
    return False, last


def _differences(roots: list[Path], snaps: list[dict]) -> list[str]:
    keys = sorted(set().union(*snaps))
    return [f"{k}: " + " ".join(f"{r.name.upper()}={s.get(k)}"
                                for r, s in zip(roots, snaps, strict=True))
            for k in keys if len({repr(s.get(k)) for s in snaps}) > 1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("run")
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--ops", type=int, default=60)
    ap.add_argument("--pace", type=float, default=300)
    ap.add_argument("--mix", default="mixed")
    ap.add_argument("--scenario", default="plain")
    ap.add_argument("--big", type=float, default=0.03)
    ap.add_argument("--keep", type=int, default=24, help="untouched files in keep/")
    ap.add_argument("--bulk", type=int, default=0,
                    help="files in bulk/ on A, taken by the others' first sync while all edit")
    ap.add_argument("--quiet", type=float, default=80)
    ap.add_argument("--nodes", type=int, default=2, choices=(2, 3),
                    help="3: C dials A too, so B's edits reach C through A")
    ap.add_argument("--c-sync", action="store_true",
                    help="with --nodes 3: C runs no node but one `sync` after another "
                    "while it edits (a script's syncs), and syncs until all agree at the end")
    ap.add_argument("--full", type=float, default=0,
                    help="MiB: B's folder and config dir on a tmpfs this small, grown to "
                    "256 MiB once the edits stop (a disk that fills up, then is cleared)")
    ap.add_argument("--full-on", default="B", choices=("A", "B"),
                    help="with --full: whose disk it is (A: the node the others dial)")
    a = ap.parse_args()
    if a.full and a.full_on == "A" and a.bulk:
        ap.error("--bulk does not go with --full-on A: A's bulk files are written into "
                 "its small disk before it starts")
    run = Path(a.run)
    tight = run / "bfs"  # the full side's home with --full
    if os.path.ismount(tight):
        subprocess.run(["umount", str(tight)], check=True)
    if run.exists():
        shutil.rmtree(run)
    names = "ABC"[:a.nodes]
    homes = {n: run for n in names}
    if a.full:
        tight.mkdir(parents=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={int(a.full * 1024)}k",
                        "tmpfs", str(tight)], check=True)
        homes[a.full_on] = tight
    for n in names:
        (homes[n] / n.lower()).mkdir(parents=True)
        (homes[n] / (n.lower() + "c")).mkdir(parents=True)
    rng = random.Random(a.seed)
    # initial content on A (+ a keep/ dir nobody touches, to stay clear of the guard)
    oplog = open(run / "ops.jsonl", "w")  # noqa: SIM115 - the editors' threads write it to the end
    sides = [Side(n, homes[n] / n.lower(), random.Random(rng.random()), a.mix, a.big, oplog)
             for n in names]
    A = sides[0]
    roots = [s.root for s in sides]
    for i in range(a.keep):
        p = A.root / "keep" / f"k{i}.txt"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(f"keep{i}".encode())
    for rel in FILES_FILE[:6]:
        p = A.root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        data = A.content()
        p.write_bytes(data)
        A.record(data, rel, "init")
    for i in range(a.bulk):  # what the others' first sync takes while everyone edits
        p = A.root / "bulk" / f"d{i // 50:03d}" / f"f{i % 50:02d}"
        p.parent.mkdir(parents=True, exist_ok=True)
        data = A.content()
        p.write_bytes(data)
        A.record(data, str(p.relative_to(A.root)), "init")
    na = Node(run, "A", None, home=homes["A"])
    na.start()
    port = int(na.wait_for(r"listening on 127\.0\.0\.1:(\d+)", timeout=120).group(1))
    na.listen = f"127.0.0.1:{port}"  # a restarted A listens where the others look for it
    nodes = [na] + [Node(run, n, port, home=homes[n]) for n in names[1:]]
    oneshot = nodes.pop() if a.c_sync and a.nodes == 3 else None

    def start_the_others() -> None:
        for n in nodes[1:]:
            n.start()
        for n in nodes[1:]:
            na.wait_for(rf"connected to {n.side}")
            n.wait_for(r"connected to A")

    sync_rcs: list[int] = []
    ok = None
    if not a.bulk:
        start_the_others()
        if oneshot is not None:
            sync_rcs.append(oneshot.sync())
        ok, _ = quiet(roots, limit=30, still=2)
    res = {"args": vars(a), "initial_sync": ok, "events": []}
    stop, pause = threading.Event(), threading.Event()
    editors = [threading.Thread(target=editor, args=(s, a.ops, a.pace / 1000, stop, pause))
               for s in sides]
    t0 = time.time()
    for t in editors[:1] if a.bulk else editors:
        t.start()
    if a.bulk:  # a new device's first sync amid A's edits, then theirs (empty at the start:
        time.sleep(rng.uniform(0, 1.5))  # the small files come with A's index pages)
        start_the_others()
        res["events"].append(f"the others started at +{time.time()-t0:.2f}s")
        for t in editors[1:]:
            t.start()
    exits = []
    syncing = None
    if oneshot is not None:
        def sync_while_editing():
            while any(t.is_alive() for t in editors):
                sync_rcs.append(oneshot.sync())
                time.sleep(rng.uniform(0, 1))
        syncing = threading.Thread(target=sync_while_editing)
        syncing.start()
    if a.scenario in ("killa", "stopa"):  # the node the others dial is the one that goes away
        est = a.ops * a.pace / 2000
        time.sleep(rng.uniform(0.2, 0.6) * est)
        sig = signal.SIGKILL if a.scenario == "killa" else signal.SIGTERM
        rc = na.stop(sig)
        if sig == signal.SIGTERM:
            exits.append(("A", "SIGTERM", rc))
        res["events"].append(f"{sig.name} A at +{time.time()-t0:.2f}s rc={rc}")
        time.sleep(rng.uniform(0, 2) if a.scenario == "killa" else rng.uniform(2, 5))
        na.start()
        res["events"].append(f"restarted A at +{time.time()-t0:.2f}s")
    if a.scenario in ("kill", "stop"):
        nb = nodes[1]
        est = a.ops * a.pace / 2000
        time.sleep(rng.uniform(0.2, 0.6) * est)
        if a.scenario == "kill":
            rc = nb.stop(signal.SIGKILL)
            res["events"].append(f"SIGKILL B at +{time.time()-t0:.2f}s rc={rc}")
            time.sleep(rng.uniform(0, 2))
            nb.start()
        elif a.scenario == "stop":
            rc = nb.stop(signal.SIGTERM)
            exits.append(("B", "SIGTERM", rc))
            res["events"].append(f"SIGTERM B at +{time.time()-t0:.2f}s rc={rc}")
            time.sleep(rng.uniform(2, 5))
            nb.start()
        res["events"].append(f"restarted B at +{time.time()-t0:.2f}s")
    for t in editors:
        t.join()
    res["edit_secs"] = round(time.time() - t0, 2)
    if a.full:
        free = shutil.disk_usage(tight).free
        subprocess.run(["mount", "-o", "remount,size=256m", str(tight)], check=True)
        res["events"].append(f"{a.full_on}'s disk had {free} bytes free; grown to 256 MiB")
        nf = na if a.full_on == "A" else nodes[1]
        if nf.proc is not None and nf.proc.poll() is not None:  # a start on the full disk
            rc = nf.proc.returncode
            exits.append((a.full_on, "start on a full disk", rc))  # fails (exit 1)
            nf.start()
            res["events"].append(f"{a.full_on} had exited {rc}; started again")
    late: list[str] = []
    if syncing is not None:
        syncing.join()
        for _ in range(6):  # C hears of A's and B's last edits only when it syncs
            quiet(roots[:2], limit=a.quiet / 2, still=3)
            sync_rcs.append(oneshot.sync())
            ok, snaps = quiet(roots, limit=8, still=3)
            if ok:
                break
        res["sync_rcs"] = sync_rcs
    ok, snaps = quiet(roots, limit=a.quiet, late=late)
    if late:
        res["events"].append("LATE (still different 15 s after edits stopped): "
                             + "; ".join(late[:6]))
    res["converged"] = ok
    if ok and time.time() - t0 - res["edit_secs"] > 20:
        slow = time.time() - t0 - res["edit_secs"]
        res["events"].append(f"SLOW convergence: {slow:.1f}s after edits stopped")
    res["quiet_after"] = round(time.time() - t0 - res["edit_secs"], 2)
    # --- checks
    problems = []
    if not ok:
        problems += [f"NONCONV {d}" for d in _differences(roots, snaps)]
    sa = snaps[0]
    # mode / mtime differences where the contents are equal
    for sb, side in zip(snaps[1:], sides[1:], strict=True):
        for k in set(sa) & set(sb):
            if sa[k][:3] == sb[k][:3] and sa[k][3] != sb[k][3]:
                problems.append(f"XBIT {k}: A={sa[k][3]:o} {side.name}={sb[k][3]:o}")
            if sa[k][:4] == sb[k][:4] and sa[k][4] != sb[k][4]:
                problems.append(f"MTIME {k}: A={sa[k][4]} {side.name}={sb[k][4]}")
    # content presence
    present: dict[str, list[str]] = {}
    for side in sides:
        for rel, v in snapshot(side.root, with_meta=True).items():
            if v[0] == "file":
                present.setdefault(v[1], []).append(f"{side.name}:{rel}")
    for side in sides:
        for hs, info in side.written.items():
            if hs in side.destroyed:
                continue
            if hs not in present:
                problems.append(f"LOST written by {side.name}: {hs[:12]} {info}")
    # temp files
    for side in sides:
        for rel in snapshot(side.root):
            if "p2psync" in rel and (rel.endswith(".tmp") or "p2psync-" in os.path.basename(rel)):
                problems.append(f"TEMP {side.name}:{rel}")
    # stop nodes, exit codes
    for n in nodes:
        rc = n.stop(signal.SIGTERM)
        exits.append((n.side, "final SIGTERM", rc))
        if rc != 0:
            problems.append(f"EXIT {n.side} rc={rc}")
    for side, what, rc in exits:
        if what == "SIGTERM" and rc != 0:
            problems.append(f"EXIT {side} mid-run SIGTERM rc={rc}")
        if what == "start on a full disk" and rc != 1:
            problems.append(f"EXIT {side} start on a full disk rc={rc}")
    if oneshot is not None:
        if sync_rcs[-1] != 0:
            problems.append(f"EXIT C's last sync rc={sync_rcs[-1]}")
        nodes.append(oneshot)
    for n in nodes:
        txt = n.text()
        for line in txt.splitlines():
            if re.search(r"Traceback|ERROR|[Ee]xception|CRITICAL", line):
                problems.append(f"LOG {n.side}: {line[:300]}")
            if re.search(r"held back|mass.delet|--allow-mass-delete", line):
                res["events"].append(f"GUARD {n.side}: {line[:200]}")
    res["exits"] = exits
    res["problems"] = problems
    res["written"] = {s.name: len(s.written) for s in sides}
    res["destroyed"] = {s.name: len(s.destroyed) for s in sides}
    res["op_errors"] = {s.name: s.errors for s in sides}
    res["final_files"] = sum(1 for v in sa.values() if v[0] == "file")
    res["conflict_copies"] = sum(1 for k in sa if "sync-conflict" in k)
    (run / "result.json").write_text(json.dumps(res, indent=1))
    (run / "written.json").write_text(json.dumps(
        {**{s.name: s.written for s in sides},
         **{f"destroyed{s.name}": sorted(s.destroyed) for s in sides}}, indent=1))
    summary = {k: res[k] for k in ("converged", "edit_secs", "quiet_after", "written",
                                   "final_files", "conflict_copies", "exits", "events",
                                   "sync_rcs") if k in res}
    print(json.dumps(summary))
    print(f"{len(problems)} problem(s)")
    for p in problems[:40]:
        print("  ", p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
