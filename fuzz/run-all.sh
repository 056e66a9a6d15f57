#!/usr/bin/env bash
# Runs every fuzz target, one after the other at nice 19, for a number of
# executions (default 10 000 000, libFuzzer's -runs), optionally capped at a
# number of seconds per target, and prints the executions each one reached.
#
#   fuzz/run-all.sh [RUNS] [MAX_SECONDS_PER_TARGET] [TARGET...]
#   fuzz/run-all.sh 10000000 600            # what README "Fuzzing" reports
#   SANITIZER=none fuzz/run-all.sh 1000000 0 config
#
# New coverage goes to fuzz/corpus/<target>/ (seeds are read from
# fuzz/seeds/<target>/); minimise before committing:
#   cargo +nightly fuzz cmin -O <target> fuzz/corpus/<target>
# A crash stops that target; its input is in fuzz/artifacts/<target>/ and the
# script exits 1 at the end. Needs `cargo install cargo-fuzz` and nightly.
set -u
cd "$(dirname "$0")" || exit 1
runs=${1:-10000000}
max_time=${2:-0}
shift $(( $# > 2 ? 2 : $# ))
sanitizer=${SANITIZER:-address}
if [ $# -gt 0 ]; then
  targets="$*"
else
  targets=$(sed -n 's/^name = "\(.*\)"$/\1/p' Cargo.toml | grep -vx 'midge-fuzz')
fi
failed=0
printf '%-15s %12s %8s %10s  %s\n' target executions seconds exec/s result
for t in $targets; do
  mkdir -p "corpus/$t"
  log=$(mktemp)
  nice -n 19 cargo +nightly fuzz run -O -s "$sanitizer" "$t" "corpus/$t" "seeds/$t" -- \
    -runs="$runs" -max_total_time="$max_time" -rss_limit_mb=2048 -timeout=10 \
    -print_final_stats=1 >"$log" 2>&1
  rc=$?
  n=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  secs=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -1)
  result=ok
  if [ $rc -ne 0 ]; then
    result="FAILED (exit $rc, log $log)"
    failed=1
  else
    rm -f "$log"
  fi
  rate=-
  if [ -n "${secs:-}" ] && [ "${secs:-0}" -gt 0 ]; then rate=$(( ${n:-0} / secs )); fi
  printf '%-15s %12s %8s %10s  %s\n' "$t" "${n:-?}" "${secs:-?}" "$rate" "$result"
done
exit $failed
