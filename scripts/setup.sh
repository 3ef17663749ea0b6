#!/usr/bin/env bash
# Bootstrap p2psync's development environment; safe to run any number of times.
#
#   scripts/setup.sh          system libraries for Qt offscreen + tests, .venv, Python packages
#   scripts/setup.sh --gui    the same, plus the X11/xcb libraries a real Qt window needs
#
# 1. Missing system libraries (and iproute2, acl, python3-venv) are installed with apt-get
#    (through sudo when not root). Where that is impossible it prints what to install and
#    exits 1.
# 2. .venv is created in the repo root when missing.
# 3. pip install -c constraints.txt -e '.[gui,test]' runs only when the stamp file
#    .venv/.p2psync-installed does not hold the sha256 of pyproject.toml + constraints.txt.
#
# Quiet when there is nothing to do; one line per step it does. Environment:
#   PYTHON   the interpreter that creates .venv (default: python3; needs >= 3.11)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

want_gui=0
for arg in "$@"; do
    case "$arg" in
        --gui) want_gui=1 ;;
        -h | --help) sed -n '2,16p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "setup: unknown option: $arg (try --help)" >&2; exit 2 ;;
    esac
done

say() { echo "setup: $*"; }
die() { echo "setup: $*" >&2; exit 1; }

VENV="$ROOT/.venv"
PY="$VENV/bin/python"
STAMP="$VENV/.p2psync-installed"
PYTHON="${PYTHON:-python3}"

# Two runs at once in the same work tree (two terminals, an editor's test runner) must
# not both build .venv: the second one waits here.
if command -v flock >/dev/null 2>&1; then
    lock_id="$(printf '%s' "$ROOT" | cksum | cut -d' ' -f1)"
    exec 9>"${TMPDIR:-/tmp}/p2psync-setup.$(id -u).$lock_id.lock"
    flock 9
fi

# ---------------------------------------------------------------- 1. system packages
# "debian-package  check": the check is a shared library's soname (looked up in the
# ldconfig cache, so renamed packages such as Debian's *t64 ones count as present) or
# cmd:NAME for a program.
BASE_PKGS=(
    "libgl1 libGL.so.1"
    "libegl1 libEGL.so.1"
    "libxkbcommon0 libxkbcommon.so.0"
    "libfontconfig1 libfontconfig.so.1"
    "libglib2.0-0 libglib-2.0.so.0"
    "libdbus-1-3 libdbus-1.so.3"
    "iproute2 cmd:ip"
    "acl cmd:setfacl"  # the test of batched writes into a directory with a default ACL
)
GUI_PKGS=(
    "libxcb-cursor0 libxcb-cursor.so.0"
    "libxcb-icccm4 libxcb-icccm.so.4"
    "libxcb-keysyms1 libxcb-keysyms.so.1"
    "libxcb-image0 libxcb-image.so.0"
    "libxcb-render-util0 libxcb-render-util.so.0"
    "libxcb-shape0 libxcb-shape.so.0"
    "libxkbcommon-x11-0 libxkbcommon-x11.so.0"
)

have_cmd() {
    command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ]
}

run_as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    else
        sudo "$@"
    fi
}

missing_pkgs=()
missing_libs=()
if [ "$(uname -s)" = Linux ]; then
    ld_cache=""
    for c in "$(command -v ldconfig 2>/dev/null)" /sbin/ldconfig /usr/sbin/ldconfig; do
        if [ -n "$c" ] && [ -x "$c" ]; then
            ld_cache="$("$c" -p 2>/dev/null || true)"
            break
        fi
    done

    pkgs=("${BASE_PKGS[@]}")
    [ "$want_gui" -eq 0 ] || pkgs+=("${GUI_PKGS[@]}")
    for entry in "${pkgs[@]}"; do
        pkg="${entry%% *}"
        check="${entry#* }"
        case "$check" in
            cmd:*) have_cmd "${check#cmd:}" && continue ;;
            *) [[ "$ld_cache" == *$'\t'"$check "* ]] && continue ;;
        esac
        missing_pkgs+=("$pkg")
        missing_libs+=("${check#cmd:}")
    done

    # Debian's own python3 ships without ensurepip, so `python3 -m venv` fails until
    # python3-venv is installed. Only looked at when .venv still has to be made.
    if [ ! -x "$PY" ] && have_cmd dpkg-query; then
        if ! command -v "$PYTHON" >/dev/null 2>&1; then
            [ "$PYTHON" != python3 ] || missing_pkgs+=(python3 python3-venv)
        elif ! "$PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1; then
            missing_pkgs+=(python3-venv)
        fi
    fi
