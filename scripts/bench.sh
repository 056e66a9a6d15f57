#!/usr/bin/env bash
# A/B benchmark of midge against Mosquitto with target/release/midge_bench.
#
#   scripts/bench.sh              rounds of every scenario, both brokers
#   scripts/bench.sh callgrind    instructions and syscalls per delivered message
#   scripts/bench.sh sweep        how cost grows: idle connections, distinct
#                                 subscriptions, retained messages and fan-out
#                                 subscribers at growing sizes, both brokers;
#                                 bench-results/sweep.md and sweep-*.png
#   scripts/bench.sh transports   fan-in and fan-out over TLS, WebSockets and
#                                 WebSockets over TLS, both brokers, ROUNDS
#                                 rounds; bench-results/transports.md
#   scripts/bench.sh slowcpu      fan-in flood on a starved CPU: each broker
#                                 under callgrind (~50x slower, a Pi Zero's
#                                 pace), 8 publishers x SLOW_COUNT/8 QoS 0
#                                 messages with no send window; delivered
#                                 count, time and longest delivery gap
#   scripts/bench.sh soak         SOAK_CONNS clients churning for SOAK_DURATION
#                                 seconds per broker (QoS 0/1/2, clean and
#                                 abrupt disconnects, persistent sessions):
#                                 acknowledged-but-lost messages, starvation,
#                                 broker RSS/fds after 1 minute vs at the end
#   scripts/bench.sh tlsflood     TLS probes' round trip idle vs during floods
#                                 of new TLS connections (TLS_RATES per second,
#                                 full handshakes, throwaway ECDSA P-256 cert)
#
# Environment:
#   ROUNDS=3                 rounds; brokers alternate which goes first
#   SCENARIOS="fanin fanout qos1 latency conns retained wildcard"
#                            (and `bridge`, not in the default set: it needs
#                            Mosquitto as the remote, see write_bridge_conf)
#                            also (not in the default set; issue 16):
#                            never-reading half-open partial-connect
#   NR_RATE=5000             never-reading: publishes/s from 4 publishers
#                            flood flood-memlimit (issue 16): FLOOD_SUBS=20
#                            subscribers that never read, FLOOD_RATE=50000
#                            1 KB publishes/s, max_queued_messages 0;
#                            flood-memlimit adds memory_limit
#                            FLOOD_MEMLIMIT=64000000
#   HALF_OPEN=2000           half-open, partial-connect: connections
#   OUT=bench-results        where results go (use another directory for
#                            the issue 16 scenarios to keep results.md)
#   QUICK=1                  small sizes and 2 s durations
#   DURATION, CONNS, RETAINED, WILDCARD_SUBS, FANOUT_SUBS   override sizes
#   BENCH_ARGS="--v5"        extra midge_bench options for every run
#   NODELAY=1                set_tcp_nodelay in every scenario, not only latency
#   MOSQUITTO=/path          Mosquitto binary (default: found on PATH or /usr/sbin)
#   CG_COUNT=200000          callgrind/strace mode: fan-in messages
#   SWEEP_CONNS, SWEEP_SUBS, SWEEP_RETAINED, SWEEP_FANOUT   sweep sizes (empty: skip)
#   SWEEP_DURATION=5         sweep: seconds of traffic per point
#   BACKLOG=100000           bridge: QoS 1 messages queued while the remote is down
#   SOAK_CONNS=10000 SOAK_DURATION=600 SOAK_SEED=1   soak mode sizes
#   TLS_RATES=200,500 TLS_PROBES=10 TLS_FLOOD_SECS=15  tlsflood mode sizes
#
# Each broker is started fresh for every (round, scenario) on a free loopback
# port with the same mosquitto.conf, and stopped by the PID this script got
# when it started it; nothing else is ever signalled.
# Results: bench-results/results.md (medians, ratios), raw.jsonl (every run),
# ratios.png (if matplotlib is available), callgrind.md (callgrind mode).
set -euo pipefail
cd "$(dirname "$0")/.."

MODE=${1:-run}
ROUNDS=${ROUNDS:-3}
SCENARIOS=${SCENARIOS:-"fanin fanout qos1 latency conns retained wildcard"}
QUICK=${QUICK:-0}
NODELAY=${NODELAY:-0}
BENCH_ARGS=${BENCH_ARGS:-}
OUT=${OUT:-bench-results}
NR_RATE=${NR_RATE:-5000}
FLOOD_SUBS=${FLOOD_SUBS:-20}
FLOOD_RATE=${FLOOD_RATE:-50000}
FLOOD_MEMLIMIT=${FLOOD_MEMLIMIT:-64000000}
HALF_OPEN=${HALF_OPEN:-2000}

if [ "$QUICK" = 1 ]; then
    DURATION=${DURATION:-2}
    CONNS=${CONNS:-1000}
    RETAINED=${RETAINED:-10000}
    WILDCARD_SUBS=${WILDCARD_SUBS:-1000}
    CG_COUNT=${CG_COUNT:-20000}
    BACKLOG=${BACKLOG:-10000}
else
    DURATION=${DURATION:-10}
    CONNS=${CONNS:-10000}
    RETAINED=${RETAINED:-100000}
    WILDCARD_SUBS=${WILDCARD_SUBS:-10000}
    CG_COUNT=${CG_COUNT:-200000}
    BACKLOG=${BACKLOG:-100000}
fi
FANOUT_SUBS=${FANOUT_SUBS:-100}

case "$MODE" in
run | callgrind | slowcpu | sweep | transports | soak | tlsflood) ;;
*)
    echo "usage: $0 [run|callgrind|slowcpu|sweep|transports|soak|tlsflood]" >&2
    exit 2
    ;;
esac

echo "== building (cargo build --release)" >&2
cargo build --release --bin midge --bin midge_bench >&2
MIDGE=$PWD/target/release/midge
BENCH=$PWD/target/release/midge_bench

