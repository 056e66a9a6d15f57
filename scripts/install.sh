#!/usr/bin/env bash
# Install midge on a Debian / Raspberry Pi OS system from a built tree, with
# the same layout as the .deb: binaries, /etc/midge/midge.conf (kept if
# present) and /etc/midge/conf.d/ (scripts/deploy-conf.sh, which the package
# uses too), the systemd unit, and the package's own postinst for the
# `midge` system user and /var/lib/midge, /var/log/midge (0750, owned by it).
#
#   cargo build --release && sudo scripts/install.sh        # then:
#   sudo systemctl enable --now midge
#
# PREFIX=/usr/local and DESTDIR=/some/root are honoured. With DESTDIR the
# user is created inside that root when it has an /etc/passwd (an image, or
# the throwaway root tests/setups.rs installs into), else left to systemd
# (StateDirectory/LogsDirectory); systemctl is never called.
set -euo pipefail
cd "$(dirname "$0")/.."

PREFIX=${PREFIX:-/usr}
DESTDIR=${DESTDIR:-}
BIN_DIR=${BIN_DIR:-target/release}

if [ -z "$DESTDIR" ] && [ "$(id -u)" -ne 0 ]; then
  echo "install.sh: run as root (or set DESTDIR)" >&2
  exit 1
fi
if [ ! -x "$BIN_DIR/midge" ]; then
  echo "install.sh: $BIN_DIR/midge not found; run 'cargo build --release' first" >&2
  exit 1
fi
for f in scripts/deploy-conf.sh conf/deb/postinst conf/deb/conf.d-README conf/midge.service; do
  [ -f "$f" ] || { echo "install.sh: $f is missing from this tree" >&2; exit 1; }
done

install -d "$DESTDIR$PREFIX/bin" "$DESTDIR/lib/systemd/system"
for b in midge midge_passwd midge_pub midge_sub midge_rr midge_ctrl; do
  if [ -x "$BIN_DIR/$b" ]; then
    install -m 0755 "$BIN_DIR/$b" "$DESTDIR$PREFIX/bin/$b"
  fi
done
if [ -e "$DESTDIR/etc/midge/midge.conf" ]; then
  echo "install.sh: keeping existing /etc/midge/midge.conf (new one as midge.conf.dist)"
  scripts/deploy-conf.sh "$DESTDIR" midge.conf.dist
else
  scripts/deploy-conf.sh "$DESTDIR" midge.conf
fi
sed "s#/usr/bin/midge#$PREFIX/bin/midge#" conf/midge.service >"$DESTDIR/lib/systemd/system/midge.service"
chmod 0644 "$DESTDIR/lib/systemd/system/midge.service"

if [ -z "$DESTDIR" ] || [ -f "$DESTDIR/etc/passwd" ]; then
  # The package's postinst, for the user and directories only.
  DPKG_ROOT="$DESTDIR" MIDGE_POSTINST_NO_SERVICE=1 sh conf/deb/postinst configure
else
  install -d -m 0750 "$DESTDIR/var/lib/midge" "$DESTDIR/var/log/midge"
fi

if [ -z "$DESTDIR" ] && command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  systemctl daemon-reload
  echo "install.sh: installed. Start with: systemctl enable --now midge"
fi
