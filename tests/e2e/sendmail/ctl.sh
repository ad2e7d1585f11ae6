#!/bin/bash
# Start and stop the daemons of the sendmail end-to-end topology, one at a
# time, by process id. Used by scripts/e2e-sendmail.sh and by run.py (which
# stops and restarts site B to test deferred delivery).
#
#   ctl.sh start NAME     start NAME in the foreground of its own session, wait until it listens
#   ctl.sh stop NAME      SIGTERM its process group, wait until it is gone and its port is free
#   ctl.sh stop-all       stop everything this run started (also the /dev/log sink)
#   ctl.sh status         list what runs
#   ctl.sh runq SITE      sendmail -qf for SITE (a, a2): retry the queue now, in the foreground
#   ctl.sh mailq SITE     sendmail -bp for SITE
#
# NAME: dns syslog sm-a sm-a2 sm-b sm-p inetd-b xinetd-b activate-b
# Environment: E2E_DIR (the run's directory), E2E_DNS_PORT (default 5353).
# PIDs are in $E2E_DIR/run/NAME.pid; output in $E2E_DIR/logs/NAME.out.
#
# Every daemon is started with setsid, so its PID is also its process group:
# stopping it also ends the children it leaves behind (sendmail's session
# processes and mailers, inetd's blackpony processes). Nothing is ever killed
# by name.
set -u
D=${E2E_DIR:?set E2E_DIR}
HERE=$(cd "$(dirname "$0")" && pwd)
DNS_PORT=${E2E_DNS_PORT:-5353}

# name -> "host-name address port" for the sendmail instances
sm_host() {
    case $1 in
    a) echo "mx.site-a.test 127.0.0.2 2500" ;;
    a2) echo "mx.plain-a.test 127.0.0.6 2500" ;;
    b) echo "mx.site-b.test 127.0.0.3 2525" ;;
    p) echo "mx.plain-b.test 127.0.0.4 25" ;;
    *) echo "unknown site $1" >&2; return 1 ;;
    esac
}

# The addresses NAME listens on (udp:ADDR:PORT or tcp:ADDR:PORT); empty for none.
listen_addr() {
    case $1 in
    dns) echo "udp:127.0.0.1:$DNS_PORT" ;;
    sm-*) set -- $(sm_host "${1#sm-}") && echo "tcp:$2:$3" ;;
    inetd-b) echo "tcp:127.0.0.3:25 tcp:127.0.0.7:25" ;;
    xinetd-b | activate-b) echo "tcp:127.0.0.3:25" ;;
    *) echo "" ;;
    esac
}

listening() { # all of: proto:addr:port...
    local a opt
    for a in "$@"; do
        opt=-ltnH
        [ "${a%%:*}" = udp ] && opt=-lunH
        ss $opt "src ${a#*:}" 2>/dev/null | grep -q . || return 1
    done
}

any_listening() { # any of: proto:addr:port...
    local a
    for a in "$@"; do listening "$a" && return 0; done
    return 1
}

alive() { # pid: running and not a zombie
    local st
    st=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
    [ -n "$st" ] && [ "$st" != Z ]
}

# Sets CMD to the command line of NAME.
cmd_of() {
    case $1 in
    dns)
        CMD=(/usr/sbin/dnsmasq --no-daemon --no-resolv --no-hosts --conf-file=/dev/null
            --listen-address=127.0.0.1 --bind-interfaces --port="$DNS_PORT" --pid-file=
            --user=nobody --log-facility=- --log-queries
            --local=/test/
            --mx-host=site-a.test,mx.site-a.test,10 --host-record=mx.site-a.test,127.0.0.2
            --host-record=site-a.test,127.0.0.2
            --mx-host=site-b.test,mx.site-b.test,10 --host-record=mx.site-b.test,127.0.0.3
            --mx-host=rsa.site-b.test,mx-rsa.site-b.test,10 --host-record=mx-rsa.site-b.test,127.0.0.7
            --mx-host=plain-b.test,mx.plain-b.test,10 --host-record=mx.plain-b.test,127.0.0.4)
        ;;
    syslog) CMD=(python3 "$HERE/syslog-sink.py" /dev/log "$D/logs/syslog") ;;
    sm-*)
        local site=${1#sm-}
        set -- $(sm_host "$site")
        # unshare --uts: a fully qualified host name, or sendmail sleeps 60 s at start.
        CMD=(unshare --uts sh -c "hostname $1 && exec /usr/sbin/sendmail -bD -C $D/$site/$site.cf -X $D/logs/sm-$site.transcript")
        ;;
    inetd-b) CMD=(/usr/sbin/inetd -i -R 100000 "$D/b/inetd.conf") ;;
    xinetd-b) CMD=("$D/xinetd/usr/sbin/xinetd" -dontfork -f "$D/b/xinetd.conf" -pidfile "$D/run/xinetd.pidfile") ;;
    # One word per line, written by e2e-sendmail.sh.
    activate-b) mapfile -t CMD <"$D/b/activate.cmd" ;;
    *) echo "unknown daemon $1" >&2; return 1 ;;
    esac
}

