#!/usr/bin/env bash
# The /etc/midge layout that both install paths ship, so they cannot drift:
# scripts/install.sh and the .deb (scripts/build-deb.sh) both call this.
#
#   scripts/deploy-conf.sh ROOT [NAME]
#
# writes
#   ROOT/etc/midge/NAME          conf/midge.conf with "user midge",
#                                "persistence_location /var/lib/midge/" and
#                                "include_dir /etc/midge/conf.d" switched on
#                                (NAME: midge.conf, or midge.conf.dist when
#                                install.sh keeps an existing config)
#   ROOT/etc/midge/conf.d/README what goes in conf.d
# ROOT may be "" (the running system). Each edit must find its line: if
# conf/midge.conf changes, this fails rather than ship a config that silently
# lost one.
set -euo pipefail
cd "$(dirname "$0")/.."

[ $# -ge 1 ] || { echo "usage: scripts/deploy-conf.sh ROOT [NAME]" >&2; exit 1; }
ROOT=$1
NAME=${2:-midge.conf}
die() { echo "deploy-conf: $*" >&2; exit 1; }
[ -f conf/midge.conf ] || die "conf/midge.conf not found"
[ -f conf/deb/conf.d-README ] || die "conf/deb/conf.d-README not found"

tmp=$(mktemp)
trap 'rm -f "$tmp" "$tmp.new"' EXIT
cp conf/midge.conf "$tmp"
conf_edit() { # from to
  grep -qxF "$1" "$tmp" \
    || die "conf/midge.conf no longer has the line '$1': update scripts/deploy-conf.sh"
  awk -v from="$1" -v to="$2" '$0 == from { print to; next } { print }' "$tmp" >"$tmp.new"
  mv "$tmp.new" "$tmp"
}
conf_edit "#user mosquitto" "user midge"
conf_edit "#persistence_location /var/lib/midge/" "persistence_location /var/lib/midge/"
conf_edit "#include_dir /etc/midge/conf.d" "include_dir /etc/midge/conf.d"

install -d -m 0755 "$ROOT/etc/midge" "$ROOT/etc/midge/conf.d"
install -m 0644 "$tmp" "$ROOT/etc/midge/$NAME"
install -m 0644 conf/deb/conf.d-README "$ROOT/etc/midge/conf.d/README"
