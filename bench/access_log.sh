#!/usr/bin/env bash
# What the access log costs the GW-KV hot path: pipelined GET and SET (50 clients,
# pipeline 16, 1 KB values) against one build with `--access-log on` (the default) and
# `--access-log off`, and -- when BEFORE_SRC names the src/ of a checkout without the
# access log -- against that code too. Rounds alternate the variants so load from other
# work on the machine falls on all of them alike. Server CPU per request (the server's
# INFO counters, all threads: the log's writer thread included) is the figure to compare;
# throughput moves with whatever else the machine runs.
#
#   bash bench/access_log.sh
#   BEFORE_SRC=/tmp/kvbox-before/src ROUNDS=3 OPS=200000 bash bench/access_log.sh
#
# The access lines go to a file in the work directory, as they would to a log collector.
# shellcheck source=bench/_lib.sh
source "$(dirname "$0")/_lib.sh"

ROUNDS="${ROUNDS:-3}"
OPS="${OPS:-200000}"
PORT="${KVBOX_PORT:-7397}"
KVBOX=("$KVBOX_PYTHON" -m kvbox)
VARIANTS=(on off)
if [[ -n "${BEFORE_SRC:-}" ]]; then VARIANTS+=(before); fi

one() {  # one VARIANT OP ROUND
    local variant="$1" op="$2" round="$3" env=() flag=(--access-log on)
    case "$variant" in
        off) flag=(--access-log off) ;;
        before) env=(env "PYTHONPATH=$BEFORE_SRC") flag=() ;;
    esac
    rm -rf "$WORK/data"
    start_bg "$WORK/serve-$variant-$op-$round.log" "${env[@]}" "${KVBOX[@]}" serve \
        --data "$WORK/data" --host 127.0.0.1 --kv-port "$PORT" --http-port 0 "${flag[@]}"
    wait_port "$PORT"
    say "access log $variant: $op, pipeline $PIPELINE (round $round)"
    run "${KVBOX[@]}" bench --server "127.0.0.1:$PORT" --clients "$CLIENTS" --op "$op" \
        --value-size "$VALUE_SIZE" --mode persistent --pipeline "$PIPELINE" --ops "$OPS" \
        --warmup --quiet --json "$WORK/$variant-$op-$round.json" >/dev/null
    stop_bg "$BG_PID"
    "$KVBOX_PYTHON" - "$WORK/$variant-$op-$round.json" "$variant" "$op" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
srv = r.get("server", {})
print(f"RESULT {sys.argv[2]:6} {sys.argv[3]:3} {r['throughput_ops_s']:>10,.0f} ops/s "
      f"{srv.get('cpu_us_per_request') or 0:6.2f} server us/req")
PY
}

for round in $(seq 1 "$ROUNDS"); do
    for op in get set; do
        for variant in "${VARIANTS[@]}"; do
            one "$variant" "$op" "$round"
        done
    done
done
echo
echo "access lines written by the last 'on' run: $(grep -c 'kvbox.access' "$WORK"/serve-on-set-"$ROUNDS".log)"
