"""Relative paths inside a synced folder: what is allowed, and how to reach it safely.

Every path we store or act on, whether our scanner found it or a peer announced it,
goes through `validate` first. A peer is not trusted: a path like "../x", "/etc/x",
"a\\..\\b" or ".p2psync/..." must never reach the file system, and a directory that
was swapped for a symlink must never let a write land outside the folder
(`safe_join`). Paths always use "/" as the separator, on every platform.
"""

from __future__ import annotations

import os
import posixpath
import re
import stat
import unicodedata
from pathlib import Path

import blake3

META_DIR = ".p2psync"  # our own folder inside the synced folder (never synced)
MAX_PATH_BYTES = 4096
MAX_NAME_BYTES = 255
PATH_MAX = 4096  # the kernel's limit on an absolute path, its NUL included
SHORT_HASH_HEX = 8
SHORT_MIN_BYTES = 1 + SHORT_HASH_HEX  # what a shortened stem takes at the least: "~" + hash
TEMP_PREFIX = ".p2psync-"
TEMP_SUFFIX = ".tmp"
_TEMP_RE = re.compile(r"\.p2psync-[0-9a-f]{16}\.tmp")


class BadPath(ValueError):
    """A relative path we refuse to store or touch; the message says why."""


def validate(rel: str) -> str:
    """Return `rel` unchanged if it is a safe relative path, else raise BadPath.

    The rules keep a peer's path inside the folder on every platform we run on and
    keep it representable on the wire (UTF-8) and on common file systems.
    """
    if not isinstance(rel, str):
        raise BadPath(f"path is not a string: {type(rel).__name__}")
    if not rel:
        raise BadPath("empty path")
    try:
        encoded = rel.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise BadPath(f"path is not valid UTF-8: {rel!r}") from exc
    if rel.startswith("/"):
        raise BadPath(f"absolute path: {rel!r}")
    if "\\" in rel:
        raise BadPath(f"backslash in path: {rel!r}")
    if "\x00" in rel:
        raise BadPath(f"NUL in path: {rel!r}")
    if len(encoded) > MAX_PATH_BYTES:
        raise BadPath(f"path longer than {MAX_PATH_BYTES} bytes")
    segments = rel.split("/")
    for seg in segments:
        _check_segment(seg, rel)
    # casefold: on case-insensitive file systems ".P2PSYNC" is the same folder
    if segments[0].casefold() == META_DIR:
        raise BadPath(f"path inside {META_DIR}: {rel!r}")
    return rel


def validate_child(parent: str, name: str) -> str:
    """validate(parent + "/" + name) for an already validated parent, but cheaper.

    The scanner calls this once per directory entry, so it checks only what the new
    name adds; the result is the joined relative path.
    """
    if not parent:
        return validate(name)
    rel = f"{parent}/{name}"
    if name.isascii():
        size = len(rel)
        name_size = len(name)
    else:
        try:
            size = len(rel.encode("utf-8"))
            name_size = len(name.encode("utf-8"))
        except UnicodeEncodeError as exc:
            raise BadPath(f"path is not valid UTF-8: {rel!r}") from exc
    if "\\" in name or "\x00" in name or "/" in name or name in ("", ".", ".."):
        raise BadPath(f"bad name {name!r} in {parent!r}")
    if name_size > MAX_NAME_BYTES:
        raise BadPath(f"name longer than {MAX_NAME_BYTES} bytes in {rel!r}")
    if size > MAX_PATH_BYTES:
        raise BadPath(f"path longer than {MAX_PATH_BYTES} bytes")
    return rel


def _check_segment(seg: str, rel: str) -> None:
    if seg in ("", ".", ".."):
        raise BadPath(f"empty, '.' or '..' segment in {rel!r}")
    if len(seg.encode("utf-8")) > MAX_NAME_BYTES:
        raise BadPath(f"name longer than {MAX_NAME_BYTES} bytes in {rel!r}")


def ancestors(rel: str) -> list[str]:
    """The directories above a relative path, outermost first ("a/b/c" -> a, a/b)."""
    parts = rel.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


def utf8_prefix(text: str, max_bytes: int) -> str:
    """The longest prefix of text that takes at most max_bytes in UTF-8.

    Cut on a character boundary, so a shortened name is still valid UTF-8 (and so
    still a path `validate` accepts) however the multibyte characters fall.
    """
    raw = text.encode("utf-8")
    if len(raw) <= max_bytes:
        return text
    return raw[: max(0, max_bytes)].decode("utf-8", "ignore")


