#!/usr/bin/env bash
# Runs every Keel test: installs the test dependencies (idempotently), builds the whole
# workspace once in the `ci` profile (optimized, with debug assertions and overflow checks
# on, so invariants are checked where the tests run), then runs all tests against that build.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-test-deps.sh
cargo build --profile ci --workspace --all-targets --locked
cargo test --profile ci --workspace --locked
