#!/bin/sh
# A self-contained loopback demo of blackpony: site A's blackpony-mailer sends
# one message to site B's blackpony, which hands it to a tiny SMTP sink. No MTA
# and no network are needed, only Rust and python3 (standard library only).
# Prints the SMTP dialogue as sendmail sees it, what went over the wire, and
# PASS/FAIL checks; exits non-zero if a check fails.
#
#   scripts/demo.sh          run the demo
#   scripts/demo.sh --keep   keep the work directory (keys, logs, capture)
set -eu
cd "$(dirname "$0")/.."

echo "== Building (cargo build --release) =="
cargo build --release --quiet

target="${CARGO_TARGET_DIR:-target}"
case "$target" in
    /*) ;;
    *) target="$(pwd)/$target" ;;
esac
BLACKPONY_BIN="$target/release/blackpony"
BLACKPONY_MAILER_BIN="$target/release/blackpony-mailer"
for b in "$BLACKPONY_BIN" "$BLACKPONY_MAILER_BIN"; do
    if [ ! -x "$b" ]; then
        echo "demo: $b was not built" >&2
        exit 1
    fi
done
echo "built $BLACKPONY_BIN"
echo "      $BLACKPONY_MAILER_BIN"
export BLACKPONY_BIN BLACKPONY_MAILER_BIN
exec python3 scripts/demo.py "$@"
