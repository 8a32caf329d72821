# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo test lint format test-vllm browser-deps clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# The CPU build of torch; an unpinned torch would pull a multi-GB CUDA build.
	$(PY) -m pip install --quiet "torch==2.13.0"
	$(PY) -m pip install --quiet -e ".[hf,dev]"
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(VENV)/bin/holisafe-bench demo

lint: install
	$(PY) -m ruff check holisafe_bench tests tests_vllm benchmarks
	$(PY) -m ruff format --check holisafe_bench tests tests_vllm benchmarks

format: install
	$(PY) -m ruff format holisafe_bench tests tests_vllm benchmarks
	$(PY) -m ruff check --fix holisafe_bench tests tests_vllm benchmarks

# The report's browser test needs Debian's Chromium (CI runs as root on a fresh machine).
browser-deps:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq chromium; }

test: lint browser-deps
	$(PY) -m pytest -q

# vLLM on CPU needs its own venv (torch 2.14.1); see tests_vllm/README.md.
test-vllm:
	bash tests_vllm/run.sh

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache
