#!/usr/bin/env bash
# The whole test suite: lint, Rust unit tests, Python tests (unit, integration, browser).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
echo "== lint"
.venv/bin/ruff check python tests bench
.venv/bin/ruff format --check --quiet python tests bench
.venv/bin/mypy python/clusterodm
cargo clippy --locked --all-targets --quiet -- -D warnings
echo "== cargo test"
cargo test --locked --quiet
echo "== pytest"
.venv/bin/python -m pytest "$@"
