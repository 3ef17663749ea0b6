"""A config dir inside the shared folder (a shared home folder holds ~/.config).

It was synced like any folder: the device's private key, settings and indexes reached
every peer (and the index, changing at every step, kept the sync from ever ending),
and a peer's files at that path were written into it. Real processes over loopback.
"""

from __future__ import annotations

from tests.procs import start_run, status_json, sync


def test_a_config_dir_inside_the_folder_is_never_sent_nor_written(tmp_path):
    a, b = tmp_path / "A", tmp_path / "B"
    cfg_a = a / ".config" / "p2psync"
    a.mkdir()
    (a / "notes.txt").write_text("notes")
    # B holds files at that very path (left by an older build, or a peer's doing)
    (b / ".config" / "p2psync").mkdir(parents=True)
    (b / ".config/p2psync/key.pem").write_text("not A's key")
    (b / ".config/p2psync/evil.txt").write_text("evil")
    node_a = start_run(a, cfg_a)
    key = (cfg_a / "key.pem").read_bytes()
    try:
        for _ in range(2):  # and again: the index's writes are no change to sync
            r = sync(b, tmp_path / "cfgB", node_a.address, timeout=60)
            assert r.returncode == 0, r.stderr
        assert (b / "notes.txt").read_text() == "notes"
        assert sorted(p.name for p in (b / ".config/p2psync").iterdir()) == \
            ["evil.txt", "key.pem"]
        assert (b / ".config/p2psync/key.pem").read_text() == "not A's key"
        assert (cfg_a / "key.pem").read_bytes() == key
        assert not (cfg_a / "evil.txt").exists()
        # the dir (as an ignored dir is listed) and the peer's files there: never taken
        rows = {f["path"]: f for f in status_json(a, cfg_a)["files"]}
        assert {p: (r["state"], r["why"]) for p, r in rows.items()
                if p.startswith(".config/")} == dict.fromkeys(
            [".config/p2psync", ".config/p2psync/evil.txt", ".config/p2psync/key.pem"],
            ("ignored", "this device's config dir (its key and indexes) is never synced"))
    finally:
        assert node_a.stop() == 0, node_a.log()
    assert "Traceback" not in node_a.log()


def test_the_folder_itself_as_config_dir_is_refused_untouched(tmp_path):
    from tests.integration.test_cli_errors import assert_clean_error, p2psync, starts

    a = tmp_path / "A"
    a.mkdir(mode=0o755)
    a.chmod(0o755)
    gui = ("gui", "--folder", str(a), "--config-dir", str(a), "--no-discovery",
           "--secret", "ZG5HXC-GLGF77-JAYYXA-3UYU6A")
    for args in (*starts(a, a), gui):
        line = assert_clean_error(p2psync(*args), 2)
        assert line == (f"p2psync: the config dir {a} is the shared folder itself: it holds "
                        "this device's key; pick another with --config-dir"), line
    assert list(a.iterdir()) == [] and a.stat().st_mode & 0o777 == 0o755
