import os

import pytest

from app.core.configdir import default_log_dir
from app.core.ignore import CONFIG_WHY, IGNORE_FILE, LOG_WHY, Ignore, own_dirs

TEMP = ".p2psync-0123456789abcdef.tmp"


def make(tmp_path, text=None):
    if text is not None:
        (tmp_path / IGNORE_FILE).write_text(text)
    return Ignore(tmp_path)


def test_no_file_only_builtins(tmp_path):
    ig = make(tmp_path)
    assert not ig.matches("a.txt")
    assert not ig.matches("dir", is_dir=True)
    assert ig.matches(".p2psync", is_dir=True)
    assert ig.matches(".p2psync/archive/x")
    assert ig.matches(TEMP)
    assert ig.matches(f"deep/dir/{TEMP}")
    assert not ig.matches("a/.p2psync")  # only our folder at the root
    assert not ig.matches(".p2psync-notours.tmp")
    assert not ig.matches(".p2psyncx")


@pytest.mark.parametrize(
    "rel,is_dir,ignored",
    [
        ("app.log", False, True),
        ("deep/dir/app.log", False, True),
        ("keep.log", False, False),  # negation
        ("deep/keep.log", False, False),
        ("build", True, True),  # dir pattern
        ("build", False, False),  # ...only matches directories
        ("build/out.o", False, True),  # under an ignored dir
        ("sub/build/x/y.c", False, True),
        ("build/keep.txt", False, True),  # git: cannot re-include below an ignored dir
        ("rootonly", False, True),
        ("sub/rootonly", False, False),  # anchored
        ("docs/a/b/c.bak", False, True),
        ("docs/c.bak", False, True),
        ("other/c.bak", False, False),
        ("a/b/nested.txt", False, True),
        ("x/a/b/nested.txt", False, False),
        ("a/bx/nested.txt", False, False),
        ("src/main.py", False, False),
        ("cache", True, True),
        ("cache/file", False, True),
        ("cache/deeper/file", False, True),
    ],
)
def test_patterns(tmp_path, rel, is_dir, ignored):
    ig = make(
        tmp_path,
        "# comment\n\n*.log\n!keep.log\nbuild/\n!build/keep.txt\n/rootonly\n"
        "docs/**/*.bak\na/b/\ncache\n",
    )
    assert ig.matches(rel, is_dir) is ignored


def test_ignore_file_itself_never_ignored(tmp_path):
    ig = make(tmp_path, "*\n.p2psync*\n")
    assert not ig.matches(IGNORE_FILE)
    assert ig.matches("anything")
    assert ig.matches(f"sub/{IGNORE_FILE}")  # only the root one is special


def test_builtins_cannot_be_negated(tmp_path):
    ig = make(tmp_path, f"!.p2psync\n!.p2psync/**\n!{TEMP}\n")
    assert ig.matches(".p2psync", is_dir=True)
    assert ig.matches(".p2psync/x")
    assert ig.matches(TEMP)


def test_bad_pattern_lines_are_skipped(tmp_path, caplog):
    ig = make(tmp_path, "*.log\n!\nfoo\\\n*.tmp2\n")
    assert ig.matches("a.log") and ig.matches("b.tmp2")
    assert ig.patterns == ["*.log", "*.tmp2"]
    assert "bad pattern" in caplog.text


def test_reload_if_changed(tmp_path):
    ig = make(tmp_path)
    assert not ig.reload_if_changed()
    f = tmp_path / IGNORE_FILE
    f.write_text("*.log\n")
    assert ig.reload_if_changed()
    assert ig.matches("x.log")
    assert not ig.reload_if_changed()  # nothing changed since
    # same rules, new mtime: re-read, but the rules did not change
    st = f.stat()
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert not ig.reload_if_changed()
    f.write_text("*.txt\n")
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))
    assert ig.reload_if_changed()
    assert not ig.matches("x.log") and ig.matches("x.txt")
    f.unlink()
    assert ig.reload_if_changed()
    assert not ig.matches("x.txt")


def test_reload_clears_directory_cache(tmp_path):
    ig = make(tmp_path, "build/\n")
    assert ig.matches("build/a/b.o")
    f = tmp_path / IGNORE_FILE
    f.write_text("other/\n")
    st = f.stat()
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert ig.reload_if_changed()
    assert not ig.matches("build/a/b.o")


def test_non_utf8_file_does_not_crash(tmp_path):
    (tmp_path / IGNORE_FILE).write_bytes(b"*.log\n\xff\xfe\n")
    ig = Ignore(tmp_path)
    assert ig.matches("a.log")


