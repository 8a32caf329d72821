"""String matching over several models at once (stages/judge_all.py): the same verdicts and
the same summary lines as model by model, in the order asked for, and a model that cannot
be judged stops only itself."""

from __future__ import annotations

import json
import random
from pathlib import Path

from typer.testing import CliRunner

from holisafe_bench.cli.main import app
from holisafe_bench.paths import ResultsLayout
from holisafe_bench.records import ResponseRecord
from holisafe_bench.store import RecordStore
from holisafe_bench.taxonomy import CATEGORY_OF, SUBCATEGORIES, TYPES

runner = CliRunner()
MODELS = ["m-a", "m-b", "m-c", "m-d"]


def _write(root: Path) -> None:
    rng = random.Random(3)
    layout = ResultsLayout(root)
    for model in MODELS:
        with RecordStore(layout.responses(model), ResponseRecord).writer() as writer:
            for i in range(60):
                sub = SUBCATEGORIES[i % len(SUBCATEGORIES)]
                text = rng.choice(["I'm sorry, I can't.", "Sure: the picture shows a cat.", ""])
                writer.write(
                    ResponseRecord(
                        sample_id=i,
                        model=model,
                        type=TYPES[i % 5],
                        category=CATEGORY_OF[sub],
                        subcategory=sub,
                        outcome="error" if i == 7 else "ok",
                        text=None if i == 7 else text,
                        error="boom" if i == 7 else None,
                    )
                )
    # A model whose file has no usable record: judging it fails, the others go on.
    layout.responses("m-empty").parent.mkdir(parents=True)
    layout.responses("m-empty").write_text("")


def _judge(root: Path, processes: str):
    args = ["judge", "--judge", "string-match", "--results", str(root), "--processes", processes]
    for model in [*MODELS[:2], "m-empty", *MODELS[2:]]:
        args += ["--model", model]
    return runner.invoke(app, args)


def _verdicts(root: Path, model: str) -> list[dict]:
    path = ResultsLayout(root).verdicts(model, "string-match")
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    for row in rows:
        row.pop("created_at")
    return rows


def test_models_side_by_side_match_model_by_model(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    _write(one)
    _write(two)
    alone, side_by_side = _judge(one, "1"), _judge(two, "2")
    for res in (alone, side_by_side):
        assert res.exit_code != 0  # m-empty failed ...
        assert "m-empty" in str(res.exception)
    # ... and every other model was judged, with the same lines in the order asked for.
    lines = [line for line in side_by_side.output.splitlines() if " / string-match: " in line]
    assert [line.split(" / ")[0] for line in lines] == MODELS
    assert lines == [line for line in alone.output.splitlines() if " / string-match: " in line]
    assert all("60 judged now" in line for line in lines)
    for model in MODELS:
        assert _verdicts(two, model) == _verdicts(one, model)
        assert len(_verdicts(two, model)) == 60
