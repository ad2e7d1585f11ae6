#!/bin/bash
# End-to-end test with real programs: two sendmail sites on loopback
# addresses, blackpony under a real openbsd-inetd (then xinetd, then
# systemd-socket-activate with Accept=no), DNS from a real dnsmasq, a capture
# with tshark, and the systemd unit files checked with systemd-analyze. Run as root on Debian 12 after
# scripts/install-test-deps.sh; installs sendmail-bin and sendmail-cf itself.
#
#   scripts/e2e-sendmail.sh
#
# Environment:
#   BLACKPONY_BIN   directory holding blackpony and blackpony-mailer
#                   (default: /usr/sbin if /usr/sbin/blackpony exists, else
#                   the repository's target/release, built if missing)
#   E2E_DIR         run directory (default: a new /var/lib/blackpony-e2e.XXXXXXXXXX);
#                   must not be below a world-writable directory such as /tmp
#   E2E_KEEP=1      keep the run directory after a green run (it is always
#                   kept after a failure, with every log and transcript)
#   E2E_XINETD=0    skip the xinetd check (it needs the xinetd .deb from the mirror)
#   E2E_DNS_PORT    dnsmasq's port on 127.0.0.1 (default 5353)
#   BLACKPONY_M4    mailer definition to use (default: the repository's sendmail/blackpony.m4)
#
# Topology (all on lo):
#   127.0.0.1:5353  dnsmasq: site-b.test MX mx.site-b.test = 127.0.0.3,
#                   rsa.site-b.test MX mx-rsa.site-b.test = 127.0.0.7,
#                   plain-b.test MX mx.plain-b.test = 127.0.0.4, site-a.test = 127.0.0.2
#   127.0.0.2:2500  site A: sendmail, every remote domain through blackpony-mailer
#   127.0.0.3:25    site B: openbsd-inetd running blackpony (as nobody), which
#                   connects from 127.0.0.5 to site B's sendmail on 127.0.0.3:2525
#   127.0.0.7:25    site B again (rsa.site-b.test MX mx-rsa.site-b.test), blackpony --suites RSA-BLOWFISH
#   127.0.0.4:25    plain B: sendmail without blackpony
#   127.0.0.6:2500  plain A': sendmail with the stock esmtp mailer, site-b.test -> [127.0.0.3]
# The tests are in tests/e2e/sendmail/run.py; daemons are started and
# stopped by tests/e2e/sendmail/ctl.sh, by process id, and always stopped on exit.
set -euo pipefail

# The daemons are started by ctl.sh, which exits at once: make this shell
# their "child subreaper" (prctl PR_SET_CHILD_SUBREAPER, kept across exec), so
# they are reparented to it and reaped here when stopped, not left as zombies
# under an init that does not reap.
if [ -z "${E2E_SUBREAPER:-}" ]; then
    export E2E_SUBREAPER=1
    exec python3 -c 'import ctypes, os, signal, sys
ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)
for sig in (signal.SIGPIPE, signal.SIGXFSZ):  # Python ignores these; exec would keep that
    signal.signal(sig, signal.SIG_DFL)
os.execv("/bin/bash", ["bash", *sys.argv[1:]])' "$0" "$@"
fi

REPO=$(cd "$(dirname "$0")/.." && pwd)
HERE=$REPO/tests/e2e/sendmail
CTL=$HERE/ctl.sh
T0=$(date +%s%N)
PHASE_T=$T0
PHASE=""

secs() { # nanoseconds since $1, as seconds with one decimal
    local ms=$((($(date +%s%N) - $1) / 1000000))
    printf '%d.%d' $((ms / 1000)) $((ms % 1000 / 100))
}

phase() { # print the time the previous phase took, start the next one
    [ -z "$PHASE" ] || printf 'TIME  %-10s %6s s\n' "$PHASE" "$(secs "$PHASE_T")"
    PHASE=$1
    PHASE_T=$(date +%s%N)
    [ "$1" = end ] || echo "=== $1"
}

die() {
    echo "e2e-sendmail: $*" >&2
    exit 1
}

[ "$(id -u)" = 0 ] || die "run as root (it installs packages, binds port 25 and runs daemons as nobody)"

# ---------------------------------------------------------------- install
phase install
# The service user the shipped samples name (the Debian package creates it too).
id blackpony >/dev/null 2>&1 ||
    adduser --system --group --no-create-home --home /var/lib/blackpony blackpony >/dev/null
