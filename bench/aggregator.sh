#!/usr/bin/env bash
# Benchmark of badgepulse-aggregator (issue 4): events/s written from a
# pre-filled stream vs clickhouse-client inserting the same rows from a
# file (same run), and pixel → rollup_minute freshness under steady load.
#
#   bench/aggregator.sh [EVENTS=1000000] [RATE=5000] [SECONDS=20]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/env.sh"
cd "$ROOT"
deploy/local/install.sh
cargo build --release --locked -q -p badgepulse-aggregator -p badgepulse-ingest -p badgepulse-bench --bins
exec "$CARGO_TARGET_DIR/release/bench_aggregator" "${1:-1000000}" "${2:-5000}" "${3:-20}"
