#!/usr/bin/env bash
# Benchmark of badgepulse-import (issue 20): the importer against a minimal
# sender posting the same batches to the same ingest (same run), and the
# end-to-end rate until ClickHouse holds every imported event.
#
#   bench/import.sh [EVENTS=1000000] [ROUNDS=5]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/env.sh"
cd "$ROOT"
deploy/local/install.sh
cargo build --release --locked -q -p badgepulse-import -p badgepulse-ingest -p badgepulse-aggregator -p badgepulse-bench --bins
exec "$CARGO_TARGET_DIR/release/bench_import" "${1:-1000000}" "${2:-5}"