fi

if [ "${#missing_pkgs[@]}" -gt 0 ]; then
    can_apt=0
    if have_cmd apt-get; then
        if [ "$(id -u)" -eq 0 ]; then
            can_apt=1
        elif command -v sudo >/dev/null 2>&1; then
            # sudo without a password, or with one typed at a terminal
            if sudo -n true 2>/dev/null || [ -t 0 ]; then can_apt=1; fi
        fi
    fi
    if [ "$can_apt" -eq 0 ]; then
        if have_cmd apt-get; then
            die "missing system packages; as root run: apt-get update && apt-get install -y --no-install-recommends ${missing_pkgs[*]}"
        else
            die "missing system libraries/programs: ${missing_libs[*]-} (Debian/Ubuntu packages: ${missing_pkgs[*]}); install them with your package manager"
        fi
    fi
    say "installing system packages: ${missing_pkgs[*]}"
    apt_log="$(mktemp "${TMPDIR:-/tmp}/p2psync-apt.XXXXXX")"
    apt_opts=(-q -y --no-install-recommends -o DPkg::Lock::Timeout=120)
    if ! {
        run_as_root env DEBIAN_FRONTEND=noninteractive apt-get -q -o DPkg::Lock::Timeout=120 update &&
            run_as_root env DEBIAN_FRONTEND=noninteractive apt-get install "${apt_opts[@]}" "${missing_pkgs[@]}"
    } >"$apt_log" 2>&1; then
        tail -n 30 "$apt_log" >&2
        die "apt-get failed (full log: $apt_log)"
    fi
    rm -f "$apt_log"
fi

# ---------------------------------------------------------------- 2. the virtualenv
if [ ! -x "$PY" ]; then
    command -v "$PYTHON" >/dev/null 2>&1 ||
        die "no $PYTHON found: install Python 3.11 or newer (Debian/Ubuntu: apt-get install python3 python3-venv)"
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
        die "p2psync needs Python 3.11 or newer; $PYTHON is $("$PYTHON" -V 2>&1) (set PYTHON=/path/to/python3.11)"
    if [ -e "$VENV" ]; then
        say "removing broken .venv (its python no longer runs)"
        rm -rf "$VENV"
    fi
    if ! venv_err="$("$PYTHON" -m venv "$VENV" 2>&1)"; then
        rm -rf "$VENV"
        if ! "$PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1; then
            die "$PYTHON has no venv/ensurepip module: apt-get install python3-venv (Debian/Ubuntu), then run this again"
        fi
        echo "$venv_err" >&2
        die "could not create .venv with $PYTHON"
    fi
    say "created .venv ($("$PY" -V 2>&1))"
fi

# ---------------------------------------------------------------- 3. Python packages
hash_inputs() {
    if command -v sha256sum >/dev/null 2>&1; then
        cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1
    else
        cat pyproject.toml constraints.txt | shasum -a 256 | cut -d' ' -f1
    fi
}
want_hash="$(hash_inputs)"
have_hash="$(cat "$STAMP" 2>/dev/null || true)"
if [ "$want_hash" != "$have_hash" ]; then
    say "installing Python packages into .venv (pip install -c constraints.txt -e '.[gui,test]')"
    rm -f "$STAMP"
    pip_log="$VENV/pip-install.log"
    if ! "$PY" -m pip install --no-input --disable-pip-version-check \
        -c constraints.txt -e '.[gui,test]' >"$pip_log" 2>&1; then
        grep -v "^WARNING: Location 'file:" "$pip_log" | tail -n 30 >&2
        die "pip install failed (full log: $pip_log)"
    fi
    echo "$want_hash" >"$STAMP"
fi
