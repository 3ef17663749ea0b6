"""File-name rules per device: what each refuses, how it is told, found and applied."""

from __future__ import annotations

import os
import unicodedata

import pytest

from app.core import namerules
from app.core.index import BRIEF_DELETED
from app.core.model import FileEntry, Kind
from app.core.namerules import LINUX, MACOS, WINDOWS, NameRules, Spelling
from app.core.planner import DELETE, FETCH, MKDIR, Action

WIN_REFUSED = {
    "a:b": "':' is not allowed",
    "what?": "'?' is not allowed",
    "x<y": "'<' is not allowed",
    'say"hi"': "'\"' is not allowed",
    "pipe|": "'|' is not allowed",
    "star*": "'*' is not allowed",
    "bell\x07": "control character 7",
    "trailing.": "ending in a dot",
    "trailing ": "ending in a space",
    "aux.txt": "'aux' is a reserved name",
    "AUX": "'AUX' is a reserved name",
    "Com1.tar.gz": "'Com1' is a reserved name",
    "lpt9": "'lpt9' is a reserved name",
    "nul": "'nul' is a reserved name",
    "dir/con/x.txt": "'con' is a reserved name",
    "sub/a:b/c": "':' is not allowed",
}


@pytest.mark.parametrize("rel,why", sorted(WIN_REFUSED.items()))
def test_windows_refuses_what_windows_cannot_create(rel, why):
    said = WINDOWS.refuses(rel)
    assert said is not None and why in said and said.endswith("on this device")
    assert LINUX.refuses(rel) is None  # Linux holds every one of them


@pytest.mark.parametrize("rel", ["README.md", "auxiliary.txt", "COM10", "console.log",
                                 ".hidden", "a.b.c", "dir/sub/ok", "caf\u00e9", "x y.txt"])
def test_windows_takes_ordinary_names(rel):
    assert WINDOWS.refuses(rel) is None


def test_lengths_are_counted_in_utf8_bytes():
    short = NameRules(max_name_bytes=10, max_path_bytes=20)
    assert short.refuses("\u00e9" * 5) is None  # 10 bytes
    assert "name too long" in short.refuses("\u00e9" * 6)
    assert "path too long" in short.refuses("abcdefghij/abcdefghij")


def test_key_folds_case_only_where_case_does_not_count():
    nfd = unicodedata.normalize("NFD", "Caf\u00e9")
    assert LINUX.key("README.md") != LINUX.key("Readme.md")
    assert WINDOWS.key("README.md") == WINDOWS.key("readme.MD")
    assert LINUX.key(nfd) == LINUX.key("Caf\u00e9")  # one name, however it is composed
    assert MACOS.key(nfd) == MACOS.key("CAF\u00c9")


def test_rules_travel_as_a_map_and_an_older_peer_has_linux_rules():
    for rules in (LINUX, WINDOWS, MACOS, NameRules(form="NFD", max_name_bytes=143)):
        assert namerules.from_wire(rules.to_wire()) == rules
    assert namerules.from_wire(None) == LINUX
    for junk in ("x", [], {"case": "no"}, {"chars": 5}, {"name_max": True},
                 {"name_max": 0}, {"chars": "x" * 1000}, {"form": "NFKC"}):
        assert namerules.from_wire(junk) == LINUX


def test_probe_finds_linux_rules_and_leaves_nothing_behind(tmp_path):
    (tmp_path / ".p2psync").mkdir()
    rules = namerules.probe(tmp_path)
    assert rules == LINUX and rules.probed
    assert os.listdir(tmp_path / ".p2psync") == []


def test_probe_never_makes_the_marker(tmp_path):
    """A folder without .p2psync/ may be an unmounted disk: the defaults, nothing made."""
    assert namerules.probe(tmp_path, fallback=WINDOWS) is WINDOWS
    assert os.listdir(tmp_path) == []


def test_os_defaults():
    assert namerules.os_default("win32") == WINDOWS
    assert namerules.os_default("darwin") == MACOS
    assert namerules.os_default("linux") == LINUX


# --- screening a plan ---------------------------------------------------------------

def _fetch(path: str) -> Action:
    return Action(FETCH, path, FileEntry(path, Kind.FILE, 1, 1, 0o644), ["PEER"])


