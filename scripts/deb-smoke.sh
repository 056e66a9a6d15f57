#!/usr/bin/env bash
# Install the amd64 .deb into a throwaway root, run the installed broker and
# tools, then remove and purge it and check that nothing is left.
#
#   scripts/deb-smoke.sh [path/to/midge_<version>_amd64.deb]
#
# Without an argument it uses target/dist/deb/midge_<version>_amd64.deb,
# building it first (scripts/cross-build.sh amd64) when it is missing.
#
# The package is installed with dpkg --root=DIR --force-script-chrootless:
# the maintainer scripts then run on the host with DPKG_ROOT=DIR, so
# postinst/postrm are exercised for real (the midge user, /var/lib/midge,
# /var/log/midge) without touching the host's own files. systemd is not
# involved (no systemd in DIR); the unit is checked with systemd-analyze.
# Needs root (dpkg, chown). Not part of CI; takes a few seconds once built.
set -euo pipefail
cd "$(dirname "$0")/.."

die() { echo "deb-smoke: FAIL: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "deb-smoke: needs root (dpkg --root, chown)" >&2; exit 1; }

VERSION=$(sed -n 's/^version *= *"\(.*\)"/\1/p' Cargo.toml | head -n 1)
DEB="${1:-${CARGO_TARGET_DIR:-target}/dist/deb/midge_${VERSION}_amd64.deb}"
if [ ! -f "$DEB" ]; then
  [ $# -eq 0 ] || die "$DEB not found"
  echo "== building $DEB"
  scripts/cross-build.sh amd64 >&2 || die "scripts/cross-build.sh amd64 failed"
fi
DEB=$(readlink -f "$DEB")

echo "== dpkg-deb --info / --contents"
dpkg-deb --info "$DEB"
contents=$(dpkg-deb --contents "$DEB")
echo "$contents"
for f in ./usr/bin/midge ./usr/bin/midge_passwd ./etc/midge/midge.conf \
  ./lib/systemd/system/midge.service ./usr/share/doc/midge/copyright; do
  grep -q " $f\$" <<<"$contents" || die "$f missing from the package"
done
if grep -q 'midge_bench' <<<"$contents"; then die "midge_bench must not be packaged"; fi
dpkg-deb --ctrl-tarfile "$DEB" | tar -xO ./conffiles | grep -qx /etc/midge/midge.conf \
  || die "/etc/midge/midge.conf is not a conffile"
if command -v lintian >/dev/null 2>&1; then
  echo "== lintian"
  # Errors fail; warnings (no manual pages yet) are shown.
  lintian --fail-on error "$DEB" 2>&1 | grep -v 'running with root privileges' || true
  lintian --fail-on error "$DEB" >/dev/null 2>&1 || die "lintian reports errors"
else
  echo "== lintian not installed: skipped (apt-get install lintian)"
fi

R=$(mktemp -d)
PID=""
cleanup() {
  [ -n "$PID" ] && kill -KILL "$PID" 2>/dev/null
  rm -rf "$R"
}
trap cleanup EXIT
chmod 0755 "$R"

# A root with just enough for dpkg and the user tools: an empty dpkg
# database and copies of the host's account files (without any midge).
mkdir -p "$R/var/lib/dpkg/info" "$R/var/lib/dpkg/updates" "$R/var/lib/dpkg/triggers" \
  "$R/var/log" "$R/etc"
touch "$R/var/lib/dpkg/status" "$R/var/lib/dpkg/available"
for f in passwd group shadow gshadow; do
  if [ -f "/etc/$f" ]; then
    awk -F: '$1 != "midge"' "/etc/$f" >"$R/etc/$f"
    chmod --reference="/etc/$f" "$R/etc/$f"
  fi
done
[ -f /etc/login.defs ] && cp /etc/login.defs "$R/etc/"

DPKG=(dpkg --root="$R" --force-script-chrootless --force-depends --force-not-root)

echo "== dpkg -i into $R"
# Dependencies (libc6, passwd) are not in the empty root: --force-depends,
# and dpkg's complaints about that go to a log shown only on failure.
"${DPKG[@]}" -i "$DEB" >"$R/dpkg.log" 2>&1 || { cat "$R/dpkg.log" >&2; die "dpkg -i failed"; }
"${DPKG[@]}" -s midge | grep -q '^Status: install ok installed' || die "midge not installed"

for b in midge midge_passwd midge_pub midge_sub midge_rr midge_ctrl; do
  [ -x "$R/usr/bin/$b" ] || echo "  note: $b not in the package (not built yet?)"
done
[ -x "$R/usr/bin/midge" ] || die "/usr/bin/midge not installed"
[ ! -e "$R/usr/bin/midge_bench" ] || die "midge_bench installed"
grep -qx 'Type=notify' "$R/lib/systemd/system/midge.service" || die "unit is not Type=notify"
grep -qx 'user midge' "$R/etc/midge/midge.conf" || die "packaged config does not say 'user midge'"

entry=$(awk -F: '$1 == "midge"' "$R/etc/passwd")
[ -n "$entry" ] || die "postinst did not create the midge user"
uid=$(cut -d: -f3 <<<"$entry")
gid=$(cut -d: -f4 <<<"$entry")
[ "$uid" -lt 1000 ] || die "midge is not a system user (uid $uid)"
[ "$(cut -d: -f7 <<<"$entry")" = /usr/sbin/nologin ] || die "midge user has a login shell"
awk -F: '$1 == "midge"' "$R/etc/group" | grep -q . || die "postinst did not create the midge group"
for d in /var/lib/midge /var/log/midge; do
  [ "$(stat -c '%u:%g %a' "$R$d")" = "$uid:$gid 750" ] \
    || die "$d is $(stat -c '%u:%g %a' "$R$d"), expected $uid:$gid 750"
done
echo "  user midge ($uid:$gid), /var/lib/midge and /var/log/midge created"

if command -v systemd-analyze >/dev/null 2>&1; then
  # The installed unit, its ExecStart pointed at the installed binary (the
  # throwaway root has no systemd of its own to check against).
  mkdir -p "$R/verify"
  sed "s|/usr/bin/midge|$R/usr/bin/midge|" "$R/lib/systemd/system/midge.service" \
    >"$R/verify/midge.service"
  out=$(systemd-analyze verify "$R/verify/midge.service" 2>&1) \
    || die "systemd-analyze verify: $out"
  echo "  systemd-analyze verify: ok"
fi

# The installed config must be valid as shipped (its include_dir points at
# /etc/midge/conf.d, which exists only inside the root: rewrite that path).
conf="$R/etc/midge/test.conf"
sed -e "s|^include_dir /etc/midge/conf.d\$|include_dir $R/etc/midge/conf.d|" \
  "$R/etc/midge/midge.conf" >"$conf"
"$R/usr/bin/midge" -c "$conf" --test-config || die "the packaged midge.conf is not valid"

# midge_ctrl writes a dynamic-security file the installed broker loads.
if [ -x "$R/usr/bin/midge_ctrl" ]; then
  "$R/usr/bin/midge_ctrl" dynsec init "$R/etc/midge/dynsec.json" admin s3cret >"$R/ctrl.log" 2>&1 \
    || { cat "$R/ctrl.log" >&2; die "midge_ctrl dynsec init failed"; }
  grep -q "^The client 'admin' has been created" "$R/ctrl.log" || die "midge_ctrl dynsec init said: $(cat "$R/ctrl.log")"
  printf 'listener 0 %s\nplugin /usr/lib/mosquitto_dynamic_security.so\nplugin_opt_config_file %s\n' \
    "$R/dynsec.sock" "$R/etc/midge/dynsec.json" >"$R/dynsec.conf"
  "$R/usr/bin/midge" -c "$R/dynsec.conf" --test-config >/dev/null \
    || die "the installed midge does not load midge_ctrl's dynsec file"
  rm -f "$R/etc/midge/dynsec.json" "$R/dynsec.conf" "$R/ctrl.log"
  echo "  midge_ctrl dynsec init: file written and loaded by midge"
fi

# Run the installed broker: a listener with a password file, from conf.d.
# Below the ephemeral range (32768+), so no outgoing connection holds it.
port=""
for _ in $(seq 1 50); do
  p=$((10000 + RANDOM % 22000))
  if command -v ss >/dev/null 2>&1 && [ -n "$(ss -Htan "( sport = :$p )" 2>/dev/null)" ]; then
    continue
  fi
  if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then port=$p; break; fi
done
[ -n "$port" ] || die "no free port"
"$R/usr/bin/midge_passwd" -c -b "$R/etc/midge/passwd" smoke s3cret || die "midge_passwd failed"
cat >"$R/etc/midge/conf.d/smoke.conf" <<EOF
listener $port 127.0.0.1
allow_anonymous false
password_file $R/etc/midge/passwd
EOF
sed -i "s/^user midge\$/user $(id -un)/" "$conf"
"$R/usr/bin/midge" -c "$conf" >"$R/midge.log" 2>&1 &
PID=$!
for _ in $(seq 1 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.05
done
(exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || { cat "$R/midge.log" >&2; die "installed midge did not listen"; }

# Clients: Mosquitto's when installed, and the packaged ones.
pubs=()
subs=()
if command -v mosquitto_pub >/dev/null 2>&1; then pubs+=(mosquitto_pub); subs+=(mosquitto_sub); fi
if [ -x "$R/usr/bin/midge_pub" ] && [ -x "$R/usr/bin/midge_sub" ]; then
  pubs+=("$R/usr/bin/midge_pub")
  subs+=("$R/usr/bin/midge_sub")
fi
[ ${#pubs[@]} -gt 0 ] || die "no MQTT client to test with (apt-get install mosquitto-clients)"
for i in "${!pubs[@]}"; do
  pub=(timeout 20 "${pubs[i]}" -h 127.0.0.1 -p "$port" -u smoke -P s3cret)
  sub=(timeout 20 "${subs[i]}" -h 127.0.0.1 -p "$port" -u smoke -P s3cret)
  msg="hello from $(basename "${pubs[i]}") $RANDOM"
  "${pub[@]}" -t deb/smoke -m "$msg" -q 2 -r || die "$(basename "${pubs[i]}"): publish failed"
  got=$("${sub[@]}" -t deb/smoke -C 1 -W 10) || die "$(basename "${subs[i]}"): subscribe failed"
  [ "$got" = "$msg" ] || die "$(basename "${subs[i]}"): expected '$msg', got '$got'"
  if timeout 20 "${pubs[i]}" -h 127.0.0.1 -p "$port" -t deb/smoke -m anon 2>/dev/null; then
    die "$(basename "${pubs[i]}"): an anonymous client was accepted"
  fi
  echo "  $(basename "${pubs[i]}")/$(basename "${subs[i]}"): retained QoS 2 with a password: ok; anonymous refused: ok"
done
kill -TERM "$PID"
status=0
wait "$PID" || status=$?
PID=""
[ $status -eq 0 ] || { cat "$R/midge.log" >&2; die "installed midge exited with $status after SIGTERM"; }
echo "  SIGTERM: exit 0"
rm -f "$R/etc/midge/conf.d/smoke.conf" "$R/etc/midge/passwd" "$conf"

echo "== dpkg -r (remove: configuration, user and data stay)"
"${DPKG[@]}" -r midge >"$R/dpkg.log" 2>&1 || { cat "$R/dpkg.log" >&2; die "dpkg -r failed"; }
[ ! -e "$R/usr/bin/midge" ] || die "/usr/bin/midge left after remove"
[ -f "$R/etc/midge/midge.conf" ] || die "conffile removed by remove (only purge may)"
[ -d "$R/var/lib/midge" ] || die "/var/lib/midge removed by remove (only purge may)"

echo "== dpkg --purge"
"${DPKG[@]}" --purge midge >"$R/dpkg.log" 2>&1 || { cat "$R/dpkg.log" >&2; die "dpkg --purge failed"; }
for p in /etc/midge /var/lib/midge /var/log/midge /lib/systemd/system/midge.service /usr/bin/midge; do
  [ ! -e "$R$p" ] || die "$p left after purge"
done
if awk -F: '$1 == "midge"' "$R/etc/passwd" "$R/etc/group" | grep -q .; then
  die "midge user or group left after purge"
fi
if "${DPKG[@]}" -s midge 2>/dev/null | grep -q '^Status: install'; then die "still registered"; fi
echo "deb-smoke: ok: $(basename "$DEB") installs, runs, removes and purges cleanly"
