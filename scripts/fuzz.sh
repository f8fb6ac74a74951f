#!/usr/bin/env bash
# Time-boxed cargo-fuzz pass over every fuzz target: scripts/fuzz.sh [SECONDS]
# (default 60 per target). Needs `cargo install cargo-fuzz`. The one Rust
# toolchain here is stable, so RUSTC_BOOTSTRAP lets cargo-fuzz use the
# sanitizer flags. Seeds: small valid GGUF files written by the test suite's
# writer are not needed; libFuzzer starts from an empty corpus plus the
# checked-in seeds in fuzz/seeds/<target>/.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds=${1:-60}
export RUSTC_BOOTSTRAP=1
for target in $(cargo fuzz list); do
  corpus=corpus/$target
  mkdir -p "$corpus"
  seeds=()
  [ -d "seeds/$target" ] && seeds=("seeds/$target")
  echo "fuzz: $target for ${seconds}s" >&2
  cargo fuzz run "$target" "$corpus" "${seeds[@]}" -- -max_total_time="$seconds" -max_len=65536 -rss_limit_mb=2048
done
