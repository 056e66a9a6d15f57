#!/usr/bin/env bash
# The house rules from DESIGN.md ("Rooms and who may use whom"), checked on the
# source. Fails (exit 1) and names the lines when
#   1. a sans-IO room (protocol, topic, broker, auth) reaches for sockets, TLS,
#      mio or the clock; or
#   2. a `crate::` import points to a room the map does not allow (a sideways
#      or upward arrow); or
#   3. a module (two levels deep) is missing from the Layout in src/lib.rs; or
#   4. the broker core or a bridge link logs by itself (`log::`): they emit
#      events instead (broker/events.rs, bridge/events.rs), which
#      cli/events.rs and net/bridges.rs word as log lines.
#
# The allowed arrows are the table ALLOWED below: it is DESIGN.md's picture
# written out (arrows point down only; protocol, topic and config use nothing
# inside the crate; client uses protocol and topic only). When the design gets
# a new room, add it here and to DESIGN.md together; when ../shared/DESIGN.md
# is beside the checkout, every room of the table must be named in its picture.
#
# A room is the first path component under src/ (src/net/ws.rs is in `net`).
# The binaries (src/main.rs, src/bin/) and src/lib.rs sit on top and may use
# every room. Imports must name the room after `crate::`; a grouped
# `use crate::{a, b}` is refused so that every arrow is visible to this check.
set -u
cd "$(dirname "$0")/.." || exit 1
fail=0

# ---- 1. no sockets, TLS or clock in the sans-IO rooms ------------------------
rooms=()
for r in src/protocol src/topic src/broker src/auth; do
  [ -d "$r" ] && rooms+=("$r")
done
if [ ${#rooms[@]} -gt 0 ]; then
  hits=$(grep -rnE '\bmio\b|std::net|rustls|Instant::now|SystemTime::now' "${rooms[@]}" \
    | grep -vE '^[^:]+:[0-9]+:\s*//' || true)
  if [ -n "$hits" ]; then
    echo "check-rooms: sans-IO rooms must not use sockets, TLS or the clock:" >&2
    echo "$hits" >&2
    fail=1
  fi
fi

# ---- 1b. the broker core and the bridge links emit events, they do not log ------
for r in src/broker src/bridge; do
  [ -d "$r" ] || continue
  hits=$(grep -rnE '\blog::' "$r" | grep -vE '^[^:]+:[0-9]+:\s*//' || true)
  if [ -n "$hits" ]; then
    echo "check-rooms: $r must emit events, not call log:: (see broker/events.rs, bridge/events.rs):" >&2
    echo "$hits" >&2
    fail=1
  fi
done

# ---- 2. crate:: arrows ---------------------------------------------------------
# room -> the rooms it may import from (besides itself).
declare -A ALLOWED=(
  [cli]="net bridge persist broker auth client topic protocol config logging memory"
  [fuzzing]="net bridge persist broker auth client topic protocol config"
  [logging]="config"
  [memory]=""
  [net]="bridge persist broker auth client topic protocol config"
  [bridge]="persist broker client topic protocol config"
  [persist]="broker auth topic protocol config"
  [broker]="auth topic protocol config"
  [auth]="topic protocol config"
  [client]="protocol topic"
  [topic]=""
  [protocol]=""
  [config]=""
)

# Every room in the table must be on the map, when the map is here.
design=../shared/DESIGN.md
if [ -f "$design" ]; then
  picture=$(sed -n '/^## Rooms and who may use whom/,/^## /p' "$design")
  for room in "${!ALLOWED[@]}"; do
    case "$room" in logging | memory | fuzzing) continue ;; esac # helpers of main/cli; fuzz entry points
    if ! grep -qE "(^|[ /])$room(/|\.rs)" <<<"$picture"; then
      echo "check-rooms: room '$room' is not in the picture of $design" >&2
      fail=1
    fi
  done
fi

while IFS= read -r file; do
  rel=${file#src/}
  room=${rel%%/*}
  room=${room%.rs}
  case "$room" in main | lib | bin) continue ;; esac
  if [ -z "${ALLOWED[$room]+set}" ]; then
    echo "check-rooms: $file: room '$room' is not in the table of scripts/check-rooms.sh (and DESIGN.md)" >&2
    fail=1
    continue
  fi
  # Code lines only: comments and doc links may name any room.
  while IFS= read -r hit; do
    line=${hit%%:*}
    text=${hit#*:}
    case "$text" in *'crate::{'*)
      echo "check-rooms: $file:$line: name the room in the path, not in a group: $text" >&2
      fail=1
      continue
      ;;
    esac
    for target in $(grep -oE '\bcrate::[a-z_]+' <<<"$text" | sed 's/^crate:://' | sort -u); do
      [ "$target" = "$room" ] && continue
      case " ${ALLOWED[$room]} " in *" $target "*) continue ;; esac
      echo "check-rooms: $file:$line: $room may not use $target (allowed: ${ALLOWED[$room]:-nothing})" >&2
      fail=1
    done
  done < <(grep -nE '\bcrate::' "$file" | grep -vE '^[0-9]+:\s*//')
done < <(find src -name '*.rs' | sort)

# ---- 3. the Layout in src/lib.rs names every module ----------------------------
# Two levels deep (`room` and `room::module`); test and test-kit files are not
# modules of the design.
bt='`'
while IFS= read -r file; do
  rel=${file#src/}
  rel=${rel%.rs}
  rel=${rel%/mod}
  case "$rel" in main | lib | bin | bin/*) continue ;; esac
  base=${rel##*/}
  case "$base" in tests | tests_* | testkit*) continue ;; esac
  IFS=/ read -r -a parts <<<"$rel"
  [ ${#parts[@]} -gt 2 ] && continue
  case " ${parts[*]} " in *" tests "*) continue ;; esac
  name=$(IFS=:; echo "${parts[*]}" | sed 's/:/::/g')
  if ! grep -qE "^//!.*${bt}${name}(${bt}|::)" src/lib.rs; then
    echo "check-rooms: module $name ($file) is missing from the Layout in src/lib.rs" >&2
    fail=1
  fi
done < <(find src -name '*.rs' | sort)

[ $fail -eq 0 ] || exit 1
echo "check-rooms: ok"
