#!/usr/bin/env bash
# Profile `kvbox serve` under load with py-spy: a `kvbox bench` run in the background, and
# py-spy sampling the server for DURATION seconds. Writes a flame graph (SVG), the raw
# collapsed stacks, and a self/inclusive table (bench/profile_summary.py).
#
#   bash bench/profile.sh                          # SET, persistent, pipeline 16
#   OP=get MODE=conn bash bench/profile.sh         # GET, one request per connection
#   KVBOX_SERVER=127.0.0.1:7070 KVBOX_PID=1234 bash bench/profile.sh   # a running server
#
# Note: py-spy samples the process from outside (ptrace); it slows the server down,
# so the throughput during profiling is not a benchmark result.
# shellcheck source=bench/_lib.sh
source "$(dirname "$0")/_lib.sh"

OP="${OP:-set}"
MODE="${MODE:-persistent}"
PIPE="$PIPELINE"
[[ "$MODE" == conn ]] && PIPE=1
OPS="${OPS:-100000000}"
RESULTS_DIR="${RESULTS_DIR:-$WORK/results}"
PORT="${KVBOX_PORT:-7397}"
mkdir -p "$RESULTS_DIR"
PYSPY="${PYSPY:-$(dirname "$KVBOX_PYTHON")/py-spy}"
[[ -x "$PYSPY" ]] || PYSPY="$(command -v py-spy)" || {
    echo "py-spy not found: pip install py-spy" >&2
    exit 1
}
KVBOX=("$KVBOX_PYTHON" -m kvbox)
name="profile-$OP-$MODE-p$PIPE"

machine_info
if [[ -n "${KVBOX_SERVER:-}" ]]; then
    server="$KVBOX_SERVER"
    pid="${KVBOX_PID:?set KVBOX_PID to the server PID with KVBOX_SERVER}"
else
    start_bg "$WORK/kvbox-serve.log" "${KVBOX[@]}" serve --data "$WORK/data" \
        --host 127.0.0.1 --kv-port "$PORT" --http-port 0
    pid="$BG_PID"
    server="127.0.0.1:$PORT"
    wait_port "$PORT"
fi

say "load: $OP, $MODE, pipeline $PIPE, $CLIENTS clients, $((DURATION + 10)) s at most"
start_bg "$WORK/bench.log" "${KVBOX[@]}" bench --server "$server" --clients "$CLIENTS" \
    --op "$OP" --value-size "$VALUE_SIZE" --mode "$MODE" --pipeline "$PIPE" --ops "$OPS" \
    --timeout "$((DURATION + 10))" --quiet
BENCH_PID="$BG_PID"
sleep 3 # past population and warm-up

say "py-spy, $DURATION s"
# --native adds the C frames (uvloop, libc system calls) under the Python ones, so the
# table shows time in write()/read()/epoll as well; it pauses the process per sample
run "$PYSPY" record --pid "$pid" --duration "$DURATION" --rate 100 --native \
    --format raw --output "$RESULTS_DIR/$name.txt"
run "$KVBOX_PYTHON" "$BENCH_DIR/profile_summary.py" "$RESULTS_DIR/$name.txt" --top 30 \
    | tee "$RESULTS_DIR/$name-summary.txt"
stop_bg "$BENCH_PID"
echo "raw stacks: $RESULTS_DIR/$name.txt"
