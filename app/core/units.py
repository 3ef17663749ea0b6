"""Sizes as people read them, for messages from the engine and the window alike."""

from __future__ import annotations


def human_size(n: float) -> str:
    """1536 -> "1.5 KB"; binary units, one decimal below 100."""
    if n < 1024:
        return f"{int(n)} B"
    for unit in ("KB", "MB", "GB", "TB"):
        n /= 1024
        if n < 1024 or unit == "TB":
            return f"{n:.1f} {unit}" if n < 100 else f"{n:.0f} {unit}"
    return f"{n:.0f} TB"
