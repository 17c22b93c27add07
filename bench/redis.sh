#!/usr/bin/env bash
# Redis reference: Debian's redis-server driven by its own redis-benchmark on loopback,
# at the value size and concurrency kvbox bench uses (1 KB, 50 clients), pipelined 16 deep
# and not, and one request per connection (-k 0). Run twice: Redis as a cache (no
# persistence, its default shape for these numbers) and with appendfsync always, which is
# the durability kvbox promises for every acknowledged SET.
#
#   bash bench/redis.sh            # REQUESTS=100000 CLIENTS=50 VALUE_SIZE=1024 PIPELINE=16
# shellcheck source=bench/_lib.sh
source "$(dirname "$0")/_lib.sh"

need redis-server redis-server
need redis-benchmark redis-tools
PORT="${REDIS_PORT:-6399}"

machine_info
echo "redis:   $(redis-server --version)"

# bench_one LABEL REQUESTS ARGS...: one redis-benchmark run with the server's CPU per request.
bench_one() {
    local label="$1" n="$2"
    shift 2
    local before after
    say "$label"
    before="$(cpu_ticks "$REDIS_PID")"
    run redis-benchmark -h 127.0.0.1 -p "$PORT" -d "$VALUE_SIZE" -c "$CLIENTS" -n "$n" \
        -r 10000 --csv "$@"
    after="$(cpu_ticks "$REDIS_PID")"
    # each call runs one test, so the server answered n requests (plus a few set-up ones)
    echo "redis-server CPU: $(cpu_us_per_request "$before" "$after" "$n") us/request"
}

for persistence in cache fsync; do
    if [[ $persistence == cache ]]; then
        args=(--save '' --appendonly no)
    else
        args=(--save '' --appendonly yes --appendfsync always)
    fi
    start_bg "$WORK/redis-$persistence.log" redis-server --port "$PORT" --bind 127.0.0.1 \
        --dir "$WORK" --daemonize no "${args[@]}"
    REDIS_PID="$BG_PID"
    wait_port "$PORT"
    for t in set get; do
        # pipelined runs are ~10x faster: 10x the requests so each lasts about a second
        bench_one "redis ($persistence) $t, pipeline $PIPELINE" "$((REQUESTS * 10))" \
            -t "$t" -P "$PIPELINE"
        bench_one "redis ($persistence) $t, no pipeline" "$REQUESTS" -t "$t"
        bench_one "redis ($persistence) $t, one request per connection" \
            "$((REQUESTS / 4))" -t "$t" -k 0
    done
    stop_bg "$REDIS_PID"
    rm -rf "$WORK"/appendonly*
done
