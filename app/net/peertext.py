"""Text another device sends (its name, its reasons, its address) as this device shows
it: printable and short, so no device can forge a log line, move a terminal's cursor or
fill a window. And the same rule for the name a user gives this device."""

from __future__ import annotations

NAME_MAX = 64  # characters of a device's name


def clipped(value: object, limit: int = 120) -> str:
    """value as text made safe to show: printable (else "?") and at most limit long."""
    text = value if isinstance(value, str) else repr(value)
    text = "".join(c if c.isprintable() else "?" for c in text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def escaped(text: str) -> str:
    """text (a file's name above all) as a terminal may show it: its control characters
    escaped (\\n, \\x1b) as `ls` does, so a name a peer chose can neither end a line
    of the output nor send the terminal its escape codes."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii")
                   for c in text)


def shown_address(host: str, port: int | str) -> str:
    """HOST:PORT as a user types it: an IPv6 address in brackets ([::1]:22100)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def shown_name(name: str) -> str:
    """A device's name as every view shows it."""
    return clipped(name, NAME_MAX)


def name_problem(name: str) -> str | None:
    """Why a name typed for this device cannot be its name, if it cannot."""
    if not name.strip() or not name.isprintable() or len(name) > NAME_MAX:
        return f"a name of printable characters, at most {NAME_MAX} of them"
    return None
