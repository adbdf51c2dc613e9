#!/usr/bin/env bash
# Runs every cargo-fuzz target (fuzz/fuzz_targets) for SECONDS each
# (default 60) with the nightly toolchain; seeds come from fuzz/seeds, new
# corpus entries go to a temporary directory. Exits non-zero on a crash;
# the crashing input is left in fuzz/artifacts/<target>/.
#
#   scripts/fuzz.sh [SECONDS=60]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
SECONDS_EACH="${1:-60}"
cd "$ROOT/fuzz"
# cargo-fuzz needs nightly (libFuzzer's coverage instrumentation).
if ! rustup toolchain list | grep -q '^nightly'; then
    rustup toolchain install nightly --profile minimal
fi
if ! command -v cargo-fuzz >/dev/null; then
    cargo install cargo-fuzz --locked
fi
corpus="$(mktemp -d)"
trap 'rm -rf "$corpus"' EXIT
for target in event_validation pixel_query signature; do
    mkdir -p "$corpus/$target"
    echo "== fuzzing $target for ${SECONDS_EACH}s"
    # No sanitizer: the targets are safe Rust; libFuzzer still finds panics.
    log="$corpus/$target.log"
    if ! cargo +nightly fuzz run --sanitizer none --target-dir "$CARGO_TARGET_DIR/fuzz" \
        "$target" "$corpus/$target" "seeds/$target" -- \
        -max_total_time="$SECONDS_EACH" -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1; then
        tail -n 40 "$log" >&2
        echo "fuzz target $target failed; the input is in fuzz/artifacts/$target/" >&2
        exit 1
    fi
    grep -E "stat::number_of_executed_units|Done [0-9]+ runs" "$log" || true
done
echo "== every fuzz target ran ${SECONDS_EACH}s without a crash"