MOSQUITTO=${MOSQUITTO:-$(command -v mosquitto || true)}
if [ -z "$MOSQUITTO" ] && [ -x /usr/sbin/mosquitto ]; then
    MOSQUITTO=/usr/sbin/mosquitto
fi
# From a fresh clone: install Mosquitto when we are allowed to (root with
# apt-get; INSTALL_MOSQUITTO=0 to skip). The package's own service is not
# used: every run starts its own broker on a free port.
if [ -z "$MOSQUITTO" ] && [ "${INSTALL_MOSQUITTO:-1}" = 1 ] && [ "$(id -u)" = 0 ] \
    && command -v apt-get >/dev/null; then
    echo "== installing mosquitto (apt-get)" >&2
    (apt-get install -y mosquitto >/dev/null 2>&1 \
        || (apt-get update >/dev/null 2>&1 && apt-get install -y mosquitto >/dev/null 2>&1)) || true
    [ -x /usr/sbin/mosquitto ] && MOSQUITTO=/usr/sbin/mosquitto
fi
BROKERS="midge"
if [ -n "$MOSQUITTO" ] && [ -x "$MOSQUITTO" ]; then
    BROKERS="midge mosquitto"
else
    echo "== Mosquitto not found: measuring midge alone" >&2
fi

mkdir -p "$OUT"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/midge-bench.XXXXXX")
STARTED=() # PIDs this script started; the only ones it ever signals

cleanup() {
    local pid
    for pid in ${STARTED[@]+"${STARTED[@]}"}; do
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
        fi
    done
    sleep 0.2
    for pid in ${STARTED[@]+"${STARTED[@]}"}; do
        if kill -0 "$pid" 2>/dev/null; then
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Idle connections and many subscribers need descriptors, in the brokers
# (inherited from here) and in midge_bench (which raises its own soft limit).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

broker_bin() {
    case "$1" in
    midge) echo "$MIDGE" ;;
    mosquitto) echo "$MOSQUITTO" ;;
    esac
}

# write_conf FILE PORT NODELAY(0|1): the same mosquitto.conf for both brokers.
write_conf() {
    {
        echo "listener $2 127.0.0.1"
        echo "allow_anonymous true"
        echo "persistence false"
        # Mosquitto's defaults, stated so both brokers run the same limits.
        echo "max_queued_messages 1000"
        echo "max_inflight_messages 20"
        echo "log_dest stderr"
        echo "log_type error"
        echo "log_type warning"
        if [ "$3" = 1 ]; then
            echo "set_tcp_nodelay true"
        fi
    } >"$1"
}

# write_bridge_conf LOCAL_CONF REMOTE_CONF REMOTE_PORT DBDIR: the bridge
# scenario. The local broker (midge or Mosquitto, same file) bridges
# bench/bridge/# out at QoS 1 to a Mosquitto that midge_bench starts and
# stops itself on REMOTE_PORT. Queues are unlimited on both sides
# (Mosquitto's default max_queued_messages 1000 would drop most of the
# backlog), and the remote keeps the subscriber's session on disk across
# its restart, so what the link delivers before the subscriber is back is
# queued for it, not lost.
write_bridge_conf() {
    sed -i 's/^max_queued_messages .*/max_queued_messages 0/' "$1"
    {
        echo "connection bench"
        echo "address 127.0.0.1:$3"
        echo "topic bench/bridge/# out 1"
        echo "restart_timeout 1"
        echo "notifications false"
    } >>"$1"
    {
        echo "listener $3 127.0.0.1"
        echo "allow_anonymous true"
        echo "persistence true"
        echo "persistence_location $4/"
        echo "max_queued_messages 0"
        echo "log_dest stderr"
        echo "log_type error"
        echo "log_type warning"
    } >"$2"
    # Mosquitto started as root drops to the mosquitto user, which must be
    # able to write its database there.
    mkdir -p "$4"
    chmod 711 "$TMP"
    chmod 1777 "$4"
}

# scenario_conf SCENARIO: lines added to the configuration for one scenario.
scenario_conf() {
    case "$1" in
    # never-reading reads the dropped count from $SYS: update it every second.
    never-reading) echo "sys_interval 1" ;;
    # flood: queues without a length limit (what an operator who lifted
    # max_queued_messages gets), so only memory_limit can hold the broker's
    # memory; flood-memlimit sets it.
    flood) printf 'sys_interval 1\nmax_queued_messages 0\n' ;;
    flood-memlimit) printf 'sys_interval 1\nmax_queued_messages 0\nmemory_limit %s\n' "$FLOOD_MEMLIMIT" ;;
    esac
}

BROKER_PID=
# start_broker NAME CONF LOG [WRAPPER...]: sets BROKER_PID (the wrapper's PID
# when a wrapper such as valgrind or strace is given).
start_broker() {
    local name=$1 conf=$2 log=$3
    shift 3
    "$@" "$(broker_bin "$name")" -c "$conf" >"$log" 2>&1 &
    BROKER_PID=$!
    STARTED+=("$BROKER_PID")
}

# stop_broker PID [GRACE_SECONDS]: TERM, wait, then KILL; reaps it and sets
# STOP_STATUS. The PID is forgotten afterwards so a reused PID is never signalled.
STOP_STATUS=0
stop_broker() {
    local pid=$1 grace=${2:-10} i=0 keep=() p
    STOP_STATUS=0
    kill -TERM "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null && [ "$i" -lt $((grace * 10)) ]; do
        sleep 0.1
        i=$((i + 1))
    done
    if kill -0 "$pid" 2>/dev/null; then
        echo "   warning: PID $pid ignored SIGTERM for ${grace}s; killing" >&2
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || STOP_STATUS=$?
    for p in ${STARTED[@]+"${STARTED[@]}"}; do
        if [ "$p" != "$pid" ]; then keep+=("$p"); fi
    done
    STARTED=(${keep[@]+"${keep[@]}"})
}