for c in dnsmasq:dnsmasq-base inetd:openbsd-inetd tshark:tshark python3:python3; do
    command -v "${c%%:*}" >/dev/null 2>&1 || [ -x "/usr/sbin/${c%%:*}" ] ||
        die "${c#*:} is missing: run scripts/install-test-deps.sh first"
done
pkgs=""
for p in sendmail-bin sendmail-cf; do
    dpkg -s "$p" 2>/dev/null | grep -q '^Status: install ok installed' || pkgs="$pkgs $p"
done
if [ -n "$pkgs" ]; then
    created_policy=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        # Package scripts must not start the system's sendmail on port 25.
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        created_policy=1
    fi
    if dpkg -s postfix >/dev/null 2>&1; then
        echo "note: installing sendmail removes postfix (they conflict)" >&2
    fi
    apt-get update -qq || true
    # A fully qualified host name, or sendmail's postinst sleeps 60 s.
    unshare --uts sh -c "hostname e2e-install.e2e.test && DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq -o DPkg::Lock::Timeout=300 --no-install-recommends $pkgs" >/dev/null ||
        die "apt-get install$pkgs failed"
    [ -z "$created_policy" ] || rm -f /usr/sbin/policy-rc.d
fi
[ -x /usr/sbin/sendmail ] && [ -f /usr/share/sendmail/cf/m4/cf.m4 ] || die "sendmail-bin/sendmail-cf not installed"

# ---------------------------------------------------------------- binaries
phase binaries
if [ -z "${BLACKPONY_BIN:-}" ]; then
    if [ -x /usr/sbin/blackpony ]; then
        BLACKPONY_BIN=/usr/sbin
    else
        BLACKPONY_BIN=$REPO/target/release
        if [ ! -x "$BLACKPONY_BIN/blackpony" ] || [ ! -x "$BLACKPONY_BIN/blackpony-mailer" ]; then
            (cd "$REPO" && cargo build --release --quiet) || die "cargo build --release failed"
        fi
    fi
fi
for b in blackpony blackpony-mailer; do
    [ -x "$BLACKPONY_BIN/$b" ] || die "$BLACKPONY_BIN/$b: not found or not executable (set BLACKPONY_BIN)"
done
BLACKPONY_BIN=$(cd "$BLACKPONY_BIN" && pwd)
echo "binaries: $BLACKPONY_BIN ($("$BLACKPONY_BIN/blackpony" --version))"

# ---------------------------------------------------------------- setup
phase setup
if [ -n "${E2E_DIR:-}" ]; then
    # Removed again after a green run: it must be this run's alone.
    [ ! -e "$E2E_DIR" ] || [ -z "$(ls -A "$E2E_DIR")" ] || die "E2E_DIR=$E2E_DIR exists and is not empty"
    mkdir -p "$E2E_DIR"
else
    E2E_DIR=$(mktemp -d /var/lib/blackpony-e2e.XXXXXXXXXX)
fi
D=$(cd "$E2E_DIR" && pwd)
export E2E_DIR=$D BLACKPONY_BIN E2E_REPO=$REPO E2E_CTL=$CTL
export E2E_DNS_PORT=${E2E_DNS_PORT:-5353}
echo "run directory: $D"

RUNPY=""
runpy() { # run.py in the background, so that a signal to this script is handled at once
    python3 "$HERE/run.py" "$@" &
    RUNPY=$!
    wait "$RUNPY"
    local rc=$?
    RUNPY=""
    return $rc
}

