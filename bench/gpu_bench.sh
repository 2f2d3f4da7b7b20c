#!/usr/bin/env bash
# Rill's engines on a CUDA GPU against the peers a user would run there, in one run of under 10
# minutes, on a machine with no network (bench/gpu_prepare.sh makes .gpu/ beside it, once):
# - Rill's transformers engine (RILL_DEVICE=cuda, bfloat16) against `transformers serve
#   --continuous-batching --device cuda`;
# - Rill's llama.cpp engine with every layer offloaded against `llama-server -ngl 999`, both on one
#   CUDA build of llama.cpp made here (for this GPU's architecture only; FlashAttention kernels
#   left out to keep the build within minutes, for both alike);
# vLLM is not among them: its wheels alone are several times what can reach the machine.
# SmolLM2-135M-Instruct's shape with random weights (bench/random_model.py), Q8_0 for llama.cpp.
# Figures and logs go to $OUT (default /tmp/gpu-bench). Usage: bench/gpu_bench.sh [transformers] [llamacpp]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu-bench}
work=/tmp/rill-gpu
mkdir -p "$OUT" "$work"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1
[ -d /usr/local/cuda/bin ] && export PATH="/usr/local/cuda/bin:$PATH"
trap 'tail -n 60 /tmp/rill-bench-*/*.log > "$OUT/server-logs.txt" 2>/dev/null || true' EXIT
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"

python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$work/site" .gpu/wheels/*.whl
cp -a .gpu/llama_cpp "$work/site/llama_cpp"
export PYTHONPATH="$work/site:$PWD"

engines=${*:-transformers llamacpp}
levels=1,8,32
bench() {
  python3 bench/load_bench.py --gpu --gguf "$work/model.q8_0.gguf" --model-dir "$work/model" --levels $levels \
    --requests 1 --rounds 1 --cases load "$@"
}

python3 bench/random_model.py .gpu/model-src "$work/model" > "$OUT/model.log" 2>&1

if [[ $engines == *llamacpp* ]]; then  # built first, alone: a build beside a benchmark starves it of CPU
  tar -xzf .gpu/llama.cpp.tar.gz -C "$work"
  arch=$(python3 -c "import torch; print(''.join(map(str, torch.cuda.get_device_capability())))")
  started=$SECONDS
  cmake -S "$work/llama.cpp" -B "$work/build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DGGML_CUDA=ON \
    -DCMAKE_CUDA_ARCHITECTURES="$arch" -DGGML_CUDA_FA=OFF -DGGML_CUDA_NCCL=OFF -DBUILD_SHARED_LIBS=ON \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
    -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_BUILD_UI=OFF -DCMAKE_C_FLAGS=-U__AMX_INT8__ \
    -DCMAKE_CXX_FLAGS=-U__AMX_INT8__ > "$OUT/build.log" 2>&1  # no AMX, as the Makefile builds it
  cmake --build "$work/build" --target llama-server mtmd -j "$(nproc)" >> "$OUT/build.log" 2>&1
  echo "llama.cpp built with CUDA in $((SECONDS - started)) s" | tee -a "$OUT/build.log"
  mkdir -p "$work/site/llama_cpp/lib" && cp -a "$work"/build/bin/*.so* "$work/site/llama_cpp/lib/"
  PYTHONPATH="$work/llama.cpp/gguf-py:$PYTHONPATH" python3 "$work/llama.cpp/convert_hf_to_gguf.py" "$work/model" \
    --outtype q8_0 --outfile "$work/model.q8_0.gguf" >> "$OUT/model.log" 2>&1
fi
if [[ $engines == *transformers* ]]; then
  bench --only rill-transformers,transformers-serve 2>&1 | tee "$OUT/transformers.txt"
fi
if [[ $engines == *llamacpp* ]]; then
  bench --llama-server "$work/build/bin/llama-server" --only rill-llamacpp,llama-server 2>&1 | tee "$OUT/llamacpp.txt"
fi
