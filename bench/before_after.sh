#!/usr/bin/env bash
# Before and after: the same GW-KV and S3 loads against several source trees of kvbox in
# one run, for a change's "before/after" section in docs/benchmarks.md.
#
#   git worktree add --detach /tmp/kvbox-before COMMIT     # the code before the change
#   ROUNDS=3 bash bench/before_after.sh before=/tmp/kvbox-before/src after=src \
#       'after-log-off=src --access-log off'
#
# Each argument is LABEL=SRC, optionally followed (in the same word) by extra
# `kvbox serve` flags. Every tree's server runs as `python -m kvbox serve` from this
# script's venv with PYTHONPATH=SRC, so only the server's code differs; the load
# generators (kvbox bench, wrk with bench/s3/urls.lua, bench/s3/s3bench.py) are this
# checkout's and the same for every tree. Each round runs every tree once, in the order
# given, each load on a fresh server and data directory, so load from other work on the
# machine falls on all trees alike:
#   GW-KV  SET and GET at each pipeline depth of PIPELINES ("16 1": OPS_PIPELINED ops
#          pipelined, OPS unpipelined), CLIENTS clients, VALUE_SIZE-byte values, --warmup;
#   S3     (unless S3=0) OBJECTS 4 KiB objects: presigned PUTs, then GETs, wrk -c 32 for
#          DURATION s.
# Server CPU per request comes from the server's INFO counters (GW-KV) or /proc (S3).
# The end is a Markdown table of each tree's medians over the rounds, their ratios to the
# first tree (the median of per-round ratios) and the noise. RESULTS_DIR keeps the raw
# results (results.tsv) when set.
# shellcheck source=bench/_lib.sh
source "$(dirname "$0")/_lib.sh"

