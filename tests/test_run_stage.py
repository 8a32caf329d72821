"""The run stage with in-test providers: resume, failures, shards and merge, manifests."""

from __future__ import annotations

import json
from collections.abc import Sequence

import pytest

from holisafe_bench.dataset import load_benchmark
from holisafe_bench.dataset.synthetic import write_synthetic
from holisafe_bench.errors import HolisafeError
from holisafe_bench.paths import ResultsLayout
from holisafe_bench.providers.base import ApiProvider, BatchProvider
from holisafe_bench.providers.types import ChatRequest, ChatResult
from holisafe_bench.records import ResponseRecord, Usage
from holisafe_bench.registry import ModelSpec
from holisafe_bench.stages.merge import merge_shards
from holisafe_bench.stages.run import RunOptions, Shard, run_model
from holisafe_bench.store import RecordStore


class EchoBatch(BatchProvider):
    """Answers with the query reversed; fails the ids it is told to fail."""

    provider_name = "echo-batch"
    batch_size = 4

    def __init__(self, fail_ids: set[str] = frozenset()) -> None:
        self.fail_ids = set(fail_ids)
        self.seen: list[str] = []
        self.batches: list[int] = []

    def generate_batch(self, requests: Sequence[ChatRequest]) -> list[ChatResult]:
        self.batches.append(len(requests))
        out = []
        for req in requests:
            self.seen.append(req.id)
            assert req.images, "every request carries the sample's image"
            if req.id in self.fail_ids:
                out.append(ChatResult(id=req.id, outcome="error", error="engine exploded"))
            else:
                out.append(ChatResult(id=req.id, outcome="ok", text=req.text[::-1]))
        return out


class EchoApi(ApiProvider):
    provider_name = "echo-api"

    def __init__(self) -> None:
        self.calls = 0

    async def call_once(self, request: ChatRequest) -> ChatResult:
        self.calls += 1
        return ChatResult(id=request.id, outcome="ok", text=f"answer to {request.id}")


SPEC = ModelSpec(
    name="echo",
    display_name="Echo",
    group="open-weight",
    provider="transformers",  # any provider: the tests pass their own
    checkpoint="echo-v1",
)


@pytest.fixture()
def bench(tmp_path):
    return load_benchmark(write_synthetic(tmp_path / "data", per_cell=1, layout="json", seed=3))


def _records(layout: ResultsLayout, model: str = "echo") -> dict[int, ResponseRecord]:
    return RecordStore(layout.responses(model), ResponseRecord).read()


def test_batches_write_every_sample_and_resume_redoes_only_failures(tmp_path, bench):
    layout = ResultsLayout(tmp_path / "results")
    samples = bench.samples
    fail = {str(samples[0].id), str(samples[5].id)}
    first = EchoBatch(fail_ids=fail)
    summary = run_model(SPEC, bench, samples, layout, RunOptions(), provider=first)
    assert summary.outcomes["error"] == 2
    assert summary.outcomes["ok"] == len(samples) - 2
    assert max(first.batches) == 4  # whole batches, not one prompt at a time
    recs = _records(layout)
    assert len(recs) == len(samples)
    assert recs[samples[0].id].text is None and recs[samples[0].id].error == "engine exploded"
    assert recs[samples[1].id].text == samples[1].query[::-1]

    second = EchoBatch()
    summary = run_model(SPEC, bench, samples, layout, RunOptions(), provider=second)
    assert sorted(second.seen) == sorted(fail)
    assert summary.already_done == len(samples) - 2
    assert all(r.outcome == "ok" for r in _records(layout).values())

    manifest = json.loads(layout.run_manifest("echo").read_text())
    assert manifest["counts"]["ok"] == len(samples)
    assert manifest["counts"]["missing"] == 0
    assert manifest["model_id"] == "echo-v1"
    assert manifest["dataset"]  # provenance of the data is recorded


def test_api_provider_path_uses_the_shared_runner(tmp_path, bench):
    layout = ResultsLayout(tmp_path / "results")
    provider = EchoApi()
    summary = run_model(SPEC, bench, bench.samples, layout, RunOptions(), provider=provider)
    assert provider.calls == len(bench.samples)
    assert summary.outcomes["ok"] == len(bench.samples)
    recs = _records(layout)
    assert {r.text for r in recs.values()} == {f"answer to {s.id}" for s in bench.samples}


def test_one_sample_whose_image_cannot_be_read_is_recorded_and_the_run_goes_on(tmp_path, bench):
    layout = ResultsLayout(tmp_path / "results")
    victim = bench.samples[2]
    original = bench.image

    def flaky_image(sample):
        if sample.id == victim.id:
            raise OSError("disk on fire")
        return original(sample)

    bench.image = flaky_image  # type: ignore[method-assign]
    run_model(SPEC, bench, bench.samples, layout, RunOptions(), provider=EchoBatch())
    recs = _records(layout)
    assert len(recs) == len(bench.samples)
    assert recs[victim.id].outcome == "error"
    assert "disk on fire" in recs[victim.id].error


def test_resume_with_other_settings_is_refused_unless_overwrite(tmp_path, bench):
    layout = ResultsLayout(tmp_path / "results")
    run_model(SPEC, bench, bench.samples[:3], layout, RunOptions(), provider=EchoBatch())
    with pytest.raises(HolisafeError, match="max_tokens"):
        run_model(
            SPEC, bench, bench.samples, layout, RunOptions(max_tokens=7), provider=EchoBatch()
        )
    run_model(
        SPEC,
        bench,
        bench.samples,
        layout,
        RunOptions(max_tokens=7, overwrite=True),
        provider=EchoBatch(),
    )
    assert len(_records(layout)) == len(bench.samples)


