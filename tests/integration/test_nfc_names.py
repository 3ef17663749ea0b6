"""A name stored NFD on one device and NFC on another is one file, both ways.

Linux keeps a name's bytes as given, so device A's folder can hold `café` decomposed,
as a Mac stores it. Real processes over loopback. The name travels NFC: B gets one
`café` (composed), edits and deletions go back to A's very file under its own
spelling, never beside it, and A's edits reach B.
"""

from __future__ import annotations

import os
import random
import unicodedata

from tests.procs import start_run, status_json, sync, tree, wait_until

NFC = "caf\u00e9"
NFD = unicodedata.normalize("NFD", NFC)


def test_an_nfd_name_here_and_nfc_there_are_one_file(tmp_path):
    a, b = tmp_path / "A", tmp_path / "B"
    (a / NFD).mkdir(parents=True)
    big = random.Random(3).randbytes(300_000)  # three blocks: the edit reuses two of them
    (a / NFD / f"{NFD}.bin").write_bytes(big)
    (a / f"{NFD}.txt").write_bytes(b"small\n")
    node_a = start_run(a, tmp_path / "cfgA")
    try:
        r = sync(b, tmp_path / "cfgB", node_a.address, timeout=60)
        assert r.returncode == 0, r.stderr
        assert sorted(os.listdir(b)) == sorted([".p2psync", NFC, f"{NFC}.txt"])
        assert os.listdir(b / NFC) == [f"{NFC}.bin"]
        assert (b / NFC / f"{NFC}.bin").read_bytes() == big
        assert sorted(_hashes(a, tmp_path / "cfgA")) == sorted([f"{NFC}/{NFC}.bin",
                                                               f"{NFC}.txt"])

        # B's edits land in A's very files, under A's spelling
        edited = big[:-10] + b"0123456789"
        (b / NFC / f"{NFC}.bin").write_bytes(edited)
        (b / f"{NFC}.txt").write_bytes(b"edited\n")
        r = sync(b, tmp_path / "cfgB", node_a.address, timeout=60)
        assert r.returncode == 0, r.stderr
        wait_until(lambda: tree(a).get(f"{NFD}/{NFD}.bin") == edited
                   and tree(a).get(f"{NFD}.txt") == b"edited\n", 20, 0.1, node_a.log())
        assert sorted(tree(a)) == sorted([NFD, f"{NFD}/{NFD}.bin", f"{NFD}.txt"])
        kept = list((a / ".p2psync" / "versions").rglob("*"))
        assert any(p.name.endswith(".txt") for p in kept), kept  # the old one was kept

        # A's edit reaches B (served from the NFD file by its NFC path)
        before = _hashes(a, tmp_path / "cfgA")[f"{NFC}.txt"]
        (a / f"{NFD}.txt").write_bytes(b"from a\n")
        wait_until(lambda: _hashes(a, tmp_path / "cfgA")[f"{NFC}.txt"] != before, 10, 0.1,
                   node_a.log())
        r = sync(b, tmp_path / "cfgB", node_a.address, timeout=60)
        assert r.returncode == 0, r.stderr
        assert (b / f"{NFC}.txt").read_bytes() == b"from a\n"

        # B's deletion deletes A's file, and nothing comes back
        (b / f"{NFC}.txt").unlink()
        r = sync(b, tmp_path / "cfgB", node_a.address, timeout=60)
        assert r.returncode == 0, r.stderr
        wait_until(lambda: f"{NFD}.txt" not in tree(a), 20, 0.1, node_a.log())
        assert sorted(tree(a)) == sorted([NFD, f"{NFD}/{NFD}.bin"])
    finally:
        assert node_a.stop() == 0, node_a.log()
    assert "Traceback" not in node_a.log()


def _hashes(folder, config) -> dict[str, str]:
    return {f["path"]: f["hash"] for f in status_json(folder, config)["files"]}
