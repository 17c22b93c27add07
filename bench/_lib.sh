# shellcheck shell=bash
# Shared helpers for the reference benchmark scripts in bench/. Sourced, not run.
#
# Rules: everything listens on 127.0.0.1 only; every server a script starts is recorded
# by PID and killed by PID on exit (trap), never by name; every load command is bounded
# (a request count or a duration). Commands are echoed before they run ("$ ...") so the
# output of a script is a complete, reproducible record.

set -euo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$BENCH_DIR/.." && pwd)"
# The shapes issue 2 §6 compares at: 1 KB values, 50 concurrent clients, pipeline 16.
VALUE_SIZE="${VALUE_SIZE:-1024}"
CLIENTS="${CLIENTS:-50}"
PIPELINE="${PIPELINE:-16}"
# Seconds per time-bounded run (wrk, memaslap); request-bounded tools use REQUESTS.
DURATION="${DURATION:-10}"
REQUESTS="${REQUESTS:-100000}"
PYTHON="${PYTHON:-$(command -v python3)}"
if [[ -x "$REPO_DIR/../venv/bin/python" && -z "${KVBOX_PYTHON:-}" ]]; then
    KVBOX_PYTHON="$(cd "$REPO_DIR/../venv/bin" && pwd)/python"
fi
KVBOX_PYTHON="${KVBOX_PYTHON:-$PYTHON}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/kvbox-bench.XXXXXX")"
CLK_TCK="$(getconf CLK_TCK)"

_PIDS=()
_cleanup() {
    local pid
    for pid in "${_PIDS[@]:-}"; do
        if [[ -n "$pid" ]]; then kill "$pid" 2>/dev/null || true; fi
    done
    for pid in "${_PIDS[@]:-}"; do
        if [[ -n "$pid" ]]; then wait "$pid" 2>/dev/null || true; fi
    done
    rm -rf "$WORK"
}
trap _cleanup EXIT

say() { printf '\n### %s   [load %s]\n' "$*" "$(cut -d' ' -f1 /proc/loadavg)"; }

# run CMD...: print the exact command, then run it.
run() {
    printf '$ %s\n' "$(printf '%q ' "$@")"
    "$@"
}

# run_to FILE CMD...: like run, with the command's output going to FILE.
run_to() {
    local file="$1"
    shift
    printf '$ %s> %s\n' "$(printf '%q ' "$@")" "$file"
    "$@" >"$file"
}

# need COMMAND DEBIAN_PACKAGE: install the package with apt-get if the command is missing.
_APT_UPDATED=0
need() {
    local cmd="$1" pkg="$2"
    command -v "$cmd" >/dev/null 2>&1 && return 0
    if [[ $_APT_UPDATED -eq 0 ]]; then
        run apt-get update -qq
        _APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive run apt-get install -y -qq "$pkg" >/dev/null
    command -v "$cmd" >/dev/null 2>&1 || { echo "cannot install $cmd ($pkg)" >&2; exit 1; }
}

# start_bg LOGFILE CMD...: start a server in the background, remember its PID in BG_PID.
start_bg() {
    local log="$1"
    shift
    printf '$ %s > %s 2>&1 &\n' "$(printf '%q ' "$@")" "$log"
    "$@" >"$log" 2>&1 &
    BG_PID=$!
    _PIDS+=("$BG_PID")
}

# stop_bg PID: stop one server this script started.
stop_bg() {
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

# wait_port PORT: wait up to 20 s for a TCP listener on 127.0.0.1:PORT.
wait_port() {
    local port="$1" _
    for _ in $(seq 1 200); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    echo "nothing listens on 127.0.0.1:$port" >&2
    exit 1
}

# cpu_ticks PID...: user+system clock ticks used so far by the processes (and their
# threads), from /proc/PID/stat fields 14 and 15.
cpu_ticks() {
    local total=0 pid stat f
    for pid in "$@"; do
        stat="$(cat "/proc/$pid/stat" 2>/dev/null)" || continue
        # the command name (field 2) may contain spaces: cut after its closing paren, so
        # f[0] is field 3 and utime, stime (fields 14, 15) are f[11], f[12]
        read -r -a f <<<"${stat##*) }"
        total=$((total + f[11] + f[12]))
    done
    echo "$total"
}

# children PID: PIDs of PID's direct children (e.g. nginx workers).
children() {
    cat "/proc/$1/task/"*/children 2>/dev/null | tr ' ' '\n' | grep -v '^$' || true
}

# cpu_us_per_request TICKS_BEFORE TICKS_AFTER REQUESTS
cpu_us_per_request() {
    awk -v a="$1" -v b="$2" -v n="$3" -v hz="$CLK_TCK" \
        'BEGIN { if (n > 0) printf "%.1f", (b - a) / hz / n * 1e6; else print "n/a" }'
}

# free_port: a TCP port nothing listens on, whose +10000 is free too (SeaweedFS puts its
# gRPC listeners there).
free_port() {
    "$KVBOX_PYTHON" - <<'EOF'
import random, socket
for _ in range(200):
    p = random.randint(20000, 55000)
    ok = True
    for q in (p, p + 10000):
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", q))
        except OSError:
            ok = False
        finally:
            s.close()
    if ok:
        print(p)
        break
EOF
}

machine_info() {
    say "machine"
    echo "date:    $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "kernel:  $(uname -srm)"
    echo "cpu:     $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //') x $(nproc)"
    echo "memory:  $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
    echo "load:    $(cut -d' ' -f1-3 /proc/loadavg) (1, 5, 15 min; other work on the machine skews results)"
}
