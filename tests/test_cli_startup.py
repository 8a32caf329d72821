"""`holisafe-bench --help` imports no heavy package."""

from __future__ import annotations

import subprocess
import sys

HEAVY = (
    "torch",
    "transformers",
    "vllm",
    "openai",
    "anthropic",
    "google.genai",
    "pandas",
    "scipy",
    "matplotlib",
    "pyarrow",
    "PIL",
    "ray",
)


def test_help_imports_nothing_heavy():
    code = (
        "import sys\n"
        "from holisafe_bench.cli.main import app\n"
        "try:\n    app(['--help'])\nexcept SystemExit:\n    pass\n"
        f"print([m for m in {HEAVY!r} if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"
