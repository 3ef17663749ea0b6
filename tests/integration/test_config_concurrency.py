"""One config dir, many p2psync processes at once (issue #9), with real processes.

Seen by a user: `p2psync status` right after `p2psync run` on an empty config dir; both
made a key and a certificate, the node announced one device ID while the key on disk
was another's, and its peer never let it in. Every command must end up with the one
identity (and the settings) the first of them wrote, and `status` must create nothing.
"""

from __future__ import annotations

import json
import re
import stat
import subprocess
import threading
from pathlib import Path

from app.cli.status import collect, render
from app.engine.config import SETTINGS, Config
from app.net.identity import load, verify_signature
from tests.procs import SECRET, _pump, env, live_node, p2psync_cmd, start_run, wait_until

ID_RX = re.compile(r"^[A-Z2-7]{7}(-[A-Z2-7]{7}){4}$")
CERT_MISMATCH = "differs from the one it presented"


# --- status is read-only ---------------------------------------------------------------------
def test_status_never_creates_an_identity(tmp_path: Path) -> None:
    folder, cfg = tmp_path / "A", tmp_path / "cfg"
    folder.mkdir()
    r = subprocess.run(p2psync_cmd("status", "--folder", str(folder), "--config-dir", str(cfg),
                                   "--json"), capture_output=True, text=True, env=env(),
                       timeout=30)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["device_id"] is None and report["node"] is None and report["files"] == []
    assert not cfg.exists()  # no dir, no key, no settings
    cfg.mkdir()
    assert "device: none yet" in render(collect(folder, cfg))
    assert list(cfg.iterdir()) == []
    r = subprocess.run(p2psync_cmd("id", "--config-dir", str(cfg)), capture_output=True,
                       text=True, env=env(), timeout=30)
    assert r.returncode == 0 and ID_RX.match(r.stdout.strip()), r.stderr
    assert collect(folder, cfg)["device_id"] == r.stdout.strip()


def test_status_with_an_index_but_no_identity_is_one_clear_line(tmp_path: Path) -> None:
    folder, cfg = tmp_path / "A", tmp_path / "cfg"
    folder.mkdir()
    db = Config(cfg).folder_paths(folder).db_path
    db.parent.mkdir(parents=True)
    db.write_bytes(b"")  # an index left behind after someone removed key.pem and cert.pem
    r = subprocess.run(p2psync_cmd("status", "--folder", str(folder), "--config-dir", str(cfg)),
                       capture_output=True, text=True, env=env(), timeout=30)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.strip().splitlines() == [
        f"p2psync: {cfg} holds an index of {folder.resolve()} but no device identity "
        f"(key.pem, cert.pem); `p2psync id --config-dir {cfg}` makes a new one"]
    assert load(cfg) is None


# --- ten processes at once on an empty config dir ----------------------------------------------
def _start(*args: str, stdout: int = subprocess.PIPE) -> subprocess.Popen:
    return subprocess.Popen(p2psync_cmd(*args), stdout=stdout, stderr=subprocess.PIPE,
                            text=True, env=env())


