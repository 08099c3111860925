#!/usr/bin/env bash
# Side-by-side: Herald, Debian's Mosquitto, rumqttd and the loadgen's relay (the ceiling),
# each on its own loopback port, every scenario against every broker in turn (A/B/C/D)
# for several rounds; prints the median of each figure, the ratios, and each broker's
# VmRSS/VmHWM. Every process it starts is stopped on exit.
#
#   benches/compare.sh [--quick] [--rounds N] [--scenarios a,b,...] [--brokers a,b,...]
#                      [--base-port P] [--persistence always|interval|never] [--list]
#
# --quick: short runs, small counts, 1 round (under 2 minutes once built).
# --persistence: Herald stores its state in sled with this sync mode, and Mosquitto
#   with `persistence true` (rumqttd and the relay keep nothing on disk either way).
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=3
QUICK=0
ONLY=""
BROKERS="herald,mosquitto,rumqttd,relay"
BASE_PORT=21883
LIST=0
PERSIST=""
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) QUICK=1; ROUNDS=1 ;;
        --rounds) ROUNDS="$2"; shift ;;
        --scenarios) ONLY="$2"; shift ;;
        --brokers) BROKERS="$2"; shift ;;
        --base-port) BASE_PORT="$2"; shift ;;
        --persistence) PERSIST="$2"; shift ;;
        --list) LIST=1 ;;
        -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
        *) echo "compare.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done

# Scenario variants: name | loadgen arguments | figures to tabulate | "fresh" to restart
# each broker first (memory figures of a broker warmed by other runs mean little).
if [ "$QUICK" = 1 ]; then
    VARIANTS=(
        "fan-in-q0|fan-in --qos 0 --publishers 4 --duration 1|msgs_per_s lost"
        "fan-in-q1|fan-in --qos 1 --publishers 4 --window 16 --duration 1|msgs_per_s"
        "fan-in-q1-persistent|fan-in --qos 1 --publishers 4 --window 16 --duration 1 --persistent 1|msgs_per_s"
        "round-trip-q1|round-trip --qos 1 --window 16 --duration 1|acks_per_s rtt_p50_us rtt_p99_us"
        "round-trip-q2|round-trip --qos 2 --window 16 --duration 1|acks_per_s rtt_p99_us"
        "latency|latency --rate 10000 --duration 1|latency_p50_us latency_p99_us latency_p999_us"
        "fan-out-1k|fan-out --subscribers 1000 --rate 50 --duration 1|deliveries_per_s lag_p99_us behind"
        "idle|idle --connections 1000 --hold 1|connect_s rss_hold_kb kb_per_conn|fresh"
        "retained-10k|retained --count 10000|store_per_s deliver_s rss_loaded_kb retained_kib_per_msg rss_cleared_kb|fresh"
        "offline-queue|offline-queue --sessions 50 --messages 50|queued_kib_per_msg drain_ms|fresh"
    )
else
    VARIANTS=(
        "fan-in-q0|fan-in --qos 0 --publishers 4 --duration 5|msgs_per_s lost"
        "fan-in-q1|fan-in --qos 1 --publishers 4 --window 16 --duration 5|msgs_per_s"
        "fan-in-q1-persistent|fan-in --qos 1 --publishers 4 --window 16 --duration 5 --persistent 1|msgs_per_s"
        "round-trip-q1|round-trip --qos 1 --window 16 --duration 5|acks_per_s rtt_p50_us rtt_p99_us"
        "round-trip-q2|round-trip --qos 2 --window 16 --duration 5|acks_per_s rtt_p50_us rtt_p99_us"
        "latency|latency --rate 10000 --duration 5|latency_p50_us latency_p99_us latency_p999_us"
        "fan-out-1k|fan-out --subscribers 1000 --rate 100 --duration 5|deliveries_per_s lag_p99_us behind"
        "fan-out-10k|fan-out --subscribers 10000 --rate 100 --duration 5|deliveries_per_s lag_p99_us behind"
        "idle|idle --connections 19000 --hold 5|connect_s rss_hold_kb kb_per_conn|fresh"
        "retained-100k|retained --count 100000|store_per_s deliver_s rss_loaded_kb retained_kib_per_msg rss_cleared_kb|fresh"
        "retained-1m|retained --count 1000000 --settle 20|store_per_s deliver_s rss_loaded_kb retained_kib_per_msg rss_cleared_kb rss_settled_kb|fresh"
        "offline-queue|offline-queue --sessions 1000 --messages 100|queued_kib_per_msg drain_ms|fresh"
    )
fi
if [ "$LIST" = 1 ]; then
    printf '%s\n' "${VARIANTS[@]}" | cut -d'|' -f1,2 | tr '|' '\t'
    exit 0
