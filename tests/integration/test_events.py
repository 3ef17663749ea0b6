"""The engine's events name what happened and who it came from (the window shows them)."""

from __future__ import annotations

from tests.twonodes import sync_beta_with_alpha


def test_fetched_events_name_the_peer_that_sent_the_file(tmp_path):
    (tmp_path / "A").mkdir()
    (tmp_path / "B").mkdir()
    (tmp_path / "A" / "small.txt").write_text("one block")
    (tmp_path / "A" / "big.bin").write_bytes(bytes(range(256)) * 4096)  # 8 blocks
    events: list[tuple[str, dict]] = []

    sync_beta_with_alpha(tmp_path, on_event=lambda kind, data: events.append((kind, data)))
    fetched = {d["path"]: d for kind, d in events if kind == "fetched"}
    assert set(fetched) == {"small.txt", "big.bin"}
    assert fetched["small.txt"]["from"] == "alpha"
    assert fetched["big.bin"]["from"] == "alpha"
    assert fetched["big.bin"]["size"] == 256 * 4096
