#!/usr/bin/env bash
# Smoke test of the desktop bundle (.ci/run calls it after scripts/test):
#
#   bash packaging/smoke.sh
#
# 1. builds dist/p2psync with packaging/build.sh, or reuses it when nothing it is made
#    of changed since (--if-stale)
# 2. `p2psync --version`, also with an empty environment (env -i) and from a copy of
#    the bundle in another directory; where a private mount namespace is allowed (root),
#    also with every Python installation on the machine hidden
# 3. the bundle's self-test (P2PSYNC_BUNDLE_SELFTEST=1: resources through
#    importlib.resources, Qt plugins, no module from outside the bundle)
# 4. the desktop files: icons 16..512, .desktop, AppStream metainfo naming this version
# 5. a headless `run` and a `sync --peer` to it, two bundled instances on loopback: the
#    files arrive byte-identical both ways, `status --json` and `id` work, `run` exits 0
#    on SIGTERM
# 6. the window offscreen (QT_QPA_PLATFORM=offscreen): started, up, SIGTERM, exit 0, and
#    the log file in platformdirs' user_log_dir
# Every run of the bundle gets a private HOME and XDG dirs under a temporary directory.
# Exit 0 when all passed; else 1 with the failing step and the log that shows why.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

say() { echo "smoke: $*"; }
fail() {
    echo "smoke: FAIL: $1" >&2
    if [ -n "${2:-}" ] && [ -f "$2" ]; then
        echo "smoke: --- last lines of $(basename "$2") ---" >&2
        tail -n 30 "$2" >&2
    fi
    exit 1
}

started=$(date +%s)
bash packaging/build.sh --if-stale

