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


def published_masr(paths: list[Path]) -> dict[str, dict[str, float]]:
    """mASR per table and model from published leaderboard CSVs, for `agreement`. Each
    table is labelled by its judge ('leaderboard_4031_gpt4o.csv' -> 'gpt4o'), or by its
    whole name after 'leaderboard_' when two tables share a judge (4031_sm, 4163_sm), so
    no table replaces another. Models are named as the registry names them, so a table
    that spells a model another way (Qwen-2.5-VL-7B) meets the others on it."""
    from holisafe_bench.registry import load_models

    by_name: dict[str, str] = {}
    for spec in load_models().values():
        for name in (spec.display_name, *spec.aliases):
            by_name[name] = spec.name
    judges = [judge_name_of(p) for p in paths]
    out: dict[str, dict[str, float]] = {}
    for path, judge in zip(paths, judges, strict=True):
        label = judge if judges.count(judge) == 1 else Path(path).stem.removeprefix("leaderboard_")
        if label in out:
            raise HolisafeError(f"{path}: given twice (as {label!r})")
        table = read_leaderboard_csv(path)
        out[label] = {by_name.get(m, m): values["mASR↓"] for m, values in table.items()}
    return out
