#!/usr/bin/env bash
# Tokenizer speed, hearth vs llama.cpp (the PyPI-built peer, scripts/build-peer.sh),
# side by side on the same 1 MiB of mixed text and the same vocabulary.
#   scripts/bench-tokenize.sh [MODEL.gguf] [RUNS]
# The text is built deterministically from distinct files of the
# llama-cpp-python 0.3.36 sdist (no repetition): llama.cpp's tokenizer test
# inputs (many scripts and languages), the GPL-3 text of shared/reference,
# llama.cpp's Markdown docs and C++ sources, cut to 1 MiB. Both tools
# load only the vocabulary; each tool's time on an empty input is subtracted, so
# the figure is tokenization alone. Prints MB/s for each and the ratio.
set -euo pipefail
cd "$(dirname "$0")/.."
cache=${HEARTH_CACHE:-$HOME/.cache/hearth}
bin=$(scripts/build-peer.sh)
cargo build --release --quiet -p hearth-cli
hearth=target/release/hearth
model=${1:-$cache/models/gemma-3-270m-q4_k_m.gguf}
runs=${2:-5}
src=$cache/peer/llama.cpp-0.3.36/src
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Distinct files only (no repetition, which would flatter a word cache):
# multilingual test inputs and prose first, then Markdown docs and C++ sources.
corpus=$work/mixed.txt
{
  cat "$src"/models/ggml-vocab-*.gguf.inp
  cat ../shared/reference/gemma3-270m/perplexity-text.txt
  find "$src/docs" -name '*.md' | sort | xargs cat
  find "$src/src" -name '*.cpp' | sort | xargs cat
} > "$corpus"
[ "$(stat -c %s "$corpus")" -ge 1048576 ] || { echo "corpus under 1 MiB" >&2; exit 1; }
head -c 1048576 "$corpus" > "$work/1mib.txt"
# Cut at a UTF-8 boundary: drop a trailing partial character.
python3 -c "import sys;b=open(sys.argv[1],'rb').read();open(sys.argv[1],'wb').write(b.decode('utf-8','ignore').encode())" "$work/1mib.txt"
: > "$work/empty.txt"
bytes=$(stat -c %s "$work/1mib.txt")

now() { date +%s.%N; }
time_cmd() { local t0 t1; t0=$(now); "$@" > /dev/null 2>&1; t1=$(now); echo "$t1 - $t0" | bc -l; }
best() { sort -g | head -1; }

declare -a h_full h_empty l_full l_empty
for _ in $(seq "$runs"); do
  h_full+=("$(time_cmd "$hearth" tokenize -m "$model" --no-special < "$work/1mib.txt")")
  l_full+=("$(time_cmd "$bin/llama-tokenize" -m "$model" -f "$work/1mib.txt" --ids --no-bos --log-disable)")
  h_empty+=("$(time_cmd "$hearth" tokenize -m "$model" --no-special < "$work/empty.txt")")
  l_empty+=("$(time_cmd "$bin/llama-tokenize" -m "$model" -f "$work/empty.txt" --ids --no-bos --log-disable)")
done
hf=$(printf '%s\n' "${h_full[@]}" | best); he=$(printf '%s\n' "${h_empty[@]}" | best)
lf=$(printf '%s\n' "${l_full[@]}" | best); le=$(printf '%s\n' "${l_empty[@]}" | best)
h=$(echo "$hf - $he" | bc -l); l=$(echo "$lf - $le" | bc -l)
printf 'text: %d bytes, model: %s, best of %d runs\n' "$bytes" "$(basename "$model")" "$runs"
printf 'hearth:    %.3f s  %.1f MB/s\n' "$h" "$(echo "$bytes / $h / 1000000" | bc -l)"
printf 'llama.cpp: %.3f s  %.1f MB/s\n' "$l" "$(echo "$bytes / $l / 1000000" | bc -l)"
printf 'ratio (hearth speed / llama.cpp speed): %.2fx\n' "$(echo "$l / $h" | bc -l)"
