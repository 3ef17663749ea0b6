import os

import pytest


@pytest.fixture
def unlistable(monkeypatch):
    """unlistable("d"): listing any directory named d fails as if this user may not read
    it (in this process only: a survey's processes do not see it)."""
    real_scandir = os.scandir

    def refuse(names):
        def scandir(path="."):
            if any(os.fspath(path).endswith(os.sep + n) for n in names):
                raise PermissionError(13, "Permission denied")
            return real_scandir(path)

        monkeypatch.setattr(os, "scandir", scandir)

    return lambda *names: refuse(names)
