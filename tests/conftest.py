import os

# An empty QT_QPA_PLATFORM aborts Python; tests never need a real display.
os.environ["QT_QPA_PLATFORM"] = os.environ.get("QT_QPA_PLATFORM") or "offscreen"
