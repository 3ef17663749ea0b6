"""Names made from a user's name (conflict copies, kept versions) always fit the file system.

A name component may take 255 bytes and an absolute path less than PATH_MAX (4096,
its NUL included); the names built here add a tag to a name that may already be at
the limit, so they are shortened, deterministically, where they would not fit.
"""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path

import pytest

from app.core import apply, paths, versionstore

MTIME_NS = 1_764_000_000 * 10**9
DEVICE = "ABCDEF2-GHIJKL3-XXXXXXX"
WHEN = 1_764_000_000.0
HASHED = re.compile(r"~[0-9a-f]{8}")


def nbytes(text: str) -> int:
    return len(text.encode("utf-8"))


def name_of(rel: str) -> str:
    return rel.rpartition("/")[2]


def absolute(root: Path, rel: str) -> int:
    """The length the kernel sees for root/rel, its NUL included."""
    return len(os.fsencode(root / rel)) + 1


def long_root(tmp_path: Path, size: int) -> Path:
    """A real directory whose absolute path takes about size bytes."""
    root = tmp_path
    while len(os.fsencode(root)) < size - 201:
        root = root / ("r" * 200)
    root = root / ("r" * (size - len(os.fsencode(root)) - 1))
    root.mkdir(parents=True)
    return root


# --- the helpers in paths ----------------------------------------------------------------
def test_utf8_prefix_never_cuts_a_character():
    assert paths.utf8_prefix("abc", 10) == "abc"
    assert paths.utf8_prefix("ééé", 5) == "éé"  # 2 bytes each: the third would need 6
    assert paths.utf8_prefix("a😀b", 4) == "a"  # the 4-byte emoji does not fit after "a"
    assert paths.utf8_prefix("a😀b", 5) == "a😀"
    assert paths.utf8_prefix("abc", 0) == "" and paths.utf8_prefix("abc", -3) == ""


def test_shorten_stem_is_deterministic_and_keeps_names_apart():
    assert paths.shorten_stem("short", 20) == "short"
    one = paths.shorten_stem("x" * 300 + "one", 100)
    assert nbytes(one) == 100 and one.startswith("x" * 91) and HASHED.fullmatch(one[-9:])
    assert paths.shorten_stem("x" * 300 + "one", 100) == one
    assert paths.shorten_stem("x" * 300 + "two", 100) != one  # same prefix, other name
    tiny = paths.shorten_stem("x" * 300, 3)  # less room than a hash: the hash alone
    assert nbytes(tiny) == paths.SHORT_MIN_BYTES and tiny.startswith("~")


# --- conflict copies ---------------------------------------------------------------------
def test_a_conflict_copy_that_fits_keeps_the_contracts_name():
    assert apply.conflict_name("docs/plan v2.md", MTIME_NS, DEVICE) == \
        "docs/plan v2.sync-conflict-20251124-160000-ABCDEF2.md"
    name = "n" * (255 - 38 - 4) + ".txt"  # exactly 255 bytes with the tag
    copy = apply.conflict_name(name, MTIME_NS, DEVICE)
    assert nbytes(copy) == 255 and not HASHED.search(copy)


@pytest.mark.parametrize("name", [
    "x" * 251 + ".txt",  # 255 bytes
    "é" * 125 + ".txt",  # 254 bytes of 2-byte characters
    "日本語" * 28 + ".md",  # 255 bytes of 3-byte characters
    "😀" * 63 + ".gz",  # 255 bytes of 4-byte characters
    "a." + "e" * 253,  # an extension too long to keep
    "x" * 255,  # no extension
    ".hidden" + "h" * 248,
])
def test_a_long_conflict_copy_is_shortened_within_255_bytes(name):
    assert nbytes(name) <= 255
    copy = apply.conflict_name(f"dir/{name}", MTIME_NS, DEVICE)
    assert copy.startswith("dir/")
    assert nbytes(name_of(copy)) <= paths.MAX_NAME_BYTES
    assert paths.validate(copy) == copy  # valid UTF-8, nothing cut in a character
    assert apply.is_conflict_copy(copy)
    assert ".sync-conflict-20251124-160000-ABCDEF2" in copy
    assert apply.conflict_name(f"dir/{name}", MTIME_NS, DEVICE) == copy  # deterministic
    stem, ext = os.path.splitext(name)
    if len(ext) < 20:
        assert copy.endswith(ext)  # the extension stays: the copy opens the same way


