#!/bin/bash
# The benchmarks of docs/PERFORMANCE.md, side by side in one run (issues 7 and 8).
#
# usage: scripts/bench.sh [--record] [--relay] [--conn] [--cpu] [--mem] [--quick] [--no-install]
#                         [--compare DIR]
#   With no part flag every part runs (about 6 minutes on 2 cores, plus about 3 minutes of
#   build from scratch).
#   --record  record layer MB/s, both suites, vs the raw primitives and `openssl speed`
#   --relay   a 100 MiB message: mailer -> sink, mailer -> blackpony (plain) -> sink,
#             mailer -> blackpony (each suite) -> sink; plus instructions per byte
#   --conn    messages/s, one message per connection, blackpony started by a real inetd,
#             by systemd-socket-activate (Accept=no, a thread per connection) and with --listen,
#             vs the sink direct and Postfix smtpd with STARTTLS (TLS 1.3), one client for all
#   --cpu     instructions per connection split into process start, key load, RSA, X25519,
#             the rest (callgrind), process start and key load in ms (hyperfine)
#   --mem     peak RSS of one blackpony process relaying 100 MiB and 1 GiB, each suite
#   --quick   fewer rounds (a smoke test of the script, not numbers to publish)
#   --compare DIR  also run the relay with blackpony and blackpony-mailer from DIR (e.g. the
#             target/release of a patched copy): an A/B of a src/ change in the same rounds
#
# Output: $OUT/results/*.json and $OUT/tables.md (printed at the end); OUT defaults to
# /tmp/blackpony-bench. Knobs (environment): ROUNDS_RECORD, ROUNDS_RELAY, ROUNDS_CONN,
# RELAY_MB, IR_RELAY_MB, CONN_N, MEM_MB, PORT_BASE. Runs as root: it installs Debian packages (hyperfine,
# valgrind, linux-perf, openssl, openbsd-inetd, time, systemd), creates cgroups under
# /sys/fs/cgroup/cpuacct/blackpony-bench and, for --conn, the postfix/postdrop accounts for a
# private Postfix it extracts (never installs: sendmail stays). Everything it starts it stops
# by PID. Not part of CI.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
HERE=$ROOT/scripts/bench
export ROOT OUT=${OUT:-/tmp/blackpony-bench}
export BENCH_CMD="scripts/bench.sh $*"

parts=()
QUICK=0 INSTALL=1
COMPARE_NEXT=0
export COMPARE_BIN=""
for a in "$@"; do
  if [ "$COMPARE_NEXT" = 1 ]; then COMPARE_BIN=$(cd "$a" && pwd); COMPARE_NEXT=0; continue; fi
  case $a in
    --record|--relay|--conn|--cpu|--mem) parts+=("${a#--}") ;;
    --quick) QUICK=1 ;;
    --no-install) INSTALL=0 ;;
    --compare) COMPARE_NEXT=1 ;;
    -h|--help) sed -n '2,27p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench.sh: unknown option $a (see --help)" >&2; exit 2 ;;
  esac
