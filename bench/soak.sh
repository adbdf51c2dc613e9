#!/usr/bin/env bash
# Soak (issue 8): every service under a steady rate for MINUTES, memory of
# each process sampled every 10 s, then the ledger checked exactly.
#
#   bench/soak.sh [MINUTES=30] [RATE=100]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/env.sh"
cd "$ROOT"
deploy/local/install.sh
cargo build --release --locked -q --workspace --bins
exec "$CARGO_TARGET_DIR/release/soak" "${1:-30}" "${2:-100}"
