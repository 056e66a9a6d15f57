#!/usr/bin/env bash
# Smoke test of the ARM builds under qemu-user.
#
#   scripts/arm-smoke.sh [--no-build] [target...]
#
# For each target (default: aarch64-unknown-linux-gnu; "all" = the four ARM
# targets of scripts/cross-build.sh, short names accepted): build the release
# `midge` with scripts/cross-build.sh, start it under qemu-user on a free
# loopback port (ARMv6 as an ARM1176, the Pi Zero/1 CPU), and from the host,
# with mosquitto_pub/mosquitto_sub:
#   - retained messages: stored, replaced, delivered to a new subscriber;
#   - QoS 0, 1 and 2 delivered at the granted QoS (v3.1.1 and v5 clients);
#   - a 200 kB QoS 1 payload arrives intact;
#   - TLS 1.3 and TLS 1.2 (rustls + ring's ARM code) on a second listener,
#     with a throwaway self-signed certificate (needs openssl on the host;
#     without it that part alone is skipped, saying so);
#   - SIGTERM: exit status 0 within 10 s, nothing alarming in the log.
# Start-up time (until the port accepts) and idle memory (RSS of the qemu
# process, which includes qemu itself, and midge's own heap from
# $SYS/broker/heap/current) are printed.
#
# --no-build: test what is already in target/<target>/release/midge.
#
# This is part of CI, so an environment that cannot run it is not a failure:
# when packages, the Rust target or qemu cannot be had, it prints
# "ARM smoke test skipped: <reason>" and exits 0. A binary that builds and
# then misbehaves fails (exit 1), and so does a build error.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

BUILD=1
TARGETS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --no-build) BUILD=0; shift ;;
    -h|--help) sed -n '2,/^set -uo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
    all) TARGETS+=(aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf
      arm-unknown-linux-musleabihf aarch64-unknown-linux-musl); shift ;;
    aarch64|arm64) TARGETS+=(aarch64-unknown-linux-gnu); shift ;;
    armv7|armhf) TARGETS+=(armv7-unknown-linux-gnueabihf); shift ;;
    armv6) TARGETS+=(arm-unknown-linux-musleabihf); shift ;;
    aarch64-musl) TARGETS+=(aarch64-unknown-linux-musl); shift ;;
    -*) echo "arm-smoke: unknown option $1" >&2; exit 1 ;;
    *) TARGETS+=("$1"); shift ;;
  esac
done
[ ${#TARGETS[@]} -eq 0 ] && TARGETS=(aarch64-unknown-linux-gnu)
TARGET_DIR="${CARGO_TARGET_DIR:-target}"

skip() { echo "ARM smoke test skipped: $*"; }

# qemu command line for a target: the emulator, the CPU of the board it is
# meant for (so instructions that board lacks fault), the glibc sysroot.
qemu_for() {
  case "$1" in
    aarch64-unknown-linux-gnu) echo "aarch64 -cpu cortex-a53 -L /usr/aarch64-linux-gnu" ;;
    aarch64-unknown-linux-musl) echo "aarch64 -cpu cortex-a53" ;;
    armv7-unknown-linux-gnueabihf) echo "arm -cpu cortex-a7 -L /usr/arm-linux-gnueabihf" ;;
    arm-unknown-linux-musleabihf) echo "arm -cpu arm1176" ;;
    *) echo "" ;;
  esac
}