start() {
    local name=$1 pid la i
    cmd_of "$name" || return 1
    if [ -f "$D/run/$name.pid" ] && alive "$(cat "$D/run/$name.pid")"; then
        echo "$name already runs" >&2
        return 1
    fi
    la=$(listen_addr "$name")
    if [ -n "$la" ] && any_listening $la; then
        echo "cannot start $name: one of $la is already taken by another program:" >&2
        for a in $la; do ss -ltnup "src ${a#*:}" >&2; done
        return 1
    fi
    # A background job of a script is not a process group leader, so setsid
    # does not fork: $! is the daemon's own PID (sendmail's, after unshare and sh exec).
    setsid "${CMD[@]}" >>"$D/logs/$name.out" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$D/run/$name.pid"
    for i in $(seq 200); do
        if ! alive "$pid"; then
            echo "$name exited at start; $D/logs/$name.out says:" >&2
            tail -n 20 "$D/logs/$name.out" >&2
            rm -f "$D/run/$name.pid"
            return 1
        fi
        if [ -z "$la" ]; then
            [ "$name" != syslog ] || [ -S /dev/log ] && return 0
        elif listening $la; then
            return 0
        fi
        sleep 0.05
    done
    echo "$name did not come up within 10 s ($la)" >&2
    return 1
}

stop() {
    local name=$1 pid la i
    [ -f "$D/run/$name.pid" ] || return 0
    pid=$(cat "$D/run/$name.pid")
    la=$(listen_addr "$name")
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null
    for i in $(seq 100); do
        alive "$pid" || break
        sleep 0.05
    done
    if alive "$pid"; then
        echo "$name ($pid) ignored SIGTERM for 5 s: SIGKILL" >&2
        kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null
        sleep 0.2
    fi
    # Leftovers of the group (a session still in progress): end them too.
    kill -TERM -- "-$pid" 2>/dev/null
    rm -f "$D/run/$name.pid"
    if [ "$name" = syslog ] && [ -f "$D/run/syslog.inode" ]; then
        # Remove /dev/log only if it is still the socket our sink created.
        [ "$(stat -c %i /dev/log 2>/dev/null)" = "$(cat "$D/run/syslog.inode")" ] && rm -f /dev/log
        rm -f "$D/run/syslog.inode"
    fi
    if [ -n "$la" ]; then
        for i in $(seq 100); do
            any_listening $la || return 0
            sleep 0.05
        done
        echo "$name stopped but $la is still in use" >&2
        return 1
    fi
}

sendmail_cmd() { # site, sendmail args...: run sendmail for SITE under its host name
    local site=$1
    shift
    set -- $(sm_host "$site") "$@"
    local host=$1
    shift 3
    unshare --uts sh -c "hostname $host && exec /usr/sbin/sendmail -C $D/$site/$site.cf $*"
}

case ${1:-} in
start)
    shift
    for n in "$@"; do
        start "$n" || exit 1
        if [ "$n" = syslog ]; then stat -c %i /dev/log >"$D/run/syslog.inode"; fi
    done
    ;;
stop)
    shift
    rc=0
    for n in "$@"; do stop "$n" || rc=1; done
    exit $rc
    ;;
stop-all)
    rc=0
    # Senders first (so nothing new starts), the DNS and the log sink last.
    for n in sm-a sm-a2 inetd-b xinetd-b activate-b sm-b sm-p dns syslog; do stop "$n" || rc=1; done
    exit $rc
    ;;
status)
    for f in "$D"/run/*.pid; do
        [ -f "$f" ] || continue
        n=$(basename "$f" .pid)
        p=$(cat "$f")
        alive "$p" && echo "$n $p running" || echo "$n $p gone"
    done
    ;;
runq) sendmail_cmd "$2" -qf ;;
mailq) sendmail_cmd "$2" -bp ;;
cmd) cmd_of "$2" && echo "${CMD[@]}" ;;
*)
    sed -n '2,15p' "$0" >&2
    exit 64
    ;;
esac
