"""Which paths of a folder are not synced: `.p2psyncignore` plus built-in rules.

The file uses gitignore syntax (pathspec.GitIgnoreSpec), relative to the folder root,
and follows git's rule that nothing below an ignored directory can be re-included
by a later "!" pattern: `matches` checks every ancestor directory first. Built-in
rules cannot be overridden: our own `.p2psync` folder and our temp files are always
ignored, and `.p2psyncignore` itself is always synced so peers share the rules.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path

from app.core.configdir import default_log_dir
from app.core.paths import META_DIR, TEMP_PREFIX, ancestors, is_temp_name

IGNORE_FILE = ".p2psyncignore"
_DIR_CACHE_MAX = 65536

log = logging.getLogger(__name__)


class Rules:
    """The patterns of one version of the ignore file, matched git's way."""

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines
        self._spec = _spec(lines) if lines else None  # pathspec only where there are patterns
        self._dir_cache: dict[str, bool] = {}

    def matches(self, rel: str, is_dir: bool = False) -> bool:
        """Whether a pattern ignores rel (or a directory above it)."""
        if self._spec is None or rel == IGNORE_FILE:
            return False
        cut = rel.rfind("/")
        if cut > 0 and self._dir_ignored(rel[:cut]):
            return True
        return self._spec.match_file(rel + "/" if is_dir else rel)

    def pattern_for(self, rel: str, is_dir: bool = False) -> str | None:
        """The pattern line that ignores rel: the one of its topmost ignored directory
        (nothing below that can be re-included), else the last one that matches it."""
        if not self.matches(rel, is_dir):
            return None
        for anc in ancestors(rel):
            if self._spec.match_file(anc + "/"):
                return self._deciding(anc + "/")
        return self._deciding(rel + "/" if is_dir else rel)

    def _deciding(self, rel: str) -> str | None:
        index = self._spec.check_file(rel).index
        return self.lines[index].strip() if index is not None else None

    def _dir_ignored(self, rel_dir: str) -> bool:
        """Whether a directory or any of its ancestors is ignored (memoised per scan)."""
        hit = self._dir_cache.get(rel_dir)
        if hit is not None:
            return hit
        head, _, _ = rel_dir.rpartition("/")
        result = (bool(head) and self._dir_ignored(head)) or self._spec.match_file(rel_dir + "/")
        if len(self._dir_cache) >= _DIR_CACHE_MAX:
            self._dir_cache.clear()
        self._dir_cache[rel_dir] = result
        return result