def shorten_stem(stem: str, max_bytes: int) -> str:
    """stem when it fits in max_bytes, else `PREFIX~HASH` (8 hex of a hash of all of it).

    Deterministic, so every device shortens a name the same way; the hash keeps
    names that share a long prefix apart. Never shorter than SHORT_MIN_BYTES: a
    caller with less room than that must choose another layout.
    """
    if len(stem.encode("utf-8")) <= max_bytes:
        return stem
    return f"{utf8_prefix(stem, max_bytes - SHORT_MIN_BYTES)}~{short_hash(stem)}"


def short_hash(text: str) -> str:
    """8 hex digits of a hash of text: what tells shortened names apart."""
    return blake3.blake3(text.encode("utf-8")).hexdigest()[:SHORT_HASH_HEX]


def safe_join(root: Path, rel: str) -> Path:
    """Validate `rel` and return root/rel, refusing parents that are not real directories.

    rel as the disk spells it (`on_disk`): a file stored NFD is reached by its NFC path.

    A parent directory that is a symlink (or a file) could redirect a write outside
    the folder, so every parent component that exists must be a real directory
    (checked with lstat). Missing parents are fine: the caller creates them. The last
    component is not checked: it may be a symlink or file that we are about to
    replace.
    """
    validate(rel)
    rel = on_disk(root, rel)
    parts = rel.split("/")
    cur = Path(root)
    for part in parts[:-1]:
        cur = cur / part
        try:
            st = os.lstat(cur)
        except FileNotFoundError:
            break  # nothing further down exists either
        if not stat.S_ISDIR(st.st_mode):
            kind = "a symlink" if stat.S_ISLNK(st.st_mode) else "not a directory"
            raise BadPath(f"parent {cur} of {rel!r} is {kind}")
    return Path(root) / rel


def on_disk(root: Path | str, rel: str) -> str:
    """rel as the disk spells it: where a name is stored in another Unicode form.

    Names are indexed and travel NFC; a file copied from a Mac onto Linux may be
    stored NFD, and Linux keeps the bytes as given, so the NFC path does not reach it.
    Each non-ASCII component that is not there as spelled is looked for in its other
    form (one lstat); from the first one found in neither form on, rel's own spelling
    (a new path, in the folders that are there).
    """
    if rel.isascii() or os.path.lexists(os.path.join(root, rel)):
        return rel
    parts = rel.split("/")
    for i, part in enumerate(parts):
        here = "/".join(parts[:i + 1])
        if part.isascii() or os.path.lexists(os.path.join(root, here)):
            continue
        for form in ("NFD", "NFC"):
            other = unicodedata.normalize(form, part)
            if other != part and os.path.lexists(os.path.join(root, *parts[:i], other)):
                parts[i] = other
                break
        else:
            break  # not on the disk in either form: the rest is new
    return "/".join(parts)


def link_escapes(rel: str, target: str) -> bool:
    """True if a symlink at `rel` pointing to `target` could lead outside the folder.

    Stricter than a plain normpath check: a ".." after a normal name (as in
    "sub/../x") is treated as escaping, because the kernel resolves "sub" first and
    "sub" may itself be a link (to ".", say) whose parent is outside the folder.
    Leading ".." segments may climb at most up to the folder root.
    """
    if not target or "\x00" in target or target.startswith("/") or "\\" in target:
        return True
    if os.path.isabs(target):
        return True
    depth = len(posixpath.dirname(rel).split("/")) if "/" in rel else 0
    ups = 0
    seen_name = False
    for seg in target.split("/"):
        if seg in ("", "."):
            continue
        if seg == "..":
            if seen_name:
                return True
            ups += 1
        else:
            seen_name = True
    return ups > depth


def is_temp_name(name: str) -> bool:
    """True for the names of our own temp files (".p2psync-<16 hex>.tmp")."""
    return name.startswith(TEMP_PREFIX) and _TEMP_RE.fullmatch(name) is not None


def temp_name_for(rel: str, content_hash: bytes) -> str:
    """The relative path of the temp file used while writing version `content_hash` of rel.

    Deterministic, so that an interrupted transfer finds its partial file again; in the
    same directory, so the final rename is atomic (same file system).
    """
    digest = blake3.blake3(rel.encode("utf-8") + content_hash).hexdigest()[:16]
    name = f"{TEMP_PREFIX}{digest}{TEMP_SUFFIX}"
    parent = posixpath.dirname(rel)
    return f"{parent}/{name}" if parent else name
