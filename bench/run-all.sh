#!/usr/bin/env bash
# Every reference benchmark, one after another (never in parallel: they share two cores),
# then kvbox in the same shapes; the whole transcript goes to stdout and to
# RESULTS_DIR/transcript.txt. Takes a few minutes.
#
#   RESULTS_DIR=/tmp/bench-results bash bench/run-all.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
export RESULTS_DIR="${RESULTS_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/kvbox-results.XXXXXX")}"
mkdir -p "$RESULTS_DIR"
{
    for script in nginx redis memcached kvbox; do
        echo
        echo "================ bench/$script.sh ================"
        bash "$here/$script.sh"
    done
} 2>&1 | tee "$RESULTS_DIR/transcript.txt"
echo "transcript and JSON results: $RESULTS_DIR"
