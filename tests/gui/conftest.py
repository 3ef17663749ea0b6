"""Fixtures of the GUI tests: a QApplication for every test, real engines, tidy teardown."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _qapp(qapp):
    """Icons and fonts need the application object, even in tests without a window."""
    return qapp
