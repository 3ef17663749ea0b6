"""The survey that splits a big folder's full scan across processes (app/core/survey.py).

What it must hold: a surveyed full scan writes the same index, and reports the same
ignored paths, temp files and skipped names, as a scan that walks everything itself;
each path is looked at by exactly one share wherever the ranges are cut; and any
failure leaves the scan to walk everything.
"""

import errno
import logging
import os
import shutil
import sqlite3
from dataclasses import replace

import pytest

from app.core import scanner, survey
from app.core.ignore import IGNORE_FILE, Ignore
from app.core.index import Index
from app.core.namerules import LINUX, NameRules

DEV = "DEVAAAA-BBBBBBB-CCCCCCC-DDDDDDD-EEEEEEE"
TEMP = ".p2psync-0123456789abcdef.tmp"


def write(root, rel, data=b"x"):
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    return p


def scan(root, db, surveyed, monkeypatch):
    """A full scan of root into the index at db, surveyed first or not."""
    monkeypatch.setattr(survey, "SURVEY_FROM", 0 if surveyed else 10**12)
    spied = []
    real = survey.survey

    def spy(*args):
        spied.append(real(*args))
        return spied[-1]

    monkeypatch.setattr(survey, "survey", spy)
    with Index(db, DEV) as index:
        ignore = Ignore(root)
        result = scanner.scan(root, index, ignore)
        index.set_ignored(result.ignored, ignore.patterns)  # as the node does
        entries = [replace(e, seq=0) for e in index.all_local()]
        return result, entries, index.skipped(), sorted(result.ignored), spied[0]


def a_folder_indexed(tmp_path, monkeypatch, rules=True):
    """A folder of every kind of entry, indexed; with ignore rules or without (a
    survey then compares a directory at a time: `_Survey._walk_plain`)."""
    root = tmp_path / "f"
    for d in ("a", "a b", "a0", "keep/deep/er", "gone", "moved", "mode", "ign"):
        for i in range(3):
            write(root, f"{d}/f{i}.txt", d.encode())
    write(root, "top.txt")
    os.symlink("top.txt", root / "link")
    if rules:
        write(root, IGNORE_FILE, b"ign/\n*.log\n")
    scan(root, tmp_path / "base.db", False, monkeypatch)
    return root


