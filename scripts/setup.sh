#!/usr/bin/env bash
# Install everything clusterodm needs on a fresh Debian machine with Python >= 3.11 and Rust:
#   scripts/setup.sh          runtime: .venv with clusterodm (Rust extension built by maturin)
#   scripts/setup.sh --test   also the test tools (pytest, pyodm, chromium for browser tests, ...)
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=0
[ "${1:-}" = "--test" ] && want_test=1

# Debian packages the test suite drives for real (browser tests need chromium; the CLI's
# cross-protocol tests run the real curl and telnet; the store's tests run a real PostgreSQL;
# the replica tests put a real nginx in front of the replicas).
apt_packages=()
if [ "$want_test" = 1 ]; then
    apt_packages+=(chromium curl inetutils-telnet nginx-light postgresql)
fi
missing=()
for pkg in "${apt_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "setup: installing Debian packages: ${missing[*]}"
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

command -v cargo >/dev/null || { echo "setup: Rust (cargo) is required: https://rustup.rs" >&2; exit 1; }
PYTHON=${PYTHON:-python3}
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || { echo "setup: Python >= 3.11 is required (set PYTHON=...)" >&2; exit 1; }

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
if [ "$want_test" = 1 ]; then
    .venv/bin/python -m pip install -q -e '.[test]'
else
    .venv/bin/python -m pip install -q -e .
fi
echo "setup: clusterodm installed in .venv"