fi

# The relay keeps no retained messages and no sessions: those figures are n/a for it.
relay_skips() { case "$1" in retained*|offline-queue*) return 0 ;; *) return 1 ;; esac; }

# 19,000 idle connections need as many descriptors in the generator and in each broker.
ulimit -n "$(ulimit -Hn)"

WORK=$(mktemp -d /tmp/herald-compare.XXXXXX)
declare -A PID PORT
cleanup() {
    local name
    for name in "${!PID[@]}"; do
        kill "${PID[$name]}" 2>/dev/null || true
    done
    for name in "${!PID[@]}"; do
        wait "${PID[$name]}" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "== building (release)" >&2
cargo build --release --bin herald >&2
LOADGEN=$(cargo bench --bench loadgen --no-run --message-format=json 2>/dev/null \
    | grep '"name":"loadgen"' | grep -o '"executable":"[^"]*"' | tail -1 | cut -d'"' -f4)
[ -x "$LOADGEN" ] || { echo "compare.sh: loadgen binary not found" >&2; exit 2; }

want() { [[ ",$BROKERS," == *",$1,"* ]]; }
if want mosquitto && [ ! -x /usr/sbin/mosquitto ]; then
    echo "== installing mosquitto" >&2
    (apt-get install -y mosquitto >&2 || { apt-get update >&2 && apt-get install -y mosquitto >&2; }) || true
fi
if want mosquitto && [ ! -x /usr/sbin/mosquitto ]; then
    echo "!!!!!! mosquitto could not be installed: comparing without it !!!!!!" >&2
    BROKERS=${BROKERS//mosquitto/}
fi
RUMQTTD=$(command -v rumqttd || echo "$HOME/.cargo/bin/rumqttd")
if want rumqttd && [ ! -x "$RUMQTTD" ]; then
    echo "== installing rumqttd (cargo install rumqttd)" >&2
    cargo install rumqttd >&2 || true
fi
if want rumqttd && [ ! -x "$RUMQTTD" ]; then
    echo "!!!!!! rumqttd could not be installed: comparing without it !!!!!!" >&2
    BROKERS=${BROKERS//rumqttd/}
fi

# Comparable limits: 20 messages in flight and 1000 queued per client, 64 MiB queued
# bytes, persistence as asked (off by default), TCP_NODELAY, loopback only.
if [ -n "$PERSIST" ]; then
    HERALD_STORAGE="persistence = true
path = \"$WORK/herald-data\"
sync = \"$PERSIST\""
    MOSQUITTO_STORAGE="persistence true
persistence_location $WORK/"
else
    HERALD_STORAGE="persistence = false"
    MOSQUITTO_STORAGE="persistence false"
fi
start_broker() {
    local name=$1 port=$2
    case "$name" in
        herald)
            cat > "$WORK/herald.toml" <<EOF
[[listeners]]
protocol = "mqtt"
bind = "127.0.0.1:$port"
[storage]
$HERALD_STORAGE
[mqtt]
max_inflight_messages = 20
max_queued_messages = 1000
max_queued_bytes = 67108864
[log]
level = "error"
EOF
            target/release/herald --config "$WORK/herald.toml" > "$WORK/herald.log" 2>&1 &
            ;;
        mosquitto)
            cat > "$WORK/mosquitto.conf" <<EOF
listener $port 127.0.0.1
allow_anonymous true
$MOSQUITTO_STORAGE
max_inflight_messages 20
max_queued_messages 1000
max_queued_bytes 67108864
max_connections -1
set_tcp_nodelay true
log_dest stderr
log_type error
EOF
            /usr/sbin/mosquitto -c "$WORK/mosquitto.conf" > "$WORK/mosquitto.log" 2>&1 &
            ;;
        rumqttd)
            cat > "$WORK/rumqttd.toml" <<EOF
id = 0
[router]
id = 0
max_connections = 20010
max_outgoing_packet_count = 1000
max_segment_size = 104857600
max_segment_count = 10
[v4.1]
name = "v4-1"
listen = "127.0.0.1:$port"
next_connection_delay_ms = 0
    [v4.1.connections]
    connection_timeout_ms = 60000
    max_payload_size = 268435455
    max_inflight_count = 20
    dynamic_filters = true
EOF
            "$RUMQTTD" -q -c "$WORK/rumqttd.toml" > "$WORK/rumqttd.log" 2>&1 &
            ;;
        relay)
            "$LOADGEN" relay --port "$port" > "$WORK/relay.log" 2>&1 &
            ;;
    esac
    PID[$name]=$!
    PORT[$name]=$port
    local i
    for i in $(seq 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
        if ! kill -0 "${PID[$name]}" 2>/dev/null; then break; fi
        sleep 0.1
    done
    echo "!!!!!! $name did not start on port $port; its log:" >&2
    cat "$WORK/$name.log" >&2
    unset "PID[$name]"
    return 1
}

