"""The file names one device can hold: found by probing its folder, told to its peers.

Two Linux devices can share `README.md` beside `Readme.md`, `aux.txt`, `a:b` or
`trailing.`; a Windows device cannot create any of them, and a macOS or Windows
device holds `README.md` and `Readme.md` as one file. Without rules of its own a
receiving device would fail on such a name again and again, or worse, write one
file over its case twin. So each device knows its rules (`NameRules`), refuses what
it cannot hold with a sentence a user understands (`NameRules.refuses`), and sees
which names are one name here (`NameRules.key`).

The rules come from the folder's own file system, not from the OS alone: an NTFS
disk mounted with `windows_names` on Linux refuses what Windows refuses, and a FAT
stick ignores case anywhere. `probe` creates and removes a few test names inside
`.p2psync/` once at start; the OS defaults stand where it cannot look.

Names travel NFC on the wire and are indexed NFC (a macOS disk stores NFD);
`NameRules.form` says which form this file system hands back in a listing.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import sys
import unicodedata
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from app.core import platform
from app.core.model import Kind
from app.core.modes import dir_mode, file_mode
from app.core.paths import MAX_NAME_BYTES, MAX_PATH_BYTES, META_DIR
from app.core.planner import DELETE, FETCH

WINDOWS_CHARS = '<>:"\\|?*'  # plus the controls 0-31, and "/" which no system allows
WINDOWS_RESERVED = frozenset(
    ["CON", "PRN", "AUX", "NUL"] + [f"COM{i}" for i in range(1, 10)]
    + [f"LPT{i}" for i in range(1, 10)])
MAX_WIRE_CHARS = 64  # what a peer may put in `refused_chars`: more is not a rule set


@dataclass(frozen=True)
class NameRules:
    """What names a folder's file system holds; the defaults are Linux's (ext4)."""

    case_sensitive: bool = True
    refused_chars: str = ""  # besides "/" and NUL, which no file system takes
    refuse_controls: bool = False  # characters 0-31
    refuse_reserved: bool = False  # CON, PRN, AUX, NUL, COM1-9, LPT1-9, any extension
    refuse_trailing: bool = False  # a name that ends in "." or " "
    form: str = ""  # "NFD": the file system lists names decomposed (HFS+); "": as written
    max_name_bytes: int = MAX_NAME_BYTES  # UTF-8 bytes of one name
    max_path_bytes: int = MAX_PATH_BYTES  # UTF-8 bytes of a relative path
    keeps_modes: bool = True  # False: permission bits are a fixed show (FAT, NTFS on Linux)
    # how fine the disk keeps a modification time (NTFS: 100 ns); this device's own
    # business, not told to peers
    mtime_step_ns: int = field(default=1, compare=False)
    probed: bool = field(default=False, compare=False)  # found on the disk, not assumed

    def refuses(self, rel: str) -> str | None:
        """Why this device cannot create rel (a sentence), or None when it can."""
        if not self.strict:
            return None  # paths.validate checked Linux's limits already
        if len(rel.encode("utf-8")) > self.max_path_bytes:
            return f"path too long for this device ({self.max_path_bytes} bytes at most)"
        for name in rel.split("/"):
            why = self._refuses_name(name)
            if why is not None:
                return why
        return None

    def _refuses_name(self, name: str) -> str | None:
        for ch in name:
            if ch in self.refused_chars:
                return f"{ch!r} is not allowed in names on this device"
            if self.refuse_controls and ord(ch) < 32:
                return f"control character {ord(ch)} is not allowed in names on this device"
        if self.refuse_trailing and name[-1:] in (".", " "):
            end = "a dot" if name.endswith(".") else "a space"
            return f"names ending in {end} are not allowed on this device"
        if self.refuse_reserved and _reserved(name):
            return f"{name.partition('.')[0]!r} is a reserved name on this device"
        if len(name.encode("utf-8")) > self.max_name_bytes:
            return f"name too long for this device ({self.max_name_bytes} bytes at most)"
        return None

    @property
    def strict(self) -> bool:
        """Whether any name `paths.validate` takes can still be refused here."""
        return bool(self.refused_chars or self.refuse_controls or self.refuse_reserved
                    or self.refuse_trailing or self.max_name_bytes < MAX_NAME_BYTES
                    or self.max_path_bytes < MAX_PATH_BYTES)

    def same_time(self, a_ns: int, b_ns: int) -> bool:
        """Whether two modification times are one as far as this disk can keep them."""
        return abs(a_ns - b_ns) < self.mtime_step_ns

    def key(self, rel: str) -> str:
        """What rel is to this file system: two paths with one key are one file here."""
        rel = unicodedata.normalize("NFC", rel)
        return rel if self.case_sensitive else rel.casefold()

    def describe(self) -> str:
        """One line for the log: what differs from Linux's rules."""
        said = ["case-insensitive" if not self.case_sensitive else "case-sensitive"]
        if self.refused_chars or self.refuse_reserved:
            said.append("Windows names only")
        if self.form:
            said.append(f"names stored {self.form}")
        if not self.keeps_modes:
            said.append("no permission bits (the executable bit is kept in the index)")
        return ", ".join(said)

    def to_wire(self) -> dict:
        """The map a device tells its peers (in its hello's extra keys)."""
        return {"case": self.case_sensitive, "chars": self.refused_chars,
                "controls": self.refuse_controls, "reserved": self.refuse_reserved,
                "trailing": self.refuse_trailing, "form": self.form,
                "name_max": self.max_name_bytes, "path_max": self.max_path_bytes,
                "modes": self.keeps_modes}


