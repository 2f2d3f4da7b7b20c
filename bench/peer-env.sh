#!/usr/bin/env bash
# The peers for bench/load_bench.py, each in the benchmark's own environment, never the app's:
# - .venv-peer: `transformers serve` (same CPU build of torch as the app) and llama-cpp-python's
#   OpenAI-compatible server, same llama-cpp-python version as the app;
# - .peer/llama-server: llama.cpp's own server, built from the llama.cpp source inside the
#   llama-cpp-python source package (about 5 minutes on 2 cores, once).
# PEER_CMAKE_ARGS adds CMake options to both llama.cpp builds, e.g. AVX2 code paths only on an
# AVX512 machine: "-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON".
set -euo pipefail
cd "$(dirname "$0")/.."
LLAMA=$(grep '^llama-cpp-python==' requirements.txt)
test -x .venv-peer/bin/python || python3 -m venv .venv-peer
.venv-peer/bin/pip install --quiet torch==2.13.0
.venv-peer/bin/pip install --quiet "transformers[serving]==5.23.0"
CMAKE_ARGS="-DLLAVA_BUILD=OFF ${PEER_CMAKE_ARGS:-}" .venv-peer/bin/pip install --quiet --no-cache-dir "${LLAMA/==/[server]==}"
if [ ! -x .peer/llama-server ]; then
  src=$(mktemp -d)
  .venv-peer/bin/pip download --quiet --no-deps --no-binary :all: -d "$src" "$LLAMA"
  tar -xzf "$src"/*.tar.gz -C "$src"
  cmake -S "$src"/llama_cpp_python-*/vendor/llama.cpp -B "$src/build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF ${PEER_CMAKE_ARGS:-}
  cmake --build "$src/build" --target llama-server -j "$(nproc)"
  mkdir -p .peer
  cp -a "$src"/build/bin/llama-server "$src"/build/bin/*.so* .peer/ 2>/dev/null || cp -a "$src"/build/bin/llama-server .peer/
  find "$src/build" -name "*.so*" -exec cp -a {} .peer/ \;
  rm -rf "$src"
fi
echo "peers ready: .venv-peer/bin/transformers, .venv-peer (llama_cpp.server), .peer/llama-server"
