"""A device that hears p2psync devices of another key nearby says so (a mistyped key is
otherwise silent); it never joins them, and devices of its own share are not counted."""

from __future__ import annotations

from tests.procs import live_node, start_run, wait_until


def discovering(tmp_path, name: str, port: int, secret: str):
    return start_run(tmp_path / name, tmp_path / f"cfg-{name}", "--discovery-port", str(port),
                     "--name", name, secret=secret, discovery=True)


def test_devices_of_another_key_are_counted_and_said_and_the_count_follows_them(tmp_path):
    port = 27000 + (hash(str(tmp_path)) % 900)
    nodes = [discovering(tmp_path, "ours", port, "the-key-of-ours-1234")]
    try:
        nodes.append(discovering(tmp_path, "mate", port, "the-key-of-ours-1234"))
        nodes.append(discovering(tmp_path, "typo1", port, "the-key-of-ourz-1234"))
        ours = nodes[0]
        ours.wait_for_log(r"1 device nearby uses a different key: if one of them should be "
                          r"in this share, its key is mistyped", timeout=20)
        nodes[2].wait_for_log(r"2 devices nearby use a different key", timeout=20)
        nodes.append(discovering(tmp_path, "typo2", port, "yet-another-key-5678"))
        ours.wait_for_log(r"2 devices nearby use a different key", timeout=20)
        # the devices of its own share are peers, never counted
        wait_until(lambda: len((live_node(ours) or {}).get("peers", [])) == 1, timeout=20)
        assert [p["name"] for p in live_node(ours)["peers"]] == ["mate"]
        for node in nodes[2:]:
            assert node.stop() == 0, node.log()
        ours.wait_for_log(r"no device nearby uses a different key any more", timeout=30)
    finally:
        for node in nodes:
            node.stop()