def test_a_conflict_copy_of_a_deep_path_stays_within_the_path_limit():
    deep = "/".join(["d" * 250] * 15)  # 3764 bytes of directories
    rel = f"{deep}/{'n' * 200}.txt"  # 3969 bytes
    copy = apply.conflict_name(rel, MTIME_NS, DEVICE)
    assert copy.startswith(deep + "/") and HASHED.search(name_of(copy))
    assert nbytes(copy) <= nbytes(rel)  # it fits wherever the original fits
    paths.validate(copy)
    shallow = "/".join(["d" * 250] * 14) + "/notes.txt"  # room to spare: the usual name
    assert not HASHED.search(apply.conflict_name(shallow, MTIME_NS, DEVICE))


def test_a_short_name_at_the_depth_limit_keeps_the_shorter_form():
    deep = "/".join(["d" * 255] * 15) + "/" + "d" * 230  # 4070 bytes of directories
    rel = f"{deep}/a.txt"
    copy = apply.conflict_name(rel, MTIME_NS, DEVICE)
    assert name_of(copy) == "a.sync-conflict-20251124-160000-ABCDEF2.txt"
    with pytest.raises(paths.BadPath, match="longer than"):  # the engine says it cannot
        paths.validate(copy)


# --- finding the original of a copy ------------------------------------------------------
ORIGINALS = [
    "x" * 251 + ".txt",
    "é" * 125 + ".txt",
    "a." + "e" * 253,
    "x" * 255,
    "notes.txt",
]


@pytest.mark.parametrize("name", ORIGINALS)
def test_the_original_of_a_copy_is_found_among_its_siblings(name):
    rel = f"sub/{name}"
    copy = apply.conflict_name(rel, MTIME_NS, DEVICE)
    decoys = [name[:-1] + "Z", "x" * 240 + ".txt", name_of(copy), "other.txt"]
    assert apply.conflict_original(copy, [*decoys, name]) == rel
    assert apply.conflict_original(copy, [name, *decoys]) == rel


def test_a_copy_whose_original_is_gone_reads_as_it_stands():
    copy = apply.conflict_name("x" * 255, MTIME_NS, DEVICE)
    stem = copy.partition(".sync-conflict-")[0]
    assert apply.conflict_original(copy) == stem
    assert apply.conflict_original(copy, ["unrelated", "x" * 254]) == stem
    assert apply.conflict_original("notes.txt") is None
    assert apply.conflict_original(".sync-conflict-20251124-160000-ABCDEF2.txt") is None


def test_a_file_named_like_a_shortened_stem_is_its_own_original():
    # "P~0123abcd.txt" is an ordinary name too; its copy is the usual one
    name = "p" * 100 + "~0123abcd.txt"
    copy = apply.conflict_name(name, MTIME_NS, DEVICE)
    assert apply.conflict_original(copy, [name, "p" * 240 + ".txt"]) == name
    bad_date = "p~0123abcd.sync-conflict-20251399-160000-ABCDEF2.txt"
    assert apply.conflict_original(bad_date, ["p" * 250 + ".txt"]) == "p~0123abcd.txt"


def test_a_later_second_names_a_different_copy_with_the_same_original():
    name = "y" * 250 + ".md"
    first = apply.conflict_name(name, MTIME_NS, DEVICE)
    later = apply.conflict_name(name, MTIME_NS + 10**9, DEVICE)  # the puller's next free name
    assert first != later
    assert apply.conflict_original(later, [name, first]) == name


# --- kept versions -----------------------------------------------------------------------
def test_a_version_that_fits_keeps_the_contracts_layout(tmp_path):
    rel = apply.version_name("docs/report.txt", WHEN, tmp_path)
    assert re.fullmatch(r"\.p2psync/versions/docs/report~\d{8}-\d{6}\.txt", rel)
    assert apply.version_name("docs/report.txt", WHEN, tmp_path, 2) == \
        rel.replace(".txt", "-2.txt")
    assert apply.version_name("docs/report.txt", WHEN) == rel  # without a root: relative
    top = apply.version_name("top.md", WHEN, tmp_path)
    assert re.fullmatch(r"\.p2psync/versions/top~\d{8}-\d{6}\.md", top)


