#!/usr/bin/env bash
# kvbox in the same shapes as the references: `kvbox bench` at 1 KB values and 50 clients,
# pipelined 16 deep, persistent without pipelining, and one request per connection, SET
# and GET; then the same shapes against bench/bare_server.py (a bare uvloop server with a
# dict) to show what the Python load generator itself can reach on this machine.
#
#   bash bench/kvbox.sh                    # starts `kvbox serve` on a fresh data dir
#   KVBOX_SERVER=127.0.0.1:7070 bash bench/kvbox.sh   # uses a running server instead
#   BARE=0 bash bench/kvbox.sh             # skip the bare-server calibration
#   CACHE=0 bash bench/kvbox.sh            # skip the cache-mode (--max-memory) SET runs
#
# OPS (default 50000) per unpipelined run, OPS_PIPELINED (default 300000) per pipelined
# run; results as JSON (and one plot) in RESULTS_DIR (default: a temporary directory).
# shellcheck source=bench/_lib.sh
source "$(dirname "$0")/_lib.sh"

OPS="${OPS:-50000}"
OPS_PIPELINED="${OPS_PIPELINED:-300000}"
BARE="${BARE:-1}"
CACHE="${CACHE:-1}"
RESULTS_DIR="${RESULTS_DIR:-$WORK/results}"
PORT="${KVBOX_PORT:-7399}"
BARE_PORT="${BARE_PORT:-7398}"
mkdir -p "$RESULTS_DIR"
KVBOX=("$KVBOX_PYTHON" -m kvbox)

machine_info
echo "kvbox:   $("${KVBOX[@]}" --version)"
echo "python:  $("$KVBOX_PYTHON" -V)"
echo "disk:    $("$KVBOX_PYTHON" "$BENCH_DIR/fsync_probe.py" "$WORK")"

# shapes SERVER NAME: the benchmark shapes against one server
shapes() {
    local server="$1" name="$2" op
    for op in set get; do
        say "$name $op, pipeline $PIPELINE"
        run "${KVBOX[@]}" bench --server "$server" --clients "$CLIENTS" --op "$op" \
            --value-size "$VALUE_SIZE" --mode persistent --pipeline "$PIPELINE" \
            --ops "$OPS_PIPELINED" --warmup --quiet --json "$RESULTS_DIR/$name-$op-p$PIPELINE.json" \
            --plot "$RESULTS_DIR/$name-$op-p$PIPELINE.png" || true
        say "$name $op, persistent, no pipeline"
        run "${KVBOX[@]}" bench --server "$server" --clients "$CLIENTS" --op "$op" \
            --value-size "$VALUE_SIZE" --mode persistent --ops "$OPS" --warmup --quiet \
            --json "$RESULTS_DIR/$name-$op-p1.json" || true
        say "$name $op, one request per connection"
        run "${KVBOX[@]}" bench --server "$server" --clients "$CLIENTS" --op "$op" \
            --value-size "$VALUE_SIZE" --mode conn --ops "$OPS" --warmup --quiet \
            --json "$RESULTS_DIR/$name-$op-conn.json" || true
    done
}

if [[ -n "${KVBOX_SERVER:-}" ]]; then
    shapes "$KVBOX_SERVER" kvbox
else
    start_bg "$WORK/kvbox-serve.log" "${KVBOX[@]}" serve --data "$WORK/data" \
        --host 127.0.0.1 --kv-port "$PORT" --http-port 0
    KV_PID="$BG_PID"
    wait_port "$PORT"
    echo "kvbox serve pid $KV_PID"
    shapes "127.0.0.1:$PORT" kvbox
    stop_bg "$KV_PID"
fi

if [[ "$CACHE" == 1 && -z "${KVBOX_SERVER:-}" ]]; then
    # cache mode: nothing durable, like memcached and Redis without persistence
    start_bg "$WORK/kvbox-cache.log" "${KVBOX[@]}" serve --data "$WORK/cache-data" \
        --host 127.0.0.1 --kv-port "$PORT" --http-port 0 --max-memory 512MiB
    KV_PID="$BG_PID"
    wait_port "$PORT"
    for pipe in "$PIPELINE" 1; do
        say "kvbox --max-memory set, pipeline $pipe"
        run "${KVBOX[@]}" bench --server "127.0.0.1:$PORT" --clients "$CLIENTS" --op set \
            --value-size "$VALUE_SIZE" --mode persistent --pipeline "$pipe" \
            --ops "$([[ $pipe == 1 ]] && echo "$OPS" || echo "$OPS_PIPELINED")" --warmup \
            --quiet --json "$RESULTS_DIR/kvbox-cache-set-p$pipe.json" || true
    done
    stop_bg "$KV_PID"
fi

if [[ "$BARE" == 1 ]]; then
    start_bg "$WORK/bare.log" "$KVBOX_PYTHON" "$BENCH_DIR/bare_server.py" --port "$BARE_PORT"
    BARE_PID="$BG_PID"
    wait_port "$BARE_PORT"
    shapes "127.0.0.1:$BARE_PORT" bare
    stop_bg "$BARE_PID"
fi
echo
echo "results: $RESULTS_DIR"