LINUX = NameRules()
WINDOWS = NameRules(case_sensitive=False, refused_chars=WINDOWS_CHARS, refuse_controls=True,
                    refuse_reserved=True, refuse_trailing=True, keeps_modes=False,
                    mtime_step_ns=100)
MACOS = NameRules(case_sensitive=False)


def os_default(platform: str = sys.platform) -> NameRules:
    """The rules a folder on this OS most likely has, when it cannot be probed."""
    if platform == "win32":
        return WINDOWS
    if platform == "darwin":
        return MACOS
    return LINUX


def from_wire(raw: object) -> NameRules:
    """A peer's rules from its hello; a peer that says nothing (older) has Linux rules.

    What does not look like rules is taken as no rules at all (Linux's): the peer's
    rules only ever explain what it could not take, they never change what we do.
    """
    if not isinstance(raw, dict):
        return LINUX
    try:
        rules = NameRules(
            case_sensitive=_typed(raw, "case", bool, True),
            refused_chars=_typed(raw, "chars", str, ""),
            refuse_controls=_typed(raw, "controls", bool, False),
            refuse_reserved=_typed(raw, "reserved", bool, False),
            refuse_trailing=_typed(raw, "trailing", bool, False),
            form=_typed(raw, "form", str, ""),
            max_name_bytes=_typed(raw, "name_max", int, MAX_NAME_BYTES),
            max_path_bytes=_typed(raw, "path_max", int, MAX_PATH_BYTES),
            keeps_modes=_typed(raw, "modes", bool, True))
    except TypeError:
        return LINUX
    if (len(rules.refused_chars) > MAX_WIRE_CHARS or rules.form not in ("", "NFD")
            or not 1 <= rules.max_name_bytes <= 1 << 16
            or not 1 <= rules.max_path_bytes <= 1 << 20):
        return LINUX
    return rules


def _typed(raw: dict, key: str, kind: type, default):
    value = raw.get(key, default)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise TypeError(key)
    return value


def _reserved(name: str) -> bool:
    """CON, aux.txt, Com1.tar.gz...: Windows keeps these device names, extension or not."""
    stem = name.partition(".")[0].rstrip(" ")
    return stem.upper() in WINDOWS_RESERVED


