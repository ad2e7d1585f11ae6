#!/bin/bash
# Build the Debian package blackpony_<version>_<arch>.deb into target/debian/
# (or $CARGO_TARGET_DIR/debian/): release binaries, man pages, docs and
# examples, the systemd units (not enabled) and the maintainer scripts of
# deploy/debian/, and the renewal cron job (deploy/cron.d). Uses dpkg-deb on a staged tree; needs no cargo-deb and no
# Cargo.toml metadata. Works offline once the crates are fetched.
#
#   scripts/build-deb.sh            build, package, check the man pages, run lintian if installed
#
# Environment:
#   CARGO_TARGET_DIR     cargo's target directory (default: target)
#   CARGO_BUILD_FLAGS    extra flags for cargo build (e.g. --locked --offline)
#   DEB_SKIP_BUILD=1     package the binaries already in target/release
#   DEB_REVISION         Debian revision (default 1): version <cargo version>-<revision>
#   DEB_MAINTAINER       "Name <address>" for the Maintainer field (default:
#                        the first of Cargo.toml's authors, else a placeholder)
#   BLACKPONY_SYSTEMD_DIR  where the units are: blackpony.socket and
#                        blackpony@.service (Accept=yes), blackpony-threaded.socket
#                        and blackpony-threaded.service (Accept=no), blackpony-renew.service
#                        and .timer (daily certificate renewal) (default: deploy/systemd)
#   DEB_LINTIAN=0        do not run lintian even if it is installed
#   SOURCE_DATE_EPOCH    timestamp of every file (default: the last commit)
set -euo pipefail
umask 022

REPO=$(cd "$(dirname "$0")/.." && pwd)
cd "$REPO"
die() {
    echo "build-deb: $*" >&2
    exit 1
}
for t in dpkg-deb dpkg gzip strip md5sum; do
    command -v "$t" >/dev/null || die "$t is missing"
done

# ---------------------------------------------------------------- metadata
UPSTREAM=$(sed -n '/^\[package\]/,/^\[/s/^version *= *"\([^"]*\)".*/\1/p' Cargo.toml | head -n 1)
[ -n "$UPSTREAM" ] || die "no version in Cargo.toml's [package]"
VERSION=$UPSTREAM-${DEB_REVISION:-1}
ARCH=$(dpkg --print-architecture)
if [ -z "${DEB_MAINTAINER:-}" ]; then
    DEB_MAINTAINER=$(sed -n '/^\[package\]/,/^\[/s/^authors *= *\[ *"\([^"]*\)".*/\1/p' Cargo.toml | head -n 1)
    [ -n "$DEB_MAINTAINER" ] || DEB_MAINTAINER="blackpony developers <blackpony-devel@example.org>"
