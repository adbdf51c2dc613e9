#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what is missing
# (Debian packages, chdb-core), builds every binary, runs every test.
# Integration tests start their own NATS, ClickHouse and Prometheus on
# free ports (tests/src/lib.rs), so nothing needs to be running first.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"

deploy/local/install.sh
echo "== format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== build"
cargo build --workspace --bins --locked
echo "== unit and integration tests"
cargo test --workspace --locked --no-fail-fast -- --test-threads=2
echo "== fuzz targets, 60 s each (issue 8)"
scripts/fuzz.sh 60