scenario_args() {
    case "$1" in
    fanin | qos1) echo "--duration $DURATION" ;;
    fanout) echo "--duration $DURATION --subs $FANOUT_SUBS" ;;
    latency) echo "--duration $DURATION --rate 1000" ;;
    conns) echo "--conns $CONNS" ;;
    retained) echo "--count $RETAINED" ;;
    wildcard) echo "--duration $DURATION --subs $WILDCARD_SUBS" ;;
    bridge) echo "--duration $DURATION --count $BACKLOG --timeout 300" ;;
    never-reading) echo "--duration $DURATION --rate $NR_RATE --pubs 4" ;;
    flood | flood-memlimit) echo "--duration $DURATION --rate $FLOOD_RATE --pubs 4 --subs $FLOOD_SUBS --payload 1024" ;;
    # Both brokers close a silent connection by themselves (midge after
    # 20 s, Mosquitto after 1.5 x its 60 s default keep-alive, checked
    # every 5 s): wait up to 120 s to see it.
    half-open | partial-connect) echo "--conns $HALF_OPEN --hold 2 --timeout 120" ;;
    *) echo "--duration $DURATION" ;;
    esac
}

# json_num LINE KEY: a numeric field of one of midge_bench's JSON lines.
json_num() {
    sed -n "s/.*\"$2\":\([-0-9.eE+]*\).*/\1/p" <<<"$1" | head -n1
}

cpu_steal() { # "busy steal total" jiffies from /proc/stat
    awk '/^cpu /{print $2+$3+$4+$7+$8, $9, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat
}

NOTES=$TMP/notes.txt
: >"$NOTES"