@pytest.mark.parametrize("head", ["docs/", ""])
@pytest.mark.parametrize("name", ["v" * 251 + ".txt", "ü" * 125 + ".txt", "a." + "e" * 253])
def test_a_long_name_is_shortened_in_the_same_directory(tmp_path, name, head):
    for n in (0, 1, 2, 1000):
        rel = apply.version_name(f"{head}{name}", WHEN, tmp_path, n)
        assert rel.rpartition("/")[0] == f".p2psync/versions/{head}".rstrip("/")
        assert nbytes(name_of(rel)) <= 255 and HASHED.search(rel)
        paths.validate(rel.removeprefix(".p2psync/"))  # whole characters, short enough
        if n:
            assert f"-{n}" in name_of(rel)
    names = {apply.version_name(f"{head}{name}", WHEN, tmp_path, n) for n in range(5)}
    assert len(names) == 5


def test_a_path_too_long_goes_flat_into_the_versions_folder(tmp_path):
    root = long_root(tmp_path, 1000)
    head = "/".join(["d" * 250] * 12)  # with root: 1000 + 3012
    rel = f"{head}/{'f' * 60}.txt"
    assert absolute(root, rel) < paths.PATH_MAX  # the file itself fits here
    for n in (0, 1, 12):
        v = apply.version_name(rel, WHEN, root, n)
        assert v.count("/") == 2 and v.startswith(".p2psync/versions/")  # flat
        assert absolute(root, v) < paths.PATH_MAX
        assert paths.short_hash(head) in v  # two deep files of one name do not collide
    other = apply.version_name(f"{head[:-1]}e/{'f' * 60}.txt", WHEN, root)
    assert other != apply.version_name(rel, WHEN, root)


def test_a_root_that_leaves_no_room_at_all_is_an_error_not_a_bad_name(tmp_path):
    root = Path("/" + "r" * 255) / ("r" * 255)
    root = Path(*([root] + ["r" * 255] * 14))  # 4096 bytes: no room for any name
    with pytest.raises(OSError) as info:
        apply.version_name("x.txt", WHEN, root)
    assert info.value.errno == errno.ENAMETOOLONG


# --- archive on a real file system --------------------------------------------------------
def test_archiving_a_255_byte_name_again_and_again_in_one_second(tmp_path):
    name = "é" * 125 + ".txt"
    kept = []
    for i in range(3):
        (tmp_path / "docs").mkdir(exist_ok=True)
        (tmp_path / "docs" / name).write_text(f"version {i}")
        kept.append(apply.archive(tmp_path, f"docs/{name}", when=WHEN, by="PEERDEV"))
    assert len(set(kept)) == 3
    assert [(tmp_path / k).read_text() for k in kept] == ["version 0", "version 1", "version 2"]
    assert all(nbytes(name_of(k)) <= 255 for k in kept)
    assert "-1" in name_of(kept[1]) and "-2" in name_of(kept[2])
    listed = versionstore.list_kept(tmp_path, f"docs/{name}")
    assert [k.version for k in listed] == kept
    assert {(k.path, k.by, k.size, k.when) for k in listed} == {
        (f"docs/{name}", "PEERDEV", 9, WHEN)}


def test_archiving_a_path_near_path_max_under_a_long_root(tmp_path):
    root = long_root(tmp_path, 1500)
    head = "/".join(["d" * 250] * 10)
    rel = f"{head}/{'f' * (4095 - 1500 - 1 - len(head) - 1 - 1)}"
    assert absolute(root, rel) == paths.PATH_MAX - 1  # as deep as a path can go here
    (root / head).mkdir(parents=True)
    (root / rel).write_bytes(b"deep")
    dest = apply.archive(root, rel, by="")
    assert absolute(root, dest) < paths.PATH_MAX
    assert (root / dest).read_bytes() == b"deep" and not os.path.lexists(root / rel)
    [k] = versionstore.list_kept(root)
    assert (k.path, k.version, k.size, k.by) == (rel, dest, 4, "")


def test_archiving_a_missing_file_changes_nothing(tmp_path):
    with pytest.raises(FileNotFoundError):
        apply.archive(tmp_path, "nope.txt")
    assert versionstore.entries(tmp_path) == []


def test_a_version_the_index_cannot_list_goes_back_in_place(tmp_path, monkeypatch):
    (tmp_path / "a.txt").write_text("content")

    def full_disk(root, kept):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(versionstore, "record", full_disk)
    with pytest.raises(OSError, match="No space"):
        apply.archive(tmp_path, "a.txt")
    assert (tmp_path / "a.txt").read_text() == "content"
    assert not any(p.is_file() for p in (tmp_path / apply.VERSIONS_DIR).rglob("*"))