fi
: "${SOURCE_DATE_EPOCH:=$(git -C "$REPO" log -1 --format=%ct 2>/dev/null || date +%s)}"
export SOURCE_DATE_EPOCH
TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}
case $TARGET_DIR in /*) ;; *) TARGET_DIR=$REPO/$TARGET_DIR ;; esac
OUT=$TARGET_DIR/debian
DEB=$OUT/blackpony_${VERSION}_${ARCH}.deb
SYSTEMD_DIR=${BLACKPONY_SYSTEMD_DIR:-$REPO/deploy/systemd}
UNITS="blackpony.socket blackpony@.service blackpony-threaded.socket blackpony-threaded.service
       blackpony-renew.service blackpony-renew.timer"
for f in $UNITS; do
    [ -f "$SYSTEMD_DIR/$f" ] || die "$SYSTEMD_DIR/$f is missing (set BLACKPONY_SYSTEMD_DIR)"
done
for f in postinst prerm postrm conffiles control.in copyright policy README.Debian; do
    [ -f deploy/debian/$f ] || die "deploy/debian/$f is missing"
done
[ -f deploy/cron.d/blackpony ] || die "deploy/cron.d/blackpony is missing"

# ---------------------------------------------------------------- build
if [ -z "${DEB_SKIP_BUILD:-}" ]; then
    echo "build-deb: cargo build --release --workspace --bins ${CARGO_BUILD_FLAGS:-}"
    # shellcheck disable=SC2086 # CARGO_BUILD_FLAGS is a list of flags
    # --workspace: blackpony-report is its own crate (report/).
    cargo build --release --workspace --bins ${CARGO_BUILD_FLAGS:-}
fi
BIN=$TARGET_DIR/release
for b in blackpony blackpony-mailer blackpony-report; do
    [ -x "$BIN/$b" ] || die "$BIN/$b is missing (cargo build --release --workspace)"
done

# ---------------------------------------------------------------- man pages
# Every long option of --help must be in the man page; groff must not warn.
check_man() { # binary page [warn]: die (or only warn) when the page is incomplete
    local bin=$1 page=$2 warn=${3:-} opt missing=""
    for opt in $("$bin" --help | grep -o -- '--[a-z][a-z0-9-]*' | sort -u); do
        # In troff the page writes --opt as \-\-opt.
        grep -q -- "$(printf '%s' "$opt" | sed 's/-/\\\\-/g')\\b" "$page" || missing="$missing $opt"
    done
    if [ -n "$missing" ]; then
        [ -n "$warn" ] || die "$page does not document$missing (from $(basename "$bin") --help)"
        echo "build-deb: warning: $page does not document$missing" >&2
    fi
    if command -v groff >/dev/null; then
        local w
        w=$(groff -man -Tutf8 -ww -z "$page" 2>&1) || true
        if [ -n "$w" ]; then
            [ -n "$warn" ] || die "groff warns about $page: $w"
            echo "build-deb: warning: groff warns about $page: $w" >&2
        fi
    fi
}
check_man "$BIN/blackpony" docs/man/blackpony.8
check_man "$BIN/blackpony-mailer" docs/man/blackpony-mailer.8
if [ -x "$BIN/blackpony-report" ] && [ -f docs/man/blackpony-report.8 ]; then
    check_man "$BIN/blackpony-report" docs/man/blackpony-report.8 warn
fi

# ---------------------------------------------------------------- stage
WORK=$(mktemp -d "${TMPDIR:-/tmp}/build-deb.XXXXXXXXXX")
trap 'rm -rf "$WORK"' EXIT
S=$WORK/root
DOC=$S/usr/share/doc/blackpony
install -d "$S/DEBIAN" "$S/usr/sbin" "$S/usr/share/man/man8" "$DOC" \
    "$S/lib/systemd/system" "$S/etc/blackpony" "$S/etc/cron.d"

install -m 755 "$BIN/blackpony" "$BIN/blackpony-mailer" "$S/usr/sbin/"
if [ -x "$BIN/blackpony-report" ]; then
    install -d "$S/usr/bin"
    install -m 755 "$BIN/blackpony-report" "$S/usr/bin/"
fi
for f in "$S"/usr/sbin/* "$S"/usr/bin/*; do
    [ -f "$f" ] || continue
    strip --strip-unneeded --remove-section=.comment --remove-section=.note "$f"
done

for p in blackpony blackpony-mailer blackpony-report; do
    [ -f "docs/man/$p.8" ] || continue
    gzip -9n <"docs/man/$p.8" >"$S/usr/share/man/man8/$p.8.gz"
done

# Documentation. The examples are rewritten for the package: programs in
# /usr/sbin, run as the user blackpony (README.md keeps the source install).
install -m 644 README.md "$DOC/README.md"
install -m 644 deploy/debian/README.Debian "$DOC/README.Debian"
install -m 644 CHANGES "$DOC/changelog"
install -m 644 deploy/debian/copyright "$DOC/copyright"
for f in docs/*.md; do
    [ -f "$f" ] && install -m 644 "$f" "$DOC/"
done
install -d "$DOC/xinetd.d" "$DOC/sendmail" "$DOC/postfix"
sed -e 's|/usr/local/sbin/|/usr/sbin/|g' -e 's|nobody:nogroup|blackpony:blackpony|g' \
    inetd.conf.sample >"$DOC/inetd.conf.sample"
sed -e 's|/usr/local/sbin/|/usr/sbin/|g' \
    -e 's|^\([[:space:]]*user[[:space:]]*=[[:space:]]*\)nobody[[:space:]]*$|\1blackpony|' \
    -e 's|^\([[:space:]]*group[[:space:]]*=[[:space:]]*\)nogroup[[:space:]]*$|\1blackpony|' \
    xinetd.d/blackpony >"$DOC/xinetd.d/blackpony"
sed -e 's|/usr/local/sbin/|/usr/sbin/|g' sendmail/blackpony.m4 >"$DOC/sendmail/blackpony.m4"
if grep -n -e /usr/local/sbin -e '^[^#]*nobody' -e '^[^#]*nogroup' \
    "$DOC/inetd.conf.sample" "$DOC/xinetd.d/blackpony" "$DOC/sendmail/blackpony.m4" >&2; then
    die "could not adapt the examples above to /usr/sbin and the user blackpony"
fi
for f in deploy/postfix/*; do
    install -m 644 "$f" "$DOC/postfix/"
done
# Debian's changelog of the package itself.
cat >"$WORK/changelog.Debian" <<EOF
blackpony ($VERSION) unstable; urgency=medium

  * Built from the blackpony source tree by scripts/build-deb.sh. The
    changes of blackpony itself are in changelog.gz.

 -- $DEB_MAINTAINER  $(LC_ALL=C date -u -R -d "@$SOURCE_DATE_EPOCH")
EOF
install -m 644 "$WORK/changelog.Debian" "$DOC/changelog.Debian"
# Compress as dh_compress does: changelogs always, other files over 4 kB.
for f in "$DOC"/changelog "$DOC"/changelog.Debian; do gzip -9n "$f"; done
find "$DOC" -type f ! -name copyright ! -name '*.gz' -size +4k -exec gzip -9n {} +

for f in $UNITS; do
    install -m 644 "$SYSTEMD_DIR/$f" "$S/lib/systemd/system/"
done
install -m 644 deploy/debian/policy "$S/etc/blackpony/policy"
# Certificate renewal where systemd does not run (the timer does it elsewhere).
install -m 644 deploy/cron.d/blackpony "$S/etc/cron.d/blackpony"

# ---------------------------------------------------------------- control
install -m 755 deploy/debian/postinst deploy/debian/prerm deploy/debian/postrm "$S/DEBIAN/"
install -m 644 deploy/debian/conffiles "$S/DEBIAN/conffiles"
while read -r c; do
    [ -z "$c" ] || [ -f "$S$c" ] || die "conffile $c is not in the package"
done <deploy/debian/conffiles

# Shared library dependencies: dpkg-shlibdeps when dpkg-dev is installed,
# else the highest GLIBC symbol version the binaries need.
bins=$(find "$S/usr/sbin" "$S/usr/bin" -type f 2>/dev/null)
shlibs=""
if command -v dpkg-shlibdeps >/dev/null; then
    mkdir -p "$WORK/src/debian"
    printf 'Source: blackpony\n\nPackage: blackpony\nArchitecture: any\n' >"$WORK/src/debian/control"
    # shellcheck disable=SC2086 # one word per binary
    shlibs=$(cd "$WORK/src" && dpkg-shlibdeps -O $bins 2>/dev/null | sed -n 's/^shlibs:Depends=//p') || shlibs=""
fi
if [ -z "$shlibs" ]; then
    # shellcheck disable=SC2086
    glibc=$(objdump -T $bins | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -t. -k1,1n -k2,2n -k3,3n | tail -n 1)
    shlibs="libc6 (>= ${glibc:-2.17})"
    # shellcheck disable=SC2086
    if objdump -p $bins | grep -q 'NEEDED.*libgcc_s'; then shlibs="$shlibs, libgcc-s1 (>= 4.2)"; fi
fi
DEPENDS="adduser, $shlibs"
SIZE=$(du -sk --apparent-size --exclude=DEBIAN "$S" | cut -f1)
sed -e "s|@VERSION@|$VERSION|" -e "s|@ARCH@|$ARCH|" -e "s|@MAINTAINER@|$DEB_MAINTAINER|" \
    -e "s|@INSTALLED_SIZE@|$SIZE|" -e "s|@DEPENDS@|$DEPENDS|" \
    deploy/debian/control.in >"$S/DEBIAN/control"
(cd "$S" && find . -type f ! -path './DEBIAN/*' -printf '%P\0' | LC_ALL=C sort -z | xargs -0 md5sum) >"$S/DEBIAN/md5sums"
chmod 644 "$S/DEBIAN/md5sums" "$S/DEBIAN/control"

# Reproducible: every file gets SOURCE_DATE_EPOCH.
find "$S" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +

# ---------------------------------------------------------------- package
mkdir -p "$OUT"
rm -f "$DEB"
dpkg-deb --root-owner-group -Zxz --build "$S" "$DEB" >/dev/null
echo "build-deb: $DEB"
dpkg-deb --field "$DEB" Package Version Architecture Depends Installed-Size | sed 's/^/    /'

if [ "${DEB_LINTIAN:-1}" != 0 ] && command -v lintian >/dev/null; then
    echo "build-deb: lintian (warnings do not fail the build):"
    lintian --info --display-info "$DEB" 2>&1 | sed 's/^/    /' || true
fi
