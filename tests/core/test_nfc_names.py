"""Names stored NFD on disk are indexed NFC, and found again by their NFC path.

Linux keeps a name's bytes as given, so a folder here can hold `café` decomposed
(as a Mac stores it, or a copy from a Mac keeps it): the real case, on disk.
"""

from __future__ import annotations

import unicodedata

from app.core import apply, paths, scanner
from app.core.ignore import Ignore
from app.core.index import Index
from app.core.namerules import WINDOWS

DEV = "DEVAAAA-BBBBBBB-CCCCCCC-DDDDDDD-EEEEEEE"
NFC = "caf\u00e9"
NFD = unicodedata.normalize("NFD", NFC)


def _folder(tmp_path):
    root = tmp_path / "folder"
    root.mkdir()
    return root, Index(tmp_path / "index.db", DEV), Ignore(root)


def test_an_nfd_file_is_indexed_nfc_and_stays_one_file(tmp_path):
    root, index, ignore = _folder(tmp_path)
    (root / NFD).mkdir()
    (root / NFD / f"{NFD}.txt").write_bytes(b"x")
    scanner.scan(root, index, ignore)
    live = {e.path for e in index.all_local() if not e.deleted}
    assert live == {NFC, f"{NFC}/{NFC}.txt"}
    entry = index.get(f"{NFC}/{NFC}.txt")
    assert apply.matches_disk(root, entry, entry.path)  # the NFC path reaches it

    # a rescan of either spelling, of the file or of its folder, changes nothing
    for sub in (f"{NFD}/{NFD}.txt", f"{NFC}/{NFC}.txt", NFD, NFC):
        assert scanner.scan(root, index, ignore, [sub]).changed == []
        assert scanner.scan(root, index, ignore).changed == []
    assert {e.path for e in index.all_local() if not e.deleted} == live

    # an edit is an edit of the NFC path, never a deletion plus a new file
    (root / NFD / f"{NFD}.txt").write_bytes(b"edited")
    changed = scanner.scan(root, index, ignore, [f"{NFD}/{NFD}.txt"]).changed
    assert [(e.path, e.deleted) for e in changed] == [(f"{NFC}/{NFC}.txt", False)]


def test_an_nfd_file_beside_an_nfc_one_is_another_file(tmp_path):
    """Linux holds both: two files, two paths (the NFD one travels as it is)."""
    root, index, ignore = _folder(tmp_path)
    (root / NFD).write_bytes(b"d")
    (root / NFC).write_bytes(b"c")
    scanner.scan(root, index, ignore)
    assert {e.path for e in index.all_local()} == {NFD, NFC}
    assert paths.on_disk(root, NFC) == NFC and paths.on_disk(root, NFD) == NFD


def test_on_disk_finds_the_stored_form_and_leaves_new_paths_alone(tmp_path):
    (tmp_path / NFD).mkdir()
    (tmp_path / NFD / "x").write_bytes(b"x")
    assert paths.on_disk(tmp_path, f"{NFC}/x") == f"{NFD}/x"
    assert paths.safe_join(tmp_path, f"{NFC}/x") == tmp_path / NFD / "x"
    assert paths.on_disk(tmp_path, f"{NFC}/new") == f"{NFD}/new"  # in that very folder
    assert paths.on_disk(tmp_path, f"new/{NFC}") == f"new/{NFC}"
    assert paths.on_disk(tmp_path, f"{NFC}/{NFC}/x") == f"{NFD}/{NFC}/x"  # a new one in it
    assert paths.on_disk(tmp_path, "plain/ascii") == "plain/ascii"
    assert apply.archive(tmp_path, f"{NFC}/x")  # the very file goes to the versions
    assert not (tmp_path / NFD / "x").exists()


def test_case_insensitive_scan_keeps_the_spelling_of_an_nfd_name(tmp_path):
    """Both at once: listed NFD and in another case, still the indexed path."""
    root, index, ignore = _folder(tmp_path)
    (root / NFD.upper()).write_bytes(b"x")
    scanner.scan(root, index, ignore, names=WINDOWS)
    assert [e.path for e in index.all_local()] == [NFC.upper()]
    assert scanner.scan(root, index, ignore, names=WINDOWS).changed == []