ROUNDS="${ROUNDS:-3}"
OPS="${OPS:-30000}"
OPS_PIPELINED="${OPS_PIPELINED:-150000}"
OBJECTS="${OBJECTS:-2000}"
PIPELINES="${PIPELINES:-16 1}"
S3="${S3:-1}"
export KVBOX_ROOT_ACCESS_KEY="${KVBOX_ROOT_ACCESS_KEY:-benchaccesskey0001}"
export KVBOX_ROOT_SECRET_KEY="${KVBOX_ROOT_SECRET_KEY:-benchsecretkey00000000000000000000000001}"
S3_HELPER="$BENCH_DIR/s3/s3bench.py"
RESULTS="$WORK/results.tsv"
need wrk wrk
if [[ $# -eq 0 ]]; then
    echo "usage: bash bench/before_after.sh LABEL=SRC['extra serve flags'] ..." >&2
    exit 2
fi

# serve TREE LOG: start the tree's server on fresh ports and data; sets KV, HTTP, SRV.
serve() {
    local tree="$1" log="$2" src flags
    read -r src flags <<<"${tree#*=}"
    rm -rf "$WORK/data"
    KV="$(free_port)"
    HTTP="$(free_port)"
    # shellcheck disable=SC2086  # flags are words on purpose
    start_bg "$log" env "PYTHONPATH=$(cd "$src" && pwd)" "$KVBOX_PYTHON" -m kvbox serve \
        --data "$WORK/data" --host 127.0.0.1 --kv-port "$KV" --http-port "$HTTP" $flags
    SRV="$BG_PID"
    wait_port "$KV"
    wait_port "$HTTP"
}

gwkv() {  # gwkv ROUND TREE
    local round="$1" tree="$2" label="${2%%=*}" op pipe ops json
    for pipe in $PIPELINES; do
        for op in set get; do
            serve "$tree" "$WORK/serve-$label-$op-$pipe-$round.log"
            ops="$OPS"
            if [[ $pipe -gt 1 ]]; then ops="$OPS_PIPELINED"; fi
            json="$WORK/$label-$op-$pipe-$round.json"
            say "$label: GW-KV $op, pipeline $pipe (round $round)"
            run "$KVBOX_PYTHON" -m kvbox bench --server "127.0.0.1:$KV" --clients "$CLIENTS" \
                --op "$op" --value-size "$VALUE_SIZE" --mode persistent --pipeline "$pipe" \
                --ops "$ops" --warmup --quiet --json "$json" >/dev/null
            stop_bg "$SRV"
            "$KVBOX_PYTHON" - "$json" "$round" "$label" "GW-KV ${op^^}, pipeline $pipe" \
                >>"$RESULTS" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
lat = r["latency_ms"]
cpu = r["server"].get("cpu_us_per_request")  # None when INFO did not answer
print("\t".join([sys.argv[2], sys.argv[3], sys.argv[4], f"{r['throughput_ops_s']:.0f}",
                 f"{lat['p50_ms']:.3f}", f"{lat['p99_ms']:.3f}",
                 "nan" if cpu is None else f"{cpu:.1f}"]))
PY
            tail -1 "$RESULTS"
        done
    done
}

s3() {  # s3 ROUND TREE
    local round="$1" tree="$2" label="${2%%=*}" op ep t0 t1 out
    serve "$tree" "$WORK/serve-$label-s3-$round.log"
    ep="http://127.0.0.1:$HTTP"
    run "$KVBOX_PYTHON" "$S3_HELPER" prepare --endpoint "$ep" --bucket bench \
        --objects "$OBJECTS" --size 4096 >/dev/null
    for op in put get; do
        run "$KVBOX_PYTHON" "$S3_HELPER" presign --endpoint "$ep" --bucket bench --op "$op" \
            --objects "$OBJECTS" --out "$WORK/$op.urls" >/dev/null
    done
    for op in PUT GET; do
        say "$label: S3 4 KiB $op, 32 connections, ${DURATION}s (round $round)"
        t0="$(cpu_ticks "$SRV")"
        out="$(run env URLS="$WORK/${op,,}.urls" METHOD="$op" SIZE=4096 \
            wrk -t 2 -c 32 -d "${DURATION}s" --timeout 10s -s "$BENCH_DIR/s3/urls.lua" "$ep")"
        t1="$(cpu_ticks "$SRV")"
        grep -E '^(\$ |wrk-summary|Non-2xx)' <<<"$out" || true
        awk -v r="$round" -v l="$label" -v op="$op" -v a="$t0" -v b="$t1" -v hz="$CLK_TCK" '
            /^wrk-summary/ {
                for (i = 2; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
                if (f["non2xx"] + f["connect_err"] + f["read_err"] + f["write_err"] + f["timeout"] > 0) {
                    print "errors in the S3 run: " $0 > "/dev/stderr"; exit 1
                }
                printf "%s\t%s\tS3 4 KiB %s\t%.0f\t%.3f\t%.3f\t%.1f\n", r, l, op, f["rps"],
                    f["p50_ms"], f["p99_ms"], (b - a) / hz / f["requests"] * 1e6
            }' <<<"$out" >>"$RESULTS"
        tail -1 "$RESULTS"
    done
    stop_bg "$SRV"
}

machine_info
for tree in "$@"; do
    label="${tree%%=*}"
    read -r src _ <<<"${tree#*=}"
    echo "tree $label: $src ($(git -C "$src" log -1 --format='%h %cI' 2>/dev/null || echo 'not git'))"
done
for round in $(seq 1 "$ROUNDS"); do
    for tree in "$@"; do
        gwkv "$round" "$tree"
        if [[ $S3 != 0 ]]; then s3 "$round" "$tree"; fi
    done
done
if [[ -n "${RESULTS_DIR:-}" ]]; then
    mkdir -p "$RESULTS_DIR"
    cp "$RESULTS" "$RESULTS_DIR/results.tsv"
fi
say "medians over $ROUNDS rounds (ratio to the first tree in brackets)"
"$KVBOX_PYTHON" - "$RESULTS" <<'PY'
import math, statistics, sys
rows = [line.rstrip("\n").split("\t") for line in open(sys.argv[1])]
labels = list(dict.fromkeys(r[1] for r in rows))
shapes = list(dict.fromkeys(r[2] for r in rows))
# cell[(label, shape, col)][round] = value
cell: dict[tuple[str, str, int], dict[str, float]] = {}
for r in rows:
    for col in (3, 4, 5, 6):
        v = float(r[col])
        if not math.isnan(v):
            cell.setdefault((r[1], r[2], col), {})[r[0]] = v
def median(values):
    values = list(values)
    return statistics.median(values) if values else math.nan
print("Each cell: the median over the rounds; (the median of the per-round ratios to the")
print("first tree, each taken against the first tree's run of the same round); ±half the")
print("rounds' range in % of the median: the run-to-run noise of that tree.")
print()
print("| shape | figure | " + " | ".join(labels) + " |")
print("|---|---|" + "---:|" * len(labels))
for shape in shapes:
    for col, name, fmt in ((3, "ops/s", "{:,.0f}"), (4, "p50 ms", "{:.2f}"),
                           (5, "p99 ms", "{:.2f}"), (6, "server µs/req", "{:.1f}")):
        base = cell.get((labels[0], shape, col), {})
        cells = []
        for i, label in enumerate(labels):
            got = cell.get((label, shape, col), {})
            v = median(got.values())
            text = fmt.format(v)
            ratios = [got[k] / base[k] for k in got if base.get(k)]
            if i and ratios:
                text += f" ({median(ratios):.2f})"
            if len(got) > 1 and v:
                text += f" ±{(max(got.values()) - min(got.values())) / 2 / v * 100:.0f}%"
            cells.append(text)
        print(f"| {shape} | {name} | " + " | ".join(cells) + " |")
PY
