#!/usr/bin/env bash
# Install midge on a Debian / Raspberry Pi OS system from a built tree:
# binaries, /etc/midge/midge.conf (kept if present), the systemd unit, a
# `midge` system user and /var/lib/midge, /var/log/midge.
#
#   cargo build --release && sudo scripts/install.sh        # then:
#   sudo systemctl enable --now midge
#
# PREFIX=/usr/local and DESTDIR=/some/root are honoured (DESTDIR skips the
# user creation and systemctl calls: it is for building images/packages).
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

install -d "$DESTDIR$PREFIX/bin" "$DESTDIR/etc/midge" "$DESTDIR/lib/systemd/system" \
  "$DESTDIR/var/lib/midge" "$DESTDIR/var/log/midge"
for b in midge midge_passwd midge_pub midge_sub midge_rr midge_ctrl; do
  if [ -x "$BIN_DIR/$b" ]; then
    install -m 0755 "$BIN_DIR/$b" "$DESTDIR$PREFIX/bin/$b"
  fi
done
if [ -e "$DESTDIR/etc/midge/midge.conf" ]; then
  echo "install.sh: keeping existing /etc/midge/midge.conf (new one as midge.conf.dist)"
  install -m 0644 conf/midge.conf "$DESTDIR/etc/midge/midge.conf.dist"
else
  install -m 0644 conf/midge.conf "$DESTDIR/etc/midge/midge.conf"
fi
sed "s#/usr/bin/midge#$PREFIX/bin/midge#" conf/midge.service > "$DESTDIR/lib/systemd/system/midge.service"
chmod 0644 "$DESTDIR/lib/systemd/system/midge.service"

if [ -z "$DESTDIR" ]; then
  if ! getent passwd midge >/dev/null; then
    useradd --system --home-dir /var/lib/midge --no-create-home \
      --shell /usr/sbin/nologin midge
  fi
  chown midge: /var/lib/midge /var/log/midge
  if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    echo "install.sh: installed. Start with: systemctl enable --now midge"
  fi
fi
