# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
STAMP := $(VENV)/.installed
# This machine's pip config names local indexes that lack most packages: drop that noise.
QUIET_PIP_NOISE := 2>&1 | { grep -v "^WARNING: Location '" || true; }

.PHONY: install demo test lint format test-vllm browser-deps clean

# pip takes the CPU build of torch (an unpinned torch would pull a multi-GB CUDA build, and
# uv does not see the local wheel); uv then installs everything else in parallel, listing
# each package as it goes.
$(STAMP): pyproject.toml
	@echo "[install] creating $(VENV) with $(PYTHON)"
	$(PYTHON) -m venv $(VENV)
	@echo "[install] torch==2.13.0 (CPU build) and uv, with pip"
	$(PY) -m pip install --quiet --disable-pip-version-check "torch==2.13.0" uv $(QUIET_PIP_NOISE)
	@echo "[install] holisafe-bench (editable) with its [hf,dev] extras, with uv"
	$(UV) pip install --python $(PY) -e ".[hf,dev]"
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

# The report's browser test needs Debian's Chromium. As root, this installs that one
# package (and what it depends on), saying so first; as another user it only says how, and
# the browser test is then reported as not run.
browser-deps:
	@if command -v chromium >/dev/null 2>&1; then \
		echo "[browser-deps] chromium found: $$(command -v chromium)"; \
	elif [ "$$(id -u)" = 0 ]; then \
		echo "[browser-deps] installing Debian's chromium for the report's browser test: apt-get update && apt-get install --no-install-recommends chromium"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; \
	else \
		echo "[browser-deps] chromium is missing and this is not root: the browser test will not run."; \
		echo "[browser-deps] to run it: sudo apt-get install --no-install-recommends chromium"; \
	fi

# The Ray tests start a cluster, which listens on the machine's address: they run in a
# private network namespace with only loopback (as root, or as a user namespace where the
# kernel allows one); with neither they are skipped, saying why.
test: lint browser-deps
	$(PY) -m pytest -q -m "not ray"
	@if [ "$$(id -u)" = 0 ] && unshare -n true 2>/dev/null; then \
		unshare -n sh -c 'ip link set lo up && exec $(PY) -m pytest -q -m ray'; \
	elif unshare -rn true 2>/dev/null; then \
		unshare -rn sh -c 'ip link set lo up && exec $(PY) -m pytest -q -m ray'; \
	else \
		echo "[test] no private network namespace: the Ray tests are skipped"; \
		$(PY) -m pytest -q -m ray; \
	fi

# vLLM on CPU needs its own venv (torch 2.14.1); see tests_vllm/README.md.
test-vllm:
	bash tests_vllm/run.sh

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache
