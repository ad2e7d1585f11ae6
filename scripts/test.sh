#!/bin/sh
# The test command (as root, as CI runs it): installs the real servers the
# tests start, runs the whole cargo suite (unit, vector and integration tests
# over real sockets), builds and installs the Debian package, then runs the
# end-to-end suites against the installed files: real sendmail, inetd,
# xinetd, dnsmasq and tshark, then real Postfix (which replaces sendmail);
# last the dependency audit and a short run of every fuzz target.
set -eu
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
    echo "scripts/test.sh: run as root (sudo scripts/test.sh): it installs packages and binds port 25 on loopback" >&2
    exit 1
fi
sh scripts/install-test-deps.sh
cargo test --release --workspace "$@"
DEB_SKIP_BUILD=1 bash scripts/build-deb.sh
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --reinstall ./target/debian/blackpony_*.deb
BLACKPONY_BIN=/usr/sbin bash scripts/e2e-sendmail.sh
bash scripts/e2e-postfix.sh
# Dependency audit against the vendored advisory database, and a short run of
# every fuzz target (scripts/fuzz.sh SECONDS runs them longer).
sh scripts/audit.sh
sh scripts/fuzz.sh 10
echo "scripts/test.sh: all tests passed"