def probe(root: Path, fallback: NameRules | None = None) -> NameRules:
    """The rules of the file system under root, found by trying names in `.p2psync/`.

    Only where `.p2psync/` is a real directory already (never made here: a missing
    one means a folder that may be unmounted, see app/core/marker.py); elsewhere,
    and for whatever a try cannot tell, the OS defaults. Every test name is removed.
    """
    base = fallback or os_default()
    where = Path(root) / META_DIR
    if not where.is_dir() or where.is_symlink():
        return base
    tag = f"names-{uuid.uuid4().hex[:12]}"
    made: list[Path] = []
    try:
        case_sensitive = _probe_case(where, tag, made)
        keeps_modes = _probe_modes(made[0])
        mtime_step = _probe_mtime_step(made[0])
        # on Windows itself "a:b" would make an alternate data stream, not fail
        windows = sys.platform == "win32" or _refused(where, f"{tag}-a:b", made)
        form = _probe_form(where, tag, made)
        device = os.stat(where).st_dev
    except OSError:
        return base
    finally:
        for p in made:
            with contextlib.suppress(OSError):
                os.unlink(p)
    if not keeps_modes:
        _MODELESS.add(device)
    return replace(WINDOWS if windows else LINUX, case_sensitive=case_sensitive, form=form,
                   max_name_bytes=_name_max(where), keeps_modes=keeps_modes,
                   mtime_step_ns=mtime_step, probed=True)


# st_dev of the file systems a probe found without permission bits: what the module
# helpers that see only a stat (the puller's bookkeeping) ask, through modes_kept.
_MODELESS: set[int] = set()


def modes_kept(st: os.stat_result) -> bool:
    """Whether st's permission bits mean anything (False on a disk that shows 0777)."""
    return st.st_dev not in _MODELESS


def _probe_mtime_step(path: Path) -> int:
    """How fine a modification time is kept: 1 ns (ext4), 100 ns (NTFS), 2 s (FAT)..."""
    wanted = 1_700_000_001_123_456_789  # odd in every digit: any rounding shows
    os.utime(path, ns=(wanted, wanted))
    kept = os.lstat(path).st_mtime_ns
    step = 1
    while abs(kept - wanted) >= step and step < 10**10:
        step *= 10
    return step


def _probe_modes(path: Path) -> bool:
    """Whether a chmod shows: NTFS under ntfs-3g and FAT show one fixed mode instead."""
    os.chmod(path, 0o640)
    return os.lstat(path).st_mode & 0o777 == 0o640


def _create(path: Path, made: list[Path]) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0),
                 0o600)
    os.close(fd)
    made.append(path)


def _probe_case(where: Path, tag: str, made: list[Path]) -> bool:
    """Whether `A` and `a` are two names here."""
    _create(where / f"{tag}-A", made)
    return not os.path.lexists(where / f"{tag}-a")


def _refused(where: Path, name: str, made: list[Path]) -> bool:
    """Whether the file system refuses to create this name (EINVAL and the like)."""
    try:
        _create(where / name, made)
    except OSError as e:
        if e.errno in (errno.EINVAL, errno.EILSEQ, errno.ENOENT, errno.EACCES, errno.EPERM):
            return True
        raise
    return False


def _probe_form(where: Path, tag: str, made: list[Path]) -> str:
    """"NFD" when a name written composed is listed decomposed (HFS+), else ""."""
    name = f"{tag}-\u00e9"  # é, composed
    _create(where / name, made)
    listed = [n for n in os.listdir(where) if n.startswith(tag)]
    return "NFD" if unicodedata.normalize("NFD", name) in listed and name not in listed else ""


def _name_max(where: Path) -> int:
    return min(MAX_NAME_BYTES, platform.name_max(where) or MAX_NAME_BYTES)


