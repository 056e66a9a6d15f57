#!/usr/bin/env bash
# Build midge_<version>_<arch>.deb from already built binaries, with dpkg-deb
# (no cargo-deb to install).
#
#   scripts/build-deb.sh --arch amd64|arm64|armhf --bin-dir DIR [--out DIR]
#
# DIR holds the binaries to ship (scripts/cross-build.sh fills
# target/dist/<target>/); midge_bench is never packaged. Prints the path of the
# .deb on stdout. The package:
#   /usr/bin/midge, midge_pub, midge_sub, midge_rr, midge_passwd, midge_ctrl
#   (those present)
#   /etc/midge/midge.conf            conffile: conf/midge.conf with "user midge",
#                                    persistence_location /var/lib/midge/ and
#                                    include_dir /etc/midge/conf.d switched on
#   /etc/midge/conf.d/               for local .conf files
#   /lib/systemd/system/midge.service
#   postinst/prerm/postrm from conf/deb/: the "midge" system user,
#   /var/lib/midge and /var/log/midge, the service enabled and started;
#   all of it removed on purge.
# Depends is worked out from the binaries: none for static builds, libc6 (and
# libgcc-s1) with the newest GLIBC symbol version used for glibc builds.
#
# Environment: MIDGE_DEB_MAINTAINER ("Name <email>"), SOURCE_DATE_EPOCH.
set -euo pipefail
cd "$(dirname "$0")/.."

ARCH=""
BIN_DIR=""
OUT="${CARGO_TARGET_DIR:-target}/dist/deb"
while [ $# -gt 0 ]; do
  case "$1" in
    --arch) ARCH="${2:?}"; shift 2 ;;
    --bin-dir) BIN_DIR="${2:?}"; shift 2 ;;
    --out) OUT="${2:?}"; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "build-deb: unknown argument $1" >&2; exit 1 ;;
  esac
done
die() { echo "build-deb: $*" >&2; exit 1; }
case "$ARCH" in
  amd64) MACHINE="X86-64" ;;
  arm64) MACHINE="AArch64" ;;
  armhf) MACHINE="ARM" ;;
  *) die "--arch must be amd64, arm64 or armhf" ;;
esac
[ -n "$BIN_DIR" ] && [ -x "$BIN_DIR/midge" ] || die "--bin-dir must hold a built midge"
command -v dpkg-deb >/dev/null || die "dpkg-deb not found (apt-get install dpkg)"
command -v readelf >/dev/null || die "readelf not found (apt-get install binutils)"

VERSION=$(sed -n 's/^version *= *"\(.*\)"/\1/p' Cargo.toml | head -n 1)
[ -n "$VERSION" ] || die "no version in Cargo.toml"
# The package's maintainer: as given, else the author of the last commit. An
# address whose host has no dot is marked .invalid (lintian refuses it as is).
MAINTAINER="${MIDGE_DEB_MAINTAINER:-$(git log -1 --format='%an <%ae>' 2>/dev/null || true)}"
MAINTAINER="${MAINTAINER:-midge developers <nobody@midge.invalid>}"
if [ -z "${MIDGE_DEB_MAINTAINER:-}" ] && ! printf '%s' "$MAINTAINER" | grep -q '@[^>]*\.[^>]*>$'; then
  MAINTAINER="${MAINTAINER%>}.invalid>"
fi
EPOCH="${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}"

umask 022
STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
ROOT="$STAGE/root"
mkdir -p "$ROOT/DEBIAN" "$ROOT/usr/bin" "$ROOT/etc/midge/conf.d" \
  "$ROOT/lib/systemd/system" "$ROOT/usr/share/doc/midge"

