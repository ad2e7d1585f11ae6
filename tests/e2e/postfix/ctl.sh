#!/bin/bash
# Start and stop the daemons of the Postfix end-to-end topology, one at a
# time, by process id. Used by scripts/e2e-postfix.sh and by run.py (which
# stops and restarts site B's inetd to test a deferral and its retry).
#
#   ctl.sh start NAME...   start each NAME in its own session, wait until it listens
#   ctl.sh stop NAME...    SIGTERM its process group, wait until it is gone and its ports are free
#   ctl.sh stop-all        stop everything this run started, in reverse order
#   ctl.sh status          list what runs
#
# What NAME runs is in $E2E_DIR/run/NAME.cmd (one argument per line) and
# the addresses it must listen on in $E2E_DIR/run/NAME.listen
# ("tcp:ADDR:PORT" or "udp:ADDR:PORT" words); scripts/e2e-postfix.sh writes
# both. PIDs go to $E2E_DIR/run/NAME.pid, output to $E2E_DIR/logs/NAME.out.
#
# Every daemon is started with setsid, so its PID is also its process group:
# stopping it also ends the children it leaves behind (Postfix's smtpd, qmgr
# and pipe processes, inetd's blackpony sessions). Nothing is killed by name.
set -u
D=${E2E_DIR:?set E2E_DIR}
R=$D/run

listening() { # proto:addr:port...: all of them have a listener
    local a opt
    for a in "$@"; do
        opt=-ltnH
        [ "${a%%:*}" = udp ] && opt=-lunH
        ss $opt "src ${a#*:}" 2>/dev/null | grep -q . || return 1
    done
}

any_listening() {
    local a
    for a in "$@"; do listening "$a" && return 0; done
    return 1
}

alive() { # pid: running and not a zombie
    local st
    st=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
    [ -n "$st" ] && [ "$st" != Z ]
}

group_alive() { # pgid: some member is still running
    local p
    for p in $(pgrep -g "$1" 2>/dev/null); do alive "$p" && return 0; done
    return 1
}

start() {
    local name=$1 pid la=() cmd=()
    [ -f "$R/$name.cmd" ] || { echo "ctl.sh: unknown daemon $name" >&2; return 1; }
    mapfile -t cmd <"$R/$name.cmd"
    [ -f "$R/$name.listen" ] && read -r -a la <"$R/$name.listen"
    if [ -f "$R/$name.pid" ] && alive "$(cat "$R/$name.pid")"; then
        echo "ctl.sh: $name already runs" >&2
        return 1
    fi
    if [ ${#la[@]} -gt 0 ] && any_listening "${la[@]}"; then
        echo "ctl.sh: cannot start $name: one of ${la[*]} is taken by another program:" >&2
        for a in "${la[@]}"; do ss -ltnup "src ${a#*:}" >&2; done
        return 1
    fi
    # A background job of a non-interactive shell is not a process group
    # leader, so setsid does not fork: $! is the daemon's own PID.
    setsid "${cmd[@]}" >>"$D/logs/$name.out" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$R/$name.pid"
    echo "$name" >>"$R/started"
    for _ in $(seq 200); do
        if ! alive "$pid"; then
            echo "ctl.sh: $name exited at start; $D/logs/$name.out says:" >&2
            tail -n 20 "$D/logs/$name.out" >&2
            rm -f "$R/$name.pid"
            return 1
        fi
        if [ ${#la[@]} -eq 0 ] || listening "${la[@]}"; then
            return 0
        fi
        sleep 0.05
    done
    echo "ctl.sh: $name (pid $pid) does not listen on ${la[*]} after 10 s" >&2
    tail -n 20 "$D/logs/$name.out" >&2
    return 1
}

stop() {
    local name=$1 pid la=()
    [ -f "$R/$name.pid" ] || return 0
    pid=$(cat "$R/$name.pid")
    [ -f "$R/$name.listen" ] && read -r -a la <"$R/$name.listen"
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 100); do
        group_alive "$pid" || alive "$pid" || break
        sleep 0.05
    done
    if group_alive "$pid" || alive "$pid"; then
        echo "ctl.sh: $name (pid $pid) ignored SIGTERM for 5 s: SIGKILL" >&2
        kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null
        sleep 0.2
    fi
    rm -f "$R/$name.pid"
    for _ in $(seq 100); do
        [ ${#la[@]} -gt 0 ] && any_listening "${la[@]}" || return 0
        sleep 0.05
    done
    echo "ctl.sh: $name stopped but ${la[*]} still has a listener" >&2
    return 1
}

status() {
    local f name pid
    for f in "$R"/*.pid; do
        [ -e "$f" ] || continue
        name=$(basename "$f" .pid)
        pid=$(cat "$f")
        if alive "$pid"; then
            printf '  %-10s pid %-7s %s\n' "$name" "$pid" "$(tr '\n' ' ' <"$R/$name.listen" 2>/dev/null)"
        else
            printf '  %-10s pid %-7s DEAD\n' "$name" "$pid"
        fi
    done
}

action=${1:-}
shift || true
rc=0
case $action in
start) for n in "$@"; do start "$n" || rc=1; done ;;
stop) for n in "$@"; do stop "$n" || rc=1; done ;;
stop-all)
    if [ -f "$R/started" ]; then
        for n in $(tac "$R/started" | awk '!seen[$0]++'); do stop "$n" || rc=1; done
    fi
    ;;
status) status ;;
*)
    echo "usage: ctl.sh start|stop NAME... | stop-all | status" >&2
    rc=64
    ;;
esac
exit $rc
