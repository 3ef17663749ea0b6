import os

# An empty QT_QPA_PLATFORM aborts Python; tests never need a real display.
os.environ["QT_QPA_PLATFORM"] = os.environ.get("QT_QPA_PLATFORM") or "offscreen"

# Discovery in tests never leaves this machine: loopback broadcast only (netns tests
# set their own targets inside the namespaces they create).
os.environ.setdefault("P2PSYNC_DISCOVERY_TARGETS", "127.255.255.255")
