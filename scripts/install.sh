#!/bin/sh
# Install hutch and what it needs on a fresh Debian 12, as root.
#   scripts/install.sh          the runtime and the demo's needs
#   scripts/install.sh --test   also the peers the tests compare against and pytest
set -eu
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive

runtime_pkgs="python3 python3-venv iproute2 util-linux procps nftables"
test_pkgs="busybox-static runc crun bubblewrap podman conmon containerd containernetworking-plugins
           criu nftables hyperfine uidmap iperf3 netavark aardvark-dns fuse-overlayfs"

pkgs="$runtime_pkgs"
[ "${1:-}" = "--test" ] && pkgs="$pkgs $test_pkgs"
missing=""
for p in $pkgs; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

# Debian's own interpreter, not whichever python3 is first on PATH: it is built with PGO and
# LTO and links libpython statically, which makes every hutch verb about a third faster than
# a default source build (pyenv's) and starts 1 ms sooner (bench/startup shows both).
python_bin=/usr/bin/python3
if [ ! -x .venv/bin/python ] || ! grep -qx "home = /usr/bin" .venv/pyvenv.cfg 2>/dev/null; then
    rm -rf .venv
    "$python_bin" -m venv .venv
fi
if [ "${1:-}" = "--test" ]; then
    .venv/bin/pip install -q -e '.[test]'
else
    .venv/bin/pip install -q -e .
fi
# Byte-compile now: with PYTHONDONTWRITEBYTECODE set, every start would compile from source.
.venv/bin/python -m compileall -q src >/dev/null

# A lean launcher in place of pip's wrapper: `python -IS` skips site (5 ms) and ignores
# PYTHON* variables, which a runtime run as root should not honour anyway.
python="$(pwd)/.venv/bin/python"
pkgdir=$("$python" -c 'import hutch, os; print(os.path.dirname(os.path.dirname(hutch.__file__)))')
cat > .venv/bin/hutch <<LAUNCHER
#!$python -IS
import sys
sys.path.insert(0, "$pkgdir")
from hutch.cli.main import entry
entry()
LAUNCHER
chmod 755 .venv/bin/hutch