class Spelling:
    """How a scan names what it lists, so that one file keeps one path in the index.

    A case-insensitive file system may list a name in another case than the one the
    index holds (an NTFS disk under lowntfs-3g lists every name in lower case; a
    user renames `Readme` to `README`): the index's spelling stays, or the file
    would look deleted and new, and the deletion would reach the peers. A name
    listed decomposed (NFD, as macOS stores it, or as a Mac's files copied onto
    Linux keep it) is indexed composed (NFC, as names travel), unless the composed
    name is another file beside it (Linux keeps both); the disk's spelling is found
    again wherever the file is reached (app.core.paths.on_disk).

    The index is asked a directory listing at a time (`variants`: the indexed paths,
    live or not, that may be one name with the paths given, app.core.index's
    `case_variants`), never held whole: a scan of any folder holds one listing.
    """

    def __init__(self, rules: NameRules,
                 variants: Callable[[list[str]], Iterable[tuple[str, bool]]],
                 is_live: Callable[[str], bool] = lambda rel: False) -> None:
        self.rules = rules
        self.variants = variants  # paths -> (indexed path, deleted) that may match them
        self.is_live = is_live  # whether the index holds rel, alive

    def names(self, rel_dir: str, entries: list[os.DirEntry[str]]) -> list[str]:
        """The names to index for a directory's listed entries, in their order."""
        names = [self._composed(e) for e in entries]
        if self.rules.case_sensitive or not names:
            return names  # Linux: nothing to look up
        rels = [f"{rel_dir}/{n}" if rel_dir else n for n in names]
        spelled = self._spelled(rels)
        return [spelled.get(rel, rel).rpartition("/")[2] for rel in rels]

    def indexed(self, rel: str) -> str:
        """rel as the index spells it, prefix by prefix (a path a watcher or a peer gave)."""
        if rel.isascii() and self.rules.case_sensitive:
            return rel
        if not rel.isascii() and not self.is_live(rel):
            rel = unicodedata.normalize("NFC", rel)  # a watcher gives the disk's spelling
        if self.rules.case_sensitive:
            return rel
        out = ""
        for part in rel.split("/"):
            here = f"{out}/{part}" if out else part
            out = self._spelled([here]).get(here, here)
        return out

    def shown(self, st: os.stat_result, brief: tuple | None) -> os.stat_result:
        """st, with the permission bits the index holds where the disk shows a fixed mode.

        An NTFS or FAT disk shows every file as 0777: taken as it is, every file would
        turn executable here, and on every peer. There the bits are the index's (`brief`:
        what a peer sent, or this device's default for a new file), never the disk's.
        """
        if self.rules.keeps_modes:
            return st
        kind = Kind.DIR if stat.S_ISDIR(st.st_mode) else Kind.FILE
        if brief is not None and brief[1] == int(kind) and (
                kind == Kind.DIR or stat.S_ISREG(st.st_mode)):
            perm = brief[4]
        else:
            perm = dir_mode() if kind == Kind.DIR else file_mode(0)
        return _Shown(st, stat.S_IFMT(st.st_mode) | perm)  # type: ignore[return-value]

    def _composed(self, entry: os.DirEntry[str]) -> str:
        name = entry.name
        if not name.isascii():
            nfc = unicodedata.normalize("NFC", name)
            if nfc != name and _alone_or_same(entry, nfc):
                return nfc
        return name

    def _spelled(self, rels: list[str]) -> dict[str, str]:
        """rel -> the path the index holds under its key, in the same directory: rel
        itself when it is live there, else a live one, else a deleted one."""
        wanted = {self.rules.key(rel): rel for rel in rels}
        best: dict[str, tuple[int, str]] = {}  # key -> (rank, indexed path)
        for path, deleted in self.variants(case_forms(rels)):
            k = self.rules.key(path)
            rel = wanted.get(k)
            if rel is None or path.rpartition("/")[0] != rel.rpartition("/")[0]:
                continue
            rank = 2 if deleted else 0 if path == rel else 1
            if k not in best or (rank, path) < best[k]:
                best[k] = (rank, path)
        return {wanted[k]: path for k, (_, path) in best.items()}


