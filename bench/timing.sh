#!/usr/bin/env bash
# Timing-safety measurement of the secret comparisons (issue 8): pixel
# signature check and API-key lookup, right / wrong-early / wrong-late.
#
#   bench/timing.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/env.sh"
cd "$ROOT"
cargo build --release --locked -q -p badgepulse-bench --bin timing
exec "$CARGO_TARGET_DIR/release/timing"
