#!/usr/bin/env bash
# Build the p2psync desktop bundle: dist/p2psync/ (PyInstaller, one folder), runnable
# without Python on the machine. Installs what it needs first:
#   - scripts/setup.sh: .venv, the pinned Python packages, the system libraries Qt needs
#   - binutils (PyInstaller needs objdump), with apt-get, when missing
#   - PyInstaller into .venv, at the version pinned in constraints.txt
# then renders the icons (packaging/build/icons), runs packaging/p2psync.spec and prints
# the bundle's size and the build time.
#
#   bash packaging/build.sh              build
#   bash packaging/build.sh --if-stale   reuse dist/p2psync when none of its inputs (app/,
#                                        resources/, packaging/, pyproject.toml,
#                                        constraints.txt) changed since it was built
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

if_stale=0
for arg in "$@"; do
    case "$arg" in
        --if-stale) if_stale=1 ;;
        -h | --help) sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "build: unknown option: $arg (try --help)" >&2; exit 2 ;;
    esac
done

say() { echo "build: $*"; }
die() { echo "build: $*" >&2; exit 1; }

PY="$ROOT/.venv/bin/python"
DIST="$ROOT/dist"
BUNDLE="$DIST/p2psync"
WORK="$ROOT/packaging/build"
STAMP="$DIST/.p2psync-bundle.sha256"

# What the bundle is made of: the hash of every input file's path and content.
inputs_hash() {
    {
        find app resources packaging -type f \
            ! -path 'packaging/build/*' ! -path '*/__pycache__/*' ! -name '*.pyc' \
            ! -name 'README.md' -print0 | LC_ALL=C sort -z | xargs -0 sha256sum
        sha256sum pyproject.toml constraints.txt
    } | sha256sum | cut -d' ' -f1
}

if [ "$if_stale" -eq 1 ] && [ -x "$BUNDLE/p2psync" ] && [ -f "$STAMP" ] &&
    [ "$(cat "$STAMP")" = "$(inputs_hash)" ]; then
    say "dist/p2psync is up to date ($(du -sh "$BUNDLE" | cut -f1)); not rebuilding"
    exit 0
fi

started=$(date +%s)

# ---------------------------------------------------------------- 1. what the build needs
bash scripts/setup.sh

if ! command -v objdump >/dev/null 2>&1; then
    if ! command -v apt-get >/dev/null 2>&1; then
        die "PyInstaller needs objdump: install binutils with your package manager"
    fi
    as_root=()
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null 2>&1 ||
            die "PyInstaller needs objdump; as root run: apt-get install -y binutils"
        as_root=(sudo)
    fi
    say "installing binutils (PyInstaller needs objdump)"
    apt_log="$(mktemp "${TMPDIR:-/tmp}/p2psync-apt.XXXXXX")"
    if ! {
        "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -q -o DPkg::Lock::Timeout=120 update &&
            "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -q -y \
                --no-install-recommends -o DPkg::Lock::Timeout=120 binutils
    } >"$apt_log" 2>&1; then
        tail -n 20 "$apt_log" >&2
        die "apt-get install binutils failed (full log: $apt_log)"
    fi
    rm -f "$apt_log"
fi

want_pyi="$(sed -n 's/^pyinstaller==\([^ ]*\).*/\1/p' constraints.txt)"
[ -n "$want_pyi" ] || die "constraints.txt pins no pyinstaller version"
have_pyi="$("$PY" -c 'import PyInstaller; print(PyInstaller.__version__)' 2>/dev/null || true)"
if [ "$have_pyi" != "$want_pyi" ]; then
    say "installing PyInstaller $want_pyi into .venv"
    pip_log="$ROOT/.venv/pip-pyinstaller.log"
    if ! "$PY" -m pip install --no-input --disable-pip-version-check \
        -c constraints.txt "pyinstaller==$want_pyi" >"$pip_log" 2>&1; then
        grep -v "^WARNING: Location 'file:" "$pip_log" | tail -n 20 >&2
        die "pip install pyinstaller failed (full log: $pip_log)"
    fi
fi

# ---------------------------------------------------------------- 2. icons and the bundle
mkdir -p "$WORK"
QT_QPA_PLATFORM=offscreen "$PY" packaging/make_icons.py "$WORK/icons"

say "running PyInstaller $want_pyi (packaging/p2psync.spec; log: packaging/build/pyinstaller.log)"
rm -f "$STAMP"
pyi_started=$(date +%s)
if ! "$PY" -m PyInstaller --noconfirm --clean --log-level WARN \
    --distpath "$DIST" --workpath "$WORK/pyinstaller" packaging/p2psync.spec \
    >"$WORK/pyinstaller.log" 2>&1; then
    tail -n 40 "$WORK/pyinstaller.log" >&2
    die "PyInstaller failed (full log: packaging/build/pyinstaller.log)"
fi
pyi_s=$(($(date +%s) - pyi_started))
[ -x "$BUNDLE/p2psync" ] || die "PyInstaller made no $BUNDLE/p2psync"

# the metainfo must name the version being built
version="$("$PY" -c 'import app; print(app.__version__)')"
grep -q "<release version=\"$version\"" packaging/io.github.p2psync.metainfo.xml ||
    say "warning: packaging/io.github.p2psync.metainfo.xml has no <release version=\"$version\">"
if command -v appstreamcli >/dev/null 2>&1; then
    appstreamcli validate --no-net --pedantic \
        "$BUNDLE/share/metainfo/io.github.p2psync.metainfo.xml" >"$WORK/appstream.log" 2>&1 ||
        { cat "$WORK/appstream.log" >&2; die "appstreamcli: the metainfo is not valid"; }
fi
if command -v desktop-file-validate >/dev/null 2>&1; then
    desktop-file-validate "$BUNDLE/share/applications/p2psync.desktop" ||
        die "desktop-file-validate: p2psync.desktop is not valid"
fi

inputs_hash >"$STAMP"
say "built dist/p2psync (p2psync $version): $(du -sh "$BUNDLE" | cut -f1)," \
    "$(find "$BUNDLE" -type f | wc -l) files; PyInstaller ${pyi_s} s, all $(($(date +%s) - started)) s"