class _Shown:
    """A stat result with other permission bits (see Spelling.shown)."""

    def __init__(self, st: os.stat_result, mode: int) -> None:
        self._st = st
        self.st_mode = mode

    def __getattr__(self, name: str):
        return getattr(self._st, name)


def _alone_or_same(entry: os.DirEntry[str], other: str) -> bool:
    """Whether `other`, in entry's directory, is nothing or the very file entry is."""
    try:
        st = os.lstat(os.path.join(os.path.dirname(entry.path), other))
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return st.st_ino == entry.inode()


def case_forms(paths: list[str]) -> list[str]:
    """paths, and the lower and upper case of those beyond ASCII: what to ask the index
    (`Index.case_variants` folds ASCII letters only) so that "Über" finds "über"."""
    extra = [f for p in paths if not p.isascii() for f in (p.lower(), p.upper())]
    return paths + extra if extra else paths


@dataclass
class Screened:
    """A plan, as this device can carry it out (see `screen`)."""

    actions: list  # what to do now (app.core.planner.Action)
    refused: dict[str, str] = field(default_factory=dict)  # path -> why it cannot be here
    twins: dict[str, str] = field(default_factory=dict)  # path -> the one holding its name
    later: int = 0  # actions left for the next round (a case twin of one made now)


def screen(rules: NameRules, actions: list, creates: Callable[[object], bool],
           held: Callable[[list[str]], Mapping[str, str]]) -> Screened:
    """Take from a plan what this device cannot hold, before anything is fetched.

    `creates(action)`: whether the action makes a path we do not hold. `held(paths)`:
    key -> the live local path with that key, for the keys of these paths (asked once,
    for what the plan creates and the folders above it, only where case matters: a
    plan's worth, never the whole folder). A path with a name refused here, or under
    a folder that is a case twin of one we hold, is refused: it stays an error here,
    untouched on the devices that hold it. A file whose name only differs in case
    from one we hold is a twin: the caller keeps its content under a conflict-copy
    name, never over the file in place. Of two twins that are both new, the first in
    path order is made now, the other next round.
    """
    out = Screened([])
    made = []
    for a in sorted(actions, key=lambda a: a.path):
        if not creates(a):
            out.actions.append(a)
            continue
        why = rules.refuses(a.path)
        if why is not None:
            out.refused[a.path] = why
        elif rules.case_sensitive:
            out.actions.append(a)
        else:
            made.append(a)
    if not made:
        return out
    by_key = held(sorted({p for a in made for p in _prefixes(a.path)}))
    claimed: dict[str, str] = {}  # key -> the path made under it this round
    going = {a.path for a in actions if a.op == DELETE}  # a name they free, once done
    for a in made:
        verdict = _case_verdict(rules, a.path, by_key, claimed, going)
        if verdict is None:
            out.actions.append(a)
        elif verdict == "later":
            out.later += 1
        elif verdict[0] == a.path and a.op == FETCH:
            out.twins[a.path] = verdict[1]
        else:
            out.refused[a.path] = (f"{verdict[0]!r} and {verdict[1]!r} are one name on this "
                                   "device (it ignores case)")
    return out


def _prefixes(rel: str) -> list[str]:
    """"a/b/c" -> ["a", "a/b", "a/b/c"]."""
    parts = rel.split("/")
    return ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]


def _case_verdict(rules: NameRules, rel: str, held: Mapping[str, str],
                  claimed: dict[str, str], going: set[str]) -> tuple[str, str] | str | None:
    """None: rel is free; "later": its name is made or freed this round; else (prefix,
    the path we hold under its name)."""
    for prefix in _prefixes(rel):
        k = rules.key(prefix)
        holder = held.get(k)
        if holder in going:  # renamed in case only, say: the old name goes first
            return "later"
        if holder is not None and holder != prefix:
            return prefix, holder
        if holder is None and claimed.setdefault(k, prefix) != prefix:
            return "later"
    return None
