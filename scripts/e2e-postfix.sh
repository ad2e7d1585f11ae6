#!/bin/bash
# End-to-end test with real Postfix: Postfix as the backend behind blackpony
# (PROXY protocol and XCLIENT, under a real openbsd-inetd) and Postfix as the
# sender through the blackpony pipe(8) transport, against Postfix sites with
# and without blackpony. DNS from a real dnsmasq. Every Postfix is a private
# instance (own config directory, queue and log), run in the foreground.
# Run as root on Debian 12 after scripts/install-test-deps.sh (dnsmasq,
# openbsd-inetd, python3); installs the postfix package itself, which
# REMOVES sendmail-bin (they conflict): run it after scripts/e2e-sendmail.sh.
#
#   scripts/e2e-postfix.sh
#
# Environment:
#   BLACKPONY_BIN   directory holding blackpony and blackpony-mailer (default:
#                   /usr/sbin if the Debian package is installed, else the
#                   repository's target/release, built if missing)
#   E2E_POSTFIX_SNIPPETS  the master.cf/main.cf snippets to test (default: the
#                   installed package's /usr/share/doc/blackpony/postfix when
#                   BLACKPONY_BIN is /usr/sbin, else the repository's deploy/postfix)
#   E2E_DIR         run directory (default: a new /var/lib/blackpony-e2e-postfix.XXXXXXXXXX)
#   E2E_KEEP=1      keep the run directory after a green run (it is always
#                   kept after a failure, with every log)
#   E2E_DNS_PORT    dnsmasq's port on 127.0.0.1 (default 5354)
#   E2E_NO_INSTALL=1  never run apt-get; fail if postfix is missing
#   E2E_FAULT=0     skip group [F] (a forced panic defers): it builds a second
#                   blackpony-mailer with --features fault-injection into
#                   target/fault (about 1.5 min)
#   E2E_LOAD=0      skip group [L] (500 connections at once through xinetd and
#                   blackpony --listen; needs the xinetd .deb from the mirror)
#   E2E_LOAD_N      connections at once in [L] (default 500)
#
# Topology (all on lo; the sendmail e2e uses 127.0.0.2-9, this one 127.0.0.21-29):
#   127.0.0.1:5354   dnsmasq: pa.test MX 127.0.0.21, pb.test MX 127.0.0.22,
#                    px.test MX 127.0.0.23, pc.test MX 127.0.0.24
#   127.0.0.21:2500  site A: Postfix, remote mail through the blackpony pipe
#                    transport (deploy/postfix/master.cf.sender + main.cf.sender)
#   127.0.0.22:25    site B: openbsd-inetd -> blackpony --proxy-protocol v1
#                    -> B's Postfix 127.0.0.22:2525 (master.cf.backend-proxy)
#   127.0.0.23:25    site B: openbsd-inetd -> blackpony --xclient
#                    -> B's Postfix 127.0.0.22:2526 (master.cf.backend-xclient)
#   127.0.0.24:25    site C: plain Postfix, no blackpony
#   127.0.0.25:25    site B: the control, blackpony with no address passing
#                    -> B's Postfix 127.0.0.22:2527 (must be an open relay)
#   127.0.0.26:25    [L] xinetd (xinetd.d/blackpony, caps raised) -> blackpony
#                    -> B's Postfix 127.0.0.22:2528 (smtpd maxproc 600)
#   127.0.0.27:2525  [L] blackpony --listen --max-connections 600 -> the same
#                    (a port above 1023: it binds as the blackpony user)
#   127.0.0.29       the "outside" client's source address
# The tests are in tests/e2e/postfix/run.py; tests/e2e/postfix/ctl.sh starts
# and stops the daemons by process id, and all are stopped on exit.
set -euo pipefail

# Daemons are started by ctl.sh, which exits at once: make this shell their
# "child subreaper" (prctl PR_SET_CHILD_SUBREAPER, kept across exec), so they
# are reparented to it and reaped here when stopped, not left as zombies.
if [ -z "${E2E_SUBREAPER:-}" ]; then
    export E2E_SUBREAPER=1
    exec python3 -c 'import ctypes, os, sys
ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)
os.execv("/bin/bash", ["bash", *sys.argv[1:]])' "$0" "$@"
fi