def _screen(rules: NameRules, actions: list[Action], held: dict[str, str],
            have: set[str] = frozenset()):
    return namerules.screen(rules, actions, lambda a: a.op != DELETE and a.path not in have,
                            lambda paths: {rules.key(p): p for p in held.values()})


def test_refused_names_leave_the_plan_with_their_reason():
    out = _screen(WINDOWS, [_fetch("a:b"), _fetch("good.txt"), _fetch("d/aux.c")], {})
    assert [a.path for a in out.actions] == ["good.txt"]
    assert set(out.refused) == {"a:b", "d/aux.c"}
    assert _screen(LINUX, [_fetch("a:b")], {}).actions[0].path == "a:b"


def test_a_case_twin_of_a_file_held_here_is_a_twin_never_a_fetch_over_it():
    out = _screen(WINDOWS, [_fetch("Readme.md")], {"x": "README.md"})
    assert out.actions == [] and out.twins == {"Readme.md": "README.md"}
    out = _screen(LINUX, [_fetch("Readme.md")], {"x": "README.md"})
    assert [a.path for a in out.actions] == ["Readme.md"]  # two names on Linux


def test_two_new_twins_one_now_the_other_next_round():
    out = _screen(WINDOWS, [_fetch("Readme.md"), _fetch("README.md")], {})
    assert [a.path for a in out.actions] == ["README.md"] and out.later == 1


def test_under_a_folder_twin_a_file_is_refused_with_both_names():
    mk = Action(MKDIR, "Docs", FileEntry("Docs", Kind.DIR, 0, 1, 0o755), ["PEER"])
    out = _screen(WINDOWS, [mk, _fetch("Docs/a.txt")], {"d": "docs"})
    assert out.actions == []
    assert "'Docs' and 'docs' are one name" in out.refused["Docs/a.txt"]
    assert "Docs" in out.refused


def test_a_twin_of_a_path_deleted_this_round_waits_for_it_to_go():
    gone = Action(DELETE, "README.md", FileEntry("README.md", Kind.FILE, 0, 1, 0o644,
                                                 deleted=True), ["PEER"])
    out = _screen(WINDOWS, [gone, _fetch("Readme.md")], {"r": "README.md"}, {"README.md"})
    assert [a.op for a in out.actions] == [DELETE] and out.later == 1


def test_updates_of_files_held_here_pass_whatever_their_names():
    out = _screen(WINDOWS, [_fetch("README.md")], {"r": "README.md"}, {"README.md"})
    assert [a.path for a in out.actions] == ["README.md"]


# --- how a scan spells what it lists ------------------------------------------------

def _entry(folder, name) -> os.DirEntry:
    return next(e for e in os.scandir(folder) if e.name == name)


def _spelling(rules: NameRules, brief: dict) -> Spelling:
    """A Spelling over an index holding `brief` (path -> (path, state))."""
    def variants(paths):
        return [(p, b[1] == BRIEF_DELETED) for p, b in brief.items()]

    def is_live(rel):
        return rel in brief and brief[rel][1] != BRIEF_DELETED

    return Spelling(rules, variants, is_live)


def _name(spell: Spelling, folder, name) -> str:
    return spell.names("", [_entry(folder, name)])[0]


def test_a_name_listed_in_another_case_keeps_the_index_spelling(tmp_path):
    (tmp_path / "readme.md").write_text("x")
    brief = {"README.md": ("README.md", int(Kind.FILE))}
    spell = _spelling(WINDOWS, brief)
    assert _name(spell, tmp_path, "readme.md") == "README.md"
    assert _name(_spelling(LINUX, brief), tmp_path, "readme.md") == "readme.md"
    assert spell.indexed("readme.md") == "README.md"


def test_a_live_spelling_wins_over_a_deleted_one(tmp_path):
    (tmp_path / "readme.md").write_text("x")
    brief = {"readme.md": ("readme.md", BRIEF_DELETED), "README.md": ("README.md", 0)}
    spell = _spelling(WINDOWS, brief)
    assert _name(spell, tmp_path, "readme.md") == "README.md"


def test_an_nfd_name_stays_as_listed_where_the_nfc_one_is_another_file(tmp_path):
    """Linux keeps bytes as given: an NFD and an NFC name are two files there."""
    nfd = unicodedata.normalize("NFD", "caf\u00e9")
    (tmp_path / nfd).write_text("d")
    (tmp_path / "caf\u00e9").write_text("c")
    assert _name(_spelling(LINUX, {}), tmp_path, nfd) == nfd


