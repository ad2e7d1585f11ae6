#!/bin/sh
# The test command (as root, as CI runs it): installs the real servers the
# tests start, runs the whole cargo suite (unit, vector and integration tests
# over real sockets), builds and installs the Debian package, then runs the
# end-to-end suites against the installed files: real sendmail, inetd,
# xinetd, dnsmasq and tshark, then real Postfix (which replaces sendmail);
# last the dependency audit and a short run of every fuzz target.
#
# It needs root (apt-get, port 25 on loopback, daemons run as other users).
# Run as a user, it runs itself again under sudo, keeping PATH and the Rust
# toolchain's homes so root's cargo is the user's; without sudo it says so.
set -eu
if [ "$(id -u)" != 0 ]; then
    why="it installs packages, binds port 25 on loopback and runs daemons as other users"
    if [ -n "${BLACKPONY_TEST_SUDO:-}" ]; then
        echo "scripts/test.sh: still not root under sudo ($why)" >&2
        exit 1
    fi
    if ! command -v sudo >/dev/null 2>&1; then
        echo "scripts/test.sh: must run as root ($why), and sudo is not installed: run it from a root shell" >&2
        exit 1
    fi
    echo "scripts/test.sh: not root: running again under sudo" >&2
    set -- "PATH=$PATH" BLACKPONY_TEST_SUDO=1 sh "$0" "$@"
    # rustup's cargo finds its toolchain through these (default: the user's home).
    for v in RUSTUP_HOME:.rustup CARGO_HOME:.cargo; do
        dir=$(printenv "${v%%:*}" || echo "${HOME:-/nonexistent}/${v#*:}")
        [ ! -d "$dir" ] || set -- "${v%%:*}=$dir" "$@"
    done
    exec sudo env "$@"
fi
cd "$(dirname "$0")/.."
sh scripts/install-test-deps.sh
cargo test --release --workspace "$@"
# The forced-panic tests need the fault-injection feature (never in a shipped
# build): their own target dir, which the Postfix e2e's [F] group reuses.
cargo test --release --features fault-injection --target-dir target/fault --test panic_exit
DEB_SKIP_BUILD=1 bash scripts/build-deb.sh
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --reinstall ./target/debian/blackpony_*.deb
BLACKPONY_BIN=/usr/sbin bash scripts/e2e-sendmail.sh
bash scripts/e2e-postfix.sh
# Dependency audit against the vendored advisory database, and a short run of
# every fuzz target (scripts/fuzz.sh SECONDS runs them longer).
sh scripts/audit.sh
sh scripts/fuzz.sh 10
echo "scripts/test.sh: all tests passed"
