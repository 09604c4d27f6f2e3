# The README's two commands: `make demo` and `make test`. Each creates .venv and installs what it needs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# torch is pinned: this version's CPU wheel is on the build machines' disk; an unpinned torch
# pulls a multi-GB CUDA build.
TORCH := torch==2.13.0

.PHONY: demo test lint bench fuzz install install-dev clean

$(VENV)/.core: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e .
	touch $@

$(VENV)/.dev: $(VENV)/.core pyproject.toml
	$(PIP) install -q $(TORCH)
	$(PIP) install -q -e '.[dev,bench]'
	touch $@

# The sources byte-compiled once: an editable install writes no .pyc, and where
# PYTHONDONTWRITEBYTECODE is set nothing else does, so every command would compile the modules
# it imports afresh (~90 ms of a 0.4 s call on 95 small images). Redone when a source changes.
$(VENV)/.bytecode: $(VENV)/.core $(shell find src -name '*.py')
	$(PY) -m compileall -q src
	touch $@

install: $(VENV)/.core $(VENV)/.bytecode
install-dev: $(VENV)/.dev $(VENV)/.bytecode

demo: $(VENV)/.core $(VENV)/.bytecode
	$(PY) scripts/demo.py

test: $(VENV)/.dev $(VENV)/.bytecode
	$(PY) -m pytest -q -n 2 tests

# Fuzz targets (tests/test_fuzz_*.py, tests/*_fuzz.py): each keeps drawing examples for
# SECONDS seconds (tests/fuzz_budget.py); `make test` runs them once, deterministically.
SECONDS ?= 60
fuzz: $(VENV)/.dev
	IODFZ_FUZZ_SECONDS=$(SECONDS) $(PY) -m pytest -q -p no:xdist tests/test_fuzz_*.py tests/*_fuzz.py

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check src tests scripts
	$(VENV)/bin/ruff format --check src tests scripts

bench: $(VENV)/.dev $(VENV)/.bytecode
	$(PY) scripts/bench_zstd.py
	$(PY) scripts/bench_coder.py
	$(PY) scripts/bench_engine.py
	$(PY) scripts/bench_images.py --json bench-images.json --plot bench-images.png

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .ruff_cache .hypothesis
