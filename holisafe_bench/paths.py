"""The results layout of DESIGN.md, in one place."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from pathlib import Path, PureWindowsPath

from holisafe_bench.errors import HolisafeError

DEFAULT_RESULTS_ROOT = Path("results")


def check_model_name(model: str) -> str:
    """A model name becomes exactly one folder under the results root: anything that could
    name another place (a separator, '.', '..', a drive, a control character) is refused, so
    no command reads or writes outside the results folder whatever `--model` says."""
    problem = _model_name_problem(model)
    if problem:
        raise HolisafeError(
            f"model name {model!r}: {problem}; a model name is the name of one folder "
            "under the results root, not a path: choose another --model"
        )
    return model


def _model_name_problem(model: str) -> str | None:
    if not model.strip():
        return "empty"
    if "/" in model or "\\" in model:
        return "contains a path separator"
    if model in (".", ".."):
        return "names a folder, not a model"
    if any(unicodedata.category(ch) == "Cc" for ch in model):
        return "contains a control character"
    if Path(model).is_absolute() or PureWindowsPath(model).drive:
        return "is an absolute path or names a drive"
    return None


@dataclass(frozen=True)
class ResultsLayout:
    root: Path = DEFAULT_RESULTS_ROOT

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))  # accept str from callers

    def model_dir(self, model: str) -> Path:
        # Every per-model path below goes through here, so the check covers every command.
        return self.root / check_model_name(model)

    def responses(self, model: str) -> Path:
        return self.model_dir(model) / "responses.jsonl"

    def response_fingerprints(self, model: str) -> Path:
        """The fingerprint sidecar of `responses` (see holisafe_bench.fingerprints)."""
        return self.model_dir(model) / "responses.fingerprints"

    def run_manifest(self, model: str) -> Path:
        return self.model_dir(model) / "run.json"

    def shard_dir(self, model: str, index: int, count: int) -> Path:
        """Where one data-parallel shard of a run writes, until `merge` combines them."""
        return self.model_dir(model) / "shards" / f"{index}-of-{count}"

    def shard_dirs(self, model: str) -> list[Path]:
        return sorted((self.model_dir(model) / "shards").glob("*-of-*"))

    def verdicts(self, model: str, judge: str) -> Path:
        return self.model_dir(model) / "verdicts" / f"{judge}.jsonl"

    def judge_manifest(self, model: str, judge: str) -> Path:
        return self.model_dir(model) / "verdicts" / f"{judge}.json"

    def batch_ledger(self, model: str, judge: str) -> Path:
        """Vendor batch jobs submitted for these verdicts (so a re-run polls, not re-pays)."""
        return self.model_dir(model) / "batches" / f"{judge}.jsonl"

    def guard_dir(self, guard: str) -> Path:
        return self.model_dir(guard) / "guard"

    def guard_verdicts(self, guard: str, protocol: str) -> Path:
        return self.model_dir(guard) / "guard" / f"{protocol}.jsonl"

    def guard_manifest(self, guard: str, protocol: str) -> Path:
        return self.model_dir(guard) / "guard" / f"{protocol}.json"

    def judge_cache(self) -> Path:
        return self.root / ".cache" / "judge_cache.sqlite"

    def models_with_responses(self) -> list[str]:
        if not self.root.exists():
            return []
        return sorted(p.parent.name for p in self.root.glob("*/responses.jsonl"))

    def models_with_verdicts(self, judge: str) -> list[str]:
        if not self.root.exists():
            return []
        return sorted(p.parent.parent.name for p in self.root.glob(f"*/verdicts/{judge}.jsonl"))

    def judges_with_verdicts(self) -> list[str]:
        return sorted({p.stem for p in self.root.glob("*/verdicts/*.jsonl")})

    def models_with_any_verdicts(self) -> list[str]:
        return sorted({p.parent.parent.name for p in self.root.glob("*/verdicts/*.jsonl")})
