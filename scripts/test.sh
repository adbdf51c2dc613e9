#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what is missing
# (Debian packages, chdb-core and openapi-spec-validator, cargo-deny),
# checks format, lints and the dependencies' licences, builds every binary,
# runs every test.
# Integration tests start their own NATS, ClickHouse and Prometheus on
# free ports (tests/src/lib.rs), so nothing needs to be running first.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"

deploy/local/install.sh
echo "== format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== dependency licences and bans (deny.toml)"
if ! command -v cargo-deny >/dev/null; then
    cargo install cargo-deny --locked
fi
# Offline: the advisory database cannot be fetched here, so no advisories.
cargo deny --offline check --hide-inclusion-graph licenses bans
echo "== build"
cargo build --workspace --bins --locked
echo "== unit and integration tests"
cargo test --workspace --locked --no-fail-fast -- --test-threads=2
echo "== fuzz targets, 60 s each (issue 8)"
scripts/fuzz.sh 60
