import os

import pytest


@pytest.fixture
def unlistable(monkeypatch):
    """unlistable("d"): listing any directory named d fails as if this user may not read
    it, whether it is listed by path or opened first (the scanner's descriptors)."""
    real_scandir, real_open = os.scandir, os.open

    def refuse(names):
        def denied(path) -> bool:
            return not isinstance(path, int) and \
                any(os.fspath(path).endswith(os.sep + n) for n in names)

        def scandir(path="."):
            if denied(path):
                raise PermissionError(13, "Permission denied")
            return real_scandir(path)

        def open_(path, flags, *args, **kwargs):
            if flags & os.O_DIRECTORY and denied(path):
                raise PermissionError(13, "Permission denied")
            return real_open(path, flags, *args, **kwargs)

        monkeypatch.setattr(os, "scandir", scandir)
        monkeypatch.setattr(os, "open", open_)

    return lambda *names: refuse(names)
