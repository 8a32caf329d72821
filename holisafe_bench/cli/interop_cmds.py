"""`import` and `export`: the authors' official prediction files."""

from __future__ import annotations

from pathlib import Path

import typer

from holisafe_bench.cli.common import ResultsOption, layout


def register(app: typer.Typer) -> None:
    app.command(
        "import",
        help=(
            "Turn an official prediction file (<model>_holisafe_bench.json: the original "
            "records plus `prediction`) into results/<model>/responses.jsonl. With --dataset, "
            "ids, types and queries are checked against the benchmark; without, they are "
            "taken from the file (and the output says so). Import replaces the model's "
            "responses, so it refuses a model that already has some unless --overwrite, and "
            "refuses a file without one usable prediction."
        ),
    )(import_cmd)
    app.command(
        "export",
        help="Write a model's responses back in the official prediction format.",
    )(export_cmd)


def import_cmd(
    file: Path = typer.Argument(..., help="An official prediction JSON file."),
    model: str = typer.Option(..., "--model", "-m", help="Results name for this model."),
    dataset: str = typer.Option(
        None, "--dataset", "-d", help="Check the file against this benchmark source."
    ),
    overwrite: bool = typer.Option(
        False,
        "--overwrite",
        help="Replace the model's stored responses (without it, import refuses a model that "
        "already has responses).",
    ),
    lenient: bool = typer.Option(
        False,
        "--lenient",
        help="Keep rows the official string matching would still count (a valid id, type "
        "and prediction) despite other problems, e.g. an unknown subcategory or an empty "
        "query; they are listed either way.",
    ),
    out: Path = ResultsOption,
) -> None:
    from rich.console import Console

    from holisafe_bench.stages.interop import import_predictions

    console = Console(stderr=True, soft_wrap=True)
    bench = None
    if dataset:
        from holisafe_bench.dataset import load_benchmark

        bench = load_benchmark(dataset)
    summary = import_predictions(
        file, model, layout(out), bench=bench, overwrite=overwrite, lenient=lenient
    )
    for problem in summary.problems:
        console.print(str(problem), markup=False, highlight=False, soft_wrap=True)
    console.print(summary.line(), markup=False, highlight=False)


def export_cmd(
    model: str = typer.Option(..., "--model", "-m", help="Model whose responses to export."),
    out_file: Path = typer.Option(
        None, "--output", "-o", help="Default: results/<model>/<stem>_holisafe_bench.json"
    ),
    dataset: str = typer.Option(
        None, "--dataset", "-d", help="Source of the original records (needed for runs)."
    ),
    out: Path = ResultsOption,
) -> None:
    from holisafe_bench.registry import load_models
    from holisafe_bench.stages.interop import SUFFIX, export_predictions, source_records_path

    results = layout(out)
    if out_file is None:
        spec = load_models().get(model)
        stem = (spec.prediction_stem if spec else None) or model
        out_file = results.model_dir(model) / f"{stem}{SUFFIX}"
    from holisafe_bench.dataset import load_benchmark, recorded_dataset

    if dataset is None and not source_records_path(results, model).exists():
        # A run (not an import): its original records come from the dataset it recorded.
        dataset = recorded_dataset(results.run_manifest(model))
        if dataset is not None:
            typer.echo(f"{model}: using the dataset recorded in its run.json: {dataset}", err=True)
    bench = load_benchmark(dataset) if dataset else None
    written = export_predictions(model, results, out_file, bench=bench)
    typer.echo(f"wrote {written} records to {out_file}")
