"""Directories that never lead through a link, made on demand only when asked: with
directory descriptors, and with the path-checked fallback (Windows, P2PSYNC_PORTABLE)."""

from __future__ import annotations

import os

import pytest

from app.core import paths, platform
from app.core.dirfds import DirFds


@pytest.fixture(autouse=True, params=["descriptors", "paths"])
def dir_kind(request, monkeypatch):
    if request.param == "paths":
        monkeypatch.setattr(platform, "DIR_FDS", False)
        monkeypatch.setattr(platform, "NOFOLLOW", 0)
    return request.param


def test_opens_each_directory_once_and_closes_them(tmp_path, dir_kind):
    (tmp_path / "a/b").mkdir(parents=True)
    with DirFds(tmp_path, create=False) as dirs:
        d = dirs.open("a/b")
        assert dirs.open("a/b") is d
        assert set(dirs.dirs) == {"", "a", "a/b"}
        assert os.listdir(d.fd if d.fd is not None else d.path) == []
    assert dirs.dirs == {}
    if dir_kind == "descriptors":
        assert d.fd is None  # closed


def test_missing_directories_are_made_only_when_creating(tmp_path):
    with DirFds(tmp_path, create=False) as dirs, pytest.raises(FileNotFoundError):
        dirs.open("new/deeper")
    assert not (tmp_path / "new").exists()
    with DirFds(tmp_path, create=True) as dirs:
        dirs.open("new/deeper")
    assert (tmp_path / "new/deeper").is_dir()


@pytest.mark.parametrize("create", [False, True])
def test_a_link_or_file_in_the_way_is_refused(tmp_path, create):
    outside = tmp_path / "outside"
    (outside / "inner").mkdir(parents=True)
    share = tmp_path / "share"
    share.mkdir()
    os.symlink(outside, share / "link")
    (share / "file").write_text("x")
    with DirFds(share, create=create) as dirs:
        with pytest.raises(paths.BadPath, match="link is a symlink"):
            dirs.open("link/inner")
        with pytest.raises(paths.BadPath, match="file is not a directory"):
            dirs.open("file/sub")
    assert os.listdir(outside) == ["inner"]