run_one() { # run_one ROUND SCENARIO BROKER
    local round=$1 scenario=$2 name=$3 port conf log nodelay=0 line rc=0
    port=$("$BENCH" free-port)
    conf=$TMP/$name.conf
    log=$TMP/$name.log
    # Latency scenarios: without TCP_NODELAY Mosquitto's small replies wait
    # for delayed ACKs (~10 ms); midge always sets it.
    if [ "$scenario" = latency ] || [ "$scenario" = never-reading ] || [ "${scenario#flood}" != "$scenario" ] || [ "$NODELAY" = 1 ]; then
        nodelay=1
    fi
    write_conf "$conf" "$port" "$nodelay"
    local extra=()
    if [ "$scenario" = bridge ]; then
        if [ -z "$MOSQUITTO" ]; then
            echo "   bridge needs Mosquitto as the remote: skipped" >&2
            return 0
        fi
        local rport rdir=$TMP/remote-db-$round-$name
        rport=$("$BENCH" free-port)
        rm -rf "$rdir"
        write_bridge_conf "$conf" "$TMP/remote-$name.conf" "$rport" "$rdir"
        extra=(--remote-port "$rport" --remote-bin "$MOSQUITTO"
            --remote-conf "$TMP/remote-$name.conf" --remote-log "$TMP/remote-$name.log")
    fi
    scenario_conf "$scenario" >>"$conf"
    start_broker "$name" "$conf" "$log"
    local pid=$BROKER_PID
    if ! "$BENCH" wait-port --port "$port" --timeout 10; then
        echo "   $name did not start; log:" >&2
        cat "$log" >&2
        line="{\"scenario\":\"$scenario\",\"broker\":\"$name\",\"error\":\"broker did not start\"}"
    else
        # shellcheck disable=SC2046,SC2086
        # flood-memlimit is midge_bench's flood against a capped broker.
        local workload=${scenario%-memlimit}
        line=$(timeout 900 "$BENCH" "$workload" --port "$port" --broker-pid "$pid" \
            --label "$name" $(scenario_args "$scenario") ${extra[@]+"${extra[@]}"} $BENCH_ARGS) || rc=$?
        line=${line/\"scenario\":\"$workload\"/\"scenario\":\"$scenario\"}
        if [ -z "$line" ]; then
            line="{\"scenario\":\"$scenario\",\"broker\":\"$name\",\"error\":\"midge_bench exited with $rc and no result\"}"
        fi
    fi
    stop_broker "$pid"
    # 143 = terminated by our SIGTERM, which is how a broker is meant to stop.
    if [ "$STOP_STATUS" != 0 ] && [ "$STOP_STATUS" != 143 ]; then
        echo "- round $round $scenario / $name: broker exit status $STOP_STATUS" >>"$NOTES"
    fi
    if [ -s "$log" ]; then
        mkdir -p "$OUT/logs"
        cp "$log" "$OUT/logs/r$round-$scenario-$name.log"
    fi
    if [ "$scenario" = bridge ] && [ -s "$TMP/remote-$name.log" ]; then
        mkdir -p "$OUT/logs"
        mv "$TMP/remote-$name.log" "$OUT/logs/r$round-$scenario-$name-remote.log"
    fi
    echo "$line" >>"$OUT/raw.jsonl"
    printf '   %-9s %-9s %s\n' "$scenario" "$name" "$(summary "$line")" >&2
}

summary() { # the headline numbers of one JSON line
    local l=$1 key v out=""
    for key in backlog_delivered drain_secs drain_broker_cpu_us_per_msg msgs_per_sec loss_pct p50_us p99_us bytes_per_conn bytes_per_msg broker_cpu_us_per_msg rss_growth_mb dropped idle_p99_us load_p99_us closed_by_broker last_close_secs error; do
        v=$(json_num "$l" "$key")
        if [ -n "$v" ]; then out="$out $key=$v"; fi
    done
    if [[ "$l" == *'"error"'* ]]; then out="$out $(sed -n 's/.*"error":"\([^"]*\)".*/error: \1/p' <<<"$l")"; fi
    echo "$out"
}

machine_header() {
    echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "- machine: $(uname -srm), $(nproc) CPUs, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)"
    echo "- midge: $(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1) (target/release/midge built $(date -u -r "$MIDGE" '+%Y-%m-%d %H:%M UTC'))"
    if [[ "$BROKERS" == *mosquitto* ]]; then
        echo "- mosquitto: $("$MOSQUITTO" -h 2>&1 | head -n1)"
    fi
}

draw_chart() { # draw_chart TSV PNG TITLE
    local tsv=$1 png=$2 title=$3
    if [ ! -s "$tsv" ]; then
        echo "== no ratios to draw (needs both brokers)" >&2
        return 0
    fi
    if ! python3 -c 'import matplotlib' 2>/dev/null; then
        echo "== matplotlib missing; trying pip install" >&2
        python3 -m pip install --quiet matplotlib >/dev/null 2>&1 ||
            python3 -m pip install --quiet --user matplotlib >/dev/null 2>&1 || true
    fi
    if ! python3 -c 'import matplotlib' 2>/dev/null; then
        echo "== matplotlib could not be installed: no $png (the table is complete)" >&2
        return 0
    fi
    MPLBACKEND=Agg python3 - "$tsv" "$png" "$title" <<'PY' || echo "== chart failed (the table is complete)" >&2
import sys
import matplotlib.pyplot as plt

tsv, png, title = sys.argv[1:4]
rows = []
for line in open(tsv, encoding="utf-8"):
    parts = line.rstrip("\n").split("\t")
    if len(parts) == 3:
        rows.append((parts[0], float(parts[1]), parts[2] == "1"))
labels = [r[0] for r in rows][::-1]
ratios = [r[1] for r in rows][::-1]
def colour(r, higher_better):
    if abs(r - 1.0) <= 0.02:
        return "#999999"  # a tie, as in the table
    return "#3a9a4a" if (r > 1) == higher_better else "#c0453a"

colours = [colour(r, hb) for (_, r, hb) in rows][::-1]
fig, ax = plt.subplots(figsize=(9, 0.38 * len(rows) + 1.5))
ax.barh(labels, ratios, color=colours)
ax.axvline(1.0, color="black", linewidth=0.8)
ax.set_xscale("log")
ax.set_xlabel("midge / Mosquitto (median; log scale). Green: midge better, red: worse, grey: within 2%")
ax.set_title(title)
for y, r in enumerate(ratios):
    ax.text(r, y, f" {r:.2f}", va="center", fontsize=8)
fig.tight_layout()
fig.savefig(png, dpi=120)
PY
}

# ---- soak mode (issue #16): churn for minutes; nothing acknowledged may be
# lost, nobody starves, RSS and fds at the end within 5 % of minute one.
if [ "$MODE" = soak ]; then
    SOAK_CONNS=${SOAK_CONNS:-10000}
    SOAK_DURATION=${SOAK_DURATION:-600}
    SOAK_SEED=${SOAK_SEED:-1}
    RAW=$OUT/raw-soak.jsonl
    : >"$RAW"
    for name in $BROKERS; do
        port=$("$BENCH" free-port)
        write_conf "$TMP/$name.conf" "$port" 0
        # Both brokers log "Outgoing messages are being dropped for client
        # X." at notice level when a queue overflows: counted below for the
        # checked subscribers, so a loss can be told from a queue limit.
        echo "log_type notice" >>"$TMP/$name.conf"
        echo "== soak: $name, $SOAK_CONNS clients, ${SOAK_DURATION}s, seed $SOAK_SEED" >&2
        start_broker "$name" "$TMP/$name.conf" "$TMP/soak-$name.log"
        pid=$BROKER_PID
        line="{\"scenario\":\"soak\",\"broker\":\"$name\",\"error\":\"broker did not start\"}"
        if "$BENCH" wait-port --port "$port" --timeout 10; then
            # shellcheck disable=SC2086
            line=$(timeout $((SOAK_DURATION + 600)) "$BENCH" soak --port "$port" --broker-pid "$pid" \
                --label "$name" --conns "$SOAK_CONNS" --duration "$SOAK_DURATION" --seed "$SOAK_SEED" $BENCH_ARGS) || true
        fi
        stop_broker "$pid" 30
        drops=$(grep -c "being dropped for client soak[0-9]*-s-" "$TMP/soak-$name.log" || true)
        line="${line%\}},\"stable_drop_episodes\":$drops}"
        echo "$line" >>"$RAW"
        echo "   $line" >&2
    done
    {
        echo "# Soak (scripts/bench.sh soak)"
        echo
        machine_header
        echo "- $SOAK_CONNS clients for ${SOAK_DURATION}s, seed $SOAK_SEED, MQTT 3.1.1; mosquitto.conf for both: $(grep -v '^listener' "$TMP/midge.conf" | paste -sd';' -)"
        echo
        echo "| broker | CONNACKs / attempts | CONNACK timeouts | published q0/q1/q2 | acked q1/q2 | acked but lost | queue overflows of checked subscribers | stable max gap ms | crowd max gap ms | RSS KiB 1 min -> end | fds 1 min -> end | broker CPU s |"
        echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        while read -r l; do
            j() { json_num "$l" "$1"; }
            echo "| $(sed -n 's/.*"broker":"\([^"]*\)".*/\1/p' <<<"$l") | $(j connacks) / $(j connect_attempts) | $(j connack_timeouts) | $(j published_qos0)/$(j published_qos1)/$(j published_qos2) | $(j acked_qos1)/$(j acked_qos2) | $(j acked_but_lost) | $(j stable_drop_episodes) | $(j stable_max_gap_ms) | $(j crowd_max_gap_ms) | $(j rss_kb_1min) -> $(j rss_kb_end) ($(j rss_change_pct) %) | $(j fds_1min) -> $(j fds_end) ($(j fds_change_pct) %) | $(j broker_cpu_secs) |"
        done <"$RAW"
    } >"$OUT/soak.md"
    cat "$OUT/soak.md"
    exit 0
fi

# ---- tlsflood mode (issue #16): do established TLS clients keep their
# latency while new TLS connections flood in? One throwaway ECDSA P-256 CA and
# server certificate (SAN IP:127.0.0.1) for both brokers.
if [ "$MODE" = tlsflood ]; then
    TLS_RATES=${TLS_RATES:-200,500}
    TLS_PROBES=${TLS_PROBES:-10}
    TLS_FLOOD_SECS=${TLS_FLOOD_SECS:-15}
    command -v openssl >/dev/null || { echo "tlsflood needs openssl" >&2; exit 1; }
    CERTS=$TMP/certs
    mkdir -p "$CERTS"
    (
        cd "$CERTS"
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
            -keyout ca.key -out ca.crt -subj /CN=midge-bench-ca
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
            -keyout server.key -out server.csr -subj /CN=127.0.0.1
        printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n' >ext.cnf
        openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
            -days 2 -extfile ext.cnf -out server.crt
        chmod 644 ./*.key
    ) >/dev/null 2>&1
    chmod 755 "$TMP" "$CERTS"
    RAW=$OUT/raw-tlsflood.jsonl
    : >"$RAW"
    for name in $BROKERS; do
        port=$("$BENCH" free-port)
        write_conf "$TMP/$name.conf" "$port" 1
        printf 'certfile %s\nkeyfile %s\n' "$CERTS/server.crt" "$CERTS/server.key" >>"$TMP/$name.conf"
        echo "== tlsflood: $name, rates $TLS_RATES/s, $TLS_PROBES probes" >&2
        start_broker "$name" "$TMP/$name.conf" "$TMP/tls-$name.log"
        pid=$BROKER_PID
        line="{\"scenario\":\"tlsflood\",\"broker\":\"$name\",\"error\":\"broker did not start\"}"
        if "$BENCH" wait-port --port "$port" --timeout 10; then
            # shellcheck disable=SC2086
            line=$(timeout 600 "$BENCH" tlsflood --port "$port" --broker-pid "$pid" --label "$name" \
                --cafile "$CERTS/ca.crt" --rates "$TLS_RATES" --probes "$TLS_PROBES" \
                --flood-secs "$TLS_FLOOD_SECS" $BENCH_ARGS) || true
        else
            cat "$TMP/tls-$name.log" >&2
        fi
        stop_broker "$pid" 30
        echo "$line" >>"$RAW"
        echo "   $line" >&2
    done
    {
        echo "# TLS handshake flood (scripts/bench.sh tlsflood)"
        echo
        machine_header
        echo "- certificate: throwaway ECDSA P-256 (CA + server cert, SAN IP:127.0.0.1); TLS 1.3 (rustls client, no session resumption for the flood)"
        echo "- $TLS_PROBES probes publish QoS 0 to their own topic every 10 ms; floods of ${TLS_FLOOD_SECS}s at $TLS_RATES new connections/s, each: handshake, CONNECT, CONNACK, DISCONNECT, close"
        echo
        echo "| broker | phase | probe RTT p50 µs | p99 µs | p99 / idle p99 | handshakes/s (CONNACKs) | failed | handshake p50 / p99 ms | broker CPU |"
        echo "|---|---|---:|---:|---:|---:|---:|---:|---:|"
        while read -r l; do
            b=$(sed -n 's/.*"broker":"\([^"]*\)".*/\1/p' <<<"$l")
            for ph in idle $(tr ',' ' ' <<<"$TLS_RATES" | sed 's/[0-9][0-9]*/r&/g'); do
                j() { json_num "$l" "${ph}_$1"; }
                echo "| $b | $ph | $(j p50_us) | $(j p99_us) | $(j p99_vs_idle) | $(j hs_per_sec) | $(j failed) | $(j hs_p50_ms) / $(j hs_p99_ms) | $(j broker_cpu_util) |"
            done
        done <"$RAW"
    } >"$OUT/tlsflood.md"
    cat "$OUT/tlsflood.md"
    exit 0
fi

if [ "$MODE" = run ]; then
    : >"$OUT/raw.jsonl"
    rm -rf "$OUT/logs"
    read -r busy0 steal0 total0 < <(cpu_steal)
    load0=$(cut -d' ' -f1-3 /proc/loadavg)
    echo "== $ROUNDS round(s) of: $SCENARIOS (QUICK=$QUICK) on: $BROKERS" >&2
    for round in $(seq 1 "$ROUNDS"); do
        echo "== round $round" >&2
        if [ $((round % 2)) = 1 ]; then order=$BROKERS; else order=$(echo "$BROKERS" | awk '{for(i=NF;i>0;i--) printf "%s ", $i}'); fi
        for scenario in $SCENARIOS; do
            for name in $order; do
                run_one "$round" "$scenario" "$name"
            done
        done
    done
    read -r busy1 steal1 total1 < <(cpu_steal)
    steal_pct=$(awk -v s=$((steal1 - steal0)) -v t=$((total1 - total0)) 'BEGIN{if(t>0) printf "%.1f", 100*s/t; else print "?"}')
    {
        echo "# midge vs Mosquitto"
        echo
        machine_header
        echo "- rounds: $ROUNDS, QUICK=$QUICK, duration ${DURATION}s, conns $CONNS, retained $RETAINED, wildcard subscribers $WILDCARD_SUBS, extra args: ${BENCH_ARGS:-none}"
        echo "- CPU steal time during the run: ${steal_pct}%; load average at start: $load0, at end: $(cut -d' ' -f1-3 /proc/loadavg) (other load or steal makes throughput noisy; broker CPU µs/msg is the steadier metric)"
        echo
        "$BENCH" report "$OUT/raw.jsonl" --tsv "$TMP/ratios.tsv"
        if [ -s "$NOTES" ]; then
            echo
            echo "Broker exits:"
            echo
            cat "$NOTES"
        fi
    } >"$OUT/results.md"
    echo >&2
    cat "$OUT/results.md"
    draw_chart "$TMP/ratios.tsv" "$OUT/ratios.png" "midge vs Mosquitto, median of $ROUNDS round(s)"
    echo "== wrote $OUT/results.md, $OUT/raw.jsonl$([ -f "$OUT/ratios.png" ] && echo ", $OUT/ratios.png")" >&2
    exit 0
fi

# ---- sweep mode: how cost grows with connections, subscriptions, retained
# messages and subscribers. One broker start per (sweep, size, broker), the
# brokers alternating which goes first; every point is one JSON line in
# raw-sweep.jsonl tagged with "sweep" and "size".
if [ "$MODE" = sweep ]; then
    if [ "$QUICK" = 1 ]; then
        SWEEP_CONNS=${SWEEP_CONNS-"1000 5000"}
        SWEEP_SUBS=${SWEEP_SUBS-"1000 10000 100000"}
        SWEEP_RETAINED=${SWEEP_RETAINED-"10000 100000"}
        SWEEP_FANOUT=${SWEEP_FANOUT-"1 10 100 1000"}
        SWEEP_DURATION=${SWEEP_DURATION:-2}
    else
        # 19 000: this machine's hard limit is 20 000 descriptors a process.
        SWEEP_CONNS=${SWEEP_CONNS-"1000 2000 5000 10000 19000"}
        SWEEP_SUBS=${SWEEP_SUBS-"1000 10000 100000 1000000"}
        SWEEP_RETAINED=${SWEEP_RETAINED-"10000 100000 1000000"}
        SWEEP_FANOUT=${SWEEP_FANOUT-"1 10 100 1000 10000"}
        SWEEP_DURATION=${SWEEP_DURATION:-5}
    fi
    RAW=$OUT/raw-sweep.jsonl
    : >"$RAW"
    sweep_args() { # sweep_args KIND SIZE
        case "$1" in
        conns) echo "conns --conns $2" ;;
        subs) echo "subs --subs $2 --conns $(($2 < 100 ? $2 : 100)) --duration $SWEEP_DURATION" ;;
        retained) echo "retained --count $2 --timeout 300" ;;
        fanout) echo "fanout --subs $2 --duration $SWEEP_DURATION" ;;
        esac
    }
    n=0
    for kind in conns subs retained fanout; do
        case $kind in
        conns) sizes=$SWEEP_CONNS ;;
        subs) sizes=$SWEEP_SUBS ;;
        retained) sizes=$SWEEP_RETAINED ;;
        fanout) sizes=$SWEEP_FANOUT ;;
        esac
        for size in $sizes; do
            n=$((n + 1))
            if [ $((n % 2)) = 1 ]; then order=$BROKERS; else order=$(echo "$BROKERS" | awk '{for(i=NF;i>0;i--) printf "%s ", $i}'); fi
            for name in $order; do
                port=$("$BENCH" free-port)
                conf=$TMP/$name.conf
                write_conf "$conf" "$port" 0
                start_broker "$name" "$conf" "$TMP/sweep-$name.log"
                pid=$BROKER_PID
                line=
                if "$BENCH" wait-port --port "$port" --timeout 10; then
                    # shellcheck disable=SC2046
                    line=$(timeout 900 "$BENCH" $(sweep_args "$kind" "$size") --port "$port" \
                        --broker-pid "$pid" --label "$name" $BENCH_ARGS) || true
                fi
                [ -n "$line" ] || line="{\"scenario\":\"$kind\",\"broker\":\"$name\",\"error\":\"no result\"}"
                stop_broker "$pid"
                echo "{\"sweep\":\"$kind\",\"size\":$size,${line#\{}" >>"$RAW"
                printf '   %-8s %8s %-9s %s\n' "$kind" "$size" "$name" "$(summary "$line")" >&2
            done
        done
    done
    {
        echo "# How cost grows (scripts/bench.sh sweep)"
        echo
        machine_header
        echo "- same mosquitto.conf for both (persistence off, max_queued_messages 1000); one run per point"
        echo "- load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
        echo
        python3 scripts/sweep-report.py "$RAW" "$OUT" || echo "(sweep-report.py failed)"
    } >"$OUT/sweep.md"
    cat "$OUT/sweep.md"
    exit 0
