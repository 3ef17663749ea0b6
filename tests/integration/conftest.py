"""Fixtures the integration tests share."""

from __future__ import annotations

import pytest

from tests import procs
from tests.procs import start_run


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failing test's report carries the logs of its run nodes and latest syncs."""
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed:
        for folder, code, log in procs.SYNCS:
            report.sections.append((f"sync of {folder} (exit {code})", log))
        for node in getattr(item, "run_nodes", []):
            report.sections.append((f"run node on {node.folder}", node.log()))


@pytest.fixture(autouse=True)
def _syncs_of_this_test():
    procs.SYNCS.clear()
    yield


@pytest.fixture
def run_node(request, tmp_path):
    """Start a `run` node on tmp_path/NAME (config tmp_path/cfgNAME); always stopped.

    Its exit code must be 0: a node that crashed during the test fails it. A failing
    test's report carries every node's log (`pytest_runtest_makereport`).
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
