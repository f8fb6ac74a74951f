#!/usr/bin/env bash
# Builds "the PyPI-built peer": llama.cpp's own tools from the source carried by
# the llama-cpp-python==0.3.36 sdist (sha256-checked by hearth's fixture fetch),
# natively for this CPU with AVX-512 on and AMX off (its AMX path dies with
# SIGILL here). The build lives in the cache, never in the repository.
# Prints the directory holding the binaries (llama-bench, llama-server,
# llama-quantize, llama-perplexity, llama-tokenize, llama-imatrix).
set -euo pipefail
cd "$(dirname "$0")/.."
cache=${HEARTH_CACHE:-$HOME/.cache/hearth}
peer=$cache/peer/llama.cpp-0.3.36
bin=$peer/build/bin
targets=(llama-bench llama-server llama-quantize llama-perplexity llama-tokenize llama-imatrix)

have_all() { for t in "${targets[@]}"; do [ -x "$bin/$t" ] || return 1; done; }
if have_all; then echo "$bin"; exit 0; fi

cargo run --release --quiet -p hearth-cli -- fetch-fixtures >&2
sdist=$cache/downloads/llama_cpp_python-0.3.36.tar.gz
if ! command -v cmake >/dev/null || ! command -v ninja >/dev/null; then
  echo "build-peer: installing cmake and ninja from PyPI" >&2
  python3 -m pip install --quiet --disable-pip-version-check cmake ninja
fi

if [ ! -f "$peer/src/CMakeLists.txt" ]; then
  rm -rf "$peer/src.tmp" && mkdir -p "$peer/src.tmp"
  tar -xzf "$sdist" -C "$peer/src.tmp" --strip-components=3 llama_cpp_python-0.3.36/vendor/llama.cpp
  rm -rf "$peer/src" && mv "$peer/src.tmp" "$peer/src"
fi

cmake -S "$peer/src" -B "$peer/build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON \
  -DGGML_AVX512=ON -DGGML_AVX512_VBMI=ON -DGGML_AVX512_VNNI=ON -DGGML_AVX512_BF16=ON \
  -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_OPENSSL=OFF >&2
nice -n 10 cmake --build "$peer/build" --target "${targets[@]}" -j "$(nproc)" >&2
have_all
echo "$bin"