def change_everything(root):
    (root / "a" / "f0.txt").write_bytes(b"longer now")  # size
    st = os.lstat(root / "a b" / "f1.txt")
    os.utime(root / "a b" / "f1.txt", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # mtime
    (root / "a0" / "f2.txt").unlink()
    shutil.rmtree(root / "gone")
    os.rename(root / "moved", root / "now here")
    (root / "mode").chmod(0o700)
    write(root, "new/dir/n.txt")
    write(root, "keep/deep/er/new.txt")
    write(root, "keep/x.log")  # ignored
    write(root, f"keep/{TEMP}")
    write(root, "bad\\name.txt")
    os.unlink(root / "link")
    os.symlink("a/f1.txt", root / "link")


@pytest.mark.parametrize("rules", [True, False])
def test_a_surveyed_scan_indexes_what_a_whole_scan_does(tmp_path, monkeypatch, rules):
    root = a_folder_indexed(tmp_path, monkeypatch, rules)
    change_everything(root)
    shutil.copy(tmp_path / "base.db", tmp_path / "whole.db")
    shutil.copy(tmp_path / "base.db", tmp_path / "surveyed.db")

    whole = scan(root, tmp_path / "whole.db", False, monkeypatch)
    surveyed = scan(root, tmp_path / "surveyed.db", True, monkeypatch)

    assert whole[4] is None and surveyed[4] is not None  # the two ways were taken
    assert surveyed[1] == whole[1]  # the same entries, versions and hashes
    assert surveyed[2] == whole[2] == {"bad\\name.txt": surveyed[2]["bad\\name.txt"]}
    assert surveyed[3] == whole[3] == (["ign", "keep/x.log"] if rules else [])
    for res in (whole[0], surveyed[0]):
        assert res.temps == [f"keep/{TEMP}"]
    assert sorted(e.path for e in surveyed[0].changed) == \
        sorted(e.path for e in whole[0].changed)
    # the moved directory was seen as a move: no file of it read again
    assert surveyed[0].hashed_bytes == whole[0].hashed_bytes
    paths = {e.path: e for e in surveyed[1]}
    assert paths["moved/f0.txt"].deleted and not paths["now here/f0.txt"].deleted


@pytest.mark.parametrize("rules", [True, False])
def test_an_unchanged_folder_surveys_to_nothing(tmp_path, monkeypatch, rules):
    root = a_folder_indexed(tmp_path, monkeypatch, rules)
    result, _, _, ignored, found = scan(root, tmp_path / "base.db", True, monkeypatch)
    # only the link (its ctime is not indexed: the scan reads it again) is left to look at
    assert found.dirty == ["link"] and result.changed_count == 0
    assert ignored == (["ign"] if rules else [])


@pytest.mark.parametrize("rules", [True, False])
@pytest.mark.parametrize("changed", [False, True])
def test_each_path_is_looked_at_by_one_share_wherever_the_cut(tmp_path, monkeypatch, changed,
                                                              rules):
    root = a_folder_indexed(tmp_path, monkeypatch, rules)
    if changed:
        change_everything(root)
    db = os.fspath(tmp_path / "base.db")
    all_paths = [r[0] for r in sqlite3.connect(db).execute("SELECT path FROM files")]

    def run(after, upto):
        return survey._survey_range(os.fspath(root), db, DEV,
                                    ["ign/", "*.log"] if rules else [], LINUX, after, upto)

    def seen(*parts):
        """What the scan is left to do (a share may name a path below one that another
        share names: the scan looks at the outermost), and what is noted on the way."""
        return (scanner._outermost([p for s in parts for p in s.dirty]),
                sorted(p for s in parts for p in s.ignored + s.temps + list(s.skipped)))

    one = seen(run("", None))
    for cut in sorted(all_paths) + ["a/", "a/f1", "new/dir", "zz"]:
        assert seen(run("", cut), run(cut, None)) == one, cut


def test_too_many_differences_leave_the_whole_scan(tmp_path, monkeypatch):
    root = a_folder_indexed(tmp_path, monkeypatch)
    for i in range(5):
        write(root, f"more{i}/x.txt")
    monkeypatch.setattr(survey, "MAX_DIRTY", 3)
    found = survey._survey_range(os.fspath(root), os.fspath(tmp_path / "base.db"), DEV,
                                 [], LINUX, "", None)
    assert found is None


def test_a_survey_that_cannot_start_leaves_the_whole_scan(tmp_path, monkeypatch, caplog):
    root = a_folder_indexed(tmp_path, monkeypatch)
    write(root, "a/new.txt")

    class NoProcesses:
        def __init__(self, *args, **kwargs):
            raise OSError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(survey, "ProcessPoolExecutor", NoProcesses)
    with caplog.at_level(logging.DEBUG, logger="app.core.survey"):
        result, entries, *_, found = scan(root, tmp_path / "base.db", True, monkeypatch)
    assert found is None and "no survey" in caplog.text
    assert [e.path for e in result.changed] == ["a/new.txt"]


def test_an_unlistable_directory_is_left_to_the_scan(tmp_path, monkeypatch, unlistable):
    root = a_folder_indexed(tmp_path, monkeypatch)
    unlistable("keep")
    found = survey._survey_range(os.fspath(root), os.fspath(tmp_path / "base.db"), DEV,
                                 [], LINUX, "", None)
    assert "keep" in found.dirty  # the scan lists it again, protects it and says why


def test_no_survey_where_it_would_not_pay(tmp_path, monkeypatch):
    root = a_folder_indexed(tmp_path, monkeypatch)
    with Index(tmp_path / "base.db", DEV) as index:
        monkeypatch.setattr(survey, "SURVEY_FROM", 10**6)
        assert survey.survey(root, index, Ignore(root), LINUX) is None  # a small index
        monkeypatch.setattr(survey, "SURVEY_FROM", 0)
        assert survey.survey(root, index, Ignore(root),
                             NameRules(case_sensitive=False)) is None
        monkeypatch.setattr(survey.platform, "usable_cores", lambda: 1)
        assert survey.survey(root, index, Ignore(root), LINUX) is None



def test_deleted_entries_and_names_spelled_otherwise_on_disk(tmp_path, monkeypatch):
    """Tombstones are not differences, a file made again where one is, is; a directory
    named in NFD on disk (the index holds NFC) is walked once and surveys to nothing."""
    root = a_folder_indexed(tmp_path, monkeypatch, rules=False)
    nfd = "cafe\u0301"
    write(root, f"{nfd}/menu.txt")
    write(root, f"{nfd}/sub/deeper.txt")
    shutil.rmtree(root / "gone")
    db = tmp_path / "base.db"
    scan(root, db, False, monkeypatch)
    with Index(db, DEV) as index:
        assert index.get("café/menu.txt") is not None
        assert index.get("gone/f0.txt").deleted

    assert scan(root, db, True, monkeypatch)[4].dirty == ["link"]
    write(root, "gone/f0.txt", b"back")
    found = scan(root, db, True, monkeypatch)[4]
    assert found.dirty == ["gone", "link"]


def test_a_directory_too_big_to_compare_whole_is_left_to_the_scan(tmp_path, monkeypatch):
    root = a_folder_indexed(tmp_path, monkeypatch, rules=False)
    for i in range(15):
        write(root, f"keep/deep/er/more{i}.txt")  # 18 files, and the folder's top holds 10
    monkeypatch.setattr(survey, "PLAIN_DIR_MAX", 12)

    def run():
        return survey._survey_range(os.fspath(root), os.fspath(tmp_path / "base.db"), DEV,
                                    [], LINUX, "", None)

    assert sorted(run().dirty) == ["keep/deep/er", "link"]
    monkeypatch.setattr(survey, "PLAIN_DIR_MAX", 9)  # the folder's top too: no survey
    assert run() is None


def test_an_entry_that_cannot_be_stat_ed_is_left_to_the_scan(tmp_path, monkeypatch):
    """Only that entry, indexed or new: the rest of its directory is compared as usual.
    (As root, an lstat is not refused for want of permission: the refusal is injected.)"""
    root = a_folder_indexed(tmp_path, monkeypatch, rules=False)
    write(root, "a/new.txt")
    refused = {"f1.txt", "new.txt"}
    real = survey._stats

    def refusing(listed, dir_fd):
        if any(de.name in refused and de.path.endswith("/a/" + de.name) for de in listed):
            raise PermissionError(13, "Permission denied")
        return real(listed, dir_fd)

    monkeypatch.setattr(survey, "_stats", refusing)
    found = survey._survey_range(os.fspath(root), os.fspath(tmp_path / "base.db"), DEV,
                                 [], LINUX, "", None)
    assert sorted(found.dirty) == ["a/f1.txt", "a/new.txt", "link"]


def test_an_entry_gone_between_listing_and_lstat_is_noted_as_gone(tmp_path, monkeypatch):
    """Deleted after its directory was listed, before its lstat: left out of the
    listing (the rest of the directory is compared as usual) and, being indexed,
    noted for the scan."""
    root = a_folder_indexed(tmp_path, monkeypatch, rules=False)
    real = survey._stats

    def deleting_first(listed, dir_fd):
        victim = root / "a" / "f1.txt"
        if any(de.path == os.fspath(victim) for de in listed) and victim.exists():
            victim.unlink()  # the real race, made to happen here
        return real(listed, dir_fd)

    monkeypatch.setattr(survey, "_stats", deleting_first)
    found = survey._survey_range(os.fspath(root), os.fspath(tmp_path / "base.db"), DEV,
                                 [], LINUX, "", None)
    assert sorted(found.dirty) == ["a/f1.txt", "link"]


def test_entries_stat_ed_through_their_directory_or_by_path_differ_alike(tmp_path, monkeypatch):
    """Where directories are opened (`platform.DIR_FDS`), a share stats each entry by
    name relative to its directory; elsewhere, or where the open fails, by path: the
    same differences every way."""
    root = a_folder_indexed(tmp_path, monkeypatch, rules=False)
    change_everything(root)
    opened = []
    real_open = os.open

    def counting(path, flags, *args, **kwargs):
        opened.append(path)
        return real_open(path, flags, *args, **kwargs)

    def refusing(path, flags, *args, **kwargs):  # gone, or a link swapped in, meanwhile
        opened.append(path)
        raise OSError(errno.ELOOP, "a link")

    found = {}
    for how, dir_fds, opens in (("fds", True, counting), ("paths", False, counting),
                                ("refused", True, refusing)):
        monkeypatch.setattr(survey.platform, "DIR_FDS", dir_fds)
        monkeypatch.setattr(survey.os, "open", opens)
        opened.clear()
        found[how] = sorted(survey._survey_range(
            os.fspath(root), os.fspath(tmp_path / "base.db"), DEV, [], LINUX, "", None).dirty)
        monkeypatch.setattr(survey.os, "open", real_open)
        assert (os.fspath(root / "a") in opened) == dir_fds
    assert found["fds"] == found["paths"] == found["refused"]
    assert {"a/f0.txt", "a b/f1.txt", "a0/f2.txt", "gone", "link", "new"} <= set(found["fds"])


def test_ignore_rules_of_the_last_full_scan_let_a_share_walk_a_directory_at_a_time(
        tmp_path, monkeypatch):
    """With the rules the last full scan matched by, a share compares a directory at a
    time and matches only what differs: an indexed file a rule came to ignore later is
    listed as ignored from that scan's list, as a whole scan lists it. With other rules
    it merges, entry by entry (it cannot tell which unchanged files they ignore)."""
    root = a_folder_indexed(tmp_path, monkeypatch)  # ign/, *.log
    write(root, IGNORE_FILE, b"ign/\n*.log\nf1.txt\n")  # files indexed before the rule
    db = tmp_path / "base.db"
    scan(root, db, False, monkeypatch)  # the full scan that finds them ignored
    write(root, "a/new.txt")
    write(root, "a/f1.txt", b"changed, and still ignored")
    shutil.copy(db, tmp_path / "whole.db")
    shutil.copy(db, tmp_path / "surveyed.db")

    whole = scan(root, tmp_path / "whole.db", False, monkeypatch)
    surveyed = scan(root, tmp_path / "surveyed.db", True, monkeypatch)
    assert surveyed[3] == whole[3] == ["a b/f1.txt", "a/f1.txt", "a0/f1.txt", "gone/f1.txt",
                                       "ign", "keep/deep/er/f1.txt", "mode/f1.txt",
                                       "moved/f1.txt"]
    assert surveyed[1] == whole[1] and surveyed[4].dirty == ["a/new.txt", "link"]

    merged = []
    real_merge = survey._Survey._merge
    monkeypatch.setattr(survey._Survey, "_merge",
                        lambda self, *a: merged.append(a) or real_merge(self, *a))
    rules = ["ign/", "*.log", "f1.txt"]
    share = survey._survey_range(os.fspath(root), os.fspath(db), DEV, rules, LINUX, "", None)
    assert not merged and "a b/f1.txt" in share.ignored
    share = survey._survey_range(os.fspath(root), os.fspath(db), DEV, [*rules, "*.md"], LINUX,
                                 "", None)
    assert merged and "a b/f1.txt" in share.ignored
    monkeypatch.setattr(survey, "IGNORED_HELD_MAX", 7)  # more listed than a share holds
    merged.clear()
    share = survey._survey_range(os.fspath(root), os.fspath(db), DEV, rules, LINUX, "", None)
    assert merged and "a b/f1.txt" in share.ignored
    monkeypatch.setattr(survey, "IGNORED_HELD_MAX", 8)
    merged.clear()
    survey._survey_range(os.fspath(root), os.fspath(db), DEV, rules, LINUX, "", None)
    assert not merged
    with Index(db, DEV) as index:
        index.forget_ignored_rules()  # the rules changed since (the node says so)
    merged.clear()
    share = survey._survey_range(os.fspath(root), os.fspath(db), DEV, rules, LINUX, "", None)
    assert merged and "a b/f1.txt" in share.ignored


def test_a_directory_as_indexed_is_compared_by_its_digest_alone(tmp_path, monkeypatch):
    """Only a directory whose digest its disk does not match is read row by row: here
    the root, which holds a link (a row without a key, see briefkeys)."""
    root = a_folder_indexed(tmp_path, monkeypatch, rules=False)
    read = []
    real = survey._Briefs.children
    monkeypatch.setattr(survey._Briefs, "children",
                        lambda self, pre, *a: read.append(pre) or real(self, pre, *a))
    found = survey._survey_range(os.fspath(root), os.fspath(tmp_path / "base.db"), DEV,
                                 [], LINUX, "", None)
    assert found.dirty == ["link"] and read == [""]

    read.clear()
    (root / "keep" / "deep" / "er" / "f1.txt").write_bytes(b"K")  # same size
    found = survey._survey_range(os.fspath(root), os.fspath(tmp_path / "base.db"), DEV,
                                 [], LINUX, "", None)
    assert sorted(found.dirty) == ["keep/deep/er/f1.txt", "link"] and read == ["", "keep/deep/er/"]


def test_names_swapped_in_a_directory_are_found(tmp_path, monkeypatch):
    root = a_folder_indexed(tmp_path, monkeypatch, rules=False)
    a = root / "a"
    stats = {n: os.lstat(a / n) for n in ("f0.txt", "f1.txt")}
    os.rename(a / "f0.txt", a / "swap")
    os.rename(a / "f1.txt", a / "f0.txt")
    os.rename(a / "swap", a / "f1.txt")
    for n, st in stats.items():  # each name with the other's times: only names moved
        os.utime(a / n, ns=(st.st_atime_ns, st.st_mtime_ns))
    found = survey._survey_range(os.fspath(root), os.fspath(tmp_path / "base.db"), DEV,
                                 [], LINUX, "", None)
    assert sorted(found.dirty) == ["a/f0.txt", "a/f1.txt", "link"]


@pytest.mark.parametrize("unkeyed", ["link", "row written without its key"])
def test_a_row_without_a_key_gone_from_disk_is_found(tmp_path, monkeypatch, unkeyed):
    """Beside unchanged files whose keys match the disk's, a row with no key (a link, a
    write that did not make one) must still be missed on disk."""
    root = a_folder_indexed(tmp_path, monkeypatch, rules=False)
    db = tmp_path / "base.db"
    if unkeyed == "link":
        os.symlink("f0.txt", root / "a" / "ln")
        scan(root, db, False, monkeypatch)
        (root / "a" / "ln").unlink()
        gone = "a/ln"
    else:
        with sqlite3.connect(db) as conn:
            conn.execute("UPDATE files SET size = size WHERE path = 'a/f2.txt'")  # no change
            conn.execute("UPDATE files SET error = '' , inode = inode + 0, ctime_ns = ctime_ns "
                         "WHERE path = 'a/f2.txt'")
            conn.execute("UPDATE files SET mtime_ns = mtime_ns + 1 WHERE path = 'a/f2.txt'")
        conn.close()
        (root / "a" / "f2.txt").unlink()
        gone = "a/f2.txt"
    found = survey._survey_range(os.fspath(root), os.fspath(db), DEV, [], LINUX, "", None)
    assert gone in found.dirty


@pytest.mark.parametrize("seed", range(8))
def test_random_edits_surveyed_as_a_whole_scan_finds_them(tmp_path, monkeypatch, seed):
    """Edits a digest of a directory could be blind to if it bound less than it does
    (same sizes, times put back, names swapped, modes, links) end in the same index
    whether the scan is surveyed or not."""
    import random
    rng = random.Random(seed)
    root = tmp_path / "f"
    names = [f"d{i}/{n}" for i in range(4) for n in ("a", "b", "c")] + ["top"]
    for rel in names:
        write(root, rel, b"0123")
    scan(root, tmp_path / "base.db", False, monkeypatch)
    for _ in range(rng.randint(1, 6)):
        rel = rng.choice(names)
        p, other = root / rel, root / rng.choice(names)
        if not p.is_file() or p.is_symlink():
            continue
        st = os.lstat(p)
        op = rng.randrange(6)
        if op == 0:  # the same size, the time put back
            p.write_bytes(b"abcd")
            os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
        elif op == 1 and other.is_file() and other != p:  # names swapped
            os.rename(p, root / "swap")
            os.rename(other, p)
            os.rename(root / "swap", other)
        elif op == 2:
            p.chmod(0o600 if st.st_mode & 0o777 != 0o600 else 0o644)
        elif op == 3:
            p.unlink()
        elif op == 4:
            p.unlink()
            os.symlink("top", p)
        else:
            write(root, rel + "-new", b"0123")
    shutil.copy(tmp_path / "base.db", tmp_path / "whole.db")
    shutil.copy(tmp_path / "base.db", tmp_path / "surveyed.db")
    whole = scan(root, tmp_path / "whole.db", False, monkeypatch)
    surveyed = scan(root, tmp_path / "surveyed.db", True, monkeypatch)
    assert surveyed[4] is not None and surveyed[1] == whole[1]