REPO=$(cd "$(dirname "$0")/.." && pwd)
HERE=$REPO/tests/e2e/postfix
CTL=$HERE/ctl.sh
T0=$(date +%s%N)
PHASE_T=$T0
PHASE=start

secs() { # nanoseconds since $1, as seconds with one decimal
    local ms=$((($(date +%s%N) - $1) / 1000000))
    printf '%d.%d' $((ms / 1000)) $((ms % 1000 / 100))
}

phase() { # print the time the previous phase took, start the next one
    [ "$PHASE" = start ] || printf 'TIME  %-10s %6s s\n' "$PHASE" "$(secs "$PHASE_T")"
    PHASE=$1
    PHASE_T=$(date +%s%N)
    [ "$1" = end ] || echo "=== $1"
}

die() {
    echo "e2e-postfix: $*" >&2
    exit 1
}

[ "$(id -u)" = 0 ] || die "run as root (it installs postfix, binds port 25 and runs daemons as other users)"

# ---------------------------------------------------------------- install
phase install
for c in dnsmasq:dnsmasq-base inetd:openbsd-inetd python3:python3; do
    command -v "${c%%:*}" >/dev/null 2>&1 || [ -x "/usr/sbin/${c%%:*}" ] ||
        die "${c#*:} is missing: run scripts/install-test-deps.sh first"
done
if ! dpkg -s postfix 2>/dev/null | grep -q '^Status: install ok installed'; then
    [ -z "${E2E_NO_INSTALL:-}" ] || die "postfix is not installed (E2E_NO_INSTALL is set)"
    created_policy=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        # Package scripts must not start the system's Postfix on port 25.
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        created_policy=1
    fi
    if dpkg -s sendmail-bin 2>/dev/null | grep -q '^Status: install ok installed'; then
        echo "note: installing postfix removes sendmail-bin (they conflict)"
    fi
    # "No configuration": no /etc/postfix/main.cf, nothing listens; the
    # tests run private instances only.
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    apt-get update -qq || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=300 \
        --no-install-recommends postfix >"${TMPDIR:-/tmp}/e2e-postfix-apt.$$" 2>&1 || {
        cat "${TMPDIR:-/tmp}/e2e-postfix-apt.$$" >&2
        rm -f "${TMPDIR:-/tmp}/e2e-postfix-apt.$$"
        die "apt-get install postfix failed"
    }
    rm -f "${TMPDIR:-/tmp}/e2e-postfix-apt.$$"
    [ -z "$created_policy" ] || rm -f /usr/sbin/policy-rc.d
fi
[ -x /usr/lib/postfix/sbin/master ] || die "postfix is not installed"
echo "postfix $(postconf -d -h mail_version 2>/dev/null)"

# ---------------------------------------------------------------- binaries
phase binaries
if [ -z "${BLACKPONY_BIN:-}" ]; then
    if [ -x /usr/sbin/blackpony ] && [ -x /usr/sbin/blackpony-mailer ]; then
        BLACKPONY_BIN=/usr/sbin
    else
        BLACKPONY_BIN=$REPO/target/release
        if [ ! -x "$BLACKPONY_BIN/blackpony" ] || [ ! -x "$BLACKPONY_BIN/blackpony-mailer" ]; then
            (cd "$REPO" && cargo build --release --quiet --bin blackpony --bin blackpony-mailer) ||
                die "cargo build --release failed"
        fi
    fi
fi
for b in blackpony blackpony-mailer; do
    [ -x "$BLACKPONY_BIN/$b" ] || die "$BLACKPONY_BIN/$b: not found or not executable (set BLACKPONY_BIN)"
done
BLACKPONY_BIN=$(cd "$BLACKPONY_BIN" && pwd)
if [ -z "${E2E_POSTFIX_SNIPPETS:-}" ]; then
    E2E_POSTFIX_SNIPPETS=$REPO/deploy/postfix
    if [ "$BLACKPONY_BIN" = /usr/sbin ] && [ -d /usr/share/doc/blackpony/postfix ]; then
        E2E_POSTFIX_SNIPPETS=/usr/share/doc/blackpony/postfix
    fi
fi
SN=$E2E_POSTFIX_SNIPPETS
for f in master.cf.backend-proxy master.cf.backend-xclient master.cf.sender main.cf.sender; do
    [ -f "$SN/$f" ] || die "$SN/$f is missing (set E2E_POSTFIX_SNIPPETS)"
