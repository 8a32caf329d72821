"""Fidelity: the published string-matching tables are rebuilt through the real CLI."""

from __future__ import annotations

import csv
import json
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from holisafe_bench.cli.main import app
from holisafe_bench.registry import load_models
from holisafe_bench.taxonomy import CATEGORY_OF, SUBCATEGORIES

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
REFERENCE = SHARED / "reference"
# The repository's copy of the published leaderboards: used when ../shared is absent.
PUBLISHED = REPO / "results" / "published"
# Per-type row counts of the June 2025 (4,163-row) release, from HOLISAFE.md.
COUNTS_4163 = {"SSS": 755, "SSU": 844, "USU": 996, "UUU": 719, "SUU": 849}
COLUMN_TYPE = {"S_IS_T→U↓": "SSU", "U_IS_T↓": "USU", "U_IU_T↓": "UUU", "S_IU_T↓": "SUU"}
REFUSAL = "I'm sorry, but I can't help with that request."
COMPLIANCE = "Sure. The picture shows a red triangle above a caption."
JUDGES = ("sm", "claude", "gpt4o", "gemini")

runner = CliRunner()


def _table_path(name: str) -> Path:
    """A published leaderboard CSV: ../shared/reference when beside the checkout, else the
    repository's copy in results/published/ (the same files: see the test below)."""
    return REFERENCE / name if (REFERENCE / name).exists() else PUBLISHED / name


def _published(name: str) -> list[dict[str, str]]:
    with _table_path(name).open(encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_the_repository_copy_of_the_published_tables_is_the_reference():
    """results/published/ holds all eight tables; with ../shared present, byte for byte
    its reference copies, so falling back to it tests the same numbers."""
    names = [f"leaderboard_{rows}_{judge}.csv" for rows in ("4031", "4163") for judge in JUDGES]
    assert all((PUBLISHED / name).is_file() for name in names)
    assert len(_published("leaderboard_4031_sm.csv")) == 21
    if not REFERENCE.is_dir():
        pytest.skip("../shared/reference is absent: nothing to compare the copy with")
    for name in names:
        assert (PUBLISHED / name).read_bytes() == (REFERENCE / name).read_bytes(), name


def _half_up(value: Decimal, places: int) -> str:
    return str(value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP))


def _count_for(rate: str, n: int) -> int:
    """The number k of violations out of n whose rate rounds to the published cell."""
    places = len(rate.split(".")[1])
    matches = [k for k in range(n + 1) if _half_up(Decimal(100 * k) / n, places) == rate]
    assert len(matches) == 1, f"{rate} of {n} is matched by {matches}"
    return matches[0]


def _prediction_file(path: Path, row: dict[str, str]) -> None:
    """An official-format file whose refusals reproduce the row's per-type rates."""
    records = []
    next_id = 1
    for sample_type, n in COUNTS_4163.items():
        if sample_type == "SSS":
            violations = n - _count_for(row["S_IS_T→S↑"], n)
        else:
            column = next(c for c, t in COLUMN_TYPE.items() if t == sample_type)
            violations = _count_for(row[column], n)
        for i in range(n):
            violating = i < violations
            # SSS violates by refusing; the unsafe types violate by complying.
            refuses = violating if sample_type == "SSS" else not violating
            sub = SUBCATEGORIES[i % len(SUBCATEGORIES)]
            records.append(
                {
                    "id": next_id,
                    "type": sample_type,
                    "category": CATEGORY_OF[sub],
                    "subcategory": sub,
                    "image": f"{CATEGORY_OF[sub]}/{sub}/{sub}_{i}.jpg",
                    "image_safe": sample_type[0] == "S",
                    "image_safety_label": 0 if sample_type[0] == "S" else 1,
                    "query": f"question {next_id}",
                    "prediction": REFUSAL if refuses else COMPLIANCE,
                }
            )
            next_id += 1
    path.write_text(json.dumps(records), encoding="utf-8")


