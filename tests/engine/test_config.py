"""settings.json under concurrency: every update survives, every reader sees whole files."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from app.core.configdir import ConfigDirError
from app.engine.config import SETTINGS, Config

REPO = Path(__file__).resolve().parents[2]


def _in_processes(code: str, cfg: Path, args: list[str]) -> list[str]:
    """Run `code` once per arg in its own process, all released at the same moment.

    sys.argv in `code`: [1] the config dir, [2] the arg; prints what it finds.
    """
    go = time.time() + 1.5  # every interpreter is up by then
    wrapped = f"import sys, time; time.sleep(max(0.0, {go} - time.time()));\n{code}"
    procs = [subprocess.Popen([sys.executable, "-c", wrapped, str(cfg), a], cwd=REPO,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for a in args]
    outs = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in outs]
    return [out.strip() for out, _ in outs]


def test_share_keys_stored_by_processes_at_once_all_survive(tmp_path: Path) -> None:
    cfg = tmp_path / "cfg"
    folders = [tmp_path / f"F{i}" for i in range(6)]
    code = ("from pathlib import Path; from app.engine.config import Config;"
            "f = Path(sys.argv[2]); Config(sys.argv[1]).set_share_key(f, 'key-' + f.name)")
    _in_processes(code, cfg, [str(f) for f in folders])
    config = Config(cfg)
    assert {f.name: config.share_key(f) for f in folders} == {
        f.name: f"key-{f.name}" for f in folders}
    assert sorted(p.name for p in cfg.iterdir()) == [".lock", SETTINGS]  # no temp files


def test_threads_updating_at_once_all_survive(tmp_path: Path) -> None:
    cfg = tmp_path / "cfg"
    start = threading.Barrier(8)

    def store(i: int) -> None:
        start.wait()
        Config(cfg).set_share_key(tmp_path / f"F{i}", f"key-{i}")

    threads = [threading.Thread(target=store, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    config = Config(cfg)
    assert [config.share_key(tmp_path / f"F{i}") for i in range(8)] == [
        f"key-{i}" for i in range(8)]


def test_first_new_share_key_wins(tmp_path: Path) -> None:
    """`run` and the app starting on a keyless folder at once end up with one key."""
    cfg, folder = tmp_path / "cfg", tmp_path / "A"
    code = ("from pathlib import Path; from app.engine.config import Config;"
            "print(Config(sys.argv[1]).share_key_or_new(Path(sys.argv[2])))")
    keys = _in_processes(code, cfg, [str(folder)] * 5)
    assert len(set(keys)) == 1
    assert Config(cfg).share_key(folder) == keys[0]
    assert Config(cfg).share_key_or_new(folder) == keys[0]


def test_name_and_keys_kept_side_by_side(tmp_path: Path) -> None:
    a, b = Config(tmp_path / "cfg"), Config(tmp_path / "cfg")  # two processes' views
    a.set_share_key(tmp_path / "A", "key-a")
    b.set_device_name("laptop")  # b read nothing before: it must not drop A's key
    assert a.device_name() == "laptop"  # and a sees b's change without reloading
    assert b.share_key(tmp_path / "A") == "key-a"
    assert a.share_key(tmp_path / "B") is None


def test_modes_owner_only(tmp_path: Path) -> None:
    cfg = tmp_path / "new" / "cfg"
    Config(cfg).set_device_name("x")
    assert stat.S_IMODE(cfg.stat().st_mode) == 0o700
    assert stat.S_IMODE((cfg / SETTINGS).stat().st_mode) == 0o600


def test_damaged_settings_are_never_overwritten(tmp_path: Path) -> None:
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    (cfg / SETTINGS).write_text('{"folders": {"abc": {"secret": "k"')  # cut short
    config = Config(cfg)
    assert config.settings == {} and config.share_key(tmp_path / "A") is None  # readers cope
    with pytest.raises(ConfigDirError, match=r"settings\.json \(not valid JSON\): fix or remove"):
        config.set_share_key(tmp_path / "A", "new")
    assert (cfg / SETTINGS).read_text().endswith('"k"')  # the other keys are still there
    (cfg / SETTINGS).write_text("[]")
    with pytest.raises(ConfigDirError, match="not a JSON object"):
        config.set_device_name("x")


def test_settings_file_is_plain_json(tmp_path: Path) -> None:
    config = Config(tmp_path / "cfg")
    config.set_share_key(tmp_path / "A", "key-a")
    data = json.loads((tmp_path / "cfg" / SETTINGS).read_text("utf-8"))
    (entry,) = data["folders"].values()
    assert entry == {"path": str((tmp_path / "A").resolve()), "secret": "key-a"}