# --- which pattern ignores a path, and how many more a change ignores ----------------------
def test_why_names_the_deciding_pattern(tmp_path):
    ig = make(tmp_path, "# build output\n*.log\n!keep.log\nbuild/\n!build/keep.txt\n/secret\n")
    assert ig.why("app.log") == "ignored by `*.log` in .p2psyncignore"
    assert ig.why("deep/x.log") == "ignored by `*.log` in .p2psyncignore"
    assert ig.why("build", is_dir=True) == "ignored by `build/` in .p2psyncignore"
    # below an ignored directory the directory's pattern decides, whatever follows
    assert ig.why("build/keep.txt") == "ignored by `build/` in .p2psyncignore"
    assert ig.why("build/x.log") == "ignored by `build/` in .p2psyncignore"
    assert ig.why("secret") == "ignored by `/secret` in .p2psyncignore"
    assert ig.why(".p2psync/versions/a") == "p2psync's own folder (.p2psync) is never synced"
    assert ig.why(f"d/{TEMP}") == "a temporary file of a transfer"
    assert ig.rules.pattern_for("keep.log") is None
    assert ig.why("keep.log") == "ignored (by a pattern since removed from .p2psyncignore)"


def test_a_change_keeps_the_previous_rules_to_compare(tmp_path):
    from app.core.ignore import count_ignored

    files = ["a.txt", "b.log", "src/c.py", "src/d.log", ".p2psyncignore"]
    ig = make(tmp_path, "*.log\n")
    assert ig.previous is None
    assert count_ignored(ig.rules, files) == 2
    (tmp_path / IGNORE_FILE).write_text("*\n")
    os.utime(tmp_path / IGNORE_FILE, ns=(1, 1))  # a different stat, whatever the clock
    assert ig.reload_if_changed()
    assert count_ignored(ig.previous, files) == 2
    assert count_ignored(ig.rules, files) == 4  # never the ignore file itself
    (tmp_path / IGNORE_FILE).write_text("*\n# same rules, other text\n")
    assert not ig.reload_if_changed()  # the rules did not change
    assert ig.previous.lines == ["*.log"]


@pytest.mark.parametrize("name", [".config/p2psync", "we[ir]d *cfg!#", "trailing "])
def test_the_config_dir_inside_the_folder_is_never_synced(tmp_path, name):
    """A shared home folder holds ~/.config: the device's private key and indexes went
    to every peer. Whatever the ignore file says (a `!` cannot take it back), however
    its name reads as a pattern."""
    (tmp_path / IGNORE_FILE).write_text("*.log\n!key.pem\n!**/key.pem\n")
    ig = Ignore(tmp_path, [(tmp_path / name, CONFIG_WHY)])
    assert ig.matches(name, is_dir=True) and ig.matches(name)  # a peer's file there too
    # in any case: where case is ignored, a peer's other spelling is this very dir
    assert ig.matches(f"{name.upper()}/KEY.PEM") and ig.matches(f"{name.title()}/x")
    assert ig.matches(f"{name}/key.pem") and ig.matches(f"{name}/index/x.db")
    assert not ig.matches(f"{name}x/key.pem") and not ig.matches("key.pem")
    assert ig.matches("a.log") and not ig.matches("notes.txt")
    assert ig.why(f"{name}/key.pem") == CONFIG_WHY == \
        "this device's config dir (its key and indexes) is never synced"
    assert ig.file_patterns == ["*.log", "!key.pem", "!**/key.pem"]
    assert ig.patterns[:3] == ig.file_patterns and len(ig.patterns) == 4


def test_a_config_dir_outside_the_folder_adds_no_rule(tmp_path):
    (tmp_path / "folder").mkdir()
    for own in ((), [(tmp_path / "cfg", CONFIG_WHY)], [(tmp_path, CONFIG_WHY)],
                [(tmp_path / "folder", CONFIG_WHY)]):
        ig = Ignore(tmp_path / "folder", own)
        assert ig.patterns == [] and not ig.matches("cfg/key.pem")


def test_the_apps_log_in_a_shared_home_folder_is_never_synced(tmp_path, monkeypatch):
    """It changes all the time: each version went to the peers, and each peer kept the
    replaced ones for 30 days (a 1 MB log, synced every minute)."""
    home = tmp_path / "home"
    monkeypatch.setenv("XDG_STATE_HOME", str(home / ".local/state"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    ig = Ignore(home, own_dirs(home / ".config/p2psync"))
    log_rel = (default_log_dir() / "p2psync.log").relative_to(home).as_posix()
    assert log_rel.startswith(".local/state/")
    assert ig.matches(log_rel) and ig.why(log_rel) == LOG_WHY
    assert ig.matches(".config/p2psync/key.pem")
    assert ig.why(".config/p2psync/key.pem") == CONFIG_WHY
    assert not ig.matches(".local/state/other.log") and ig.file_patterns == []