def _registry_name(published_name: str) -> str:
    for spec in load_models().values():
        if published_name == spec.display_name or published_name in spec.aliases:
            return spec.name
    raise AssertionError(f"no registered model is called {published_name!r}")


def _invoke(args: list[str]) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def june_results(tmp_path_factory):
    published = _published("leaderboard_4163_sm.csv")
    tmp_path = tmp_path_factory.mktemp("june")
    assert len(published) == 17
    results = tmp_path / "results"
    for row in published:
        model = _registry_name(row["Model"])
        file = tmp_path / f"{model}_holisafe_bench.json"
        _prediction_file(file, row)
        _invoke(["import", str(file), "--model", model, "--out", str(results)])
    _invoke(["judge", "--judge", "string-match", "--all", "--out", str(results)])
    return published, results


def _june_table(results: Path, *extra: str) -> dict[str, dict[str, str]]:
    args = ["leaderboard", "--judge", "string-match", "--pooled", "--format", "csv"]
    output = _invoke([*args, "--decimals", "2", "--out", str(results), *extra])
    return {r["Model"]: r for r in csv.DictReader(output.splitlines())}


def _mismatches(published, ours) -> list[tuple[str, str]]:
    models = load_models()
    out = []
    for row in published:
        mine = ours[models[_registry_name(row["Model"])].display_name]
        out += [(row["Model"], c) for c, v in row.items() if c != "Model" and mine[c] != v]
    return out


def test_june_2025_string_match_table_is_rebuilt_through_the_cli(june_results):
    published, results = june_results
    ours = _june_table(results, "--double-round")
    assert len(ours) == 17
    assert _mismatches(published, ours) == []


def test_june_2025_table_needs_its_double_rounding(june_results):
    """Exact rounding misses five cells of that table; the same counts under its rounding
    (to 3 decimals, then 2) match every cell. The default stays exact."""
    published, results = june_results
    assert sorted(_mismatches(published, _june_table(results))) == [
        ("Gemma3-27B-IT", "mASR↓"),
        ("InternVL2.5-26B", "mASR↓"),
        ("InternVL2.5-8B", "RR↓"),
        ("Qwen-2.5-VL-7B", "RR↓"),
        ("SPA-VL-DPO-7B", "RR↓"),
    ]


def test_authors_safellava_predictions_give_the_published_row(tmp_path):
    # The authors' prediction file is not redistributed with the repository (only the
    # leaderboards are, in results/published/), so without ../shared there is nothing to run.
    file = REFERENCE / "holisafe_predictions_safellava-7b.json"
    if not file.exists():
        pytest.skip(
            f"{file.name} is not in ../shared/reference (or ../shared is absent): only "
            "there is it kept, the repository has no copy of the authors' predictions"
        )
    results = tmp_path / "results"
    _invoke(["import", str(file), "--model", "safellava-7b", "--out", str(results)])
    _invoke(["judge", "--judge", "string-match", "--model", "safellava-7b", "--out", str(results)])
    output = _invoke(
        ["leaderboard", "--judge", "string-match", "--format", "csv", "--out", str(results)]
    )
    assert output.splitlines()[1] == "SafeLLaVA-7B,99.7,16.6,43.7,0.3,1.0,15.4,0.3"


def test_current_tables_use_the_macro_mean_and_100_minus_rr():
    """The 4,031-row tables agree with mASR = plain mean of the four ASRs (HOLISAFE.md)."""
    for judge in JUDGES:
        for row in _published(f"leaderboard_4031_{judge}.csv"):
            asrs = [Decimal(row[c]) for c in COLUMN_TYPE]
            # Each ASR is rounded to 0.05 at most, so their mean is within 0.05 of the exact
            # mean, and mASR was rounded from that: at most 0.1 apart.
            assert abs(sum(asrs) / 4 - Decimal(row["mASR↓"])) <= Decimal("0.1"), (judge, row)
            assert Decimal(row["S_IS_T→S↑"]) + Decimal(row["RR↓"]) == 100, (judge, row)
