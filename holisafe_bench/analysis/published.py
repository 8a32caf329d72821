"""Published leaderboard CSVs (the paper's layout) as inputs to comparisons."""

from __future__ import annotations

import csv
from pathlib import Path

from holisafe_bench.errors import HolisafeError
from holisafe_bench.taxonomy import LEADERBOARD_COLUMNS


def read_leaderboard_csv(path: Path) -> dict[str, dict[str, float]]:
    """model name -> column -> value (percent), validated against the paper's header."""
    try:
        with Path(path).open(encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            missing = [c for c in LEADERBOARD_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise HolisafeError(f"{path}: not a leaderboard CSV (missing {missing})")
            table = {}
            for line, row in enumerate(reader, start=2):
                try:
                    table[row["Model"]] = {c: float(row[c]) for c in LEADERBOARD_COLUMNS[1:]}
                except (TypeError, ValueError) as exc:
                    raise HolisafeError(f"{path} line {line}: bad number ({exc})") from exc
    except OSError as exc:
        raise HolisafeError(f"{path}: cannot read ({exc})") from exc
    return table


def judge_name_of(path: Path) -> str:
    """'leaderboard_4031_gpt4o.csv' -> 'gpt4o'; otherwise the file stem."""
    stem = Path(path).stem
    return stem.rsplit("_", 1)[-1] if stem.startswith("leaderboard_") else stem