BUNDLE="$ROOT/dist/p2psync"
EXE="$BUNDLE/p2psync"
[ -x "$EXE" ] || fail "no $EXE after the build"
version="$(sed -n 's/^__version__ = "\([^"]*\)".*/\1/p' app/__init__.py)"
[ -n "$version" ] || fail "no __version__ in app/__init__.py"

T="$(mktemp -d "${TMPDIR:-/tmp}/p2psync-smoke.XXXXXX")"
started_pids=()
cleanup() {
    local pid
    for pid in "${started_pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${started_pids[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$T"
}
trap cleanup EXIT

mkdir -p "$T/home" "$T/xdg/config" "$T/xdg/data" "$T/xdg/state" "$T/xdg/cache" "$T/run"
chmod 700 "$T/run"
# what the bundle sees: nothing of this shell's environment (no PYTHONPATH, no venv)
ENV=(env -i PATH=/usr/bin:/bin HOME="$T/home" LANG=C.UTF-8
    XDG_CONFIG_HOME="$T/xdg/config" XDG_DATA_HOME="$T/xdg/data"
    XDG_STATE_HOME="$T/xdg/state" XDG_CACHE_HOME="$T/xdg/cache" XDG_RUNTIME_DIR="$T/run")

# ------------------------------------------------------------------ 2. --version
step_started=$(date +%s)
out="$("$EXE" --version)" || fail "p2psync --version exited $?"
[ "$out" = "p2psync $version" ] || fail "--version printed '$out', expected 'p2psync $version'"
out="$(env -i PATH=/usr/bin:/bin "$EXE" --version)" || fail "env -i p2psync --version failed"
[ "$out" = "p2psync $version" ] || fail "env -i --version printed '$out'"

COPY="$T/elsewhere/p2psync-copy"
mkdir -p "$T/elsewhere"
cp -a "$BUNDLE" "$COPY"
out="$(cd / && "${ENV[@]}" "$COPY/p2psync" --version)" || fail "the copied bundle's --version failed"
[ "$out" = "p2psync $version" ] || fail "the copied bundle printed '$out'"
say "ok: --version = '$out' (as built, with env -i, and from a copy in another directory)"

# Hide every Python of this machine (stdlib dirs, libpython, .venv) in a private mount
# namespace and start the copy there: it must not need any of it.
mkdir -p "$T/probe"
if [ "$(id -u)" -eq 0 ] &&
    unshare --mount --propagation private mount -t tmpfs none "$T/probe" 2>/dev/null; then
    base_prefix="$("$ROOT/.venv/bin/python" -c 'import sys; print(sys.base_prefix)')"
    hide_dirs=("$ROOT/.venv")
    hide_files=()
    for lib in /usr/lib /usr/local/lib /lib "$base_prefix/lib"; do
        for d in "$lib"/python3*; do [ -d "$d" ] && hide_dirs+=("$d"); done
    done
    while IFS= read -r -d '' f; do hide_files+=("$f"); done < <(
        find /usr/lib /usr/local/lib /lib "$base_prefix/lib" -maxdepth 2 \
            -name 'libpython3*.so*' \( -type f -o -type l \) -print0 2>/dev/null)
    cat >"$T/hidden.sh" <<'EOF'
set -eu
n_dirs="$1"; shift
i=0
while [ "$i" -lt "$n_dirs" ]; do mount -t tmpfs none "$1"; shift; i=$((i + 1)); done
copy="$1"; shift
while [ "$#" -gt 0 ]; do
    if [ -L "$1" ]; then target="$(readlink -f "$1")"; else target="$1"; fi
    [ -f "$target" ] && mount --bind /dev/null "$target"
    shift
done
for py in python3 python; do
    if command -v "$py" >/dev/null 2>&1 && "$py" -c 'import encodings' >/dev/null 2>&1; then
        echo "a Python still works here: $(command -v "$py")" >&2; exit 1
    fi
done
"$copy/p2psync" --version
P2PSYNC_BUNDLE_SELFTEST=1 "$copy/p2psync" >/dev/null
EOF
    out="$(cd / && unshare --mount --propagation private "${ENV[@]}" bash "$T/hidden.sh" \
        "${#hide_dirs[@]}" "${hide_dirs[@]}" "$COPY" "${hide_files[@]}" 2>"$T/hidden.log")" ||
        fail "the bundle does not start with the machine's Python hidden" "$T/hidden.log"
    [ "$out" = "p2psync $version" ] || fail "with Python hidden, --version printed '$out'"
    say "ok: starts and passes its self-test with ${#hide_dirs[@]} Python dirs and" \
        "${#hide_files[@]} libpython files hidden (private mount namespace)"
else
    say "skipped: the run with every Python hidden (needs root, unshare --mount and tmpfs mounts)"
fi

# ------------------------------------------------------------------ 3. self-test
if ! (cd / && "${ENV[@]}" P2PSYNC_BUNDLE_SELFTEST=1 "$COPY/p2psync") >"$T/selftest.log" 2>&1; then
    fail "the bundle's self-test (from the copy)" "$T/selftest.log"
fi
grep -q "contents in $COPY/_internal" "$T/selftest.log" ||
    fail "the copy's self-test did not run from the copy" "$T/selftest.log"
say "ok: self-test, $(grep -c '^selftest: ok' "$T/selftest.log") checks (resources via" \
    "importlib.resources in the bundle, Qt plugins and icons, no module from outside)"

# ------------------------------------------------------------------ 4. desktop files
png_size() { # width of a PNG file, from its IHDR chunk
    od -An -tu1 -j16 -N4 "$1" | awk '{print $1 * 16777216 + $2 * 65536 + $3 * 256 + $4}'
}
for n in 16 22 24 32 48 64 128 256 512; do
    icon="$BUNDLE/share/icons/hicolor/${n}x${n}/apps/p2psync.png"
    [ -f "$icon" ] || fail "missing icon share/icons/hicolor/${n}x${n}/apps/p2psync.png"
    [ "$(head -c 8 "$icon" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] ||
        fail "$icon is not a PNG"
    [ "$(png_size "$icon")" = "$n" ] || fail "$icon is $(png_size "$icon") pixels wide, not $n"
done
[ -f "$BUNDLE/share/icons/hicolor/scalable/apps/p2psync.svg" ] || fail "missing the scalable icon"
desktop="$BUNDLE/share/applications/p2psync.desktop"
metainfo="$BUNDLE/share/metainfo/io.github.p2psync.metainfo.xml"
[ -f "$desktop" ] || fail "missing share/applications/p2psync.desktop"
grep -qx 'Icon=p2psync' "$desktop" || fail "p2psync.desktop has no Icon=p2psync"
[ -f "$metainfo" ] || fail "missing share/metainfo/io.github.p2psync.metainfo.xml"
newest="$(grep -o '<release version="[^"]*"' "$metainfo" | head -n 1 | cut -d'"' -f2)"
[ "$newest" = "$version" ] ||
    fail "the metainfo's newest <release> is '$newest', the app is $version: add a <release version=\"$version\"> to packaging/io.github.p2psync.metainfo.xml"
if command -v desktop-file-validate >/dev/null 2>&1; then
    desktop-file-validate "$desktop" || fail "desktop-file-validate p2psync.desktop"
fi
if command -v appstreamcli >/dev/null 2>&1; then
    appstreamcli validate --no-net "$metainfo" >"$T/appstream.log" 2>&1 ||
        fail "appstreamcli validate" "$T/appstream.log"
fi
say "ok: icons 16..512 + scalable, p2psync.desktop, metainfo (release $newest)"

# install-user.sh into a private HOME, then --uninstall
IH="$T/install-home"
mkdir -p "$IH"
env -i PATH=/usr/bin:/bin HOME="$IH" bash "$COPY/install-user.sh" >"$T/install.log" 2>&1 ||
    fail "install-user.sh" "$T/install.log"
out="$(env -i PATH=/usr/bin:/bin HOME="$IH" "$IH/.local/bin/p2psync" --version)" ||
    fail "the installed ~/.local/bin/p2psync --version" "$T/install.log"
[ "$out" = "p2psync $version" ] || fail "the installed p2psync printed '$out'"
grep -qx "Exec=\"$IH/.local/lib/p2psync/p2psync\"" "$IH/.local/share/applications/p2psync.desktop" ||
    fail "the installed p2psync.desktop has no Exec with the installed program" \
        "$IH/.local/share/applications/p2psync.desktop"
[ -f "$IH/.local/share/icons/hicolor/256x256/apps/p2psync.png" ] || fail "install-user.sh installed no icons"
env -i PATH=/usr/bin:/bin HOME="$IH" bash "$IH/.local/lib/p2psync/install-user.sh" --uninstall \
    >>"$T/install.log" 2>&1 || fail "install-user.sh --uninstall" "$T/install.log"
[ ! -e "$IH/.local/share/applications/p2psync.desktop" ] && [ ! -e "$IH/.local/lib/p2psync" ] &&
    [ ! -e "$IH/.local/bin/p2psync" ] || fail "install-user.sh --uninstall left files" "$T/install.log"
say "ok: install-user.sh (bundle, ~/.local/bin link, menu entry, icons, metainfo) and --uninstall"
say "    (steps 2-4: $(($(date +%s) - step_started)) s)"

# ------------------------------------------------------------------ helpers
# wait_for FILE REGEX SECONDS PID WHAT: until FILE has a line matching REGEX
wait_for() {
    local file="$1" regex="$2" limit="$3" pid="$4" what="$5" i=0
    while ! grep -Eq "$regex" "$file" 2>/dev/null; do
        kill -0 "$pid" 2>/dev/null || fail "$what: the process exited early" "$file"
        i=$((i + 1))
        [ "$i" -le $((limit * 10)) ] || fail "$what: not within $limit s" "$file"
        sleep 0.1
    done
}
# stop PID WHAT LOG: SIGTERM, then require exit code 0 within 30 s
stop() {
    local pid="$1" what="$2" log="$3" i=0 rc=0
    kill -TERM "$pid"
    while kill -0 "$pid" 2>/dev/null; do
        i=$((i + 1))
        [ "$i" -le 300 ] || fail "$what did not exit within 30 s of SIGTERM" "$log"
        sleep 0.1
    done
    wait "$pid" || rc=$?
    [ "$rc" -eq 0 ] || fail "$what exited $rc after SIGTERM (expected 0)" "$log"
    if grep -q 'Traceback' "$log"; then fail "$what printed a traceback" "$log"; fi
}

# ------------------------------------------------------------------ 5. headless sync
step_started=$(date +%s)
KEY="smoke-test-share-key"
mkdir -p "$T/a/sub dir" "$T/b"
printf 'hello from a\n' >"$T/a/hello.txt"
head -c 3000000 /dev/urandom >"$T/a/sub dir/data.bin"
printf '#!/bin/sh\necho run\n' >"$T/a/tool.sh"
chmod 755 "$T/a/tool.sh"
printf 'hello from b\n' >"$T/b/from-b.txt"

(cd "$T" && exec "${ENV[@]}" "$EXE" run --folder "$T/a" --config-dir "$T/cfg-a" \
    --listen 127.0.0.1:0 --no-discovery --secret "$KEY" --name smoke-a) \
    >"$T/run-a.log" 2>&1 &
run_pid=$!
started_pids+=("$run_pid")
wait_for "$T/run-a.log" 'listening on 127\.0\.0\.1:[0-9]+' 60 "$run_pid" "p2psync run (A) listening"
port="$(grep -Eo 'listening on 127\.0\.0\.1:[0-9]+' "$T/run-a.log" | head -n 1 | sed 's/.*://')"

sync_rc=0
(cd "$T" && "${ENV[@]}" "$COPY/p2psync" sync --folder "$T/b" --config-dir "$T/cfg-b" \
    --peer "127.0.0.1:$port" --no-discovery --secret "$KEY" --name smoke-b --timeout 120) \
    >"$T/sync-b.log" 2>&1 || sync_rc=$?
[ "$sync_rc" -eq 0 ] || fail "p2psync sync --peer 127.0.0.1:$port exited $sync_rc" "$T/sync-b.log"
for f in hello.txt "sub dir/data.bin" tool.sh; do
    cmp -s "$T/a/$f" "$T/b/$f" || fail "B's copy of '$f' is missing or differs" "$T/sync-b.log"
done
[ -x "$T/b/tool.sh" ] || fail "tool.sh lost its executable bit on the way"
i=0
until cmp -s "$T/b/from-b.txt" "$T/a/from-b.txt"; do # `sync` says both sides agree; allow 10 s
    i=$((i + 1))
    [ "$i" -le 100 ] || fail "from-b.txt did not reach A" "$T/run-a.log"
    sleep 0.1
done
"${ENV[@]}" "$EXE" status --folder "$T/b" --config-dir "$T/cfg-b" --json >"$T/status.json" 2>"$T/status.log" ||
    fail "p2psync status --json" "$T/status.log"
grep -q '"path": "sub dir/data.bin"' "$T/status.json" || fail "status --json does not list sub dir/data.bin" "$T/status.json"
device_id="$("${ENV[@]}" "$EXE" id --config-dir "$T/cfg-b")" || fail "p2psync id"
[ -n "$device_id" ] && [ "$(printf '%s\n' "$device_id" | wc -l)" -eq 1 ] || fail "p2psync id printed '$device_id'"
stop "$run_pid" "p2psync run (A)" "$T/run-a.log"
say "ok: run + sync --peer 127.0.0.1:$port between two bundled instances: 3 files A->B" \
    "(3 MB, byte-identical, exec bit kept), 1 file B->A; status --json, id; run exits 0 on" \
    "SIGTERM ($(($(date +%s) - step_started)) s)"

# ------------------------------------------------------------------ 6. the window
step_started=$(date +%s)
mkdir -p "$T/g"
printf 'gui\n' >"$T/g/note.txt"
(cd "$T" && exec "${ENV[@]}" QT_QPA_PLATFORM=offscreen "$EXE" gui --folder "$T/g" \
    --config-dir "$T/cfg-g" --listen 127.0.0.1:0 --no-discovery --secret "$KEY" --name smoke-g) \
    >"$T/gui.log" 2>&1 &
gui_pid=$!
started_pids+=("$gui_pid")
wait_for "$T/gui.log" 'desktop app started|window (is )?(up|shown)' 60 "$gui_pid" "the window (offscreen)"
up_s=$(($(date +%s) - step_started))
sleep 1 # let the engine come up behind the window before closing it
stop "$gui_pid" "p2psync gui (offscreen)" "$T/gui.log"
if grep -Eq 'Could not (load|find) the Qt platform plugin|cannot open shared object' "$T/gui.log"; then
    fail "Qt could not load a plugin or library" "$T/gui.log"
fi
log_dir="$(sed -n 's/^selftest: log dir //p' "$T/selftest.log")" # user_log_dir, same env
[ "$log_dir" = "$T/xdg/state/p2psync/log" ] ||
    fail "the bundle's user_log_dir is '$log_dir', expected $T/xdg/state/p2psync/log"
grep -q 'desktop app started' "$log_dir/p2psync.log" 2>/dev/null ||
    fail "no log file with the start in $log_dir/p2psync.log" "$T/gui.log"
say "ok: window up offscreen in ${up_s} s, closed on SIGTERM with exit 0;" \
    "log file in user_log_dir (\$XDG_STATE_HOME/p2psync/log/p2psync.log)"

say "all passed: dist/p2psync ($(du -sh "$BUNDLE" | cut -f1)), p2psync $version," \
    "$(($(date +%s) - started)) s"
