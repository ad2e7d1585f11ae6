#!/bin/sh
# The test command: installs the real servers the tests start, runs the
# whole cargo suite (unit, vector, integration tests over real sockets),
# then the end-to-end suite with real sendmail, inetd, xinetd, dnsmasq and
# tshark (as root: it installs packages and binds port 25 on loopback
# addresses).
set -eu
cd "$(dirname "$0")/.."
sh scripts/install-test-deps.sh
cargo test --release "$@"
if [ "$(id -u)" = 0 ]; then
    BLACKPONY_BIN="${BLACKPONY_BIN:-$(pwd)/${CARGO_TARGET_DIR:-target}/release}" bash scripts/e2e-sendmail.sh
else
    echo "scripts/test.sh: the end-to-end suite needs root (sudo scripts/test.sh); not run" >&2
    exit 1
fi
