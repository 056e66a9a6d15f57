#!/usr/bin/env bash
# The house rule from DESIGN.md: the sans-IO rooms (protocol, topic, broker,
# auth) never reach for sockets, TLS, mio or the clock. Fails (exit 1) and
# names the lines when they do.
set -u
cd "$(dirname "$0")/.." || exit 1
rooms=()
for r in src/protocol src/topic src/broker src/auth; do
  [ -d "$r" ] && rooms+=("$r")
done
[ ${#rooms[@]} -eq 0 ] && exit 0
hits=$(grep -rnE '\bmio\b|std::net|rustls|Instant::now|SystemTime::now' "${rooms[@]}" \
  | grep -vE '^[^:]+:[0-9]+:\s*//' || true)
if [ -n "$hits" ]; then
  echo "check-rooms: sans-IO rooms must not use sockets, TLS or the clock:" >&2
  echo "$hits" >&2
  exit 1
fi
echo "check-rooms: ok"