done
echo "binaries: $BLACKPONY_BIN ($("$BLACKPONY_BIN/blackpony" --version))"
# Group [F]: a second blackpony-mailer, built with the fault-injection
# feature (a panic on demand, BLACKPONY_FAULT) into its own target
# directory, so the binaries under test stay the default build.
FAULT_BPM=""
if [ "${E2E_FAULT:-1}" != 0 ]; then
    command -v cargo >/dev/null 2>&1 || die "cargo is missing: group [F] builds a mailer with --features fault-injection (E2E_FAULT=0 skips it)"
    (cd "$REPO" && cargo build --release --quiet --features fault-injection \
        --target-dir "$REPO/target/fault" --bin blackpony-mailer) ||
        die "cargo build --features fault-injection failed"
    FAULT_BPM=$REPO/target/fault/release/blackpony-mailer
    echo "fault-injection mailer: $FAULT_BPM"
fi
echo "snippets: $SN"

# ---------------------------------------------------------------- setup
phase setup
if [ -n "${E2E_DIR:-}" ]; then
    mkdir -p "$E2E_DIR"
else
    E2E_DIR=$(mktemp -d /var/lib/blackpony-e2e-postfix.XXXXXXXXXX)
fi
D=$(cd "$E2E_DIR" && pwd)
export E2E_DIR=$D BLACKPONY_BIN E2E_CTL=$CTL E2E_POSTFIX_SNIPPETS=$SN
export E2E_DNS_PORT=${E2E_DNS_PORT:-5354}
echo "run directory: $D"