def test_probe_on_a_read_only_disk_falls_back_to_the_defaults(tmp_path):
    """Nothing can be tried there: the OS defaults, no error, nothing left behind."""
    import subprocess

    from tests.procs import tmpfs

    with tmpfs(tmp_path / "ro", "1m") as mnt:
        (mnt / ".p2psync").mkdir()
        r = subprocess.run(["mount", "-o", "remount,ro", str(mnt)], capture_output=True)
        if r.returncode != 0:
            pytest.skip("cannot remount read-only here")
        rules = namerules.probe(mnt, fallback=MACOS)
        assert rules is MACOS and not rules.probed
        assert os.listdir(mnt / ".p2psync") == []


def test_a_disk_without_modes_or_fine_times_changes_nothing_by_showing_them(tmp_path):
    """An NTFS disk under ntfs-3g shows every file 0777 and keeps times to 100 ns:
    neither is a change (else every file turns executable, on every peer)."""
    from app.core import scanner
    from app.core.ignore import Ignore
    from app.core.index import Index

    rules = NameRules(keeps_modes=False, mtime_step_ns=100)
    root = tmp_path / "f"
    root.mkdir()
    (root / "doc.txt").write_bytes(b"x")
    (root / "doc.txt").chmod(0o777)
    os.utime(root / "doc.txt", ns=(1_700_000_000_000_000_050,) * 2)
    index = Index(tmp_path / "i.db", "DEVAAAA-BBBBBBB-CCCCCCC-DDDDDDD-EEEEEEE")
    scanner.scan(root, index, Ignore(root), names=rules)
    entry = index.get("doc.txt")
    assert not entry.mode & 0o111  # this device's default, not the disk's show
    version = entry.version

    os.utime(root / "doc.txt", ns=(1_700_000_000_000_000_000,) * 2)  # as NTFS keeps it
    assert scanner.scan(root, index, Ignore(root), names=rules).changed == []
    entry = index.get("doc.txt")
    assert entry.version == version and entry.mtime_ns == 1_700_000_000_000_000_000
    assert scanner.scan(root, index, Ignore(root), names=rules).hashed_bytes == 0

    os.utime(root / "doc.txt", ns=(1_700_000_000_000_001_000,) * 2)  # a real change
    assert [e.path for e in scanner.scan(root, index, Ignore(root), names=rules).changed] \
        == ["doc.txt"]


def test_a_scan_keeps_the_index_spelling_by_asking_the_index_per_directory(tmp_path):
    """Where case does not count, a directory listed in another case (lowntfs-3g lists
    every name in lower case) keeps the indexed spelling, also beyond ASCII where the
    name is all lower case: looked up by lower(path) in the index, through its index."""
    from app.core import scanner
    from app.core.ignore import Ignore
    from app.core.index import Index

    root = tmp_path / "f"
    (root / "Docs").mkdir(parents=True)
    (root / "Docs" / "README.md").write_bytes(b"r")
    (root / "\u00dcber.txt").write_bytes(b"u")
    index = Index(tmp_path / "i.db", "DEVAAAA-BBBBBBB-CCCCCCC-DDDDDDD-EEEEEEE")
    scanner.scan(root, index, Ignore(root), names=WINDOWS)
    (root / "Docs" / "README.md").rename(root / "Docs" / "readme.md")
    (root / "Docs").rename(root / "docs")
    (root / "\u00dcber.txt").rename(root / "\u00fcber.txt")
    scanner.scan(root, index, Ignore(root), names=WINDOWS)  # new ctimes: hashed, same
    assert scanner.scan(root, index, Ignore(root), names=WINDOWS).changed == []
    live = sorted(e.path for e in index.all_local() if not e.deleted)
    assert live == ["Docs", "Docs/README.md", "\u00dcber.txt"]
    assert sorted(index.case_variants(namerules.case_forms(["docs/readme.md", "\u00fcber.txt"]))) \
        == [("Docs/README.md", 0), ("\u00dcber.txt", 0)]
    plan = index._main.execute("EXPLAIN QUERY PLAN SELECT path FROM files "
                               "WHERE lower(path) IN (lower(?))", ("x",)).fetchall()
    assert "files_lower" in str(plan)
    generation = index.generation
    scanner.scan(root, index, Ignore(root), names=WINDOWS)
    assert index.generation == generation  # no write per scan: plans stay cached
