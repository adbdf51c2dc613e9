#!/usr/bin/env bash
# Benchmark of the badgepulse-exporter analytics API (issues 5, 23): p50/p95
# latency of every endpoint as a live dashboard sees it (default window,
# the org committing every 500 ms), and over a 30-day and a long fixed
# window, cold (Cache-Control: no-cache) and from the result cache, against
# the same numbers computed from raw `events` in the same run; and a
# dashboard poll answered 304 by its ETag against the full 200 answer.
#
#   bench/exporter.sh [EVENTS=10000000] [REPS=30] [RAW_REPS=10]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/env.sh"
cd "$ROOT"
deploy/local/install.sh
cargo build --release --locked -q -p badgepulse-exporter -p badgepulse-bench --bins
exec "$CARGO_TARGET_DIR/release/bench_exporter" "${1:-10000000}" "${2:-30}" "${3:-10}"
