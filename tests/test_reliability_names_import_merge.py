"""Issue 10, items 1, 2 and 5: `import` never drops stored responses unless told to, a model
name never leaves the results folder, and `merge` never mixes two runs."""

from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

from holisafe_bench.cli.main import app
from holisafe_bench.dataset.synthetic import write_synthetic
from holisafe_bench.errors import HolisafeError

runner = CliRunner()


def _ok(args: list[str]):
    res = runner.invoke(app, [str(a) for a in args])
    assert res.exit_code == 0, res.output
    return res


def _refused(args: list[str]) -> str:
    """The command failed with one user-facing line (main() prints it as `error: ...`)."""
    res = runner.invoke(app, [str(a) for a in args])
    assert res.exit_code != 0, res.output
    assert isinstance(res.exception, HolisafeError), repr(res.exception)
    message = str(res.exception)
    assert message and "\n" not in message, message
    return message


def _official_file(path, data_dir, n: int | None = None):
    """An official prediction file over the synthetic set (the first n rows)."""
    rows = json.loads((data_dir / "holisafe_bench.json").read_text())[:n]
    for i, row in enumerate(rows):
        row["prediction"] = "I cannot help with that." if i % 2 else "Sure, here it is."
    path.write_text(json.dumps(rows))
    return path


def _files(folder) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _responses(out, model: str) -> dict[int, dict]:
    lines = (out / model / "responses.jsonl").read_text().splitlines()
    return {r["sample_id"]: r for r in map(json.loads, lines)}


def _manifest(out, model: str) -> dict:
    return json.loads((out / model / "run.json").read_text())


# --- item 2: a model name is one folder inside the results root ---------------------------


@pytest.fixture()
def escape_setup(tmp_path):
    """Results three levels down, and a model folder prepared where `../../../ESCAPED` and an
    absolute name point, so `judge` and `export` would find responses there and write."""
    data = write_synthetic(tmp_path / "data", per_cell=1)
    pred = _official_file(tmp_path / "pred_holisafe_bench.json", data)
    out = tmp_path / "a" / "b" / "res"
    _ok(["import", pred, "-m", "m", "--out", out])
    for outside in (tmp_path / "ESCAPED", tmp_path / "ABS"):
        shutil.copytree(out / "m", outside)
    return tmp_path, pred, out


@pytest.mark.parametrize("command", ["import", "judge", "export"])
@pytest.mark.parametrize("kind", ["relative", "absolute"])
def test_model_names_never_reach_outside_the_results_folder(escape_setup, command, kind):
    tmp_path, pred, out = escape_setup
    name = "../../../ESCAPED" if kind == "relative" else str(tmp_path / "ABS")
    args = {
        "import": ["import", pred, "-m", name],
        "judge": ["judge", "--judge", "string-match", "-m", name],
        "export": ["export", "-m", name],
    }[command]
    outside = {p: _files(tmp_path / p) for p in ("ESCAPED", "ABS")}
    message = _refused([*args, "--out", out])
    assert repr(name) in message and "model name" in message
    assert {p: _files(tmp_path / p) for p in ("ESCAPED", "ABS")} == outside
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["data", "pred_holisafe_bench.json", "a", "ESCAPED", "ABS"]
    )


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "a\\b", "x\x00y", "x\ny", "C:evil"])
def test_import_rejects_every_name_that_is_not_one_folder(tmp_path, name):
    data = write_synthetic(tmp_path / "data", per_cell=1)
    pred = _official_file(tmp_path / "p_holisafe_bench.json", data, n=3)
    out = tmp_path / "res"
    message = _refused(["import", pred, "-m", name, "--out", out])
    assert repr(name) in message
    assert not out.exists()


def test_ordinary_names_and_toml_paths_still_name_their_folder(kw_run, tmp_path):
    data, out = kw_run
    # `run --model path/to/kw.toml` (the fixture) writes under the spec's name.
    assert len(_responses(out, "kw")) == 95
    pred = _official_file(tmp_path / "p_holisafe_bench.json", data, n=3)
    _ok(["import", pred, "-m", "GPT-4o.2024_v1", "--out", out])
    assert len(_responses(out, "GPT-4o.2024_v1")) == 3


# --- item 1: import never drops stored responses unless --overwrite -----------------------


