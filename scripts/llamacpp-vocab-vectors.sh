#!/usr/bin/env bash
# llama.cpp's own tokenizer test vectors (models/ggml-vocab-*.gguf + .gguf.inp/.gguf.out), as shipped
# in the llama-cpp-python sdist on PyPI. Downloads the pinned sdist with pip (once), extracts only
# those files, and prints the directory that holds them, for the engine's test:
#
#   SPECSWEEP_VOCAB_DIR="$(scripts/llamacpp-vocab-vectors.sh)" \
#     cargo test -p specsweep-engine llama_cpp_vocab_vectors -- --nocapture
#
# Usage: scripts/llamacpp-vocab-vectors.sh [DEST]   (default DEST: /var/tmp/specsweep-llamacpp)
# Nothing is written inside the repository; the vectors are never committed.
set -euo pipefail
version=0.3.36
dest="${1:-/var/tmp/specsweep-llamacpp}"
root="llama_cpp_python-$version"
models="$dest/$root/vendor/llama.cpp/models"
if [ ! -f "$models/ggml-vocab-qwen2.gguf.out" ]; then
  mkdir -p "$dest"
  if [ ! -f "$dest/$root.tar.gz" ]; then
    python3 -m pip download --no-deps --no-binary llama-cpp-python --disable-pip-version-check \
      -d "$dest" "llama-cpp-python==$version" >&2
  fi
  tar -xzf "$dest/$root.tar.gz" -C "$dest" --wildcards "$root/vendor/llama.cpp/models/ggml-vocab-*" >&2
fi
echo "$models"