# --- binaries -------------------------------------------------------------
depends_glibc=""
needs_gcc_s=0
shipped=()
for f in "$BIN_DIR"/*; do
  name=$(basename "$f")
  [ -f "$f" ] && [ -x "$f" ] || continue
  case "$name" in
    midge | midge_pub | midge_sub | midge_rr | midge_passwd | midge_ctrl) ;;
    *) continue ;; # midge_bench and anything else is not for users
  esac
  machine=$(readelf -h "$f" | sed -n 's/^ *Machine: *//p')
  case "$machine" in
    *"$MACHINE"*) ;;
    *) die "$f is built for '$machine', not $ARCH" ;;
  esac
  install -m 0755 "$f" "$ROOT/usr/bin/$name"
  shipped+=("$name")
  # Shared libraries a glibc build needs, and the newest symbol version.
  while read -r lib; do
    case "$lib" in
      libc.so.6 | libm.so.6 | libdl.so.2 | libpthread.so.0 | librt.so.1 | libutil.so.1) ;;
      libgcc_s.so.1) needs_gcc_s=1 ;;
      ld-linux*) ;;
      *) die "$name needs $lib: add its package to Depends in build-deb.sh" ;;
    esac
  done < <(readelf -d "$f" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
  v=$(readelf -V --wide "$f" | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -V | tail -n 1 || true)
  if [ -n "$v" ]; then
    depends_glibc=$(printf '%s\n%s\n' "$depends_glibc" "$v" | sed '/^$/d' | sort -V | tail -n 1)
  fi
done
[ -x "$ROOT/usr/bin/midge" ] || die "midge was not copied"

depends=""
[ -n "$depends_glibc" ] && depends="libc6 (>= $depends_glibc)"
[ $needs_gcc_s = 1 ] && depends="${depends:+$depends, }libgcc-s1"

# --- configuration and service ---------------------------------------------
# The example config with what a packaged service needs switched on, and
# conf.d/README: the same layout scripts/install.sh gives (one script for both).
scripts/deploy-conf.sh "$ROOT" || die "scripts/deploy-conf.sh failed"
install -m 0644 conf/midge.service "$ROOT/lib/systemd/system/midge.service"

# --- documentation -----------------------------------------------------------
sed "s/@YEAR@/$(date -u -d "@$EPOCH" +%Y)/" conf/deb/copyright >"$ROOT/usr/share/doc/midge/copyright"
chmod 0644 "$ROOT/usr/share/doc/midge/copyright"
{
  printf 'midge (%s) unstable; urgency=medium\n\n' "$VERSION"
  printf '  * Built by scripts/build-deb.sh from midge %s.\n\n' "$VERSION"
  printf ' -- %s  %s\n' "$MAINTAINER" "$(LC_ALL=C date -u -R -d "@$EPOCH")"
} | gzip -9n >"$ROOT/usr/share/doc/midge/changelog.gz"
if [ -z "$depends" ]; then
  # A static musl build on purpose: it runs on every release of the
  # distribution and on ARMv6.
  mkdir -p "$ROOT/usr/share/lintian/overrides"
  for name in "${shipped[@]}"; do
    echo "midge: statically-linked-binary [usr/bin/$name]"
  done >"$ROOT/usr/share/lintian/overrides/midge"
  chmod 0644 "$ROOT/usr/share/lintian/overrides/midge"
fi

# --- control -------------------------------------------------------------------
for s in postinst prerm postrm; do
  install -m 0755 "conf/deb/$s" "$ROOT/DEBIAN/$s"
done
{
  cat conf/deb/conffiles
  echo /etc/midge/conf.d/README
} >"$ROOT/DEBIAN/conffiles"
chmod 0644 "$ROOT/DEBIAN/conffiles"
installed_kb=$(du -sk --exclude=DEBIAN "$ROOT" | cut -f1)
{
  echo "Package: midge"
  echo "Version: $VERSION"
  echo "Architecture: $ARCH"
  echo "Maintainer: $MAINTAINER"
  echo "Installed-Size: $installed_kb"
  # postinst/postrm run useradd/userdel.
  echo "Depends: ${depends:+$depends, }passwd"
  echo "Provides: mqtt-broker"
  echo "Section: net"
  echo "Priority: optional"
  echo "Description: Mosquitto-compatible MQTT broker for small boards"
  echo " midge is an MQTT broker (3.1, 3.1.1 and 5.0) that reads Mosquitto's"
  echo " configuration, password, ACL and dynamic-security files. It runs as one"
  echo " thread on one event loop, with TLS (rustls) and WebSockets built in."
  echo " ."
  echo " This package contains the broker, run by systemd as the user midge,"
  echo " and the command-line tools: ${shipped[*]}."
} >"$ROOT/DEBIAN/control"

# Checksums for dpkg --verify / debsums.
(cd "$ROOT" && find . -type f ! -path './DEBIAN/*' -printf '%P\0' | LC_ALL=C sort -z \
  | xargs -0 md5sum) >"$ROOT/DEBIAN/md5sums"
chmod 0644 "$ROOT/DEBIAN/md5sums"

# Every file dated like the source, so two builds give the same package.
find "$ROOT" -exec touch -h -d "@$EPOCH" {} +

mkdir -p "$OUT"
deb="$OUT/midge_${VERSION}_${ARCH}.deb"
dpkg-deb --root-owner-group -Zxz --build "$ROOT" "$deb" >/dev/null
echo "$deb"
