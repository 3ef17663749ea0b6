"""Random edit histories on two devices, synced in-process, against the folder contract.

Device A is a long-lived node listening on loopback (no watcher: it rescans right
before each sync; some histories restart it). Device B syncs the way `p2psync sync`
does: a fresh Node on the same folder and config dir for every sync (so its index
persists), one `sync_once` to A, then stop. Between syncs, random operations change
either folder: write, append, delete, rename/move a file, chmod +x/-x, set an mtime,
mkdir, remove or move a directory. A few fixed names make the devices collide often.

After every sync:
1. convergence: both folders hold the same tree (paths, contents, mtimes, modes;
   `.p2psync/` left out);
2. no content lost: every file content present in either folder when the sync
   started is still somewhere in A or B, under a name or in `.p2psync/versions/`;
3. no `.p2psync-*.tmp` temp file is left;
4. the tree is what the contract's rules give, path by path, from the last synced
   tree and the two folders before the sync: untouched on both sides -> unchanged
   (a deleted file does not come back); changed on one side -> that side's state;
   changed on both -> a change beats a deletion, otherwise the newer mtime wins (tie:
   the larger device ID), and the losing content is kept beside it as
   `NAME.sync-conflict-YYYYMMDD-HHMMSS-DEVICE.EXT` (losing mtime in UTC, its author);
   a directory stays while anything is left inside it.

Mtimes: phase p (the edits between two scans: a sync or a restart of A) sets mtimes in
[p/2 s, p/2 s + 3/8 s] after T0, so an edit never reuses an mtime the scanner already
indexed for that path (which would hide a same-size edit from any stat-based scanner;
see test_regressions.py), two devices' edits in one round can tie, and phases 2k and
2k+1 share a wall-clock second (as edits a moment apart do).
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import stat
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, currently_in_test_context, event, given, settings
from hypothesis import strategies as st

from app.engine.config import Config
from app.engine.node import Node, NodeOptions
from app.engine.oneshot import sync_once
from app.net import identity

BLOCK = 128 * 1024
SECRET = "PROPS-TESTS-SECRET-KEY1"
SYNC_TIMEOUT = float(os.environ.get("PROP_SYNC_TIMEOUT", "30"))
MAX_EXAMPLES = int(os.environ.get("PROP_EXAMPLES", "40"))
FILES = ["a.txt", "b.txt", "d/c.txt", "d/e/f.txt"]
DIRS = ["d", "d/e", "g", "g/h", "k"]  # never a file name, so no file/dir clashes
T0 = 1_600_000_000 * 10**9
ROUND_NS = 500_000_000
STEP_NS = 125_000_000
META = ".p2psync"

# --- operations ----------------------------------------------------------------------

devices = st.sampled_from("AB")
names = st.sampled_from(FILES)
# an existing file (or dir) of that device by number, conflict copies included, or a name
files = st.one_of(names, st.integers(0, 7))
dirs = st.one_of(st.sampled_from(DIRS), st.integers(0, 7))
mtimes = st.integers(0, 3)  # steps into the phase: ties across devices happen
sizes = st.one_of(
    st.integers(0, 40),
    st.integers(0, 40),
    st.integers(0, 40),
    st.sampled_from([BLOCK - 1, BLOCK, BLOCK + 7, 2 * BLOCK, 3 * BLOCK - 3]),
)
write = st.tuples(st.just("write"), devices, files, sizes, mtimes)
file_ops = [
    write,
    write,
    write,
    st.tuples(st.just("append"), devices, files, st.integers(1, 40), mtimes),
    st.tuples(st.just("delete"), devices, files),
    st.tuples(st.just("rename"), devices, files, st.sampled_from(FILES + ["g/m.txt"])),
    st.tuples(st.just("chmod"), devices, files, st.booleans()),
    st.tuples(st.just("utime"), devices, files, mtimes),
    st.tuples(st.just("mkdir"), devices, st.sampled_from(DIRS)),
    st.just(("restart", "A")),
]
# both devices change the same file before they sync: the conflict rules at work
both = st.tuples(st.just("both"), names, *[st.one_of(
        st.tuples(st.just("write"), sizes, mtimes),
        st.tuples(st.just("append"), st.integers(1, 40), mtimes),
        st.tuples(st.just("delete")),
        st.tuples(st.just("rename"), st.sampled_from(FILES + ["g/m.txt"])),
        st.tuples(st.just("chmod"), st.booleans()),
    st.tuples(st.just("utime"), mtimes),
)] * 2)
file_ops += [both] * 4
dir_ops = [
    st.tuples(st.just("rmdir"), devices, dirs),
    st.tuples(st.just("mvdir"), devices, dirs, st.sampled_from(DIRS)),
]
histories = st.lists(st.lists(st.one_of(file_ops), min_size=1, max_size=6), min_size=1,
                     max_size=6)
histories_with_dirs = st.lists(st.lists(st.one_of(file_ops + dir_ops), min_size=1, max_size=6),
                               min_size=1, max_size=6)


class Writer:
    """Carries out operations; every write's content is unique (a counter prefix).

    `log` lists what each operation did, by name ("B: rename a.txt -> d/c.txt").
    """

    def __init__(self, roots: dict[str, Path]) -> None:
        self.roots = roots
        self.n = 0
        self.phase = 0  # advances whenever a scan may have happened: syncs, restarts
        self.log: list[str] = []

    def mtime(self, step: int) -> int:
        return T0 + self.phase * ROUND_NS + step * STEP_NS

    def content(self, dev: str, size: int) -> bytes:
        self.n += 1
        if size == 0:
            return b""
        head = f"<{dev}{self.n}>".encode()
        return head + random.Random(self.n).randbytes(max(0, size - len(head)))

    def _pick(self, dev: str, which: str | int, want_dir: bool) -> str | None:
        tree = snapshot(self.roots[dev])
        if isinstance(which, str):
            return which if tree.get(which, ("",))[0] == ("dir" if want_dir else "file") \
                else None
        found = sorted(p for p, v in tree.items() if (v[0] == "dir") == want_dir)
        return found[which % len(found)] if found else None

    def apply(self, op: tuple) -> None:
        if op[0] == "both":
            _, name, on_a, on_b = op
            self.apply((on_a[0], "A", name, *on_a[1:]))
            self.apply((on_b[0], "B", name, *on_b[1:]))
            return
        kind, dev, *args = op
        root = self.roots[dev]
        done = self._apply(kind, dev, root, args)
        if done:
            self.log.append(f"{dev}: {kind} {done}")

    def _apply(self, kind: str, dev: str, root: Path, args: list) -> str | None:
        if kind == "write":
            which, size, step = args
            name = which if isinstance(which, str) else self._pick(dev, which, False)
            if name is None:
                return None
            p = root / name
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data := self.content(dev, size))
            _set_mtime(p, self.mtime(step))
            return f"{name} {_short(data)} mtime {_secs(self.mtime(step))}"
        if kind == "mkdir":
            (root / args[0]).mkdir(parents=True, exist_ok=True)
            return args[0]
        if kind == "restart":
            return "(A rescans)"
        name = self._pick(dev, args[0], kind in ("rmdir", "mvdir"))
        if name is None:
            return None
        p = root / name
        if kind == "append":
            with open(p, "ab") as f:
                f.write(data := self.content(dev, args[1]))
            _set_mtime(p, self.mtime(args[2]))
            return f"{name} {_short(data)} mtime {_secs(self.mtime(args[2]))}"
        if kind == "delete":
            os.unlink(p)
            return name
        if kind == "rename":
            if name == args[1]:
                return None
            (root / args[1]).parent.mkdir(parents=True, exist_ok=True)
            os.replace(p, root / args[1])  # keeps the mtime, like mv
            return f"{name} -> {args[1]}"
        if kind == "chmod":
            os.chmod(p, 0o755 if args[1] else 0o644)
            return f"{name} {'+x' if args[1] else '-x'}"
        if kind == "utime":
            _set_mtime(p, self.mtime(args[1]))
            return f"{name} {_secs(self.mtime(args[1]))}"
        if kind == "rmdir":
            shutil.rmtree(p)
            return name
        if kind == "mvdir":
            dst = root / args[1]
            if dst.exists() or args[1] == name or args[1].startswith(name + "/"):
                return None
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.rename(p, dst)
            return f"{name} -> {args[1]}"
        raise AssertionError(kind)  # pragma: no cover


def _set_mtime(p: Path, ns: int) -> None:
    os.utime(p, ns=(ns, ns))


# --- looking at a folder -------------------------------------------------------------

State = tuple  # ("file", content, mtime_ns, mode) | ("dir",) | ("link", target)


def snapshot(root: Path) -> dict[str, State]:
    """path -> state of everything in the folder but .p2psync/."""
    out: dict[str, State] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        if rel_dir == ".":
            dirnames[:] = [d for d in dirnames if d != META]
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            rel = os.path.normpath(os.path.join(rel_dir, name)).replace(os.sep, "/")
            st_ = os.lstat(full)
            if stat.S_ISLNK(st_.st_mode):
                out[rel] = ("link", os.readlink(full))
            elif stat.S_ISDIR(st_.st_mode):
                out[rel] = ("dir",)
            else:
                out[rel] = ("file", Path(full).read_bytes(), st_.st_mtime_ns,
                            st_.st_mode & 0o777)
    return out


def versions_contents(root: Path) -> set[bytes]:
    found: set[bytes] = set()
    for dirpath, _dirs, filenames in os.walk(root / META / "versions"):
        for name in filenames:
            found.add(Path(dirpath, name).read_bytes())
    return found


def contents(tree: dict[str, State]) -> set[bytes]:
    return {v[1] for v in tree.values() if v[0] == "file"}


def temps(tree: dict[str, State]) -> list[str]:
    return [p for p in tree
            if p.rpartition("/")[2].startswith(".p2psync-") and p.endswith(".tmp")]


def conflict_copy_name(rel: str, mtime_ns: int, device_id: str) -> str:
    """The contract's NAME.sync-conflict-YYYYMMDD-HHMMSS-DEVICE.EXT."""
    head, _, name = rel.rpartition("/")
    stem, ext = os.path.splitext(name)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(mtime_ns // 10**9))
    new = f"{stem}.sync-conflict-{stamp}-{device_id[:7]}{ext}"
    return f"{head}/{new}" if head else new


def expected_tree(synced: dict[str, State], a: dict[str, State], b: dict[str, State],
                  ids: dict[str, str], touched_a: set[str]
                  ) -> tuple[dict[str, State], dict[str, str]]:
    """The contract's outcome of one sync, and why each conflict copy is there.

    `touched_a`: paths a scan of A saw changed since the last sync (A restarted in
    between), even if A's folder holds the synced state again: A's index recorded a
    change (say chmod +x, rescan, chmod -x), which competes like any other.

    A copy is named after the losing version's mtime; when that name already holds
    other content on the losing device, the next free second is used (the engine's
    answer to two conflicts within one second).
    """
    tree: dict[str, State] = {}
    copies: dict[str, State] = {}
    why: dict[str, str] = {}
    for p in sorted(set(synced) | set(a) | set(b)):
        s, x, y = synced.get(p), a.get(p), b.get(p)
        if x == s and p not in touched_a:
            out = y
        elif y == s or x == y:
            out = x
        elif x is None or y is None:  # a change beats a deletion
            out = x or y
        else:
            assert x[0] == y[0] == "file", (p, x, y)  # these histories never mix kinds
            if (x[2], ids["A"]) > (y[2], ids["B"]):  # newer mtime, then larger device ID
                out, lose, lose_dev = x, y, "B"
            else:
                out, lose, lose_dev = y, x, "A"
            if lose[1] != out[1]:  # same content: no copy, only the winner's metadata
                on_disk = (a, b)[lose_dev == "B"]
                mtime = lose[2]
                while True:
                    copy = conflict_copy_name(p, mtime, ids[lose_dev])
                    if copy not in on_disk or on_disk[copy][1] == lose[1]:
                        break
                    mtime += 10**9  # that second is taken by other content
                why[copy] = f"{p}: {lose_dev}'s {_state(lose)} lost"
                copies[copy] = lose
        if out is not None:
            tree[p] = out
    for p in list(tree):  # a directory stays while anything is left inside it
        parts = p.split("/")
        for i in range(1, len(parts)):
            tree["/".join(parts[:i])] = ("dir",)
    tree.update(copies)
    return tree, why


# --- the test ------------------------------------------------------------------------

_IDENTITIES: list[Path] = []


def _identity_templates() -> list[Path]:
    """Two device identities made once, so device-ID order is the same on replays."""
    if not _IDENTITIES:
        base = Path(tempfile.mkdtemp(prefix="p2psync-ids-"))
        for name in ("one", "two"):
            identity.load_or_create(base / name)
            _IDENTITIES.append(base / name)
    return _IDENTITIES


def _config(template: Path, where: Path) -> Config:
    where.mkdir(mode=0o700)
    for f in (identity.KEY_FILE, identity.CERT_FILE):
        shutil.copy2(template / f, where / f)
    return Config(where)


def _node(name: str, root: Path, cfg: Config, listen: bool) -> Node:
    return Node(NodeOptions(folder=root, config=cfg, secret=SECRET, name=name,
                            listen=("127.0.0.1", 0) if listen else None, watch=False))


async def start_a(a: Node) -> None:
    """Start A and wait until its first scan is over.

    Node.start() may leave the first scan running in a worker thread; edits made
    meanwhile would race with it. scan_now() queues on the disk lock (FIFO) behind
    that scan; the second call also covers a first scan that had not begun yet.
    """
    await a.start()
    await a.scan_now()
    await a.scan_now()


async def run_history(base: Path, rounds: list[list[tuple]], swap: bool) -> None:
    """Carry out the rounds of operations, each followed by a sync of B with A, and check."""
    one, two = _identity_templates()
    cfg = {"A": _config(two if swap else one, base / "cfgA"),
           "B": _config(one if swap else two, base / "cfgB")}
    roots = {"A": base / "A", "B": base / "B"}
    for r in roots.values():
        r.mkdir()
    a = _node("A", roots["A"], cfg["A"], listen=True)
    await start_a(a)
    writer = Writer(roots)
    try:
        synced: dict[str, State] = {}
        touched_a: set[str] = set()  # what A's rescans (restarts) saw changed
        for number, ops_ in enumerate(rounds, 1):
            writer.phase += 1
            for op in ops_:
                if op[0] == "restart":  # A rescans now, in the middle of a round
                    await a.stop()
                    a = _node("A", roots["A"], cfg["A"], listen=True)
                    await start_a(a)
                    now = snapshot(roots["A"])
                    touched_a |= {p for p in set(now) | set(synced)
                                  if now.get(p) != synced.get(p)}
                    writer.phase += 1
                writer.apply(op)
            writer.log.append(f"-- sync {number}")
            before = {d: snapshot(roots[d]) for d in "AB"}
            b = _node("B", roots["B"], cfg["B"], listen=False)
            try:
                await b.start()
                await a.scan_now()
                agreed = await sync_once(b, [("127.0.0.1", a.listen_address[1])],
                                         timeout=SYNC_TIMEOUT)
            finally:
                await b.stop()
            assert agreed == [a.device_id]
            synced = check_sync(f"after sync {number}", synced, before, roots,
                                {"A": a.device_id, "B": b.device_id}, touched_a)
            touched_a = set()
    except Exception as e:
        e.add_note("operations (by name, as carried out):\n  " + "\n  ".join(writer.log))
        raise
    finally:
        await a.stop()


def check_sync(where: str, synced: dict[str, State], before: dict[str, dict[str, State]],
               roots: dict[str, Path], ids: dict[str, str],
               touched_a: set[str] = frozenset()) -> dict[str, State]:
    """The four properties after one sync; returns the tree both now hold.

    `touched_a`: the paths A's rescans since the last sync saw changed (expected_tree).
    """
    after_a, after_b = snapshot(roots["A"]), snapshot(roots["B"])
    # (3) no temp file left behind
    assert not temps(after_a) and not temps(after_b), (
        f"{where}: temp files left: A {temps(after_a)}, B {temps(after_b)}")
    # (1) convergence
    assert after_a == after_b, f"{where}: folders differ (A | B):\n" + _diff(after_a, after_b)
    # (2) no content lost
    kept = contents(after_a) | versions_contents(roots["A"]) | versions_contents(roots["B"])
    lost = (contents(before["A"]) | contents(before["B"])) - kept
    assert not lost, f"{where}: contents lost: {sorted(_short(c) for c in lost)}"
    # (4) the contract's outcome, path by path
    want, why = expected_tree(synced, before["A"], before["B"], ids, touched_a)
    back = [p for p in after_a if p not in want and p not in before["A"]
            and p not in before["B"]]
    assert not back, f"{where}: deleted on both sides (or never there), yet present: {back}"
    assert after_a == want, (
        f"{where}: the tree is not the contract's outcome (got | expected):\n"
        + _diff(after_a, want) + "\nconflicts: " + repr(why)
        + "\nbefore the sync (A | B):\n" + _diff(before["A"], before["B"], all_=True))
    if currently_in_test_context():  # also run by test_regressions.py
        both = [p for p in want if before["A"].get(p) != synced.get(p)
                and before["B"].get(p) != synced.get(p) and want[p][0] == "file"]
        event(f"paths changed on both sides in one sync: {min(len(both), 2)}")
        event(f"conflict copies made in one sync: {min(len(why), 2)}")
    return after_a


def _short(c: bytes) -> str:
    return repr(c[:12]) + (f"...({len(c)} bytes)" if len(c) > 12 else "")


def _secs(mtime_ns: int) -> str:
    return f"+{(mtime_ns - T0) / 1e9:g}s"


def _state(v: State | None) -> str:
    if v is None:
        return "absent"
    if v[0] == "file":
        return f"file {_short(v[1])} mtime {_secs(v[2])} mode {v[3]:o}"
    return v[0] if v[0] == "dir" else f"link -> {v[1]}"


def _diff(x: dict[str, State], y: dict[str, State], all_: bool = False) -> str:
    lines = []
    for p in sorted(set(x) | set(y)):
        if all_ or x.get(p) != y.get(p):
            lines.append(f"  {p}: {_state(x.get(p))} | {_state(y.get(p))}")
    return "\n".join(lines)


@settings(max_examples=MAX_EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@pytest.mark.slow
@given(rounds=histories, swap=st.booleans())
def test_random_histories_converge_without_loss(rounds, swap):
    base = Path(tempfile.mkdtemp(prefix="p2psync-prop-"))
    try:
        asyncio.run(run_history(base, rounds, swap))
    finally:
        shutil.rmtree(base, ignore_errors=True)


@settings(max_examples=MAX_EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@pytest.mark.slow
@given(rounds=histories_with_dirs, swap=st.booleans())
def test_random_histories_with_directory_removal(rounds, swap):
    base = Path(tempfile.mkdtemp(prefix="p2psync-prop-"))
    try:
        asyncio.run(run_history(base, rounds, swap))
    finally:
        shutil.rmtree(base, ignore_errors=True)