cleanup() {
    local status=$?
    trap - EXIT INT TERM HUP
    trap '' PIPE # a closed stdout (| head) must not stop the cleanup:
    set +e       # writes then fail, and must not end it either
    if [ -n "$RUNPY" ]; then
        # Interrupted: run.py stops its capture and exits on SIGTERM.
        kill -TERM "$RUNPY" 2>/dev/null
        wait "$RUNPY" 2>/dev/null
        status=1
    fi
    phase cleanup
    "$CTL" stop-all || status=1
    # Anything else still running below this script (it is their subreaper):
    # a capture left behind by an interrupted run.py, say.
    local left
    left=$(ps -o pid=,stat= --ppid $$ | awk -v me="$BASHPID" '$1 != me && $2 !~ /^Z/ { print $1 }')
    [ -z "$left" ] || left=$(ps -o pid=,stat= -p "$(echo $left | tr ' ' ,)" | awk '$2 !~ /^Z/ { print $1 }')
    if [ -n "$left" ]; then
        echo "stopping leftover processes:" $left "($(ps -o comm= -p "$(echo $left | tr ' ' ,)" | tr '\n' ' '))"
        kill -TERM $left 2>/dev/null
        sleep 0.5
        wait 2>/dev/null
    fi
    # Nothing of ours may still listen.
    if ss -ltnuH | grep -E "127\.0\.0\.[2-7]:(25|2500|2525) |127\.0\.0\.1:$E2E_DNS_PORT "; then
        echo "FAIL  cleanup: addresses still in use (above)"
        status=1
    else
        echo "PASS  cleanup: no daemon left; 127.0.0.2-7 ports 25/2500/2525 and 127.0.0.1:$E2E_DNS_PORT are free"
    fi
    phase end
    printf 'TIME  %-10s %6s s\n' total "$(secs "$T0")"
    if [ "$status" = 0 ] && [ -z "${E2E_KEEP:-}" ]; then
        rm -rf "$D"
    else
        echo "logs, transcripts and captures kept in $D"
    fi
    [ "$status" = 0 ] && echo "e2e-sendmail: all green" || echo "e2e-sendmail: FAILED"
    exit "$status"
}
trap cleanup EXIT
trap 'echo "e2e-sendmail: failed at line $LINENO: $BASH_COMMAND" >&2' ERR
trap 'exit 130' INT TERM HUP PIPE

# sendmail refuses maps under group- or world-writable directories, and
# nobody (mailers, blackpony) must be able to traverse to its files.
chmod 755 "$D"
p=$D
while [ "$p" != / ]; do
    p=$(dirname "$p")
    perm=$(stat -c %a "$p")
    [ $((0$perm & 022)) = 0 ] || die "$p is group- or world-writable: choose another E2E_DIR"
done
mkdir -p "$D"/{bin,etc,logs,run,cap} "$D"/{a,a2,b,p}/{queue,out}
chmod 700 "$D"/{a,a2,b,p}/queue
install -m 755 "$HERE/deliver" "$D/bin/deliver"
BP=$BLACKPONY_BIN/blackpony
BPM=$BLACKPONY_BIN/blackpony-mailer

cat >"$D/etc/hosts" <<'EOF'
127.0.0.1	localhost
127.0.0.2	mx.site-a.test site-a.test
127.0.0.3	mx.site-b.test
127.0.0.4	mx.plain-b.test
127.0.0.7	mx-rsa.site-b.test
127.0.0.6	mx.plain-a.test
EOF
printf 'hosts\t\tfiles\naliases\t\tfiles\npasswd\t\tfiles\n' >"$D/etc/service.switch"

# A private copy of sendmail's cf tree with blackpony.m4 installed as the
# README says (mailer/blackpony.m4, used with MAILER(blackpony)).
cp -r /usr/share/sendmail/cf "$D/cf"
cp "${BLACKPONY_M4:-$REPO/sendmail/blackpony.m4}" "$D/cf/mailer/blackpony.m4"

MAILER_ARGS="blackpony-mailer --dns 127.0.0.1:$E2E_DNS_PORT --key $D/a/host.key --known-peers $D/a/state/known_peers --log $D/logs/a-mailer.log --timeout 60 --port 25 \$h"
build_cf() { # site host addr port locals [extra m4 args...]
    local site=$1 host=$2 addr=$3 port=$4 locals=$5
    shift 5
    m4 -D_CF_DIR_="$D/cf/" -DE2E_DIR="$D" -DSITE="$site" -DHOST="$host" -DADDR="$addr" \
        -DPORT="$port" -DLOCALS="$locals" "$@" "$HERE/site.mc" >"$D/$site/$site.cf" 2>"$D/logs/m4-$site.err" ||
        echo "(m4 exited with status $?)" >>"$D/logs/m4-$site.err"
}
build_cf a mx.site-a.test 127.0.0.2 2500 "site-a.test mx.site-a.test" -DMAILERTABLE -DWITH_BLACKPONY \
    -DBLACKPONY_MAILER_PATH="$BPM" -DBLACKPONY_MAILER_ARGS="$MAILER_ARGS"
