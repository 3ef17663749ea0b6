import pytest

from app.engine.config import Config
from app.engine.node import Node, NodeOptions


@pytest.fixture
def node(tmp_path):
    """A node of tmp_path/A, not started: no network, no scan; its index closed after."""
    (tmp_path / "A").mkdir()
    node = Node(NodeOptions(folder=tmp_path / "A", config=Config(tmp_path / "cfg"),
                            secret="k", name="a"))
    try:
        yield node
    finally:
        node.index.close()
