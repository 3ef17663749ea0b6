"""The records the whole engine shares: one file's entry in an index, and its kinds.

An entry describes one version of one path. The same shape is stored in the local
index, kept for every remote device, and sent on the wire (as a list, see
`to_wire` / `from_wire`), so nothing has to be translated between the three.

A peer's entry is bounded before it is stored: wrong types or values out of range
are a protocol error (`ValueError`); a well-formed entry beyond a size limit (a
version vector of more devices than any share has, a link target longer than a
path may be, a block list that does not fit its size) is refused alone
(`EntryRefused`), so junk cannot grow our index, our memory or our peers' indexes.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import overload

BLOCK_SIZE = 128 * 1024
HASH_LEN = 32
# The largest file synced: its entry, a hash of every block, must fit one frame
# (app.net.framing.MAX_FRAME, 32 MiB) with room to spare: 30 MiB of block hashes.
MAX_FILE_SIZE = 120 * 1024**3


MAX_INT = 2**63 - 1  # what SQLite's INTEGER holds
MAX_COUNTER = 2**53  # version counters: far beyond any real history, never overflow a bump
# Devices in one version vector: every device that ever changed that file. A share of
# a few dozen devices, reinstalled now and then, stays far below it; a vector costs
# about 50 bytes per device in every index that holds the entry, and in memory.
MAX_VECTOR = 256
MAX_DEVICE_ID = 64  # characters of a device ID (ours are 39)
MAX_TARGET = 4096  # characters of a link target: Linux's PATH_MAX


class BlockHashes(Sequence[bytes]):
    """A file's block hashes, each cut from `FileEntry.blocks` only when asked for.

    As a list, a 100 GiB file's 819,200 hashes were 60 MB of bytes objects, and a
    pull held three such lists of the file at once (296 MB for the `sync` that fetched
    it, beyond the 150 MB every process is held to).
    """

    __slots__ = ("_blob",)

    def __init__(self, blob: bytes) -> None:
        self._blob = blob

    def __len__(self) -> int:
        return len(self._blob) // HASH_LEN

    @overload
    def __getitem__(self, i: int) -> bytes: ...
    @overload
    def __getitem__(self, i: slice) -> list[bytes]: ...
    def __getitem__(self, i: int | slice) -> bytes | list[bytes]:
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        n = len(self)
        if not -n <= i < n:
            raise IndexError("block index out of range")
        i %= n
        return self._blob[i * HASH_LEN : (i + 1) * HASH_LEN]

    def __iter__(self) -> Iterator[bytes]:
        b = self._blob
        return (b[i : i + HASH_LEN] for i in range(0, len(b), HASH_LEN))


class EntryRefused(ValueError):
    """A well-formed entry beyond one of the size limits; str() says which.

    `kind` names the limit ("vector", "target", "blocks"), for saying it once.
    """

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def _in_range(v: object, lo: int, hi: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi


class Kind(IntEnum):
    FILE = 0
    DIR = 1
    LINK = 2


@dataclass(slots=True)
class FileEntry:
    path: str  # relative to the folder root, "/"-separated, validated
    kind: Kind = Kind.FILE
    size: int = 0
    mtime_ns: int = 0
    mode: int = 0o644  # permission bits only (st_mode & 0o777)
    hash: bytes = b""  # content hash, see app.core.hashing.file_hash
    blocks: bytes = b""  # concatenated HASH_LEN-byte block hashes (files only)
    target: str = ""  # symlink target (links only)
    version: dict[str, int] = field(default_factory=dict)  # device ID -> counter
    modified_by: str = ""  # device ID that made this version
    deleted: bool = False
    seq: int = 0  # position in the owning device's change sequence
    # local-only bookkeeping, never sent:
    inode: int = 0
    error: str = ""  # why this path cannot be synced ("" when it can)
    ctime_ns: int = 0  # st_ctime_ns when last indexed: catches rewrites that keep the mtime

    def recorded(self, inode: int = 0, ctime_ns: int = 0, mode: int | None = None) -> FileEntry:
        """This entry as this device records it once applied: its own stat, no error.

        `mode`: the permission bits it got here (only the executable bit is the peer's).
        A plain constructor call: `dataclasses.replace` costs more than the rest of a
        small file's bookkeeping.
        """
        return FileEntry(self.path, self.kind, self.size, self.mtime_ns,
                         self.mode if mode is None else mode, self.hash,
                         self.blocks, self.target, self.version, self.modified_by,
                         self.deleted, self.seq, inode, "", ctime_ns)

    def block_hashes(self) -> BlockHashes:
        return BlockHashes(self.blocks)

    def block_count(self) -> int:
        return len(self.blocks) // HASH_LEN

    def same_content(self, other: FileEntry) -> bool:
        """True when both describe the same thing on disk (ignoring who made it)."""
        return (
            self.kind == other.kind
            and self.deleted == other.deleted
            and (self.deleted or (self.hash == other.hash and self.target == other.target))
        )

    def to_wire(self) -> list:
        return [
            self.path,
            int(self.kind),
            self.size,
            self.mtime_ns,
            self.mode,
            self.hash,
            self.blocks,
            self.target,
            self.version,
            self.modified_by,
            self.deleted,
            self.seq,
        ]

    @classmethod
    def from_wire(cls, item: list) -> FileEntry:
        """Build from a peer's list; types are checked, the path is validated elsewhere.

        Raises ValueError for a malformed entry, EntryRefused for one beyond a limit.
        """
        (path, kind, size, mtime_ns, mode, hsh, blocks, target, version, modified_by,
         deleted, seq) = item
        if not (
            isinstance(path, str)
            and _in_range(size, 0, MAX_INT)
            and _in_range(mtime_ns, -MAX_INT, MAX_INT)
            and _in_range(mode, 0, 0o7777)
            and isinstance(hsh, bytes) and len(hsh) in (0, HASH_LEN)
            and isinstance(blocks, bytes) and len(blocks) % HASH_LEN == 0
            and isinstance(target, str)
            and isinstance(version, dict)
            and isinstance(modified_by, str) and len(modified_by) <= MAX_DEVICE_ID
            and isinstance(deleted, bool)
            and _in_range(seq, 0, MAX_INT)
            and kind in (0, 1, 2)
        ):
            raise ValueError("malformed file entry")
        if len(version) > MAX_VECTOR:
            raise EntryRefused("vector", f"a version vector of {len(version):,} devices "
                               f"(at most {MAX_VECTOR})")
        if not all(isinstance(k, str) and len(k) <= MAX_DEVICE_ID
                   and _in_range(v, 0, MAX_COUNTER) for k, v in version.items()):
            raise ValueError("malformed file entry")
        if len(target) > MAX_TARGET:
            raise EntryRefused("target", f"a link target longer than {MAX_TARGET} characters")
        live_file = kind == Kind.FILE and not deleted
        if len(blocks) != (-(-size // BLOCK_SIZE) * HASH_LEN if live_file else 0):
            raise EntryRefused("blocks", "a block list that does not match the file's size")
        return cls(path, Kind(kind), size, mtime_ns, mode & 0o777, hsh, blocks, target,
                   version, modified_by, deleted, seq)
