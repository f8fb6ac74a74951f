#!/usr/bin/env bash
# Builds "the PyPI-built peer": llama.cpp's own tools from the source carried by
# the llama-cpp-python==0.3.36 sdist (sha256-checked by hearth's fixture fetch),
# for this CPU: every x86 extension the CPU reports (AVX2/FMA/F16C/BMI2 and,
# where present, AVX-512 F/BW/VL/VNNI/VBMI/BF16) is enabled, AMX never (its
# AMX path dies with SIGILL on machines that have AMX). The flags come from
# /proc/cpuinfo rather than -march=native so AMX stays off. The build lives in
# the cache, never in the repository.
# Prints the directory holding the binaries (llama-bench, llama-server,
# llama-quantize, llama-perplexity, llama-tokenize, llama-imatrix).
set -euo pipefail
cd "$(dirname "$0")/.."
cache=${HEARTH_CACHE:-$HOME/.cache/hearth}
peer=$cache/peer/llama.cpp-0.3.36
bin=$peer/build/bin
targets=(llama-bench llama-server llama-quantize llama-perplexity llama-tokenize llama-imatrix)

have_all() { for t in "${targets[@]}"; do [ -x "$bin/$t" ] || return 1; done; }
# A build from another machine may use instructions this CPU lacks: check it runs.
if have_all && "$bin/llama-tokenize" --version >/dev/null 2>&1 \
   && "$bin/llama-bench" --list-devices >/dev/null 2>&1; then echo "$bin"; exit 0; fi

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

cpu_flags=" $(grep -m1 '^flags' /proc/cpuinfo | cut -d: -f2) "
has() { case "$cpu_flags" in *" $1 "*) echo ON ;; *) echo OFF ;; esac; }
avx512=OFF
[ "$(has avx512f)" = ON ] && [ "$(has avx512bw)" = ON ] && [ "$(has avx512vl)" = ON ] && avx512=ON
isa=(-DGGML_NATIVE=OFF -DGGML_AVX="$(has avx)" -DGGML_AVX2="$(has avx2)" -DGGML_FMA="$(has fma)"
  -DGGML_F16C="$(has f16c)" -DGGML_BMI2="$(has bmi2)" -DGGML_AVX512="$avx512"
  -DGGML_AVX512_VBMI="$(has avx512_vbmi)" -DGGML_AVX512_VNNI="$(has avx512_vnni)"
  -DGGML_AVX512_BF16="$(has avx512_bf16)" -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF)
echo "build-peer: ${isa[*]}" >&2
cmake -S "$peer/src" -B "$peer/build" -G Ninja -DCMAKE_BUILD_TYPE=Release "${isa[@]}" \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_OPENSSL=OFF >&2
nice -n 10 cmake --build "$peer/build" --target "${targets[@]}" -j "$(nproc)" >&2
have_all
echo "$bin"
