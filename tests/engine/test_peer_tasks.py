"""A task of one connection's that fails ends that connection, saying why: a sender
that died unseen left the connection up and silent, the peer waiting for the rest of
our index until its sync timed out, nothing in either log."""

from __future__ import annotations

import logging

import pytest

from app.engine.node import Node
from app.errors import P2PError
from tests.twonodes import sync_beta_with_alpha


def test_a_failed_index_sender_ends_its_connection_saying_why(
        tmp_path, monkeypatch, caplog):
    (tmp_path / "A").mkdir()
    (tmp_path / "B").mkdir()
    (tmp_path / "A" / "notes.txt").write_text("kept")
    real, failed = Node._page, []

    def page(self, *args):
        if self.opts.name == "alpha" and not failed:
            failed.append(True)
            raise RuntimeError("a page that cannot be read")
        return real(self, *args)

    monkeypatch.setattr(Node, "_page", page)
    with caplog.at_level(logging.INFO), pytest.raises(P2PError) as failure:
        sync_beta_with_alpha(tmp_path)
    assert str(failure.value) == (
        "lost the connection before the folders agreed: alpha: the peer closed: index "
        "pages could not be sent: a page that cannot be read")
    assert "disconnected from beta: index pages could not be sent: a page that cannot be " \
        "read" in caplog.text
    assert "RuntimeError: a page that cannot be read" in caplog.text  # the traceback, once
    sync_beta_with_alpha(tmp_path)  # the next sync has it all
    assert (tmp_path / "B" / "notes.txt").read_text() == "kept"
