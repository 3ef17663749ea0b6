"""PyInstaller runtime hook: the bundle's self-test, run inside the frozen app.

    P2PSYNC_BUNDLE_SELFTEST=1 dist/p2psync/p2psync

checks, from inside the bundle, what cannot be seen from outside it, prints one line per
check and exits (0: all good, 1: something is wrong) instead of starting p2psync:

- every imported module and every sys.path entry lies inside the bundle (no Python
  installation beside it is used);
- `importlib.resources.files("resources")` (what app.resources uses) resolves inside the
  bundle and holds the app icon and the state icons;
- Qt's plugins come from the bundle and can read the PNG and SVG icons (offscreen);
- where the log file goes (platformdirs' user_log_dir);
- a big folder's scan can start its survey processes (this bundle again, run by
  `multiprocessing.freeze_support` in packaging/p2psync_main.py).

Without the variable this hook does nothing. packaging/smoke.sh runs it.
"""

import os
import sys

# not in the processes the self-test's survey starts (the bundle again, with arguments)
if os.environ.get("P2PSYNC_BUNDLE_SELFTEST") and len(sys.argv) == 1:

    def _selftest() -> int:  # noqa: C901 - one linear list of checks
        import importlib.resources
        import sys
        from pathlib import Path

        base = Path(getattr(sys, "_MEIPASS", "/nonexistent")).resolve()
        failed = []

        def check(ok: bool, what: str) -> None:
            print(f"selftest: {'ok  ' if ok else 'FAIL'} {what}", flush=True)
            if not ok:
                failed.append(what)

        def inside(p) -> bool:
            try:
                return Path(p).resolve().is_relative_to(base)
            except (OSError, ValueError):
                return False

        check(bool(getattr(sys, "frozen", False)), f"frozen bundle, contents in {base}")

        import app
        from app import resources as res

        check(bool(app.__version__), f"app version {app.__version__}")

        files = importlib.resources.files("resources")
        svg = files.joinpath("icon.svg")
        check(svg.is_file() and inside(str(svg)),
              f"importlib.resources.files('resources') -> {files}")
        check(inside(res.root()), f"app.resources.root() -> {res.root()}")
        icons = res.app_icon_files()
        check(any(p.suffix == ".png" for p in icons) and all(p.is_file() and inside(p)
                                                              for p in icons),
              f"app icon files: {', '.join(p.name for p in icons)}")
        states = sorted(p.stem for p in res.root().glob("states/*.svg"))
        missing = [s for s in states if not all(p.is_file() for p in res.state_icon_files(s))]
        check(bool(states) and not missing,
              f"state icons: {len(states)} ({', '.join(missing) or 'all present'})")

        os.environ["QT_QPA_PLATFORM"] = "offscreen"
        from PySide6.QtCore import QLibraryInfo, QSize
        from PySide6.QtGui import QIcon, QImageReader
        from PySide6.QtWidgets import QApplication

        qt_app = QApplication.instance() or QApplication(sys.argv[:1])  # noqa: F841
        plugins = QLibraryInfo.path(QLibraryInfo.LibraryPath.PluginsPath)
        check(inside(plugins), f"Qt plugins from {plugins}")
        formats = sorted(bytes(f).decode() for f in QImageReader.supportedImageFormats())
        check("png" in formats and "svg" in formats, f"Qt image formats: {' '.join(formats)}")
        png = QIcon(str(icons[-1])).pixmap(QSize(48, 48))
        check(not png.isNull(), f"Qt reads {icons[-1].name}")
        svg_pix = QIcon(str(res.path("icon.svg"))).pixmap(QSize(64, 64))
        check(not svg_pix.isNull(), "Qt renders icon.svg")

        outside = sorted(
            f"{name} ({mod.__file__})" for name, mod in list(sys.modules.items())
            # relative names (shibokensupport/...) are code embedded in a bundled library
            if os.path.isabs(getattr(mod, "__file__", None) or "") and not inside(mod.__file__)
        )
        check(not outside, f"{len(sys.modules)} modules loaded, none from outside the bundle"
              + (f" (outside: {', '.join(outside[:5])})" if outside else ""))
        stray = [p for p in sys.path if p and not inside(p)]
        check(not stray, f"sys.path inside the bundle ({len(sys.path)} entries)"
              + (f" (outside: {stray})" if stray else ""))

        _check_survey(check)

        from platformdirs import user_log_dir

        print(f"selftest: log dir {user_log_dir('p2psync', appauthor=False)}", flush=True)
        print(f"selftest: {'FAILED: ' + '; '.join(failed) if failed else 'all checks passed'}",
              flush=True)
        return 1 if failed else 0

    def _check_survey(check) -> None:
        """A big folder's full scan starts processes of this very bundle to survey it
        (app/core/survey.py): they must run their share, not start p2psync."""
        import tempfile
        from pathlib import Path

        from app.core import platform, scanner, survey
        from app.core.ignore import Ignore
        from app.core.index import Index
        from app.core.namerules import LINUX

        if platform.usable_cores() < 2:
            print("selftest: skip a scan's survey (one core: never surveyed)", flush=True)
            return
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp, "folder")
            (root / "d").mkdir(parents=True)
            for i in range(3):
                (root / "d" / f"{i}.txt").write_text("x")
            with Index(Path(tmp, "index.db"), "SELFTEST") as index:
                scanner.scan(root, index, Ignore(root))
                (root / "d" / "new.txt").write_text("y")
                survey.SURVEY_FROM = 0
                # this hook is __main__ while it runs, and the new processes would run
                # it again by its path, which is not a file in the bundle (p2psync_main
                # is, and the processes of a real scan find it as their own __main__)
                main = sys.modules["__main__"]
                path = main.__dict__.pop("__file__", None)
                try:
                    found = survey.survey(root, index, Ignore(root), LINUX)
                finally:
                    if path is not None:
                        main.__file__ = path
        check(found is not None and found.dirty == ["d/new.txt"],
              f"a scan's survey in {platform.usable_cores()} processes of this bundle: "
              f"{found.dirty if found else 'did not run'}")

    try:
        _code = _selftest()
    except BaseException as _e:  # noqa: BLE001 - report anything, then exit non-zero
        import traceback

        traceback.print_exc()
        print(f"selftest: FAILED with {_e!r}", flush=True)
        _code = 1
    os._exit(_code)