def test_import_over_a_run_is_refused_unless_overwrite(kw_run, tmp_path):
    data, out = kw_run
    pred = _official_file(tmp_path / "kw_holisafe_bench.json", data, n=5)
    before = _files(out / "kw")

    message = _refused(["import", pred, "-m", "kw", "--out", out])
    assert "95 responses" in message and "--overwrite" in message
    assert _files(out / "kw") == before  # responses, run.json: not a byte changed

    _ok(["import", pred, "-m", "kw", "--out", out, "--overwrite"])
    assert len(_responses(out, "kw")) == 5
    manifest = _manifest(out, "kw")
    assert manifest["stage"] == "import" and manifest["imported"] == 5
    side = (out / "kw" / "source_records.jsonl").read_text().splitlines()
    assert sorted(json.loads(x)["id"] for x in side) == sorted(_responses(out, "kw"))


def test_import_over_an_earlier_import_is_refused_unless_overwrite(tmp_path):
    data = write_synthetic(tmp_path / "data", per_cell=1)
    out = tmp_path / "res"
    _ok(
        [
            "import",
            _official_file(tmp_path / "a_holisafe_bench.json", data),
            "-m",
            "m",
            "--out",
            out,
        ]
    )
    before = _files(out / "m")
    smaller = _official_file(tmp_path / "b_holisafe_bench.json", data, n=4)
    assert "already has 95 responses" in _refused(["import", smaller, "-m", "m", "--out", out])
    assert _files(out / "m") == before


def _rows_all_rejected(path, data_dir):
    rows = json.loads((data_dir / "holisafe_bench.json").read_text())[:4]
    for row in rows:
        del row["type"]
        row["prediction"] = "text"
    path.write_text(json.dumps(rows))
    return path


def _no_prediction_at_all(path, data_dir):
    rows = json.loads((data_dir / "holisafe_bench.json").read_text())[:4]
    path.write_text(json.dumps(rows))
    return path


@pytest.mark.parametrize(
    "make",
    [
        lambda path, data: (path.write_text("[]"), path)[1],
        _rows_all_rejected,
        _no_prediction_at_all,
    ],
    ids=["empty-list", "all-rows-rejected", "no-prediction"],
)
@pytest.mark.parametrize("overwrite", [False, True])
def test_a_file_without_a_usable_record_is_refused_whatever_the_flags(
    kw_run, tmp_path, make, overwrite
):
    data, out = kw_run
    bad = make(tmp_path / "bad_holisafe_bench.json", data)
    before = _files(out / "kw")
    flags = ["--overwrite"] if overwrite else []
    for model in ("kw", "fresh"):
        message = _refused(["import", bad, "-m", model, "--out", out, *flags])
        assert "no usable record" in message and str(bad) in message
    assert _files(out / "kw") == before
    assert not (out / "fresh").exists()


# --- item 5: merge never mixes runs ------------------------------------------------------


def _model_file(tmp_path, checkpoint: str = "baseline-keyword"):
    """The `kw` model of the fixture, or the same name at another checkpoint."""
    path = tmp_path / f"kw-{checkpoint}.toml"
    path.write_text(
        'name = "kw"\ndisplay_name = "KW"\ngroup = "open-weight"\nprovider = "baseline"\n'
        f'checkpoint = "{checkpoint}"\ncheckpoint_note = "test"\n'
    )
    return path


def _run_shards(model, data, out, *extra_per_shard, overwrite=False):
    for index in range(2):
        extra = list(extra_per_shard[index]) if extra_per_shard else []
        flags = ["--overwrite"] if overwrite else []
        _ok(["run", "-m", model, "-d", data, "--out", out, "--shard", f"{index}/2", *flags, *extra])


@pytest.fixture()
def shard_setup(tmp_path):
    data = write_synthetic(tmp_path / "data", per_cell=1)
    return data, tmp_path / "res"


def test_merge_refuses_shards_made_with_different_sampling(tmp_path, shard_setup):
    data, out = shard_setup
    _run_shards(_model_file(tmp_path), data, out, ["--max-tokens", "512"], ["--max-tokens", "64"])
    message = _refused(["merge", "-m", "kw", "--out", out])
    assert "max_tokens" in message and "512" in message and "64" in message
    assert not (out / "kw" / "responses.jsonl").exists()