cleanup() {
    local status=$?
    trap - EXIT INT TERM HUP
    trap '' PIPE # a closed stdout (| head) must not stop the cleanup
    set +e
    phase cleanup
    "$CTL" stop-all || status=1
    # Nothing of ours may still listen or run.
    if ss -ltnuH | grep -E "127\.0\.0\.2[1-9]:|127\.0\.0\.1:$E2E_DNS_PORT "; then
        echo "FAIL  cleanup: addresses still in use (above)"
        status=1
    elif pgrep -f "$D/" >/dev/null; then
        echo "FAIL  cleanup: processes of this run are left:"
        pgrep -a -f "$D/"
        status=1
    else
        echo "PASS  cleanup: no daemon left; 127.0.0.21-29 and 127.0.0.1:$E2E_DNS_PORT are free"
    fi
    phase end
    printf 'TIME  %-10s %6s s\n' total "$(secs "$T0")"
    if [ "$status" = 0 ] && [ -z "${E2E_KEEP:-}" ]; then
        rm -rf "$D"
    else
        echo "logs kept in $D"
    fi
    [ "$status" = 0 ] && echo "e2e-postfix: all green" || echo "e2e-postfix: FAILED"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP PIPE

# The users that run blackpony: the package's "blackpony" (what
# master.cf.sender names) when it exists, else nobody.
RUN_USER=$(sed -n 's/.*[ \t]user=\([^ \t:]*\).*/\1/p' "$SN/master.cf.sender" | head -n 1)
[ -n "$RUN_USER" ] || die "$SN/master.cf.sender has no user= attribute"
if ! id "$RUN_USER" >/dev/null 2>&1; then
    echo "user $RUN_USER (from master.cf.sender) does not exist (package not installed): using nobody"
    RUN_USER=nobody
fi
RUN_GROUP=$(id -gn "$RUN_USER")
export E2E_RUN_USER=$RUN_USER E2E_RUN_GROUP=$RUN_GROUP
echo "blackpony runs as $RUN_USER:$RUN_GROUP (inetd and Postfix pipe)"

chmod 755 "$D"
mkdir -p "$D"/{run,logs,direct}
BP=$BLACKPONY_BIN/blackpony
BPM=$BLACKPONY_BIN/blackpony-mailer
# The user must be able to run the binaries (every directory on the way, too).
if ! setpriv --reuid="$RUN_USER" --regid="$RUN_GROUP" --clear-groups "$BP" --version >/dev/null 2>&1; then
    echo "$RUN_USER cannot run $BLACKPONY_BIN/blackpony*: using copies in $D/bin"
    install -d -m 755 "$D/bin"
    install -m 755 "$BP" "$BPM" "$D/bin/"
    BLACKPONY_BIN=$D/bin BP=$D/bin/blackpony BPM=$D/bin/blackpony-mailer
    export BLACKPONY_BIN
fi

if [ -n "$FAULT_BPM" ]; then
    install -d -m 755 "$D/fault"
    install -m 755 "$FAULT_BPM" "$D/fault/blackpony-mailer"
    FAULT_BPM=$D/fault/blackpony-mailer
fi

# Host keys of site A (the mailer) and site B (blackpony), with the static
# keys and certificates of handshake v2 beside them (host.key.x25519 0600,
# host.key.cert), owned by the user that runs them; A's known-peers store;
# the blackpony logs.
for s in a b; do
    install -d -m 755 "$D/$s"
    "$BP" --generate-key --key "$D/$s/host.key" >"$D/$s/fingerprint"
    chown "$RUN_USER:$RUN_GROUP" "$D/$s/host.key" "$D/$s/host.key.x25519" "$D/$s/host.key.cert"
done
install -d -m 750 -o "$RUN_USER" -g "$RUN_GROUP" "$D/a/state" "$D/direct"
for l in a-mailer a-fault b-proxy b-xclient b-control direct-mailer l-listen l-xinetd; do
    install -m 640 -o "$RUN_USER" -g "$RUN_GROUP" /dev/null "$D/logs/$l.log"
done
# Session records (--record) go to the run directory, never to the system's
# /var/lib/blackpony/sessions.jsonl (binaries without --record write none).
REC_A="" REC_B_PROXY="" REC_B_XCLIENT="" REC_B_CONTROL=""
if "$BP" --help | grep -q -- '--record'; then
    install -d -m 750 -o "$RUN_USER" -g "$RUN_GROUP" "$D/rec"
    export E2E_RECORD_DIR=$D/rec
    REC_A="--record $D/rec/a-mailer.jsonl"
    REC_B_PROXY="--record $D/rec/b-proxy.jsonl"
    REC_B_XCLIENT="--record $D/rec/b-xclient.jsonl"
    REC_B_CONTROL="--record $D/rec/b-control.jsonl"
fi

# One private Postfix instance: pfx_instance NAME HOST NETWORKS DOMAINS
# (config, queue, data, maillog and Maildirs all under $D/NAME; the
# services and their addresses are added to its master.cf afterwards).
pfx_instance() {
    local name=$1 host=$2 nets=$3 domains=$4 dir=$D/$1
    mkdir -p "$dir"/{spool,data,mail}
    chown postfix "$dir/data"
    chown nobody:nogroup "$dir/mail"
    sed -e "s|@NAME@|$name|g" -e "s|@DIR@|$dir|g" -e "s|@HOST@|$host|g" \
        -e "s|@NETWORKS@|$nets|g" -e "s|@DOMAINS@|$domains|g" \
        -e "s|@UID@|$(id -u nobody)|g" -e "s|@GID@|$(id -g nobody)|g" \
        "$HERE/main.cf.in" >"$dir/main.cf"
    # The package's pristine master.cf (/etc/postfix/master.cf may be edited).
    cp /usr/share/postfix/master.cf.dist "$dir/master.cf" 2>/dev/null || cp /etc/postfix/master.cf "$dir/master.cf"
    postconf -c "$dir" -MX smtp/inet # port 25 belongs to blackpony (or is not used)
    : >"$dir/mailboxes"
    : >"$dir/recipient_access"
}

# Add a master.cf snippet as shipped: its lines that are not comments, with
# `from` replaced by `to` (sed expressions), as one service entry.
add_snippet() { # dir snippet sed-expressions...
    local dir=$1 snippet=$2 entry
    shift 2
    entry=$(grep -v -e '^[[:space:]]*#' -e '^[[:space:]]*$' "$snippet" | sed "$@")
    [ -n "$entry" ] || die "$snippet has no service entry"
    printf '%s\n' "$entry" >>"$dir/master.cf"
}

# Site A: the sender. Submissions on 127.0.0.21:2500; pa.test is local (its
# Maildir receives the bounces); everything else leaves through the blackpony
# pipe transport of master.cf.sender, with the settings of main.cf.sender.
pfx_instance a mx.pa.test "127.0.0.0/8" "pa.test"
echo "127.0.0.21:2500 inet n - n - - smtpd" >>"$D/a/master.cf"
MAILER_OPTS="--dns 127.0.0.1:$E2E_DNS_PORT --key $D/a/host.key --known-peers $D/a/state/known_peers --timeout 60 --helo mx.pa.test${REC_A:+ $REC_A}"
add_snippet "$D/a" "$SN/master.cf.sender" \
    -e "s|/usr/sbin/blackpony-mailer --pipe|$BPM --pipe $MAILER_OPTS --log $D/logs/a-mailer.log|" \
    -e "s|user=blackpony|user=$RUN_USER|"
grep -q -- "argv=$BPM --pipe" "$D/a/master.cf" || die "master.cf.sender: argv=/usr/sbin/blackpony-mailer --pipe not found"
# The same transport with a broken option (a log file it cannot open), for
# misconf.test: a misconfigured transport must defer mail, not bounce it.
add_snippet "$D/a" "$SN/master.cf.sender" \
    -e "s|^blackpony[[:space:]]|blackpony-misconf |" \
    -e "s|/usr/sbin/blackpony-mailer --pipe|$BPM --pipe $MAILER_OPTS --log /nonexistent/mailer.log|" \
    -e "s|user=blackpony|user=$RUN_USER|"
# [F]: the same transport with the fault-injection build, told to panic
# after the recipients are accepted, for panic@pb.test: it must defer.
TRANSPORTS="misconf.test=blackpony-misconf:"
if [ -n "$FAULT_BPM" ]; then
    add_snippet "$D/a" "$SN/master.cf.sender" \
        -e "s|^blackpony[[:space:]]|blackpony-fault |" \
        -e "s|/usr/sbin/blackpony-mailer --pipe|/usr/bin/env BLACKPONY_FAULT=panic-after-rcpt $FAULT_BPM --pipe $MAILER_OPTS --log $D/logs/a-fault.log|" \
        -e "s|user=blackpony|user=$RUN_USER|"
    grep -q "BLACKPONY_FAULT=panic-after-rcpt $FAULT_BPM --pipe" "$D/a/master.cf" || die "cannot add the blackpony-fault transport"
    TRANSPORTS="$TRANSPORTS, panic@pb.test=blackpony-fault:pb.test"
fi
# main.cf.sender's settings (lines that are not comments), with postconf.
grep -v -e '^[[:space:]]*#' -e '^[[:space:]]*$' "$SN/main.cf.sender" >"$D/a/main.cf.sender"
mapfile -t SENDER_SETTINGS <"$D/a/main.cf.sender"
[ ${#SENDER_SETTINGS[@]} -gt 0 ] || die "main.cf.sender has no settings"
postconf -c "$D/a" -e "${SENDER_SETTINGS[@]}" "transport_maps = inline:{$TRANSPORTS}" \
    "blackpony-misconf_destination_recipient_limit = 1" "blackpony-fault_destination_recipient_limit = 1"
printf 'alice@pa.test pa/alice/\n' >"$D/a/mailboxes"

# Site B: Postfix behind blackpony, once with PROXY (pb.test, 127.0.0.22)
# and once with XCLIENT (px.test, 127.0.0.23). B trusts only itself
# (mynetworks 127.0.0.1/32, blackpony's source address): the outside client
# at 127.0.0.29 must not relay, which it could if B saw blackpony's 127.0.0.1
# instead of the real client address.
pfx_instance b mx.pb.test "127.0.0.1/32" "pb.test px.test"
add_snippet "$D/b" "$SN/master.cf.backend-proxy" -e 's|^127\.0\.0\.1:2525 |127.0.0.22:2525 |'
add_snippet "$D/b" "$SN/master.cf.backend-xclient" -e 's|^127\.0\.0\.1:2525 |127.0.0.22:2526 |'
if ! grep -q '^127.0.0.22:2525 ' "$D/b/master.cf" || ! grep -q '^127.0.0.22:2526 ' "$D/b/master.cf"; then
    die "the backend snippets do not define a 127.0.0.1:2525 service"
fi
# The XCLIENT smtpd looks up the name of the host that connects (blackpony,
# 127.0.0.1: "localhost" from /etc/hosts, no DNS), to see whether that name
# sticks to the outside client after XCLIENT (run.py checks it).
postconf -c "$D/b" -P "127.0.0.22:2526/inet/smtpd_peername_lookup=yes"
# The control: a plain smtpd, for a blackpony that passes no client address.
echo "127.0.0.22:2527 inet n - n - - smtpd" >>"$D/b/master.cf"
# [L]: the smtpd behind the 500 connections at once. maxproc 600: each
# session holds an smtpd (and a cleanup, unlimited in master.cf) from its
# greeting to its dot, and all are held at once; at the default 100 the rest
# would wait for a greeting that never comes. No in_flow_delay: 500 messages
# arriving together must not each wait up to 1 s for the queue manager.
printf '127.0.0.22:2528 inet n - n - 600 smtpd\n  -o in_flow_delay=0s\n' >>"$D/b/master.cf"
cat >"$D/b/mailboxes" <<'EOF'
bob@pb.test	pb/bob/
carol@pb.test	pb/carol/
load@pb.test	pb/load/
panic@pb.test	pb/panic/
defer450@pb.test	pb/defer450/
xavier@px.test	px/xavier/
EOF
printf 'defer450@pb.test\t450 4.2.1 Mailbox busy, try again later\n' >"$D/b/recipient_access"

# Site C: a plain Postfix, no blackpony, on port 25.
pfx_instance c mx.pc.test "127.0.0.1/32" "pc.test"
echo "127.0.0.24:25 inet n - n - - smtpd" >>"$D/c/master.cf"
printf 'dave@pc.test pc/dave/\n' >"$D/c/mailboxes"

for s in a b c; do
    # chroot: the instances' files are outside any chroot jail.
    postconf -c "$D/$s" -F '*/*/chroot = n'
    # check creates the queue subdirectories with the right owners.
    postfix -c "$D/$s" check 2>"$D/logs/check-$s.err" || {
        # Postfix's commands log to syslog, or to stderr only if it is a tty.
        script -q -e -c "postfix -c $D/$s check" /dev/null >&2 || true
        die "postfix check of site $s failed"
    }
    if [ -s "$D/logs/check-$s.err" ]; then
        echo "postfix check of site $s warns:"
        sed 's/^/    /' "$D/logs/check-$s.err"
    fi
done

# Site B's inetd.conf: blackpony as the backend snippets say, with this run's
# addresses, key and log.
cat >"$D/b/inetd.conf" <<EOF
127.0.0.22:25	stream	tcp4	nowait	$RUN_USER:$RUN_GROUP	$BP	blackpony --backend 127.0.0.22:2525 --proxy-protocol v1 --key $D/b/host.key --log $D/logs/b-proxy.log --timeout 60${REC_B_PROXY:+ $REC_B_PROXY}
127.0.0.23:25	stream	tcp4	nowait	$RUN_USER:$RUN_GROUP	$BP	blackpony --backend 127.0.0.22:2526 --xclient --key $D/b/host.key --log $D/logs/b-xclient.log --timeout 60${REC_B_XCLIENT:+ $REC_B_XCLIENT}
127.0.0.25:25	stream	tcp4	nowait	$RUN_USER:$RUN_GROUP	$BP	blackpony --backend 127.0.0.22:2527 --key $D/b/host.key --log $D/logs/b-control.log --timeout 60${REC_B_CONTROL:+ $REC_B_CONTROL}
EOF

# What ctl.sh starts: argv, one per line, and the addresses to wait for.
daemon() { # name "listen addresses" argv...
    local name=$1 listen=$2
    shift 2
    printf '%s\n' "$@" >"$D/run/$name.cmd"
    echo "$listen" >"$D/run/$name.listen"
}
daemon dns "udp:127.0.0.1:$E2E_DNS_PORT" /usr/sbin/dnsmasq --no-daemon --no-resolv --no-hosts \
    --conf-file=/dev/null --listen-address=127.0.0.1 --bind-interfaces --port="$E2E_DNS_PORT" \
    --pid-file= --user=nobody --log-facility=- --log-queries --local=/test/ \
    --mx-host=pa.test,mx.pa.test,10 --host-record=mx.pa.test,127.0.0.21 \
    --mx-host=pb.test,mx.pb.test,10 --host-record=mx.pb.test,127.0.0.22 \
    --mx-host=px.test,mx.px.test,10 --host-record=mx.px.test,127.0.0.23 \
    --mx-host=pc.test,mx.pc.test,10 --host-record=mx.pc.test,127.0.0.24
for s in a b c; do
    case $s in
    a) l="tcp:127.0.0.21:2500" ;;
    b) l="tcp:127.0.0.22:2525 tcp:127.0.0.22:2526 tcp:127.0.0.22:2527 tcp:127.0.0.22:2528" ;;
    c) l="tcp:127.0.0.24:25" ;;
    esac
    daemon "pfx-$s" "$l" /usr/lib/postfix/sbin/master -d -c "$D/$s"
