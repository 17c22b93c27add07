#!/usr/bin/env bash
# nginx reference for one request per connection: Debian's nginx serving a VALUE_SIZE
# static file to wrk with "Connection: close" on loopback, 50 connections. What matters is
# the server CPU per request (nginx master + workers, from /proc/PID/stat), the yardstick
# issue 2 sets for kvbox's one-request-per-connection mode (at most 2x nginx's). A
# keep-alive run follows for comparison.
#
#   bash bench/nginx.sh            # DURATION=10 CLIENTS=50 VALUE_SIZE=1024
# shellcheck source=bench/_lib.sh
source "$(dirname "$0")/_lib.sh"

need nginx nginx-light
need wrk wrk
PORT="${NGINX_PORT:-8099}"

machine_info
echo "nginx:   $(nginx -v 2>&1)"
echo "wrk:     $(wrk --version 2>&1 | head -1 || true)"

chmod 755 "$WORK"
mkdir -p "$WORK/nginx/www" "$WORK/nginx/logs"
head -c "$VALUE_SIZE" /dev/zero | tr '\0' 'x' >"$WORK/nginx/www/value"
cat >"$WORK/nginx/nginx.conf" <<EOF
worker_processes auto;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/logs/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    sendfile on;
    tcp_nodelay on;
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:$PORT backlog=4096;
        root $WORK/nginx/www;
    }
}
EOF
chmod -R a+rX "$WORK/nginx"
echo "config:"
sed 's/^/    /' "$WORK/nginx/nginx.conf"

start_bg "$WORK/nginx/stdout.log" nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" \
    -g 'daemon off;'
NGINX_PID="$BG_PID"
wait_port "$PORT"
sleep 0.5

# bench_one LABEL WRK_ARGS...: one wrk run, nginx (master + workers) CPU per request
bench_one() {
    local label="$1"
    shift
    local pids before after out requests
    say "$label"
    mapfile -t pids < <(echo "$NGINX_PID"; children "$NGINX_PID")
    before="$(cpu_ticks "${pids[@]}")"
    out="$WORK/wrk.out"
    run_to "$out" wrk -t 2 -c "$CLIENTS" -d "${DURATION}s" --latency "$@" \
        "http://127.0.0.1:$PORT/value"
    after="$(cpu_ticks "${pids[@]}")"
    cat "$out"
    requests="$(awk '/requests in/ {print $1}' "$out")"
    echo "nginx CPU: $(cpu_us_per_request "$before" "$after" "$requests") us/request" \
        "(user+system time of master and workers, ${#pids[@]} processes)"
}

bench_one "nginx, Connection: close (one request per connection)" -H "Connection: close"
bench_one "nginx, keep-alive"