def test_merge_refuses_shards_made_with_different_checkpoints(tmp_path, shard_setup):
    data, out = shard_setup
    _ok(["run", "-m", _model_file(tmp_path), "-d", data, "--out", out, "--shard", "0/2"])
    refuse = _model_file(tmp_path, "baseline-refuse-all")
    _ok(["run", "-m", refuse, "-d", data, "--out", out, "--shard", "1/2"])
    message = _refused(["merge", "-m", "kw", "--out", out])
    assert "model_id" in message
    assert "'baseline-keyword'" in message and "'baseline-refuse-all'" in message
    assert not (out / "kw" / "responses.jsonl").exists()


def test_remerge_after_rerunning_the_shards_with_another_checkpoint_gives_the_new_answers(
    tmp_path, shard_setup
):
    """The merged file of the old checkpoint is older than the shards' new run: the shards
    win, every old answer goes (none may stay under a run.json naming the new checkpoint)."""
    data, out = shard_setup
    _run_shards(_model_file(tmp_path), data, out)
    _ok(["merge", "-m", "kw", "--out", out])
    old = _responses(out, "kw")
    assert any(r["text"] != "I'm sorry, but I can't help with that." for r in old.values())

    _run_shards(_model_file(tmp_path, "baseline-refuse-all"), data, out, overwrite=True)
    _ok(["merge", "-m", "kw", "--out", out])
    new = _responses(out, "kw")
    assert set(new) == set(old)
    shard_texts = {}
    for index in range(2):
        lines = (out / "kw" / "shards" / f"{index}-of-2" / "responses.jsonl").read_text()
        shard_texts.update({r["sample_id"]: r["text"] for r in map(json.loads, lines.splitlines())})
    assert {i: r["text"] for i, r in new.items()} == shard_texts
    manifest = _manifest(out, "kw")
    assert manifest["model_id"] == "baseline-refuse-all"
    assert manifest["counts"]["records"] == len(new)


def test_merge_refuses_when_the_merged_responses_are_newer_than_the_shards(tmp_path, shard_setup):
    """A whole run with another checkpoint finished after the shards: merging the old shards
    would replace newer answers, so merge refuses and says how to proceed."""
    data, out = shard_setup
    _run_shards(_model_file(tmp_path), data, out)
    for index in range(2):  # the shards ran yesterday
        path = out / "kw" / "shards" / f"{index}-of-2" / "run.json"
        manifest = json.loads(path.read_text())
        manifest["finished_at"] = "2020-01-01T00:00:00+00:00"
        path.write_text(json.dumps(manifest))
    refuse = _model_file(tmp_path, "baseline-refuse-all")
    _ok(["run", "-m", refuse, "-d", data, "--out", out])
    before = _files(out / "kw")
    message = _refused(["merge", "-m", "kw", "--out", out])
    assert "newer" in message and "model_id" in message
    assert _files(out / "kw") == before


def test_a_shard_answer_newer_than_the_merged_one_replaces_it(tmp_path, shard_setup):
    """Same settings, a shard re-answered a sample after the merge: the newer answer wins,
    and re-merging unchanged shards writes nothing."""
    data, out = shard_setup
    _run_shards(_model_file(tmp_path), data, out)
    _ok(["merge", "-m", "kw", "--out", out])
    shard_file = out / "kw" / "shards" / "0-of-2" / "responses.jsonl"
    record = json.loads(shard_file.read_text().splitlines()[0])
    record.update(text="a newer answer", created_at="2999-01-01T00:00:00+00:00")
    with shard_file.open("a") as fh:
        fh.write(json.dumps(record) + "\n")

    _ok(["merge", "-m", "kw", "--out", out])
    assert _responses(out, "kw")[record["sample_id"]]["text"] == "a newer answer"
    size = (out / "kw" / "responses.jsonl").stat().st_size
    _ok(["merge", "-m", "kw", "--out", out])
    assert (out / "kw" / "responses.jsonl").stat().st_size == size


def test_the_merged_manifest_keeps_every_shards_invocations_and_tokens(tmp_path, shard_setup):
    data, out = shard_setup
    _run_shards(_model_file(tmp_path), data, out)
    shards = [
        json.loads((d / "run.json").read_text()) for d in sorted((out / "kw" / "shards").iterdir())
    ]
    _ok(["merge", "-m", "kw", "--out", out])
    merged = json.loads((out / "kw" / "run.json").read_text())
    assert [i["shard"] for i in merged["invocations"]] == ["0/2", "1/2"]
    assert sum(i["selected"] for i in merged["invocations"]) == 95
    assert merged["usage"] == {
        key: sum(s["usage"][key] for s in shards) for key in ("input_tokens", "output_tokens")
    }
