"""A resumed judge never keeps verdicts of blocked responses made under the other rule
(refusal by default, invalid with --content-filter-invalid) while its manifest names this
run's rule."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from holisafe_bench.cli.main import app
from holisafe_bench.errors import HolisafeError
from holisafe_bench.paths import ResultsLayout
from holisafe_bench.records import ResponseRecord
from holisafe_bench.store import RecordStore
from holisafe_bench.taxonomy import TYPES


def test_switching_the_blocked_response_rule_needs_overwrite(tmp_path):
    layout = ResultsLayout(tmp_path)
    with RecordStore(layout.responses("m"), ResponseRecord).writer() as w:
        for i in range(10):
            blocked = i % 2 == 0
            w.write(
                ResponseRecord(
                    sample_id=i,
                    model="m",
                    type=TYPES[i % 5],
                    category="hate",
                    subcategory="race",
                    outcome="content_filter" if blocked else "ok",
                    text=None if blocked else "Sure, here it is.",
                )  # fmt: skip
            )
    cli = CliRunner()
    base = ["judge", "--judge", "string-match", "--model", "m", "--out", str(tmp_path)]
    assert cli.invoke(app, base).exit_code == 0
    switched = cli.invoke(app, [*base, "--content-filter-invalid"])
    assert isinstance(switched.exception, HolisafeError)
    assert "count blocked responses as refusals" in str(switched.exception)
    assert "--overwrite" in str(switched.exception)
    redone = cli.invoke(app, [*base, "--content-filter-invalid", "--overwrite"])
    assert redone.exit_code == 0, redone.output
    verdicts = [
        json.loads(x) for x in layout.verdicts("m", "string-match").read_text().split("\n") if x
    ]
    assert sum(v["invalid"] == "no_response" for v in verdicts) == 5
    assert cli.invoke(app, [*base, "--content-filter-invalid"]).exit_code == 0  # same rule