def test_shards_split_disjointly_and_merge_into_one_record_per_sample(tmp_path, bench):
    layout = ResultsLayout(tmp_path / "results")
    seen: list[str] = []
    for index in range(3):
        provider = EchoBatch()
        run_model(
            SPEC,
            bench,
            bench.samples,
            layout,
            RunOptions(shard=Shard(index, 3)),
            provider=provider,
        )
        seen.extend(provider.seen)
    assert sorted(seen) == sorted(str(s.id) for s in bench.samples)  # disjoint and complete
    summary = merge_shards("echo", layout)
    assert summary.merged == len(bench.samples)
    lines = layout.responses("echo").read_text().splitlines()
    assert len(lines) == len(bench.samples)
    assert json.loads(layout.run_manifest("echo").read_text())["counts"]["records"] == len(lines)


def test_merge_refuses_when_a_shard_is_missing(tmp_path, bench):
    layout = ResultsLayout(tmp_path / "results")
    run_model(
        SPEC, bench, bench.samples, layout, RunOptions(shard=Shard(1, 2)), provider=EchoBatch()
    )
    with pytest.raises(HolisafeError, match="0/2"):
        merge_shards("echo", layout)


@pytest.mark.parametrize("text", ["1", "2/2", "-1/3", "a/b", "1/0"])
def test_bad_shard_specs_are_rejected(text):
    with pytest.raises(HolisafeError):
        Shard.parse(text)


def test_cli_run_over_a_set_with_bad_rows_completes_on_the_good_rows(tmp_path):
    from typer.testing import CliRunner

    from holisafe_bench.cli.main import app

    data = write_synthetic(tmp_path / "data", per_cell=1, bad_rows=True)
    model = tmp_path / "keyword.toml"
    model.write_text(
        'name = "keyword"\ndisplay_name = "Keyword baseline"\ngroup = "open-weight"\n'
        'provider = "baseline"\ncheckpoint = "baseline-keyword"\n'
        'checkpoint_note = "a test baseline"\n'
    )
    out = tmp_path / "results"
    args = ["run", "--model", str(model), "--dataset", str(data), "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "bad dataset row(s) skipped" in result.output
    records = RecordStore(out / "keyword" / "responses.jsonl", ResponseRecord).read()
    assert len(records) == 95 and all(r.outcome == "ok" for r in records.values())
    manifest = json.loads((out / "keyword" / "run.json").read_text())
    fields = {issue["field"] for issue in manifest["skipped_rows"]}
    assert {"type", "image_safe", "id", "query", "image"} <= fields
    again = CliRunner().invoke(app, args)
    assert "95 already done" in again.output


class CountingApi(EchoApi):
    async def call_once(self, request: ChatRequest) -> ChatResult:
        result = await super().call_once(request)
        result.usage = Usage(input_tokens=10, output_tokens=2)
        return result


def test_a_rerun_keeps_the_manifest_history_and_token_totals(tmp_path, bench):
    layout = ResultsLayout(tmp_path / "results")
    half = bench.samples[:40]
    run_model(SPEC, bench, half, layout, RunOptions(), provider=CountingApi())
    first = json.loads(layout.run_manifest("echo").read_text())
    run_model(SPEC, bench, bench.samples, layout, RunOptions(), provider=CountingApi())
    run_model(SPEC, bench, bench.samples, layout, RunOptions(), provider=CountingApi())  # no-op
    manifest = json.loads(layout.run_manifest("echo").read_text())
    assert manifest["started_at"] == first["started_at"]
    assert [i["attempted"] for i in manifest["invocations"]] == [40, 55, 0]
    assert [i["outcomes"].get("ok", 0) for i in manifest["invocations"]] == [40, 55, 0]
    assert all(i["finished_at"] for i in manifest["invocations"])
    total = len(bench.samples)
    assert manifest["usage"] == {"input_tokens": 10 * total, "output_tokens": 2 * total}
    assert manifest["provider_details"] == first["provider_details"]  # kept by the no-op run
    run_model(SPEC, bench, half, layout, RunOptions(overwrite=True), provider=CountingApi())
    fresh = json.loads(layout.run_manifest("echo").read_text())
    assert len(fresh["invocations"]) == 1 and fresh["usage"]["input_tokens"] == 400


def test_batch_size_option_reaches_a_streaming_provider(tmp_path, bench):
    from holisafe_bench.providers.base import StreamingProvider

    class Stream(StreamingProvider):
        provider_name = "stream"
        batch_size = 8
        streaming = True

        def __init__(self) -> None:
            self.seen_batch_size = None

        def generate_batch(self, requests):
            raise AssertionError("streaming providers are streamed")

        def stream(self, requests):
            self.seen_batch_size = self.batch_size
            for req in requests:
                yield ChatResult(id=req.id, outcome="ok", text="streamed")

    layout = ResultsLayout(tmp_path / "results")
    provider = Stream()
    run_model(SPEC, bench, bench.samples, layout, RunOptions(batch_size=3), provider=provider)
    assert provider.seen_batch_size == 3
    assert {r.text for r in _records(layout).values()} == {"streamed"}
    assert len(_records(layout)) == len(bench.samples)