if [ -s "$D/logs/m4-a.err" ]; then
    # run.py reports this as a FAIL. Go on with the comment block removed, so
    # the other tests still say something about the mailer itself.
    echo "m4 complained about blackpony.m4 (see the FAIL below); continuing with its comments stripped"
    cp "$D/logs/m4-a.err" "$D/logs/m4-a.first.err"
    sed '/^divert(-1)/,/^divert(0)/{/^divert(0)/!d}' "${BLACKPONY_M4:-$REPO/sendmail/blackpony.m4}" >"$D/cf/mailer/blackpony.m4"
    build_cf a mx.site-a.test 127.0.0.2 2500 "site-a.test mx.site-a.test" -DMAILERTABLE -DWITH_BLACKPONY \
        -DBLACKPONY_MAILER_PATH="$BPM" -DBLACKPONY_MAILER_ARGS="$MAILER_ARGS"
    if [ -s "$D/logs/m4-a.err" ]; then cat "$D/logs/m4-a.err" >&2; die "m4 for site A failed"; fi
fi
build_cf a2 mx.plain-a.test 127.0.0.6 2500 "plain-a.test mx.plain-a.test" -DMAILERTABLE
build_cf b mx.site-b.test 127.0.0.3 2525 "site-b.test rsa.site-b.test mx.site-b.test"
build_cf p mx.plain-b.test 127.0.0.4 25 "plain-b.test mx.plain-b.test"
for s in a2 b p; do
    if [ -s "$D/logs/m4-$s.err" ]; then cat "$D/logs/m4-$s.err" >&2; die "m4 for site $s failed"; fi
done
grep -q '^Mblackpony,' "$D/a/a.cf" || die "site A's cf has no blackpony mailer"

# Site A: every non-local domain through blackpony ($h = the recipient's domain).
printf '.\tblackpony:%%1\n' >"$D/a/mailertable"
# Plain A': sendmail's own esmtp mailer, straight to site B's port 25.
printf 'site-b.test\tesmtp:[127.0.0.3]\n' >"$D/a2/mailertable"
for s in a a2; do makemap hash "$D/$s/mailertable" <"$D/$s/mailertable"; done

