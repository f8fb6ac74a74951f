#!/usr/bin/env bash
# Side by side: llama.cpp's llama-bench (the PyPI-built peer, scripts/build-peer.sh) and
# `hearth bench`, on the same model files, threads and tests, run alternately (round by
# round, so both see the same machine state), then the ratios hearth / llama.cpp.
#
#   scripts/bench-vs-llamacpp.sh [-m MODEL.gguf]... [-p 512] [-n 128] [-t 2] [-r 3] [--rounds 2]
#                                [--mmap 1]
#
# --mmap 0 makes both read the model into memory instead of mapping it (this llama-bench's
# `--load-mode none`; hearth's copy is backed by transparent huge pages).
# Defaults: the default model (Gemma 3 270M Q4_K_M), -p 512 -n 128, all cores, -r 3, 2 rounds.
# Each figure is the best round's mean t/s (rounds guard against a noisy neighbour).
# Prints a Markdown table; the measured read bandwidth and the decode roofline
# (model bytes / bandwidth) are printed by `hearth bench -v` on stderr.
set -euo pipefail
cd "$(dirname "$0")/.."

models=() p=512 n=128 t=$(nproc) r=3 rounds=2 mmap=1
while [ $# -gt 0 ]; do
  case "$1" in
    -m) models+=("$2"); shift 2 ;;
    -p) p=$2; shift 2 ;;
    -n) n=$2; shift 2 ;;
    -t) t=$2; shift 2 ;;
    -r) r=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --mmap) mmap=$2; shift 2 ;;
    *) echo "bench-vs-llamacpp: unknown argument $1" >&2; exit 2 ;;
  esac
done

llama_load=()
if [ "$mmap" = 0 ]; then llama_load=(--load-mode none); fi

bin=$(scripts/build-peer.sh)
cargo build --release --quiet -p hearth-cli
hearth=target/release/hearth
if [ ${#models[@]} -eq 0 ]; then
  $hearth fetch-fixtures >/dev/null
  models=("${HEARTH_CACHE:-$HOME/.cache/hearth}/models/gemma-3-270m-q4_k_m.gguf")
fi

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for m in "${models[@]}"; do
  for round in $(seq "$rounds"); do
    "$bin/llama-bench" -m "$m" -p "$p" -n "$n" -t "$t" -r "$r" "${llama_load[@]}" -o json \
      >"$out/llama-$(basename "$m")-$round.json" 2>/dev/null
    $hearth bench -m "$m" -p "$p" -n "$n" -t "$t" -r "$r" --mmap "$mmap" -o json \
      >"$out/hearth-$(basename "$m")-$round.json"
  done
done

python3 - "$out" "$t" "${models[@]}" <<'EOF'
import glob, json, os, sys
out, threads, models = sys.argv[1], sys.argv[2], sys.argv[3:]
def best(tool, model):
    rows = {}
    for f in glob.glob(f"{out}/{tool}-{os.path.basename(model)}-*.json"):
        for row in json.load(open(f)):
            key = (row["n_prompt"], row["n_gen"])
            if key not in rows or row["avg_ts"] > rows[key]["avg_ts"]:
                rows[key] = row
    return rows
print(f"| model | test | threads | hearth t/s | llama.cpp t/s | hearth / llama.cpp |")
print(f"|---|---|---:|---:|---:|---:|")
for m in models:
    h, l = best("hearth", m), best("llama", m)
    for key in sorted(h, key=lambda k: (k[1] > 0, k)):
        if key not in l:
            continue
        name = f"pp{key[0]}" if key[1] == 0 else f"tg{key[1]}"
        a, b = h[key], l[key]
        print(f"| {os.path.basename(m)} | {name} | {threads} | {a['avg_ts']:.2f} ± {a['stddev_ts']:.2f}"
              f" | {b['avg_ts']:.2f} ± {b['stddev_ts']:.2f} | {a['avg_ts'] / b['avg_ts']:.2f}x |")
EOF
