"""The bundle's entry point (PyInstaller runs this as __main__): the `p2psync` command."""

from app.cli.main import main

raise SystemExit(main())