def test_ten_processes_on_an_empty_config_dir_agree_on_one_device(tmp_path: Path) -> None:
    """run, id, status and syncs of other folders, all started at the same moment on C.

    P is the `run` node's peer. A peer keeps one connection per device ID, so the three
    `sync`s (other folders of the same device C) each reach a peer of their own, Q1..Q3,
    in a share of their own: four share keys stored in C's settings.json at once.
    """
    p = start_run(tmp_path / "P", tmp_path / "cfgP")
    (p.folder / "from-p.txt").write_text("P's file")
    qs = [start_run(tmp_path / f"Q{i}", tmp_path / f"cfgQ{i}", secret=f"key-{i}")
          for i in range(3)]
    for i, q in enumerate(qs):
        (q.folder / f"from-q{i}.txt").write_text(f"Q{i}'s file")
    cfg, a = tmp_path / "cfgC", tmp_path / "A"
    syncs = [tmp_path / f"S{i}" for i in range(3)]
    for d in (a, *syncs):
        d.mkdir()
    assert not cfg.exists()

    def status() -> subprocess.Popen:
        return _start("status", "--folder", str(a), "--config-dir", str(cfg), "--json")

    def ident() -> subprocess.Popen:
        return _start("id", "--config-dir", str(cfg))

    def one_sync(i: int) -> subprocess.Popen:
        return _start("sync", "--folder", str(syncs[i]), "--config-dir", str(cfg),
                      "--no-discovery", "--peer", qs[i].address, "--secret", f"key-{i}",
                      "--timeout", "30")

    # back to back, the kinds interleaved: as close to one moment as Popen allows
    run = _start("run", "--folder", str(a), "--config-dir", str(cfg), "--listen",
                 "127.0.0.1:0", "--no-discovery", "--peer", p.address, "--secret", SECRET,
                 stdout=subprocess.DEVNULL)
    procs = {"run": run}
    for i in range(3):
        procs[f"status{i}"] = status()
        procs[f"sync{i}"] = one_sync(i)
        procs[f"id{i}"] = ident()
    run_log: list[str] = []
    threading.Thread(target=_pump, args=(run, run_log), daemon=True).start()
    try:
        outs = {name: pr.communicate(timeout=60) for name, pr in procs.items() if pr is not run}
        codes = {name: procs[name].returncode for name in outs}
        assert set(codes.values()) == {0}, {n: (codes[n], outs[n][1]) for n in outs}

        ids = {outs[f"id{i}"][0].strip() for i in range(3)}
        assert len(ids) == 1, ids
        (device,) = ids
        assert ID_RX.match(device)
        for i in range(3):  # status ran before any identity existed, or saw this one
            assert json.loads(outs[f"status{i}"][0])["device_id"] in (None, device)

        # the pair on disk is that device, and its key is the certificate's
        on_disk = load(cfg)
        assert on_disk is not None and on_disk.device_id == device
        assert verify_signature(on_disk.cert_der, on_disk.sign(b"x"), b"x")

        # the run node announces it, and its peer P lets it in as exactly that device
        wait_until(lambda: any(f"(device {device})" in line for line in run_log),
                   msg="run never said its device:\n" + "\n".join(run_log))
        wait_until(lambda: device in {x["device_id"] for x in
                                      (live_node(p) or {"peers": []})["peers"]},
                   timeout=20, msg=f"P never saw {device}:\n{p.log()}\nrun:\n"
                   + "\n".join(run_log))
        wait_until(lambda: (a / "from-p.txt").exists(), msg="A never got P's file")
        for i, q in enumerate(qs):  # each sync reached its peer as that device too
            assert (syncs[i] / f"from-q{i}.txt").read_text() == f"Q{i}'s file"
            q.wait_for_log(rf"connected to .* \({device[:7]}\)")
        logs = [p.log(), *(q.log() for q in qs), "\n".join(run_log),
                *(err for _, err in outs.values())]
        assert not [log for log in logs if CERT_MISMATCH in log]

        # four share keys stored at once, none lost; the files owner-only
        config = Config(cfg)
        assert config.share_key(a) == SECRET
        assert [config.share_key(s) for s in syncs] == [f"key-{i}" for i in range(3)]
        assert stat.S_IMODE(cfg.stat().st_mode) == 0o700
        for name in (SETTINGS, "key.pem"):
            assert stat.S_IMODE((cfg / name).stat().st_mode) == 0o600
        assert not [x.name for x in cfg.iterdir() if x.name.endswith(".tmp")]
    finally:
        for pr in procs.values():
            if pr.poll() is None:
                pr.terminate()
                pr.wait(10)
        for node in (p, *qs):
            node.stop()
    assert run.returncode == 0, "\n".join(run_log)

