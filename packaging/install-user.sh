#!/usr/bin/env bash
# Install the p2psync bundle this script sits in for the current user (no root needed):
#
#   ./install-user.sh              copy the bundle to ~/.local/lib/p2psync, link
#                                  ~/.local/bin/p2psync to it, and add the menu entry,
#                                  the icons and the AppStream metainfo under ~/.local/share
#   ./install-user.sh --here       the same, but run the bundle from where it is now
#   ./install-user.sh --uninstall  remove all of that again (your folders, settings and
#                                  logs are not touched)
#
# Environment: P2PSYNC_APPDIR (default ~/.local/lib/p2psync), XDG_DATA_HOME (default
# ~/.local/share), P2PSYNC_BINDIR (default ~/.local/bin).
set -euo pipefail

SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DATA="${XDG_DATA_HOME:-$HOME/.local/share}"
APPDIR="${P2PSYNC_APPDIR:-$HOME/.local/lib/p2psync}"
BINDIR="${P2PSYNC_BINDIR:-$HOME/.local/bin}"
SIZES="16 22 24 32 48 64 128 256 512"

say() { echo "install-user: $*"; }
die() { echo "install-user: $*" >&2; exit 1; }

refresh_caches() {
    if command -v update-desktop-database >/dev/null 2>&1; then
        update-desktop-database -q "$DATA/applications" 2>/dev/null || true
    fi
    if command -v gtk-update-icon-cache >/dev/null 2>&1 && [ -f "$DATA/icons/hicolor/index.theme" ]; then
        gtk-update-icon-cache -q -t -f "$DATA/icons/hicolor" 2>/dev/null || true
    fi
}

# a directory we may delete: one of our bundles
is_bundle() { [ -x "$1/p2psync" ] && [ -d "$1/_internal" ]; }

mode=copy
case "${1:-}" in
    "") ;;
    --here) mode=here ;;
    --uninstall) mode=uninstall ;;
    -h | --help) sed -n '2,14p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option: $1 (try --help)" ;;
esac

if [ "$mode" = uninstall ]; then
    rm -f "$DATA/applications/p2psync.desktop" "$DATA/metainfo/io.github.p2psync.metainfo.xml"
    for n in $SIZES; do rm -f "$DATA/icons/hicolor/${n}x${n}/apps/p2psync.png"; done
    rm -f "$DATA/icons/hicolor/scalable/apps/p2psync.svg"
    if [ -L "$BINDIR/p2psync" ]; then rm -f "$BINDIR/p2psync"; fi
    if is_bundle "$APPDIR"; then rm -rf "$APPDIR"; fi
    refresh_caches
    say "removed p2psync (settings, index and logs of your folders are kept)"
    exit 0
fi

is_bundle "$SRC" || die "$SRC is not a p2psync bundle (no p2psync and _internal/ beside this script)"
[ -d "$SRC/share/icons/hicolor" ] || die "$SRC/share/icons/hicolor is missing"

if [ "$mode" = here ]; then
    APPDIR="$SRC"
elif [ "$(cd "$SRC" && pwd -P)" != "$(mkdir -p "$APPDIR" && cd "$APPDIR" && pwd -P)" ]; then
    if [ -e "$APPDIR/p2psync" ] || [ -e "$APPDIR/_internal" ]; then
        is_bundle "$APPDIR" || die "$APPDIR holds something else than a p2psync bundle; not touching it"
        rm -rf "$APPDIR"
    fi
    rmdir "$APPDIR" 2>/dev/null || true
    mkdir -p "$(dirname "$APPDIR")"
    cp -a "$SRC" "$APPDIR"
    say "copied the bundle to $APPDIR"
fi

mkdir -p "$BINDIR" "$DATA/applications" "$DATA/metainfo"
ln -sfn "$APPDIR/p2psync" "$BINDIR/p2psync"

# the menu entry, with the program's absolute path (quoted as the Desktop Entry spec says)
exe="$APPDIR/p2psync"
quoted="\"$(printf '%s' "$exe" | sed -e 's/[\\"`$]/\\\\&/g')\""
sed -e "s|^Exec=.*|Exec=$quoted|" -e "s|^TryExec=.*|TryExec=$exe|" \
    "$SRC/share/applications/p2psync.desktop" >"$DATA/applications/p2psync.desktop"
cp "$SRC/share/metainfo/io.github.p2psync.metainfo.xml" "$DATA/metainfo/"
mkdir -p "$DATA/icons"
cp -r "$SRC/share/icons/hicolor" "$DATA/icons/"
refresh_caches

say "installed: $BINDIR/p2psync -> $exe"
say "menu entry: $DATA/applications/p2psync.desktop (icons in $DATA/icons/hicolor)"
case ":$PATH:" in
    *":$BINDIR:"*) ;;
    *) say "note: $BINDIR is not on your PATH; the menu entry works anyway" ;;
esac
