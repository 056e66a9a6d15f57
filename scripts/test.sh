#!/usr/bin/env bash
# The one test command (README and CI): formatting, lints, the room check,
# then every test.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --check
cargo clippy --all-targets -- -D warnings
scripts/check-rooms.sh
cargo test --all-targets