class Ignore:
    """The ignore rules of one folder, reloaded cheaply when the file changes.

    `previous` keeps the rules the last change replaced, so the engine can tell how
    many more files a new version of the file ignores (and say so: a `*` pushed by a
    peer must not stop all syncing silently).
    """

    def __init__(self, root: Path, own: Iterable[tuple[Path, str]] = ()) -> None:
        """`own`: this device's own dirs, each with why it is not synced (`own_dirs`).
        Where one lies inside the folder (a shared home folder holds ~/.config) it is
        never synced, whatever the file says: the config dir holds the device's private
        key and the indexes. A peer's files at such a path are never taken either."""
        self.root = Path(root)
        inside = [(rel, why) for d, why in own if (rel := _private_rel(self.root, d))]
        self._own_lines = [_literal(rel) for rel, _ in inside]
        self._own = [(rel.casefold(), why) for rel, why in inside]  # matched in any case
        self._key: tuple[int, int] | None = None
        self.rules = Rules([])
        self.previous: Rules | None = None  # the rules before the last change
        self._load()

    @property
    def patterns(self) -> list[str]:
        """The pattern lines in force (blank lines, comments and bad lines dropped),
        this device's own dirs last (see __init__): the last pattern that matches
        decides."""
        return list(self.rules.lines)

    @property
    def file_patterns(self) -> list[str]:
        """The patterns of the ignore file alone."""
        return self.rules.lines[:len(self.rules.lines) - len(self._own_lines)]

    def reload_if_changed(self) -> bool:
        """Re-read the file if its (mtime_ns, size) changed; True if the rules changed.

        Cheap enough (one stat) to call before every scan or on every watcher event.
        """
        if self._file_key() == self._key:
            return False
        old = self.rules
        self._load()
        if self.rules.lines == old.lines:
            self.rules = old  # keeps its caches
            return False
        self.previous = old
        return True

    def matches(self, rel: str, is_dir: bool = False) -> bool:
        """True if `rel` (a "/"-separated relative path) is not to be synced."""
        if rel.startswith(META_DIR) and rel.partition("/")[0] == META_DIR:
            return True
        cut = rel.rfind("/")
        if rel.startswith(TEMP_PREFIX, cut + 1) and is_temp_name(rel[cut + 1 :]):
            return True
        if self._own and self._own_path(rel):  # a peer's *file* there too: the
            return True  # patterns above name a directory
        return self.rules.matches(rel, is_dir)

    def _own_path(self, rel: str) -> str | None:
        """Why rel is not synced, if it is one of this device's own dirs or below one.

        In any case: on a file system that ignores case (macOS, Windows), a peer's
        `.Config/P2PSYNC/key.pem` is this device's key."""
        folded = rel.casefold()
        for own, why in self._own:
            if folded == own or folded.startswith(own + "/"):
                return why
        return None

    def why(self, rel: str, is_dir: bool = False) -> str:
        """Why rel is not synced, in a user's words ("ignored by `build/` in ...")."""
        if rel.partition("/")[0] == META_DIR:
            return f"p2psync's own folder ({META_DIR}) is never synced"
        if (why := self._own_path(rel)) is not None:
            return why
        if is_temp_name(rel.rpartition("/")[2]):
            return "a temporary file of a transfer"
        pattern = self.rules.pattern_for(rel, is_dir)
        if pattern is None:
            return f"ignored (by a pattern since removed from {IGNORE_FILE})"
        return f"ignored by `{pattern}` in {IGNORE_FILE}"

    # --- internals

    def _file_key(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.root / IGNORE_FILE)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def _load(self) -> None:
        self._key = self._file_key()
        lines: list[str] = []
        if self._key is not None:
            try:
                raw = (self.root / IGNORE_FILE).read_bytes()
            except OSError as exc:
                log.warning("cannot read %s: %s", IGNORE_FILE, exc)
                raw = b""
            lines = _usable_lines(raw.decode("utf-8", errors="replace").splitlines())
        self.rules = Rules(lines + self._own_lines)  # last: the last match decides


CONFIG_WHY = "this device's config dir (its key and indexes) is never synced"
LOG_WHY = "the app's log on this device is never synced"


def own_dirs(config_dir: Path) -> list[tuple[Path, str]]:
    """This device's p2psync dirs that a shared folder may hold (a home folder): the
    config dir, and the app's log dir (a log changes all the time: each version would
    be synced, and kept for 30 days on every peer)."""
    return [(Path(config_dir), CONFIG_WHY), (default_log_dir(), LOG_WHY)]


def _private_rel(root: Path, private: Path) -> str | None:
    """private's path relative to root ("/"-separated), when it lies inside root."""
    try:
        rel = os.path.relpath(os.path.realpath(private), os.path.realpath(root))
    except ValueError:  # another drive (Windows)
        return None
    if rel == "." or rel == ".." or rel.startswith(".." + os.sep) or os.path.isabs(rel):
        return None  # the folder itself (refused by the node) or outside it
    return rel.replace(os.sep, "/")


def _literal(rel_dir: str) -> str:
    """A gitignore pattern matching exactly the directory rel_dir of the root."""
    escaped = "".join("\\" + c if c in "\\[]*?!#" else c for c in rel_dir)
    if escaped.endswith(" "):
        escaped = escaped[:-1] + "\\ "
    return f"/{escaped}/"


def count_ignored(rules: Rules | None, paths: list[str]) -> int:
    """How many of paths (files) those rules ignore."""
    if rules is None or not rules.lines:
        return 0
    return sum(1 for p in paths if rules.matches(p))


def _spec(lines: list[str]):
    import pathspec

    return pathspec.GitIgnoreSpec.from_lines(lines)


def _usable_lines(lines: list[str]) -> list[str]:
    """Drop blanks, comments and lines pathspec refuses (with a warning), keep order."""
    out = []
    for line in lines:
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        try:
            _spec([line])
        except ValueError as exc:
            log.warning("%s: ignoring bad pattern %r (%s)", IGNORE_FILE, line, exc)
            continue
        out.append(line)
    return out
