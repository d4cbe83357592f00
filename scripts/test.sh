#!/usr/bin/env bash
# The whole test suite: lint, Rust unit tests, Python tests (unit, integration, browser).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
echo "== lint"
.venv/bin/ruff check python tests bench
cargo clippy --locked --all-targets --quiet -- -D warnings
echo "== cargo test"
cargo test --locked --quiet
echo "== pytest"
.venv/bin/python -m pytest "$@"
