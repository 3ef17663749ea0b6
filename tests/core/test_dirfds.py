"""Directory descriptors that never follow a link, made on demand only when asked."""

from __future__ import annotations

import os

import pytest

from app.core import paths
from app.core.dirfds import DirFds


def test_opens_each_directory_once_and_closes_them(tmp_path):
    (tmp_path / "a/b").mkdir(parents=True)
    with DirFds(tmp_path, create=False) as dirs:
        fd = dirs.open("a/b")
        assert dirs.open("a/b") == fd
        assert set(dirs.fds) == {"", "a", "a/b"}
        assert os.listdir(fd) == []
    assert dirs.fds == {}
    with pytest.raises(OSError):
        os.fstat(fd)


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
