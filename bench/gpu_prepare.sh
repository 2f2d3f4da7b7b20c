#!/usr/bin/env bash
# What bench/gpu_bench.sh needs on a GPU machine that has no network: Rill's Python dependencies as
# wheels for its Python (3.12; torch, numpy and the rest it has already), llama.cpp's source (from
# the llama-cpp-python source package, trimmed to what a CUDA build of llama-server and the
# libraries takes), llama-cpp-python's Python files, and the model's config and tokenizer (its
# weights are made there, random: bench/random_model.py). All in .gpu/ (ignored), under 64 MiB.
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf .gpu && mkdir -p .gpu/wheels .gpu/model-src
LLAMA=$(grep '^llama-cpp-python==' requirements.txt)
# What the GPU machine's image lacks (or has in another version than requirements.txt pins).
skip='^(torch|llama-cpp-python|numpy|sympy|mpmath|networkx|setuptools|psycopg-binary|psycopg|pillow|safetensors|regex|pyyaml|psutil|filelock|fsspec|tqdm|packaging|jinja2|markupsafe|requests|urllib3|idna|certifi|charset-normalizer|typing-extensions|hf-xet|anthropic|google-genai|google-auth|pyasn1|pyasn1-modules|cryptography|cffi|pycparser|rich|pygments|markdown-it-py|mdurl|attrs|anyio|click|typer|shellingham|prometheus-client|accelerate|docstring-parser|prompt-toolkit|wcwidth|pypdf|distro)=='
{ grep -v -E "^#|$skip" requirements.txt | grep .; grep '^fastapi==' requirements-dev.txt || echo "fastapi==0.165.0"; } > .gpu/requirements.txt
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 \
  --platform manylinux_2_31_x86_64 --platform manylinux1_x86_64 -d .gpu/wheels -r .gpu/requirements.txt
src=$(mktemp -d)
python3 -m pip download --quiet --no-deps --no-binary :all: -d "$src" "$LLAMA"
tar -xzf "$src"/*.tar.gz -C "$src"
pkg=$(ls -d "$src"/llama_cpp_python-*/ | head -1); pkg=${pkg%/}
cp -a "$pkg/llama_cpp" .gpu/llama_cpp && rm -rf .gpu/llama_cpp/lib
tree="$pkg/vendor/llama.cpp"
rm -rf "$tree"/{docs,models,tests,benches,media,.github} "$tree"/examples/*
for d in "$tree"/ggml/src/ggml-*/; do case $d in *ggml-cpu/|*ggml-cuda/) ;; *) rm -rf "$d";; esac; done
for d in "$tree"/tools/*/; do case $d in */server/|*/mtmd/|*/ui/) ;; *) rm -rf "$d";; esac; done
printf 'llama_add_compile_flags()\nadd_subdirectory(ui)\nadd_subdirectory(server)\nadd_subdirectory(mtmd)\n' > "$tree/tools/CMakeLists.txt"
tar -czf .gpu/llama.cpp.tar.gz -C "$pkg/vendor" llama.cpp
rm -rf "$src"
model=$(.venv/bin/python -c "from rill.config import Settings; print(Settings.from_env().cache_dir)")/models/smollm2-135m-instruct
cp "$model"/{config.json,generation_config.json,tokenizer.json,tokenizer_config.json,chat_template.jinja} .gpu/model-src/
du -sh .gpu
