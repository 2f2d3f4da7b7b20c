#!/usr/bin/env bash
# The peer for bench/load_bench.py: transformers serve, in its own environment (.venv-peer), with
# the same CPU build of torch as the app. Never installed into the app's environment.
set -euo pipefail
cd "$(dirname "$0")/.."
test -x .venv-peer/bin/python || python3 -m venv .venv-peer
.venv-peer/bin/pip install --quiet torch==2.13.0
.venv-peer/bin/pip install --quiet "transformers[serving]==5.23.0"
