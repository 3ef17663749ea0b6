import os

import pytest

from tests import procs

# An empty QT_QPA_PLATFORM aborts Python; tests never need a real display.
os.environ["QT_QPA_PLATFORM"] = os.environ.get("QT_QPA_PLATFORM") or "offscreen"

# Discovery in tests never leaves this machine: loopback broadcast only (netns tests
# set their own targets inside the namespaces they create).
os.environ.setdefault("P2PSYNC_DISCOVERY_TARGETS", "127.255.255.255")


@pytest.hookimpl(tryfirst=True)  # before xdist's own, which reads the groups
def pytest_collection_modifyitems(items: list) -> None:
    """Under pytest-xdist (`-n 2 --dist loadgroup`, as scripts/test runs the suite), the
    slow tests share one worker, one after another: each of them loads both cores of a
    CI machine for up to a minute and bounds times (a sync under a flood, a node's
    stop), so two of them side by side would test the machine, not p2psync."""
    for item in items:
        if item.get_closest_marker("slow"):
            item.add_marker(pytest.mark.xdist_group("slow"))


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