fi

# ---- transports mode: fan-in and fan-out over TLS and WebSockets. Both
# brokers get the same configuration: a throwaway CA and an ECDSA P-256
# server certificate made here with openssl, and for WebSockets a listener
# without an address (Mosquitto 2.0.11 cannot bind a WebSockets listener to
# 127.0.0.1, and exits when it has no plain MQTT listener, hence the extra
# one); midge_bench connects to 127.0.0.1 only.
if [ "$MODE" = transports ]; then
    command -v openssl >/dev/null || { echo "transports needs openssl" >&2; exit 1; }
    TRANSPORTS=${TRANSPORTS:-"tls ws wss"}
    CERTS=$TMP/certs
    mkdir -p "$CERTS"
    (
        cd "$CERTS"
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key \
            -out ca.crt -days 2 -subj /CN=midge-bench-ca
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout server.key \
            -out server.csr -subj /CN=localhost
        printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >ext
        openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
            -out server.crt -days 2 -extfile ext
    ) >/dev/null 2>&1 || { echo "openssl could not make the certificates" >&2; exit 1; }
    # Both brokers drop root for their own user and read the key as root
    # first, but keep the files readable for either order.
    chmod 755 "$TMP" "$CERTS"
    chmod 644 "$CERTS"/*
    RAW=$OUT/raw-transports.jsonl
    : >"$RAW"
    for round in $(seq 1 "$ROUNDS"); do
        if [ $((round % 2)) = 1 ]; then order=$BROKERS; else order=$(echo "$BROKERS" | awk '{for(i=NF;i>0;i--) printf "%s ", $i}'); fi
        for t in $TRANSPORTS; do
            case $t in
            tls) targs="--tls-cafile $CERTS/ca.crt" ;;
            ws) targs="--ws" ;;
            wss) targs="--ws --tls-cafile $CERTS/ca.crt" ;;
            *) echo "unknown transport $t" >&2; exit 2 ;;
            esac
            for scenario in fanin fanout; do
                for name in $order; do
                    port=$("$BENCH" free-port)
                    plain=$("$BENCH" free-port)
                    conf=$TMP/$name.conf
                    # The common file on the plain listener, then the
                    # transport's listener (its lines apply to it alone).
                    write_conf "$conf" "$plain" 0
                    {
                        case $t in
                        tls) echo "listener $port 127.0.0.1" ;;
                        *) echo "listener $port"; echo "protocol websockets" ;;
                        esac
                        if [ "$t" != ws ]; then
                            echo "certfile $CERTS/server.crt"
                            echo "keyfile $CERTS/server.key"
                        fi
                    } >>"$conf"
                    start_broker "$name" "$conf" "$TMP/$t-$name.log"
                    pid=$BROKER_PID
                    line=
                    if "$BENCH" wait-port --port "$port" --timeout 10; then
                        # shellcheck disable=SC2046,SC2086
                        line=$(timeout 900 "$BENCH" "$scenario" --port "$port" --broker-pid "$pid" \
                            --label "$name" $(scenario_args "$scenario") $targs $BENCH_ARGS) || true
                    else
                        cat "$TMP/$t-$name.log" >&2
                    fi
                    [ -n "$line" ] || line="{\"scenario\":\"$scenario\",\"broker\":\"$name\",\"error\":\"no result\"}"
                    stop_broker "$pid"
                    # One report row per transport: the scenario is renamed.
                    line=${line/\"scenario\":\"$scenario\"/\"scenario\":\"$scenario-$t\"}
                    echo "$line" >>"$RAW"
                    printf '   %-12s %-9s %s\n' "$scenario-$t" "$name" "$(summary "$line")" >&2
                done
            done
        done
    done
    {
        echo "# Fan-in and fan-out over TLS and WebSockets (scripts/bench.sh transports)"
        echo
        machine_header
        echo "- rounds: $ROUNDS, duration ${DURATION}s, fan-out subscribers $FANOUT_SUBS; TLS 1.3 (both brokers' default), ECDSA P-256 server certificate; ws = MQTT over WebSockets, wss = over WebSockets over TLS"
        echo "- load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
        echo
        "$BENCH" report "$RAW" --tsv "$TMP/transports.tsv"
    } >"$OUT/transports.md"
    cat "$OUT/transports.md"
    draw_chart "$TMP/transports.tsv" "$OUT/transports.png" "midge vs Mosquitto over TLS and WebSockets, median of $ROUNDS round(s)"
    exit 0
fi

# ---- slowcpu mode: can a starved broker keep delivering while flooded?
if [ "$MODE" = slowcpu ]; then
    SLOW_COUNT=${SLOW_COUNT:-300000}
    command -v valgrind >/dev/null || { echo "slowcpu needs valgrind" >&2; exit 1; }
    RAW=$OUT/raw-slowcpu.jsonl
    : >"$RAW"
    for name in $BROKERS; do
        port=$("$BENCH" free-port)
        conf=$TMP/$name.conf
        write_conf "$conf" "$port" 0
        echo "== slowcpu: $name under callgrind, $SLOW_COUNT messages" >&2
        start_broker "$name" "$conf" "$TMP/slow-$name.log" valgrind --tool=callgrind --vgdb=no --callgrind-out-file=/dev/null
        pid=$BROKER_PID
        if ! "$BENCH" wait-port --port "$port" --timeout 60; then
            echo "   $name under valgrind did not start" >&2
            stop_broker "$pid" 5
            continue
        fi
        line=$("$BENCH" fanin --port "$port" --label "$name" --count "$SLOW_COUNT" \
            --window "$SLOW_COUNT" --duration 3600 --timeout 300 --drain 5) || true
        stop_broker "$pid" 120
        echo "$line" >>"$RAW"
        printf '   %-9s delivered %s of %s in %s s, longest gap %s ms\n' "$name" \
            "$(json_num "$line" msgs)" "$SLOW_COUNT" "$(json_num "$line" secs)" "$(json_num "$line" max_gap_ms)" >&2
    done
    {
        echo "# Fan-in flood on a starved CPU (scripts/bench.sh slowcpu)"
        echo
        machine_header
        echo "- each broker under valgrind --tool=callgrind; 8 publishers, $SLOW_COUNT QoS 0 messages of 64 B, no send window; max_queued_messages 1000"
        echo
        echo "| broker | delivered | of | seconds | longest delivery gap (ms) |"
        echo "|---|---:|---:|---:|---:|"
        while read -r l; do
            echo "| $(sed -n 's/.*"broker":"\([^"]*\)".*/\1/p' <<<"$l") | $(json_num "$l" msgs) | $SLOW_COUNT | $(json_num "$l" secs) | $(json_num "$l" max_gap_ms) |"
        done <"$RAW"
    } >"$OUT/slowcpu.md"
    cat "$OUT/slowcpu.md"
    exit 0
