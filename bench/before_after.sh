#!/usr/bin/env bash
# GW-KV SET and GET, pipeline 16, 1 KB values: one server per PYTHON (so two source trees
# compare in one run), ROUNDS rounds alternating between them so that load from others
# on the machine falls on both alike. Prints `kvbox bench`'s summary lines.
#
#   bash bench/before_after.sh PYTHON_BEFORE PYTHON_AFTER
#
# Env: OPS (per run, default 300000), ROUNDS (default 3). Bounded: `kvbox bench` stops
# at --timeout; each server is stopped by its PID.
set -euo pipefail
cd "$(dirname "$0")/.."
OPS="${OPS:-300000}"
ROUNDS="${ROUNDS:-3}"
WORK="$(mktemp -d /tmp/kvbox-before-after.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
BENCH="$PWD/.venv/bin/kvbox"

run_one() {  # PYTHON LABEL OP
    local py="$1" label="$2" op="$3" port pid
    rm -rf "$WORK/data"
    port=$((20000 + RANDOM % 20000))
    "$py" -m kvbox serve --data "$WORK/data" --kv-port "$port" --http-port 0 \
        --host 127.0.0.1 --access-log off >"$WORK/serve.log" 2>&1 &
    pid=$!
    for _ in $(seq 600); do grep -q "kvbox: ready" "$WORK/serve.log" && break; sleep 0.1; done
    if ! grep -q "kvbox: ready" "$WORK/serve.log"; then
        echo "server did not start:"; cat "$WORK/serve.log"; kill "$pid" 2>/dev/null || true; exit 1
    fi
    printf '%-7s %-3s ' "$label" "$op"
    "$BENCH" bench --server "127.0.0.1:$port" --clients 50 --ops "$OPS" --op "$op" \
        --value-size 1024 --mode persistent --pipeline 16 --warmup --quiet --timeout 120 \
        --json "$WORK/r.json" >/dev/null
    "$PWD/.venv/bin/python" - "$WORK/r.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
t = r["throughput_ops_s"]
cpu = r["server"]["cpu_us_per_request"]
print(f"{t:>10,.0f} ops/s  server {cpu:.2f} us/req  load {open('/proc/loadavg').read().split()[0]}")
EOF
    kill "$pid"; wait "$pid" || true
}

echo "OPS=$OPS ROUNDS=$ROUNDS; before=$1 after=$2"
for r in $(seq "$ROUNDS"); do
    for op in set get; do
        run_one "$1" before "$op"
        run_one "$2" after "$op"
    done
done