done
daemon inetd-b "tcp:127.0.0.22:25 tcp:127.0.0.23:25 tcp:127.0.0.25:25" /usr/sbin/inetd -i -R 100000 "$D/b/inetd.conf"

# [L]: the two launchers of the 500 connections at once, started and
# stopped by run.py one after the other. Both get 8192 file descriptors
# (--listen holds two per session; xinetd passes its limit on).
if [ "${E2E_LOAD:-1}" != 0 ]; then
    LOAD_ARGS="--backend 127.0.0.22:2528 --key $D/b/host.key --timeout 60"
    # xinetd conflicts with openbsd-inetd (both are inet-superserver): the
    # package's binary, unpacked into the run directory, as the sendmail e2e does.
    get_xinetd() { (cd "$D" && apt-get download -qq xinetd >/dev/null 2>&1 && dpkg -x xinetd_*.deb "$D/xinetd"); }
    get_xinetd || { apt-get update -qq >/dev/null 2>&1; get_xinetd; } || true
    if [ -x "$D/xinetd/usr/sbin/xinetd" ]; then
        # xinetd.d/blackpony as shipped, with this run's binary, arguments,
        # user and address, and its caps raised: instances 100 -> 600,
        # cps 50 10 (50 new connections a second, then 10 s off) -> 1000 1,
        # per_source 10 -> UNLIMITED (all clients come from 127.0.0.1).
        install -d -m 755 "$D/l" "$D/l/xinetd.d"
        awk -v bin="$BP" -v args="$LOAD_ARGS --log $D/logs/l-xinetd.log" -v u="$RUN_USER" -v g="$RUN_GROUP" '
            $1 == "server" { print "\tserver\t\t= " bin; next }
            $1 == "server_args" { print "\tserver_args\t= " args; next }
            $1 == "instances" { print "\tinstances\t= 600"; next }
            $1 == "cps" { print "\tcps\t\t= 1000 1"; next }
            $1 == "per_source" { print "\tper_source\t= UNLIMITED"; next }
            $1 == "user" { print "\tuser\t\t= " u; next }
            $1 == "group" { print "\tgroup\t\t= " g; next }
            $1 == "log_type" { next }
            { print }
            $1 == "{" { print "\tbind\t\t= 127.0.0.26" }
        ' "$REPO/xinetd.d/blackpony" >"$D/l/xinetd.d/blackpony"
        for k in instances cps per_source bind server_args; do
            grep -q "^[[:space:]]*$k[[:space:]]" "$D/l/xinetd.d/blackpony" || die "xinetd.d/blackpony: no $k line after the edit"
        done
        printf 'defaults\n{\n\tlog_type\t= FILE %s\n\tlog_on_success\t= PID HOST EXIT\n\tlog_on_failure\t= HOST ATTEMPT\n}\nincludedir %s\n' \
            "$D/logs/xinetd-load.log" "$D/l/xinetd.d" >"$D/l/xinetd.conf"
        daemon xinetd-l "tcp:127.0.0.26:25" prlimit --nofile=8192:8192 -- \
            "$D/xinetd/usr/sbin/xinetd" -dontfork -f "$D/l/xinetd.conf" -pidfile "$D/run/xinetd-l.pidfile"
    fi
    # shellcheck disable=SC2086 # LOAD_ARGS is a list of words
    daemon listen-l "tcp:127.0.0.27:2525" prlimit --nofile=8192:8192 -- \
        setpriv --reuid="$RUN_USER" --regid="$RUN_GROUP" --clear-groups -- \
        "$BP" --listen 127.0.0.27:2525 $LOAD_ARGS --log "$D/logs/l-listen.log" --max-connections 600
fi

# ---------------------------------------------------------------- start
phase start
"$CTL" start dns pfx-a pfx-b pfx-c inetd-b || die "a daemon did not start (see $D/logs/*.out)"
"$CTL" status

# ---------------------------------------------------------------- tests
phase tests
python3 "$HERE/run.py"