# Site B's inetd.conf: the line of inetd.conf.sample, on 127.0.0.3 instead of
# all addresses, with this run's binary, backend, source address, key and log;
# and the same on 127.0.0.7 (mx-rsa.site-b.test) restricted to RSA-BLOWFISH,
# so both suites are tested (the default one and the original one).
B_ARGS="--backend 127.0.0.3:2525 --source 127.0.0.5 --key $D/b/keys/host.key --log $D/logs/b-blackpony.log"
B_RSA_ARGS="--backend 127.0.0.3:2525 --source 127.0.0.5 --key $D/b/keys/host.key --log $D/logs/b-blackpony-rsa.log --suites RSA-BLOWFISH"
inetd_line() { # address extra-args
    awk -v addr="$1" -v bin="$BP" -v args="$2" '
        /^[ \t]*(#|$)/ { next }
        {
            n++
            if ($6 !~ /\/blackpony$/ || $7 != "blackpony") { print "inetd.conf.sample: unexpected line: " $0 > "/dev/stderr"; exit 1 }
            line = addr ":" $1 "\t" $2 "\t" $3 "\t" $4 "\t" $5 "\t" bin "\tblackpony"
            for (i = 8; i <= NF; i++) {
                if ($i ~ /^--(backend|source|key|log|suites)$/) { i++; continue }
                line = line " " $i
            }
            print line " " args
        }
        END { if (n != 1) { print "inetd.conf.sample: expected one service line, found " n > "/dev/stderr"; exit 1 } }
    ' "$REPO/inetd.conf.sample"
}
{ inetd_line 127.0.0.3 "$B_ARGS" && inetd_line 127.0.0.7 "$B_RSA_ARGS"; } >"$D/b/inetd.conf" ||
    die "cannot derive site B's inetd.conf from inetd.conf.sample"

# The same for xinetd: xinetd.d/blackpony as the included service file, bound
# to 127.0.0.3, with this run's binary and arguments; the rest as shipped.
mkdir -p "$D/b/xinetd.d"
awk -v bin="$BP" -v args="$B_ARGS" '
    $1 == "server" { print "\tserver\t\t= " bin; next }
    $1 == "server_args" {
        line = ""
        for (i = 3; i <= NF; i++) {
            if ($i ~ /^--(backend|source|key|log|suites)$/) { i++; continue }
            line = line " " $i
        }
        print "\tserver_args\t=" line " " args; next
    }
    { print }
    $1 == "{" { print "\tbind\t\t= 127.0.0.3" }
' "$REPO/xinetd.d/blackpony" >"$D/b/xinetd.d/blackpony"
cat >"$D/b/xinetd.conf" <<EOF
# xinetd main configuration for the e2e run (the Debian package's is the same
# shape: defaults, then includedir /etc/xinetd.d).
defaults
{
	log_type	= FILE $D/logs/xinetd.log
	log_on_success	= PID HOST EXIT DURATION
	log_on_failure	= HOST ATTEMPT
}
includedir $D/b/xinetd.d
EOF

# Who runs what: sendmail runs the blackpony mailer as the U= of its
# definition, else as DefaultUser (mail:mail on Debian); inetd and xinetd run
# blackpony as the user their files name. Each program's key, state and log
# belong to that user. run.py checks that the three agree (one
# /etc/blackpony/host.key, mode 0600, must do for both directions).
MAILER_USER=$(sed -n '/^Mblackpony,/,/^$/s/.*[ \t,]U=\([^, \t]*\).*/\1/p' "$D/a/a.cf" | head -n 1)
[ -n "$MAILER_USER" ] || MAILER_USER=$(sed -n 's/^O DefaultUser=//p' "$D/a/a.cf")
INBOUND_USER=$(awk '!/^[ \t]*(#|$)/ { print $5; exit }' "$REPO/inetd.conf.sample" | tr . :)
XINETD_USER=$(awk '$1 == "user" { u = $3 } $1 == "group" { g = $3 } END { print u (g ? ":" g : "") }' "$REPO/xinetd.d/blackpony")
echo "$MAILER_USER" >"$D/run/mailer.user"
echo "$INBOUND_USER" >"$D/run/inbound.user"
echo "$XINETD_USER" >"$D/run/xinetd.user"
echo "users: blackpony-mailer runs as $MAILER_USER (site A's cf), blackpony as $INBOUND_USER (inetd.conf.sample), $XINETD_USER (xinetd.d/blackpony)"
for u in "$MAILER_USER" "$INBOUND_USER" "$XINETD_USER"; do
    id "${u%%:*}" >/dev/null 2>&1 || die "user ${u%%:*} does not exist"
done
for s in a a2 b p; do
    chown "$(sed -n 's/^O DefaultUser=//p' "$D/$s/$s.cf")" "$D/$s/out"
done

# The binaries must be executable by those users (every directory on the way too).
runs_as() { # user[:group] command... (runuser drops root's capabilities; setpriv --reuid would not)
    local u=$1 g
    shift
    g=${u#*:}
    [ "$g" != "$u" ] || g=$(id -gn "$u")
    runuser -u "${u%%:*}" -g "$g" -- "$@"
}
for u in "$MAILER_USER" "$INBOUND_USER"; do
    if ! runs_as "$u" "$BP" --version >/dev/null 2>&1 || ! runs_as "$u" "$BPM" --version >/dev/null 2>&1; then
        echo "$u cannot run $BLACKPONY_BIN/blackpony*: using copies in $D/bin"
        install -m 755 "$BP" "$BPM" "$D/bin/"
        BLACKPONY_BIN=$D/bin
        export BLACKPONY_BIN
        # The paths are in the configurations already: rebuild them.
        sed -i "s|$BP|$D/bin/blackpony|g" "$D/b/inetd.conf" "$D/b/xinetd.d/blackpony"
        sed -i "s|$BPM|$D/bin/blackpony-mailer|g" "$D/a/a.cf"
        BP=$D/bin/blackpony
        BPM=$D/bin/blackpony-mailer
        break
    fi
done

echo "site B inetd.conf:"
sed 's/^/    /' "$D/b/inetd.conf"

# The same for systemd socket activation with Accept=no: blackpony-threaded.socket
# and .service as systemd-socket-activate (systemd's own tool) runs them,
# on 127.0.0.3:25, with this run's arguments, as the service's User=/Group=
# (setpriv execs, so blackpony keeps the pid LISTEN_PID names).
TH_USER=$(sed -n 's/^User=//p' "$REPO/deploy/systemd/blackpony-threaded.service")
TH_GROUP=$(sed -n 's/^Group=//p' "$REPO/deploy/systemd/blackpony-threaded.service")
[ "$TH_USER:$TH_GROUP" = "$INBOUND_USER" ] ||
    die "blackpony-threaded.service runs as $TH_USER:$TH_GROUP, inetd.conf.sample as $INBOUND_USER: one user must own the key"
# shellcheck disable=SC2086 # B_ARGS is a list of words
# SYSTEMD_LOG_LEVEL=warning: systemd-socket-activate's own "Listening on"
# notice would otherwise share the output file that must stay empty.
printf '%s\n' env SYSTEMD_LOG_LEVEL=warning /usr/bin/systemd-socket-activate --listen=127.0.0.3:25 -- \
    setpriv --reuid="$TH_USER" --regid="$TH_GROUP" --init-groups -- \
    "$BP" $B_ARGS --max-connections 20 --shutdown-grace 10 >"$D/b/activate.cmd"

# Host keys (0600, owned by the user that runs each side) with their static
# keys and certificates (host.key.x25519, host.key.cert: handshake v2), A's
# known-peers directory (0750), and the log files of both programs. Site B's
# key files are in b/keys, a directory its user may write, as the package
# makes /etc/blackpony for blackpony-renew.service: run.py renews B's
# certificate as that user, the way the timer does.
install -d -m 755 -o "${INBOUND_USER%%:*}" "$D/b/keys"
for k in a/host.key b/keys/host.key; do
    "$BP" --generate-key --key "$D/$k" >"$D/${k%%/*}/fingerprint"
    for f in "$D/$k" "$D/$k.x25519" "$D/$k.cert"; do
        [ -f "$f" ] || die "blackpony --generate-key did not make $f"
    done
done
chown "$MAILER_USER" "$D/a/host.key" "$D/a/host.key.x25519" "$D/a/host.key.cert"
chown "$INBOUND_USER" "$D/b/keys/host.key" "$D/b/keys/host.key.x25519" "$D/b/keys/host.key.cert"
install -d -m 750 "$D/a/state"
chown "$MAILER_USER" "$D/a/state"
install -m 640 /dev/null "$D/logs/a-mailer.log"
install -m 640 /dev/null "$D/logs/b-blackpony.log"
install -m 640 /dev/null "$D/logs/b-blackpony-rsa.log"
chown "$MAILER_USER" "$D/logs/a-mailer.log"
chown "$INBOUND_USER" "$D/logs/b-blackpony.log" "$D/logs/b-blackpony-rsa.log"

# ---------------------------------------------------------------- start
phase start
[ -S /dev/log ] || "$CTL" start syslog || die "cannot start the /dev/log sink"
"$CTL" start dns sm-b sm-p inetd-b sm-a sm-a2 || die "a daemon did not start (see $D/logs/*.out)"
"$CTL" status

# ---------------------------------------------------------------- tests
phase tests
rc=0
runpy main || rc=1

if [ "${E2E_XINETD:-1}" != 0 ]; then
    phase xinetd
    # xinetd conflicts with openbsd-inetd (both are inet-superserver), and
    # other jobs on this machine may need /usr/sbin/inetd: run the package's
    # binary unpacked into the run directory instead of swapping packages.
    get_xinetd() { (cd "$D" && apt-get download -qq xinetd >/dev/null 2>&1 && dpkg -x xinetd_*.deb "$D/xinetd"); }
    get_xinetd || { apt-get update -qq >/dev/null 2>&1; get_xinetd; } || true
    if [ -x "$D/xinetd/usr/sbin/xinetd" ]; then
        runpy xinetd || rc=1
    else
        echo "FAIL  [X] cannot get xinetd (apt-get download xinetd); set E2E_XINETD=0 to skip"
        rc=1
    fi
else
    echo "SKIP  [X] xinetd (E2E_XINETD=0)"
fi

phase activate
if [ -x /usr/bin/systemd-socket-activate ]; then
    runpy activate || rc=1
else
    echo "FAIL  [S] /usr/bin/systemd-socket-activate is missing (package systemd; scripts/install-test-deps.sh)"
    rc=1
fi

phase systemd
runpy systemd || rc=1

exit "$rc"