# Install Debian packages when missing and possible. Returns 1 if not.
apt_install() {
  [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 || return 1
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null 2>&1 \
    || { DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null 2>&1 \
      && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null 2>&1; }
}

if ! command -v mosquitto_pub >/dev/null 2>&1 || ! command -v mosquitto_sub >/dev/null 2>&1; then
  if ! apt_install mosquitto-clients; then
    skip "mosquitto_pub/mosquitto_sub not installed and cannot be (apt-get install mosquitto-clients)"
    exit 0
  fi
fi
if ! command -v qemu-aarch64-static >/dev/null 2>&1 && ! command -v qemu-aarch64 >/dev/null 2>&1; then
  if ! apt_install qemu-user-static; then
    skip "qemu-user-static not installed and cannot be (apt-get install qemu-user-static)"
    exit 0
  fi
fi
qemu_bin() { # arch
  if command -v "qemu-$1-static" >/dev/null 2>&1; then echo "qemu-$1-static"; else echo "qemu-$1"; fi
}

# A loopback port nobody uses, below the kernel's range of ephemeral ports
# so that an outgoing connection of some other test cannot hold it. ss (when
# present) also sees sockets that are bound but not listening.
free_port() {
  local lo=32768 p i
  read -r lo _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || true
  [ "$lo" -gt 12000 ] 2>/dev/null || lo=32768
  for i in $(seq 1 50); do
    p=$((10000 + (RANDOM * 7 + i) % (lo - 10000)))
    if command -v ss >/dev/null 2>&1; then
      [ -z "$(ss -Htan "( sport = :$p )" 2>/dev/null)" ] || continue
    fi
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      echo "$p"
      return 0
    fi
  done
  return 1
}

now_ms() { date +%s%3N; }

FAILED=0
SUMMARY=()

# Everything about one running broker; fails the target on the first wrong
# answer. Globals: PORT, PID, LOG, WORK.
check_broker() {
  local t="$1" out got expect big subpid i
  local pub=(timeout 30 mosquitto_pub -h 127.0.0.1 -p "$PORT" -i "smoke-pub-$$")
  local sub=(timeout 30 mosquitto_sub -h 127.0.0.1 -p "$PORT")

  # Retained: stored, replaced, delivered to a subscriber that comes later.
  "${pub[@]}" -t smoke/retained -m first -r -q 1 || { echo "retained publish failed"; return 1; }
  "${pub[@]}" -t smoke/retained -m "kept-$t" -r -q 2 || { echo "retained publish failed"; return 1; }
  got=$("${sub[@]}" -t smoke/retained -C 1 -W 15)
  [ "$got" = "kept-$t" ] || { echo "retained: expected 'kept-$t', got '$got'"; return 1; }

  # QoS 0/1/2 to a QoS 2 subscriber (MQTT v5). A retained marker tells us
  # the subscription is in place before anything is published.
  "${pub[@]}" -t smoke/q/ready -m ready -r -q 1 || { echo "marker publish failed"; return 1; }
  out="$WORK/qos.out"
  "${sub[@]}" -V 5 -i "smoke-sub-$$" -t 'smoke/q/#' -q 2 -F '%t %q %p' -C 4 -W 30 >"$out" &
  subpid=$!
  for i in $(seq 1 150); do
    grep -q '^smoke/q/ready' "$out" 2>/dev/null && break
    sleep 0.1
  done
  if ! grep -q '^smoke/q/ready' "$out"; then
    kill "$subpid" 2>/dev/null
    echo "subscriber never got the retained marker"
    return 1
  fi
  "${pub[@]}" -t smoke/q/zero -m "q0" -q 0 || { echo "QoS 0 publish failed"; return 1; }
  "${pub[@]}" -t smoke/q/one -m "q1" -q 1 || { echo "QoS 1 publish failed"; return 1; }
  "${pub[@]}" -V 5 -t smoke/q/two -m "q2" -q 2 || { echo "QoS 2 publish (v5) failed"; return 1; }
  wait "$subpid" || { echo "subscriber exited with $? (got: $(tr '\n' '|' <"$out"))"; return 1; }
  got=$(sort "$out" | tr '\n' '|')
  expect="smoke/q/one 1 q1|smoke/q/ready 1 ready|smoke/q/two 2 q2|smoke/q/zero 0 q0|"
  [ "$got" = "$expect" ] || { echo "QoS: expected '$expect', got '$got'"; return 1; }

  # A payload larger than any single read or write buffer.
  big="$WORK/big.txt"
  head -c 150000 /dev/urandom | base64 -w 0 >"$big"
  out="$WORK/big.out"
  "${sub[@]}" -t smoke/big -q 1 -C 1 -W 30 -N >"$out" &
  subpid=$!
  # Published retained: the subscriber gets it exactly once whether its
  # SUBSCRIBE lands before the PUBLISH or after.
  "${pub[@]}" -t smoke/big -f "$big" -q 1 -r || { echo "large publish failed"; return 1; }
  wait "$subpid" || { echo "large-payload subscriber exited with $?"; return 1; }
  cmp -s "$big" "$out" || { echo "large payload differs ($(stat -c %s "$out") of $(stat -c %s "$big") bytes)"; return 1; }

  # TLS: ring's hand-written ARM code is where an instruction the board
  # lacks would hide. --insecure: the name is not checked, the chain is.
  if [ -n "$TLS_PORT" ]; then
    local tls=(-h 127.0.0.1 -p "$TLS_PORT" --cafile "$WORK/cert.pem" --insecure)
    timeout 30 mosquitto_pub "${tls[@]}" --tls-version tlsv1.3 -t smoke/tls -m "tls-$t" -q 1 -r \
      || { echo "TLS 1.3 publish failed"; return 1; }
    got=$(timeout 30 mosquitto_sub "${tls[@]}" --tls-version tlsv1.2 -t smoke/tls -C 1 -W 20) \
      || { echo "TLS 1.2 subscribe failed"; return 1; }
    [ "$got" = "tls-$t" ] || { echo "TLS: expected 'tls-$t', got '$got'"; return 1; }
  fi
  return 0
}

run_target() {
  local t="$1" q arch bin start ready rss heap status why
  q=$(qemu_for "$t")
  if [ -z "$q" ]; then
    echo "arm-smoke: unknown target $t" >&2
    FAILED=1
    return
  fi
  bin="$TARGET_DIR/$t/release/midge"
  if [ "$BUILD" = 1 ]; then
    local blog="$WORK/build-$t.log"
    scripts/cross-build.sh --no-deb --bin midge "$t" 2>&1 | tee "$blog"
    case "${PIPESTATUS[0]}" in
      0) ;;
      2)
        why=$(sed -n "s/^== $t: skipped: //p" "$blog" | head -n 1)
        skip "$t: ${why:-the cross toolchain could not be set up}"
        SUMMARY+=("$t: skipped")
        return ;;
      *)
        echo "arm-smoke: FAIL: $t: the build failed" >&2
        FAILED=1
        SUMMARY+=("$t: build FAILED")
        return ;;
    esac
  fi
  if [ ! -x "$bin" ]; then
    skip "$t: no binary at $bin (run without --no-build)"
    SUMMARY+=("$t: skipped")
    return
  fi
  read -r arch q <<<"$q"
  local qemu
  qemu=$(qemu_bin "$arch")
  if ! command -v "$qemu" >/dev/null 2>&1; then
    skip "$t: $qemu not found"
    SUMMARY+=("$t: skipped")
    return
  fi
  case "$t" in
    *-gnu*)
      local sysroot=${q##*-L }
      if [ ! -e "$sysroot/lib/libc.so.6" ]; then
        skip "$t: no glibc for qemu at $sysroot (the Debian cross libc package is missing)"
        SUMMARY+=("$t: skipped")
        return
      fi ;;
  esac

  # Ports are picked, not reserved: if another test grabs one first, midge
  # says "Address already in use" and we try again with others.
  local attempt
  LOG="$WORK/midge-$t.log"
  for attempt in 1 2 3; do
    if ! PORT=$(free_port); then
      skip "no free loopback port found"
      SUMMARY+=("$t: skipped")
      return
    fi
    cat >"$WORK/midge-$t.conf" <<EOF
sys_interval 1
log_type all
user $(id -un)
listener $PORT 127.0.0.1
allow_anonymous true
EOF
    TLS_PORT=""
    if [ -f "$WORK/cert.pem" ] && TLS_PORT=$(free_port) && [ "$TLS_PORT" != "$PORT" ]; then
      cat >>"$WORK/midge-$t.conf" <<EOF
listener $TLS_PORT 127.0.0.1
allow_anonymous true
certfile $WORK/cert.pem
keyfile $WORK/key.pem
EOF
    else
      TLS_PORT=""
    fi
    echo "== $t: $qemu $q $bin -c midge.conf (port $PORT${TLS_PORT:+, TLS $TLS_PORT})"
    start=$(now_ms)
    # shellcheck disable=SC2086
    "$qemu" $q "$bin" -c "$WORK/midge-$t.conf" >"$LOG" 2>&1 &
    PID=$!
    ready=""
    for _ in $(seq 1 600); do
      # Alive after the connect: the listener is ours, not a stranger's.
      if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && kill -0 "$PID" 2>/dev/null; then
        ready=$(($(now_ms) - start))
        break
      fi
      kill -0 "$PID" 2>/dev/null || break
      sleep 0.05
    done
    [ -n "$ready" ] && break
    kill -KILL "$PID" 2>/dev/null
    wait "$PID" 2>/dev/null
    grep -q 'Address already in use' "$LOG" || break
    echo "arm-smoke: a port was taken meanwhile; trying others"
  done
  if [ -z "$ready" ]; then
    echo "arm-smoke: FAIL: $t: midge did not start listening within 30 s; its log:" >&2
    sed 's/^/    /' "$LOG" >&2
    FAILED=1
    SUMMARY+=("$t: FAILED (start-up)")
    return
  fi
  rss=$(awk '/^VmRSS:/ { print $2 " kB" }' "/proc/$PID/status" 2>/dev/null)
  heap=$(timeout 20 mosquitto_sub -h 127.0.0.1 -p "$PORT" -t '$SYS/broker/heap/current' -C 1 -W 15 2>/dev/null)

  local problem=""
  problem=$(check_broker "$t") || true

  kill -TERM "$PID" 2>/dev/null
  local waited=0
  while kill -0 "$PID" 2>/dev/null && [ $waited -lt 100 ]; do
    sleep 0.1
    waited=$((waited + 1))
  done
  if kill -0 "$PID" 2>/dev/null; then
    kill -KILL "$PID" 2>/dev/null
    problem="${problem:+$problem; }still running 10 s after SIGTERM"
  fi
  wait "$PID"
  status=$?
  if [ $status -ne 0 ]; then
    problem="${problem:+$problem; }exit status $status after SIGTERM (expected 0)"
  fi
  if grep -qiE 'panicked|segmentation|illegal instruction|qemu: uncaught' "$LOG"; then
    problem="${problem:+$problem; }alarming line in the log: $(grep -iE 'panicked|segmentation|illegal instruction|qemu: uncaught' "$LOG" | head -n 1)"
  fi

  local size
  size=$(stat -c %s "$bin")
  if [ -n "$problem" ]; then
    echo "arm-smoke: FAIL: $t: $problem" >&2
    echo "  midge log (last 30 lines):" >&2
    tail -n 30 "$LOG" | sed 's/^/    /' >&2
    FAILED=1
    SUMMARY+=("$t: FAILED")
  else
    echo "arm-smoke: ok: $t: retained, QoS 0/1/2 (v3.1.1 + v5), 200 kB payload, ${TLS_PORT:+TLS 1.2/1.3, }SIGTERM -> exit 0"
    SUMMARY+=("$t: ok; midge $size bytes; listening after ${ready} ms; idle RSS (qemu+midge) ${rss:-?}; midge heap ${heap:-?} bytes")
  fi
}

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
if ! command -v openssl >/dev/null 2>&1 \
  || ! openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$WORK/key.pem" -out "$WORK/cert.pem" -days 2 -subj /CN=localhost \
    >/dev/null 2>&1; then
  rm -f "$WORK/cert.pem"
  echo "arm-smoke: note: no openssl to make a test certificate: the TLS part is skipped"
fi
for t in "${TARGETS[@]}"; do
  run_target "$t"
done
echo "== ARM smoke test"
for line in "${SUMMARY[@]}"; do echo "  $line"; done
exit $FAILED
