#!/usr/bin/env bash
# Large S3 GETs: wall time and server CPU per GiB, the whole object (sendfile) and a
# 64 KiB range inside it (streamed; the chunk it touches is read and checked whole).
#
#   bash bench/large_get.sh [PYTHON...]   # default: this checkout's .venv/bin/python
#
# Each PYTHON runs `python -m kvbox serve` on a fresh data directory (so two venvs, one
# per source tree, compare code before and after a change in one run). Env: MIB (object
# size, default 512), GETS (whole GETs timed, default 5), RANGES (range GETs, default
# 200). Bounded: every curl has --max-time; the server is stopped by its PID.
set -euo pipefail
cd "$(dirname "$0")/.."
MIB="${MIB:-512}"
GETS="${GETS:-5}"
RANGES="${RANGES:-200}"
WORK="$(mktemp -d /tmp/kvbox-large-get.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
export KVBOX_ROOT_ACCESS_KEY=BENCHACCESSKEY000001 KVBOX_ROOT_SECRET_KEY=bench-secret-key
[ $# -gt 0 ] || set -- "$PWD/.venv/bin/python"
head -c "$((MIB * 1048576))" /dev/urandom >"$WORK/big"
echo "object: $MIB MiB; $GETS whole GETs, $RANGES range GETs of 64 KiB; load $(cut -d' ' -f1-3 /proc/loadavg)"

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

for PY in "$@"; do
    rm -rf "$WORK/data"
    port=$((20000 + RANDOM % 20000))
    "$PY" -m kvbox serve --data "$WORK/data" --kv-port 0 --http-port "$port" \
        --host 127.0.0.1 --log-level warning >"$WORK/serve.log" 2>&1 &
    pid=$!
    for _ in $(seq 100); do grep -q "kvbox: ready" "$WORK/serve.log" && break; sleep 0.1; done
    src="$("$PY" -c 'import kvbox, os; print(os.path.dirname(kvbox.__file__))')"
    ep="http://127.0.0.1:$port"
    "$PY" bench/s3/s3bench.py prepare --endpoint "$ep" --bucket bench --objects 0 --size 1 >/dev/null
    put="$("$PY" bench/s3/s3bench.py url --endpoint "$ep" --bucket bench --op put --key big)"
    curl -sS -H 'Expect:' -T "$WORK/big" -o /dev/null --max-time 600 "$put"
    get="$("$PY" bench/s3/s3bench.py url --endpoint "$ep" --bucket bench --op get --key big)"
    curl -sS -o /dev/null --max-time 600 "$get"  # warm the page cache
    t0=$(date +%s.%N); c0=$(cpu_ticks "$pid")
    for _ in $(seq "$GETS"); do curl -sS -o /dev/null --max-time 600 "$get"; done
    t1=$(date +%s.%N); c1=$(cpu_ticks "$pid")
    for i in $(seq "$RANGES"); do
        off=$(( (i * 7919 % MIB) * 1048576 ))
        curl -sS -o /dev/null --max-time 60 -H "Range: bytes=$off-$((off + 65535))" "$get"
    done
    t2=$(date +%s.%N); c2=$(cpu_ticks "$pid")
    hz=$(getconf CLK_TCK)
    awk -v src="$src" -v mib="$MIB" -v n="$GETS" -v r="$RANGES" -v hz="$hz" \
        -v t0="$t0" -v t1="$t1" -v t2="$t2" -v c0="$c0" -v c1="$c1" -v c2="$c2" 'BEGIN {
        gib = mib * n / 1024
        printf "%s\n  whole GET: %.0f MiB/s, server CPU %.2f s per GiB\n", src,
            mib * n / (t1 - t0), (c1 - c0) / hz / gib
        printf "  64 KiB range GET: %.2f ms each, server CPU %.2f ms each\n",
            (t2 - t1) * 1000 / r, (c2 - c1) / hz * 1000 / r
    }'
    kill "$pid"; wait "$pid" || true
done
