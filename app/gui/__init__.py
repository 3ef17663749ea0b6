"""The desktop app (PySide6). Importing it applies app.gui.qtfix before any widget exists."""

from app.gui import qtfix as _qtfix  # noqa: F401