fi

# ---- callgrind mode: a fixed fan-in workload under valgrind and strace.
# A broker under valgrind can pause for a while (code translation), so
# midge_bench waits up to 10 s for stragglers instead of 1 s.
# Each tool runs twice per broker: with 1 message (start-up, 9 connections,
# shutdown) and with CG_COUNT messages; the difference divided by the extra
# messages is the cost of one delivered message, free of start-up costs.
RAW=$OUT/raw-callgrind.jsonl
: >"$RAW"
SYSCALL_TABLES=$TMP/syscalls.md
: >"$SYSCALL_TABLES"

# Started as root, both brokers switch to the `mosquitto` user, and valgrind
# writes its output file at exit with that identity: the file (created at
# start-up by root) and the directory must be writable by it.
CGDIR=$TMP/callgrind
mkdir -p "$CGDIR"
chmod 711 "$TMP"
chmod 1777 "$CGDIR"

M_TOTAL= # instructions or syscalls counted by the last `measure`
M_MSGS=  # messages the last `measure` delivered
M_OUT=   # the tool's output file
# measure callgrind|strace NAME COUNT
measure() {
    local tool=$1 name=$2 count=$3 port conf out pid bpid line
    M_TOTAL=
    M_MSGS=
    port=$("$BENCH" free-port)
    conf=$TMP/$name.conf
    write_conf "$conf" "$port" 0
    out=$CGDIR/$tool.$name.$count.out
    M_OUT=$out
    if [ "$tool" = callgrind ]; then
        start_broker "$name" "$conf" "$TMP/$tool-$name.log" valgrind --tool=callgrind --vgdb=no --callgrind-out-file="$out"
    else
        start_broker "$name" "$conf" "$TMP/$tool-$name.log" strace -c -f -S calls -o "$out"
    fi
    pid=$BROKER_PID
    if ! "$BENCH" wait-port --port "$port" --timeout 60; then
        echo "   $name under $tool did not start:" >&2
        cat "$TMP/$tool-$name.log" >&2
        stop_broker "$pid" 5
        return 0
    fi
    chmod 666 "$out" 2>/dev/null || true
    bpid=
    if [ "$tool" = strace ]; then
        # The broker is strace's child; it is signalled, not strace, so
        # strace sees it exit and writes its summary.
        bpid=$(awk '{print $1}' "/proc/$pid/task/$pid/children" 2>/dev/null || true)
    fi
    # shellcheck disable=SC2086
    line=$("$BENCH" fanin --port "$port" --label "$name" --count "$count" --duration 3600 \
        --timeout 300 --drain 10 ${bpid:+--broker-pid $bpid} $BENCH_ARGS) || true
    if [ -n "$bpid" ]; then
        kill -TERM "$bpid" 2>/dev/null || true
    fi
    stop_broker "$pid" 120
    M_MSGS=$(json_num "$line" msgs)
    if [ "$tool" = callgrind ]; then
        M_TOTAL=$(awk '/^(summary|totals):/{print $2; exit}' "$out" 2>/dev/null || true)
    else
        M_TOTAL=$(awk '$NF=="total"{print $4}' "$out" 2>/dev/null || true)
    fi
    if [ -z "$M_MSGS" ] || [ -z "$M_TOTAL" ]; then
        echo "   $name under $tool: no result (bench said: $line)" >&2
        M_TOTAL=
    fi
}