done
[ ${#parts[@]} -gt 0 ] || parts=(record relay conn cpu mem)
export QUICK
has() { local p; for p in "${parts[@]}"; do [ "$p" = "$1" ] && return 0; done; return 1; }
T0=$(date +%s)

# ---------------------------------------------------------------- tools
if [ "$INSTALL" = 1 ]; then
  need=()
  command -v hyperfine >/dev/null || need+=(hyperfine)
  command -v valgrind >/dev/null || need+=(valgrind)
  command -v perf >/dev/null || need+=(linux-perf)
  command -v openssl >/dev/null || need+=(openssl)
  [ -x /usr/sbin/inetd ] || need+=(openbsd-inetd)
  [ -x /usr/bin/time ] || need+=(time)
  [ -x /usr/bin/systemd-socket-activate ] || need+=(systemd)
  if [ ${#need[@]} -gt 0 ]; then
    echo "installing: ${need[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  fi
  # openbsd-inetd's package starts a system inetd on /etc/inetd.conf; ours uses its own file and ports.
fi

# ---------------------------------------------------------------- build
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
echo "building (release) ..."
(cd "$ROOT" && cargo build --release --bins --quiet)
(cd "$HERE" && cargo build --release --quiet)
export BIN=$CARGO_TARGET_DIR/release

# ---------------------------------------------------------------- keys, dirs
export KEYS=$OUT/keys LOGD=$OUT/log
mkdir -p "$OUT"/{keys,log,cg,results}
rm -f "$OUT"/cg/* "$OUT"/results/*.json "$OUT/known_peers"
[ -s "$KEYS/server.key" ] || "$BIN/blackpony" --generate-key --key "$KEYS/server.key" >/dev/null
[ -s "$KEYS/client.key" ] || "$BIN/blackpony" --generate-key --key "$KEYS/client.key" >/dev/null
# Keys from before handshake v2 get their static key and certificate.
for k in server client; do "$BIN/blackpony" --renew-cert --key "$KEYS/$k.key" >/dev/null; done

# ---------------------------------------------------------------- ports, cgroups
B=${PORT_BASE:-2640}
export SINK=$B BP_KEYED=$((B+1)) BP_PLAIN=$((B+2)) BP_PFX=$((B+3)) BP_MEM=$((B+4)) BP_MEM_PLAIN=$((B+5))
export BP_CG=$((B+6)) BP_CG_PLAIN=$((B+7)) BP_LISTEN=$((B+8)) PFX_PLAIN=$((B+11)) PFX_TLS=$((B+12))
export BP_LISTEN_PLAIN=$((B+9)) BP_ACT=$((B+10)) BP_ACT_PLAIN=$((B+13)) BP_RSA=$((B+14)) BP_CG_RSA=$((B+15))
export ALT_KEYED=$((B+21)) ALT_PLAIN=$((B+22)) ALT_CG=$((B+26)) ALT_CG_PLAIN=$((B+27))
for p in $SINK $BP_KEYED $BP_PLAIN $BP_PFX $BP_MEM $BP_MEM_PLAIN $BP_CG $BP_CG_PLAIN $BP_LISTEN $PFX_PLAIN $PFX_TLS \
         $BP_LISTEN_PLAIN $BP_ACT $BP_ACT_PLAIN $BP_RSA $BP_CG_RSA \
         $ALT_KEYED $ALT_PLAIN $ALT_CG $ALT_CG_PLAIN; do
  if ss -ltnH "sport = :$p" | grep -q .; then echo "bench.sh: port $p is in use (set PORT_BASE)" >&2; exit 1; fi
done
export CG=/sys/fs/cgroup/cpuacct/blackpony-bench
mkdir -p "$CG/bp" "$CG/sink" "$CG/pfx/smtpd"

PIDS=()
cleanup() {
  set +e
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  [ -n "${PFX_UP:-}" ] && OUT=$OUT CG=$CG bash "$HERE/postfix.sh" down
  for p in "${PIDS[@]}"; do for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done; done
  for g in pfx/smtpd pfx bp sink ""; do
    for _ in $(seq 50); do rmdir "$CG/$g" 2>/dev/null && break; [ -d "$CG/$g" ] || break; sleep 0.1; done
  done
}
trap cleanup EXIT

wait_port() {
  for _ in $(seq 100); do ss -ltnH "sport = :$1" | grep -q . && return 0; sleep 0.1; done
  echo "bench.sh: nothing listens on port $1" >&2; exit 1
}

# The sink, in its own cgroup.
setsid sh -c "echo \$\$ > $CG/sink/cgroup.procs; exec $BIN/bpsink --listen 127.0.0.1:$SINK" \
  > "$LOGD/sink.out" 2>&1 < /dev/null &
PIDS+=($!)
wait_port "$SINK"

# The inetd services (one inetd, in the bp cgroup with every blackpony it starts).
BP="$BIN/blackpony blackpony --log $LOGD/blackpony.log"   # program, then argv[0]
KEYED="--key $KEYS/server.key"   # the default offer: handshake v2 only (the RSA key is never read)
KEYED_RSA="--key $KEYS/server.key --suites RSA-BLOWFISH"   # the RSA-BLOWFISH rows
NOKEY="--key $OUT/keys/absent.key"   # no host key and no --allow-rot: offers nothing (plain relay)
VG="/usr/bin/valgrind valgrind --tool=callgrind --log-file=$OUT/cg/vg.%p.log --callgrind-out-file=$OUT/cg/bp.%p"
TIME="/usr/bin/time time -f %M,%e,%U,%S -a -o $OUT/mem-time.log"   # inetd splits on blanks
{
  echo "127.0.0.1:$BP_KEYED stream tcp nowait.100000 root $BP $KEYED --backend 127.0.0.1:$SINK"
  echo "127.0.0.1:$BP_PLAIN stream tcp nowait.100000 root $BP $NOKEY --backend 127.0.0.1:$SINK"
  echo "127.0.0.1:$BP_PFX stream tcp nowait.100000 root $BP $KEYED --backend 127.0.0.1:$PFX_PLAIN"
  echo "127.0.0.1:$BP_MEM stream tcp nowait.100000 root $TIME $BIN/blackpony --log $LOGD/blackpony.log $KEYED --suites NOISE-25519-CHACHAPOLY-SHA256,RSA-BLOWFISH --backend 127.0.0.1:$SINK"
  echo "127.0.0.1:$BP_MEM_PLAIN stream tcp nowait.100000 root $TIME $BIN/blackpony --log $LOGD/blackpony.log $NOKEY --backend 127.0.0.1:$SINK"
  echo "127.0.0.1:$BP_CG stream tcp nowait.100000 root $VG $BIN/blackpony --log $LOGD/blackpony.log --timeout 900 $KEYED --backend 127.0.0.1:$SINK"
  echo "127.0.0.1:$BP_CG_PLAIN stream tcp nowait.100000 root $VG $BIN/blackpony --log $LOGD/blackpony.log --timeout 900 $NOKEY --backend 127.0.0.1:$SINK"
  echo "127.0.0.1:$BP_RSA stream tcp nowait.100000 root $BP $KEYED_RSA --backend 127.0.0.1:$SINK"
  echo "127.0.0.1:$BP_CG_RSA stream tcp nowait.100000 root $VG $BIN/blackpony --log $LOGD/blackpony.log --timeout 900 $KEYED_RSA --backend 127.0.0.1:$SINK"
  if [ -n "$COMPARE_BIN" ]; then
    A="$COMPARE_BIN/blackpony blackpony --log $LOGD/blackpony-alt.log"
    echo "127.0.0.1:$ALT_KEYED stream tcp nowait.100000 root $A $KEYED --backend 127.0.0.1:$SINK"
    echo "127.0.0.1:$ALT_PLAIN stream tcp nowait.100000 root $A $NOKEY --backend 127.0.0.1:$SINK"
    echo "127.0.0.1:$ALT_CG stream tcp nowait.100000 root $VG $COMPARE_BIN/blackpony --log $LOGD/blackpony-alt.log --timeout 900 $KEYED --backend 127.0.0.1:$SINK"
    echo "127.0.0.1:$ALT_CG_PLAIN stream tcp nowait.100000 root $VG $COMPARE_BIN/blackpony --log $LOGD/blackpony-alt.log --timeout 900 $NOKEY --backend 127.0.0.1:$SINK"
  fi
} > "$OUT/inetd.conf"
setsid sh -c "echo \$\$ > $CG/bp/cgroup.procs; exec /usr/sbin/inetd -i -R 100000 $OUT/inetd.conf" \
  > "$LOGD/inetd.out" 2>&1 < /dev/null &
PIDS+=($!)
wait_port "$BP_CG_PLAIN"
# blackpony's own listener (a thread per connection, no process per connection), same cgroup.
setsid sh -c "echo \$\$ > $CG/bp/cgroup.procs; exec $BIN/blackpony --listen 127.0.0.1:$BP_LISTEN --log $LOGD/blackpony.log $KEYED --backend 127.0.0.1:$SINK" \
  > "$LOGD/listen.out" 2>&1 < /dev/null &
PIDS+=($!)
wait_port "$BP_LISTEN"
setsid sh -c "echo \$\$ > $CG/bp/cgroup.procs; exec $BIN/blackpony --listen 127.0.0.1:$BP_LISTEN_PLAIN --log $LOGD/blackpony.log $NOKEY --backend 127.0.0.1:$SINK" \
  > "$LOGD/listen-plain.out" 2>&1 < /dev/null &
PIDS+=($!)
wait_port "$BP_LISTEN_PLAIN"
# systemd socket activation with Accept=no, as blackpony-threaded.socket runs it:
# systemd-socket-activate listens and execs blackpony (same PID) on the first connection.
for a in "$BP_ACT:$KEYED" "$BP_ACT_PLAIN:$NOKEY"; do
  setsid sh -c "echo \$\$ > $CG/bp/cgroup.procs; exec env SYSTEMD_LOG_LEVEL=warning /usr/bin/systemd-socket-activate --listen=127.0.0.1:${a%%:*} -- $BIN/blackpony --log $LOGD/blackpony.log ${a#*:} --backend 127.0.0.1:$SINK" \
    > "$LOGD/activate-${a%%:*}.out" 2>&1 < /dev/null &
  PIDS+=($!)
  wait_port "${a%%:*}"
done

if has conn; then
  OUT=$OUT CG=$CG bash "$HERE/postfix.sh" setup
  OUT=$OUT CG=$CG bash "$HERE/postfix.sh" up
  PFX_UP=1
fi

PY="/usr/bin/python3 $HERE/bench.py"
$PY machine
for p in record relay conn cpu mem; do
  has "$p" || continue
  echo "== $p ($(( $(date +%s) - T0 )) s so far)"
  $PY "$p"
done
$PY report > "$OUT/tables.md"
cat "$OUT/tables.md"
echo "bench.sh: done in $(( $(date +%s) - T0 )) s; tables in $OUT/tables.md, raw results in $OUT/results/"
