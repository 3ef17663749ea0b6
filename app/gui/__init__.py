"""The desktop app (PySide6). Importing it applies app.gui.qtfix before any widget exists.

Where Qt cannot be imported at all, this package still imports: `p2psync gui` then
says in one line what is missing (app.gui.qtcheck) instead of a traceback.
"""

import contextlib

with contextlib.suppress(ImportError):  # no PySide6, or a library Qt needs: launch says which
    from app.gui import qtfix as _qtfix  # noqa: F401