# cost TOOL NAME SCENARIO KEY DECIMALS: both runs, one JSON line.
cost() {
    local tool=$1 name=$2 scenario=$3 key=$4 dec=$5 base_total base_msgs per
    echo "== $tool: $name, 1 and $CG_COUNT fan-in messages" >&2
    measure "$tool" "$name" 1
    base_total=$M_TOTAL
    base_msgs=$M_MSGS
    measure "$tool" "$name" "$CG_COUNT"
    if [ -z "$base_total" ] || [ -z "$M_TOTAL" ] || [ "${M_MSGS:-0}" -le "${base_msgs:-0}" ]; then
        echo "{\"scenario\":\"$scenario\",\"broker\":\"$name\",\"error\":\"$tool gave no usable totals\"}" >>"$RAW"
        return 0
    fi
    per=$(awk -v a="$M_TOTAL" -v b="$base_total" -v m="$M_MSGS" -v n="$base_msgs" -v d="$dec" \
        'BEGIN{printf "%.*f", d, (a-b)/(m-n)}')
    echo "{\"scenario\":\"$scenario\",\"broker\":\"$name\",\"msgs\":$M_MSGS,\"total\":$M_TOTAL,\"baseline_total\":$base_total,\"$key\":$per,\"loss\":$((CG_COUNT - M_MSGS))}" >>"$RAW"
    echo "   $name: ($M_TOTAL - $base_total) / ($M_MSGS - $base_msgs) = $per per message" >&2
}

