"""A non-editable wheel ships every model and judge declaration, under the package only."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_install_lists_every_declaration_and_adds_no_top_level_names(tmp_path):
    dist = tmp_path / "dist"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(dist),
            str(ROOT),
        ],
        check=True,
    )
    wheel = next(dist.glob("holisafe_bench-*.whl"))
    env_dir = tmp_path / "fresh"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    fresh_site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "-q",
            "--target",
            fresh_site,
            str(wheel),
        ],
        check=True,
    )
    # Dependencies come from the dev environment; .pth files on PYTHONPATH are not
    # processed, so the editable checkout cannot leak in.
    env = {**os.environ, "PYTHONPATH": sysconfig.get_paths()["purelib"]}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(python), *args], capture_output=True, text=True, cwd=tmp_path, env=env
        )

    where = run("-c", "import holisafe_bench; print(holisafe_bench.__file__)")
    assert where.stdout.strip().startswith(fresh_site), where.stdout + where.stderr
    models = run("-m", "holisafe_bench", "models", "--json")
    assert models.returncode == 0, models.stderr
    assert len(json.loads(models.stdout)) == len(list((ROOT / "model_adapters").glob("*.toml")))
    judges = run("-m", "holisafe_bench", "judges", "--json")
    assert len(json.loads(judges.stdout)) == len(list((ROOT / "judges").glob("*.toml")))
    for name in ("judges", "model_adapters"):
        probe = run("-c", f"import {name}")
        assert probe.returncode != 0 and "ModuleNotFoundError" in probe.stderr, name
