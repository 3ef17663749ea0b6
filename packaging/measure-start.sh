#!/usr/bin/env bash
# Time from launching the bundle (dist/p2psync/p2psync) until its main window is mapped
# on an X server: a measurement, not a test (CI does not run it).
#
#   bash packaging/measure-start.sh [RUNS]     (default 5 cold + 5 warm runs)
#
# Starts its own Xvfb on :99 (apt-get installs xvfb and xdotool when missing), runs the
# app with DISPLAY=:99 QT_QPA_PLATFORM=xcb for a folder it already shares (a returning
# user; a first run made before the timed runs creates the device key), and waits with
# `xdotool search --sync --onlyvisible --name p2psync` for the mapped window; then SIGTERM.
# Cold: before each run `sync; echo 3 > /proc/sys/vm/drop_caches` (needs root; said when
# it is not permitted, then every run is warm). Warm: right after another run.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
EXE="$ROOT/dist/p2psync/p2psync"
RUNS="${1:-5}"
DISP=:99

say() { echo "measure: $*"; }
[ -x "$EXE" ] || { echo "measure: no $EXE: run packaging/build.sh first" >&2; exit 1; }

need=()
command -v Xvfb >/dev/null 2>&1 || need+=(xvfb)
command -v xdotool >/dev/null 2>&1 || need+=(xdotool)
if [ "${#need[@]}" -gt 0 ]; then
    say "installing ${need[*]}"
    apt-get -q update >/dev/null && apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
fi
# the xcb libraries a real window needs (scripts/setup.sh --gui), beside the bundle's own
bash "$ROOT/scripts/setup.sh" --gui

T="$(mktemp -d "${TMPDIR:-/tmp}/p2psync-measure.XXXXXX")"
xvfb_pid=""
app_pid=""
cleanup() {
    [ -z "$app_pid" ] || kill "$app_pid" 2>/dev/null || true
    [ -z "$xvfb_pid" ] || kill "$xvfb_pid" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$T"
}
trap cleanup EXIT

Xvfb "$DISP" -screen 0 1280x800x24 -nolisten tcp >"$T/xvfb.log" 2>&1 &
xvfb_pid=$!
# until the X server answers (xdotool is there by now; xdpyinfo may not be)
for _ in $(seq 100); do
    DISPLAY="$DISP" xdotool getdisplaygeometry >/dev/null 2>&1 && break
    sleep 0.1
done

mkdir -p "$T/home" "$T/folder"
printf 'x\n' >"$T/folder/file.txt"
ENV=(env -i PATH=/usr/bin:/bin HOME="$T/home" LANG=C.UTF-8 DISPLAY="$DISP" QT_QPA_PLATFORM=xcb)

can_drop=0
if sync && echo 3 >/proc/sys/vm/drop_caches 2>/dev/null; then can_drop=1; fi

# one launch; prints the seconds until the window is mapped
launch() {
    local t0 t1
    t0=$(date +%s.%N)
    "${ENV[@]}" "$EXE" gui --folder "$T/folder" --config-dir "$T/cfg" --listen 127.0.0.1:0 \
        --no-discovery --secret measure-key >>"$T/app.log" 2>&1 &
    app_pid=$!
    if ! DISPLAY="$DISP" timeout 60 xdotool search --sync --onlyvisible --name 'p2psync' >/dev/null 2>&1; then
        echo "measure: no window within 60 s; app log:" >&2
        tail -n 20 "$T/app.log" >&2
        exit 1
    fi
    t1=$(date +%s.%N)
    kill -TERM "$app_pid"
    wait "$app_pid" || { echo "measure: the app exited $? after SIGTERM" >&2; exit 1; }
    app_pid=""
    awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f\n", b - a }'
}

launch >/dev/null # first run: creates the device key and certificate
cold=()
warm=()
for _ in $(seq "$RUNS"); do
    if [ "$can_drop" -eq 1 ]; then
        sync
        echo 3 >/proc/sys/vm/drop_caches
        cold+=("$(launch)")
    fi
    warm+=("$(launch)")
done

median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
say "bundle: $(du -sh "$ROOT/dist/p2psync" | cut -f1), window mapped under Xvfb (xcb) after:"
if [ "$can_drop" -eq 1 ]; then
    say "  cold (page cache dropped before each run): median $(median "${cold[@]}") s  [${cold[*]}]"
else
    say "  cold: not measured (echo 3 > /proc/sys/vm/drop_caches is not permitted here)"
fi
say "  warm: median $(median "${warm[@]}") s  [${warm[*]}]"
