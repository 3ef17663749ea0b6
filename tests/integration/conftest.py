"""Fixtures the integration tests share."""

from __future__ import annotations

import pytest

from tests.procs import start_run


@pytest.fixture
def run_node(request, tmp_path):
    """Start a `run` node on tmp_path/NAME (config tmp_path/cfgNAME); always stopped.

    Its exit code must be 0: a node that crashed during the test fails it. A failing
    test's report carries every node's log (tests/conftest.py).
    """
    nodes = request.node.run_nodes = []

    def start(name: str = "A", *extra: str, listen_wait: float = 10.0):
        node = start_run(tmp_path / name, tmp_path / f"cfg{name}", *extra,
                         listen_wait=listen_wait)
        nodes.append(node)
        return node

    yield start
    for node in nodes:
        assert node.stop() == 0, node.log()
