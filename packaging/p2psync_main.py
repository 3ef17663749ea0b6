"""The bundle's entry point (PyInstaller runs this as __main__): the `p2psync` command.

`freeze_support` first: a scan of a big folder starts processes of this same bundle
(app/core/survey.py), which must run their share and not the command line.
"""

import multiprocessing

multiprocessing.freeze_support()

from app.cli.main import main  # noqa: E402

raise SystemExit(main())
