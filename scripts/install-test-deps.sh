#!/bin/sh
# Install what the test suite needs on a fresh Debian machine: the real
# servers the integration tests start (dnsmasq, openbsd-inetd),
# systemd-socket-activate (package systemd) for the Accept=no tests,
# chromium for the HTML report test, a capture tool (tshark), Python for the
# smtplib client, and GNU time (/usr/bin/time) for the peak-RSS checks in
# tests/hardening.rs.
# Safe to run again; needs root (or sudo) for apt-get.
set -eu

SUDO=
[ "$(id -u)" = 0 ] || SUDO=sudo

need=""
for pkg in dnsmasq-base openbsd-inetd python3 tshark chromium fonts-liberation time; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need="$need $pkg"
done
# A container may lack systemd: the tests only need this one program of it.
[ -x /usr/bin/systemd-socket-activate ] || need="$need systemd"
if [ -n "$need" ]; then
    # Package scripts must not start system daemons on this machine.
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
        $SUDO chmod 755 /usr/sbin/policy-rc.d
    fi
    echo "wireshark-common wireshark-common/install-setuid boolean false" | $SUDO debconf-set-selections 2>/dev/null || true
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $need
fi
