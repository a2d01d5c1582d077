#!/bin/sh
# Install everything the tests need, then run the whole suite (as root).
set -eu
cd "$(dirname "$0")/.."
scripts/install.sh --test
exec .venv/bin/python -m pytest -q -p no:cacheprovider tests "$@"
