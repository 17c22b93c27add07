#!/usr/bin/env bash
# memcached reference: Debian's memcached driven by memaslap (installed as memcaslap by
# libmemcached-tools) on loopback at 1 KB values and 50 concurrent connections: SET only,
# GET only (after memaslap's own load of the keys), and GET batched 16 keys per request
# (-d 16, memcached's multi-get: the closest thing memaslap has to pipelining). memcached
# keeps everything in memory: no durability, so its SET is the cache ceiling.
#
#   bash bench/memcached.sh        # DURATION=10 CLIENTS=50 VALUE_SIZE=1024
# shellcheck source=bench/_lib.sh
source "$(dirname "$0")/_lib.sh"

need memcached memcached
need memcaslap libmemcached-tools
PORT="${MEMCACHED_PORT:-11299}"
THREADS="$(nproc)"

machine_info
echo "memcached: $(memcached -V)"

# memaslap's workload file: fixed 64-byte keys, VALUE_SIZE values, a SET/GET proportion
write_cfg() {
    local file="$1" set_prop="$2" get_prop="$3"
    printf 'key\n64 64 1\nvalue\n%s %s 1\ncmd\n0 %s\n1 %s\n' \
        "$VALUE_SIZE" "$VALUE_SIZE" "$set_prop" "$get_prop" >"$file"
}

# bench_one LABEL CFG ARGS...: one memaslap run and memcached's CPU per request
bench_one() {
    local label="$1" cfg="$2"
    shift 2
    local before after out ops
    say "$label"
    before="$(cpu_ticks "$MC_PID")"
    out="$WORK/memaslap.out"
    run_to "$out" memcaslap -s "127.0.0.1:$PORT" -T "$THREADS" -c "$CLIENTS" \
        -X "$VALUE_SIZE" -t "${DURATION}s" -w 1k -F "$cfg" "$@"
    tail -9 "$out"
    after="$(cpu_ticks "$MC_PID")"
    # memcached counts a multi-get as one request: memaslap's cmd_get counts keys
    ops="$(awk '/^Run time:/ {print $5}' "$out")"
    echo "memcached CPU: $(cpu_us_per_request "$before" "$after" "$ops") us/op" \
        "(ops as memaslap counts them; a -d 16 multi-get is 16)"
}

start_bg "$WORK/memcached.log" memcached -u nobody -l 127.0.0.1 -p "$PORT" -U 0 \
    -t "$THREADS" -m 1024
MC_PID="$BG_PID"
wait_port "$PORT"

write_cfg "$WORK/set.cfg" 1.0 0.0
write_cfg "$WORK/get.cfg" 0.0 1.0
bench_one "memcached SET" "$WORK/set.cfg"
bench_one "memcached GET" "$WORK/get.cfg"
bench_one "memcached GET, 16 keys per request (-d 16)" "$WORK/get.cfg" -d 16
