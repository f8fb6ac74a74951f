#!/usr/bin/env bash
# The whole test suite: formatting, lints, fixtures, all tests, and a short
# time-boxed fuzz pass when cargo-fuzz is installed (HEARTH_FUZZ_SECONDS,
# default 20 per target; 0 skips it).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! python3 -c "import gguf, numpy" 2>/dev/null; then
  echo "test.sh: installing the Python reference packages (scripts/requirements.txt)" >&2
  python3 -m pip install --quiet --disable-pip-version-check -r scripts/requirements.txt
fi

cargo fmt --all --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
scripts/fetch-fixtures.sh
cargo test --workspace --release

fuzz_seconds=${HEARTH_FUZZ_SECONDS:-20}
if [ "$fuzz_seconds" != 0 ] && cargo fuzz --version >/dev/null 2>&1; then
  scripts/fuzz.sh "$fuzz_seconds"
else
  echo "test.sh: skipping the fuzz pass (cargo-fuzz not installed or HEARTH_FUZZ_SECONDS=0)" >&2
fi