if command -v valgrind >/dev/null; then
    for name in $BROKERS; do
        cost callgrind "$name" callgrind ir_per_msg 1
    done
else
    echo "== valgrind not installed: skipping callgrind" >&2
fi

if ! command -v strace >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "== installing strace" >&2
    apt-get install -y strace >/dev/null 2>&1 || (apt-get update >/dev/null 2>&1 && apt-get install -y strace >/dev/null 2>&1) || true
fi
if command -v strace >/dev/null; then
    for name in $BROKERS; do
        cost strace "$name" strace syscalls_per_msg 4
        if [ -s "$M_OUT" ]; then
            {
                echo "### $name: strace -c -f, $CG_COUNT messages, by number of calls (top 12)"
                echo
                echo '```'
                head -n 14 "$M_OUT"
                echo '```'
                echo
            } >>"$SYSCALL_TABLES"
        fi
    done
else
    echo "== strace not installed and could not be installed: skipping syscall counts" >&2
fi

{
    echo "# midge vs Mosquitto: cost per delivered message"
    echo
    machine_header
    echo "- load average: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "- workload: fanin (8 publishers -> 1 subscriber, QoS 0, 64-byte payloads), $CG_COUNT messages,"
    echo "  minus a 1-message run (start-up, connections, shutdown), divided by the extra messages"
    echo
    "$BENCH" report "$RAW"
    echo
    cat "$SYSCALL_TABLES"
} >"$OUT/callgrind.md"
echo >&2
cat "$OUT/callgrind.md"
echo "== wrote $OUT/callgrind.md, $RAW" >&2
