#!/bin/sh
# Build every fuzz target in fuzz/ (cargo fuzz, libFuzzer + AddressSanitizer,
# debug assertions on) and run each for SECONDS (default 60).
#
#   sh scripts/fuzz.sh [SECONDS] [TARGET...]
#
# Exits non-zero if any target crashes, panics, leaks past the RSS limit or
# hangs past the per-input timeout; the input that did it is saved as
# fuzz/artifacts/<target>/crash-* (or oom-*, timeout-*, leak-*). Reproduce
# one with:  fuzz/target/<host>/release/<target> fuzz/artifacts/<target>/<file>
# and, once fixed, turn it into a regression test: copy it to
# tests/fuzz_regressions/<target>/fixed-<what it did>.
#
# Works on the stable toolchain: cargo fuzz passes -Z flags (sanitizer,
# coverage instrumentation) to rustc, which stable accepts under
# RUSTC_BOOTSTRAP=1. Installs cargo-fuzz (from crates.io) if it is missing.
# New corpus entries go to fuzz/corpus/<target> (not committed); the
# committed seeds in fuzz/seeds/<target> are read too.
set -eu
cd "$(dirname "$0")/.."

SECONDS_EACH=${1:-60}
[ $# -gt 0 ] && shift
case $SECONDS_EACH in
    '' | *[!0-9]*) echo "usage: $0 [SECONDS] [TARGET...]" >&2; exit 64 ;;
esac
CARGO_FUZZ_VERSION=0.13.2

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: installing cargo-fuzz $CARGO_FUZZ_VERSION" >&2
    cargo install --locked cargo-fuzz --version "$CARGO_FUZZ_VERSION"
fi

export RUSTC_BOOTSTRAP=1
host=$(rustc -vV | sed -n 's/^host: //p')
bindir=fuzz/target/$host/release

if [ $# -gt 0 ]; then
    targets=$*
else
    targets=$(cargo fuzz list)
fi

start=$(date +%s)
# One build of every target; then the binaries are run directly, so a
# concurrent edit of the sources cannot trigger a rebuild per target.
cargo fuzz build --release --debug-assertions
built=$(date +%s)
echo "fuzz.sh: built in $((built - start)) s" >&2

failed=""
for t in $targets; do
    mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t" "fuzz/seeds/$t"
    log="fuzz/artifacts/$t/last-run.log"
    echo "fuzz.sh: $t for $SECONDS_EACH s" >&2
    # -timeout: one input taking over 10 s is a hang; -rss_limit_mb: a
    # target whose memory grows past 2 GiB is a finding too.
    if "$bindir/$t" \
        -max_total_time="$SECONDS_EACH" \
        -timeout=10 \
        -rss_limit_mb=2048 \
        -print_final_stats=1 \
        -artifact_prefix="fuzz/artifacts/$t/" \
        "fuzz/corpus/$t" "fuzz/seeds/$t" >"$log" 2>&1; then
        runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
        echo "fuzz.sh: $t ok (${runs:-?} runs)" >&2
    else
        echo "fuzz.sh: $t FAILED; see $log and fuzz/artifacts/$t/" >&2
        grep -E "panicked at|SUMMARY|Test unit written" "$log" | head -5 >&2 || true
        failed="$failed $t"
    fi
done

end=$(date +%s)
echo "fuzz.sh: done in $((end - start)) s (build $((built - start)) s)" >&2
if [ -n "$failed" ]; then
    echo "fuzz.sh: crashes in:$failed" >&2
    exit 1
fi
