#!/bin/sh
# Dependency audit against the advisory database vendored in audit/advisory-db
# (no network access to GitHub needed). Fails on any advisory, including
# informational ones (unsound, unmaintained), that is not accepted with a
# reason in audit/accepted.txt. Audits Cargo.lock and fuzz/Cargo.lock.
#
#   sh scripts/audit.sh
#
# cargo-audit comes from $CARGO_AUDIT, from PATH, or is installed from PyPI
# (prebuilt, pinned by hash in audit/requirements.txt) into target/audit-tools;
# if pip cannot, from crates.io with `cargo install --locked cargo-audit`.
set -eu
cd "$(dirname "$0")/.."

db=audit/advisory-db
tools=target/audit-tools

find_audit() {
    if [ -n "${CARGO_AUDIT:-}" ]; then
        echo "$CARGO_AUDIT"
    elif command -v cargo-audit >/dev/null 2>&1; then
        command -v cargo-audit
    elif [ -x "$tools/bin/cargo-audit" ]; then
        echo "$tools/bin/cargo-audit"
    elif [ -x "$tools/cargo/bin/cargo-audit" ]; then
        echo "$tools/cargo/bin/cargo-audit"
    fi
}

audit=$(find_audit)
if [ -z "$audit" ]; then
    echo "audit.sh: installing cargo-audit" >&2
    if python3 -m pip install -q --disable-pip-version-check --no-deps \
        --require-hashes --target "$tools" -r audit/requirements.txt >&2; then
        :
    else
        echo "audit.sh: pip failed; building cargo-audit from crates.io" >&2
        cargo install --locked --root "$tools/cargo" cargo-audit >&2
    fi
    audit=$(find_audit)
fi
[ -n "$audit" ] || { echo "audit.sh: no cargo-audit" >&2; exit 1; }
"$audit" --version >&2 || "$audit" audit --version >&2

ignores=""
echo "audit.sh: accepted advisories:" >&2
while read -r id reason; do
    case $id in '' | '#'*) continue ;; esac
    ignores="$ignores --ignore $id"
    echo "  $id: $reason" >&2
done < audit/accepted.txt

status=0
for lock in Cargo.lock fuzz/Cargo.lock; do
    [ -f "$lock" ] || continue
    # The database must be read: without the exceptions, the accepted
    # advisories must be reported (a silently empty database would pass).
    for id in $(sed -n 's/^\(RUSTSEC-[0-9]*-[0-9]*\) .*/\1/p' audit/accepted.txt); do
        pkg=$(sed -n 's/^package = "\(.*\)"/\1/p' "$db"/crates/*/"$id".md)
        grep -q "^name = \"$pkg\"" "$lock" || continue
        if ! "$audit" audit --db "$db" --no-fetch --file "$lock" --json 2>/dev/null | grep -q "$id"; then
            echo "audit.sh: $id not reported for $lock: is $db readable?" >&2
            exit 1
        fi
    done
    echo "audit.sh: $lock" >&2
    # shellcheck disable=SC2086
    "$audit" audit --db "$db" --no-fetch --deny warnings --file "$lock" $ignores || status=1
done
exit $status
