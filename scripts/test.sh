#!/bin/sh
# The test command: installs the real servers the tests start, then runs
# the whole suite (unit, vector, integration and end-to-end tests).
set -eu
cd "$(dirname "$0")/.."
sh scripts/install-test-deps.sh
exec cargo test --release "$@"
