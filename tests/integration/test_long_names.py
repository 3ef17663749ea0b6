"""Long names never wedge a sync: a 255-byte name and a path near PATH_MAX are updated,
deleted and in conflict between a `run` node and a `sync` like any other file, and the
versions they leave are kept in `.p2psync/versions/` and listed in its index.

The names a sync adds (a conflict copy's tag, a version's time) would push such a
path past the file system's limits; they are shortened there (app.core.apply).
"""

from __future__ import annotations

import os
from pathlib import Path

from app.core import apply, paths, versionstore
from tests.integration.test_two_devices import (
    HOUR_AGO,
    assert_converged,
    device_id,
    ok_sync,
    tree,
    versions,
    wait_indexed,
    write,
)

LONG = "ü" * 100 + "n" * 51 + ".txt"  # 255 bytes


def deep_path(tmp_path: Path, size: int = 4000) -> str:
    """A relative path of about size bytes in 16 directories, with a long last name.

    Shorter where the test's own folder is deep: the absolute path stays below
    PATH_MAX on both devices.
    """
    size = min(size, paths.PATH_MAX - 2 - len(os.fsencode(tmp_path / "A")) - 1)
    dirs = "/".join(f"{i:02d}" + "d" * 235 for i in range(16))  # 3807 bytes
    rel = f"{dirs}/{'f' * (size - len(dirs) - 1 - 4)}.dat"
    assert 3900 < len(rel.encode()) <= size and paths.validate(rel) == rel
    return rel


def absolute(folder: Path, rel: str) -> int:
    return len(os.fsencode(folder / rel)) + 1  # with its NUL


def copies(folder: Path, rel: str) -> list[str]:
    head = rel.rpartition("/")[0]
    return [f"{head}/{n}" if head else n for n in os.listdir(folder / head if head else folder)
            if apply.is_conflict_copy(n)]


def assert_versions_fit_and_are_listed(folder: Path) -> list[versionstore.Kept]:
    """Every kept file fits the file system and is in the index with its full path."""
    on_disk = {f".p2psync/versions/{p}" for p in versions(folder)}
    listed = versionstore.list_kept(folder)
    assert {k.version for k in listed} == on_disk
    for v in on_disk:
        assert len(v.rpartition("/")[2].encode()) <= paths.MAX_NAME_BYTES, v
        assert absolute(folder, v) < paths.PATH_MAX, v
    return listed


def test_long_names_update_delete_and_conflict_converge(tmp_path, run_node):
    a, b = tmp_path / "A", tmp_path / "B"
    deep = deep_path(tmp_path)
    names = (LONG, deep)
    for rel in names:
        write(a / rel, f"first of {rel[:8]}", HOUR_AGO)
        assert absolute(a, rel) < paths.PATH_MAX and absolute(b, rel) < paths.PATH_MAX
    node = run_node("A")
    ok_sync(tmp_path, node)
    assert_converged(a, b)
    ids = {"A": device_id(tmp_path / "cfgA"), "B": device_id(tmp_path / "cfgB")}

    # 1. updated on A: B keeps its replaced copies
    for rel in names:
        write(a / rel, f"second of {rel[:8]}", HOUR_AGO + 60)
    wait_indexed(node, *names)
    ok_sync(tmp_path, node)
    assert_converged(a, b)
    assert (b / LONG).read_text() == f"second of {LONG[:8]}"
    kept_b = assert_versions_fit_and_are_listed(b)
    assert sorted(k.path for k in kept_b) == sorted(names)
    for k in kept_b:
        assert (b / k.version).read_text() == f"first of {k.path[:8]}"

    # 2. changed on both sides without seeing each other: A's newer edit wins the name
    for rel in names:
        write(a / rel, "edit made on A", HOUR_AGO + 200)
    wait_indexed(node, *names)
    for rel in names:
        write(b / rel, "edit made on B", HOUR_AGO + 100)
    ok_sync(tmp_path, node)
    assert_converged(a, b)
    for rel in names:
        for folder in (a, b):
            assert (folder / rel).read_text() == "edit made on A"
            [copy] = copies(folder, rel)
            assert (folder / copy).read_text() == "edit made on B"
            assert len(copy.rpartition("/")[2].encode()) <= paths.MAX_NAME_BYTES
            assert len(copy.encode()) <= max(apply.COPY_PATH_BYTES, len(rel.encode()))
            assert ids["B"][:7] in copy
            head = rel.rpartition("/")[0]
            siblings = os.listdir(folder / head) if head else os.listdir(folder)
            assert apply.conflict_original(copy, siblings) == rel
    before = tree(a)
    ok_sync(tmp_path, node)  # the copies merge, they do not multiply
    assert tree(a) == tree(b) == before

    # 3. deleted on B, originals and copies: A keeps them all
    gone = [*names, *copies(b, LONG), *copies(b, deep)]
    for rel in gone:
        os.unlink(b / rel)
    ok_sync(tmp_path, node)
    assert_converged(a, b)
    for rel in gone:
        assert not os.path.lexists(a / rel)
    kept_a = assert_versions_fit_and_are_listed(a)
    assert sorted(k.path for k in kept_a) == sorted(gone)
    contents = {k.path: (a / k.version).read_text() for k in kept_a}
    assert contents[LONG] == contents[deep] == "edit made on A"
    assert any(k.version.count("/") == 2 and k.path == deep for k in kept_a)  # kept flat

    # who replaced each version: the device whose change it was (the puller passes it)
    assert {k.by for k in kept_b} == {ids["A"]}, kept_b
    assert {k.by for k in kept_a} == {ids["B"]}, kept_a