stop_broker() {
    kill "${PID[$1]}" 2>/dev/null || true
    wait "${PID[$1]}" 2>/dev/null || true
    unset "PID[$1]"
}

ACTIVE=()
port=$BASE_PORT
for name in herald mosquitto rumqttd relay; do
    if want "$name"; then
        if start_broker "$name" "$port"; then ACTIVE+=("$name"); fi
        port=$((port + 1))
    fi
done
echo "== brokers: ${ACTIVE[*]}; rounds: $ROUNDS" >&2

RESULTS="$WORK/results.tsv"
PROBLEMS="$WORK/problems.txt"
: > "$RESULTS"
: > "$PROBLEMS"
for round in $(seq "$ROUNDS"); do
    for variant in "${VARIANTS[@]}"; do
        IFS='|' read -r vname vargs vkeys vfresh <<< "$variant"
        if [ -n "$ONLY" ] && [[ ",$ONLY," != *",$vname,"* ]] && [[ ",$ONLY," != *",${vargs%% *},"* ]]; then
            continue
        fi
        for name in "${ACTIVE[@]}"; do
            if [ "$name" = relay ] && relay_skips "$vname"; then continue; fi
            if [ "$vfresh" = fresh ] && [ -n "${PID[$name]:-}" ]; then
                stop_broker "$name"
                start_broker "$name" "${PORT[$name]}" || true
            fi
            if [ -z "${PID[$name]:-}" ] || ! kill -0 "${PID[$name]}" 2>/dev/null; then
                echo "round $round $vname $name: broker is gone" >> "$PROBLEMS"
                continue
            fi
            echo "== round $round: $vname on $name" >&2
            status=0
            # shellcheck disable=SC2086
            out=$(timeout 600 "$LOADGEN" $vargs --port "${PORT[$name]}" --pid "${PID[$name]}" \
                2> "$WORK/loadgen.err") || status=$?
            json=$(grep '^{' <<< "$out" || true)
            grep -v '^{' <<< "$out" >&2 || true
            if [ "$status" != 0 ]; then
                echo "round $round $vname $name: exit $status: $(tail -1 "$WORK/loadgen.err") $(grep -o '"problems":\[.*\]' <<< "$json")" >> "$PROBLEMS"
                cat "$WORK/loadgen.err" >&2
            fi
            for key in $vkeys; do
                value=$(grep -o "\"$key\":[-0-9.e]*" <<< "$json" | cut -d: -f2 || true)
                if [ -n "$value" ]; then
                    printf '%s\t%s\t%s\t%s\n' "$vname" "$key" "$name" "$value" >> "$RESULTS"
                fi
            done
        done
    done
done

# Memory at the end of all runs (since the last restart, for brokers restarted fresh).
for name in "${!PID[@]}"; do
    for key in VmRSS VmHWM; do
        value=$(awk -v k="$key:" '$1 == k { print $2 }' "/proc/${PID[$name]}/status" 2>/dev/null || true)
        [ -n "$value" ] && printf 'end\t%s_kb\t%s\t%s\n' "$key" "$name" "$value" >> "$RESULTS"
    done
done

# Median per (variant, figure, broker), then one row per figure.
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "-"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b == "-" || b + 0 == 0) print "-"; else printf "%.2f", a / b }'; }
echo
echo "medians of $ROUNDS round(s); problems (if any) below the table"
{
    echo "figure|Herald|Mosquitto|rumqttd|relay|Herald/Mosquitto|Herald/rumqttd"
    cut -f1,2 "$RESULTS" | awk '!seen[$0]++' | while IFS=$'\t' read -r vname key; do
        declare -A med=()
        for name in herald mosquitto rumqttd relay; do
            med[$name]=$(awk -F'\t' -v v="$vname" -v k="$key" -v b="$name" \
                '$1 == v && $2 == k && $3 == b { print $4 }' "$RESULTS" | median)
        done
        echo "$vname $key|${med[herald]}|${med[mosquitto]}|${med[rumqttd]}|${med[relay]}|$(ratio "${med[herald]}" "${med[mosquitto]}")|$(ratio "${med[herald]}" "${med[rumqttd]}")"
    done
} | column -t -s '|'
if [ -s "$PROBLEMS" ]; then
    echo
    echo "problems:"
    cat "$PROBLEMS"
fi
