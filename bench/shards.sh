#!/usr/bin/env bash
# ClickHouse shards (issue 24), by hand; see bench/src/bin/bench_shards.rs.
#
#   bench/shards.sh throughput [EVENTS=1000000]
#   bench/shards.sh replica-kill [ASSERTIONS=30000]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/env.sh"
cd "$ROOT"
deploy/local/install.sh
cargo build --release --locked -q -p badgepulse-aggregator -p badgepulse-bench --bins
exec "$CARGO_TARGET_DIR/release/bench_shards" "$@"
