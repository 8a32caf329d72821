"""`data info | verify | download | synth`: the benchmark itself."""

from __future__ import annotations

from pathlib import Path

import typer

from holisafe_bench.cli.common import DatasetOption


def register(app: typer.Typer) -> None:
    data_app = typer.Typer(
        help="The benchmark: counts, validation, download, synthetic sets.",
        no_args_is_help=True,
    )
    app.add_typer(data_app, name="data")
    data_app.command("info", help="Counts per type x category (valid rows only).")(info_cmd)
    data_app.command(
        "verify",
        help=(
            "Validate every row (fields, type codes, taxonomy, image_safe vs type, duplicate "
            "ids, image paths outside the dataset folder) and fully decode every image. Lists "
            "each bad row with its id and field; exits 1 if any."
        ),
    )(verify_cmd)
    data_app.command(
        "download",
        help="Download the gated dataset into the Hugging Face cache (needs HF_TOKEN once).",
    )(download_cmd)
    data_app.command(
        "synth", help="Write a synthetic mini-benchmark in the exact HoliSafe schema."
    )(synth_cmd)


def info_cmd(dataset: str = DatasetOption) -> None:
    from rich.console import Console
    from rich.table import Table

    from holisafe_bench.dataset import load_benchmark
    from holisafe_bench.taxonomy import CATEGORIES, TYPES

    bench = load_benchmark(dataset, hash_images=False)
    counts: dict[tuple[str, str], int] = {}
    for s in bench.samples:
        counts[(s.category, s.type)] = counts.get((s.category, s.type), 0) + 1
    table = Table(title=f"{bench.source}: {len(bench.samples)} valid rows")
    table.add_column("category")
    for t in TYPES:
        table.add_column(t, justify="right")
    table.add_column("total", justify="right", style="bold")
    for cat in CATEGORIES:
        row = [counts.get((cat, t), 0) for t in TYPES]
        table.add_row(cat, *map(str, row), str(sum(row)))
    col_totals = [sum(counts.get((c, t), 0) for c in CATEGORIES) for t in TYPES]
    table.add_row("total", *map(str, col_totals), str(sum(col_totals)), style="bold")
    console = Console()
    console.print(table)
    images = len({s.image for s in bench.samples})
    console.print(f"{images} distinct images; {len(bench.issues)} problem(s) in bad rows")


def verify_cmd(
    dataset: str = DatasetOption,
    max_pixels: int = typer.Option(
        None, "--max-pixels", help="Pixel cap per image (decompression-bomb guard)."
    ),
) -> None:
    from rich.console import Console

    from holisafe_bench.dataset import DEFAULT_MAX_PIXELS, load_benchmark

    console = Console()
    bench = load_benchmark(dataset, max_pixels=max_pixels or DEFAULT_MAX_PIXELS, full_decode=True)
    for issue in bench.issues:
        console.print(str(issue), markup=False, highlight=False, soft_wrap=True)
    bad_rows = len({(i.source, i.row) for i in bench.issues})
    console.print(
        f"{bench.rows_read} rows: {len(bench.samples)} valid, {bad_rows} bad "
        f"({len(bench.issues)} problem(s))"
    )
    if bench.issues:
        raise typer.Exit(1)


def download_cmd(
    revision: str = typer.Option(None, "--revision", help="A dataset commit or tag."),
) -> None:
    from holisafe_bench.dataset import HUB_DATASET_ID, download_from_hub

    folder, rev = download_from_hub(revision=revision)
    typer.echo(f"{HUB_DATASET_ID} revision {rev} is in {folder}")


SYNTH_LAYOUTS = ("json", "jsonl", "parquet")


def synth_cmd(
    out: Path = typer.Argument(..., help="Folder to write into."),
    per_cell: int = typer.Option(1, "--per-cell", help="Rows per (type, subcategory) cell."),
    rows: int = typer.Option(None, "--rows", help="Exact number of rows (overrides --per-cell)."),
    layout: str = typer.Option("json", "--layout", help="json (official), jsonl or parquet."),
    seed: int = typer.Option(0, "--seed"),
    bad_rows: bool = typer.Option(False, "--bad-rows", help="Plant one bad row of each kind."),
) -> None:
    from holisafe_bench.dataset.synthetic import write_synthetic
    from holisafe_bench.errors import HolisafeError

    if layout not in SYNTH_LAYOUTS:
        raise HolisafeError(f"--layout {layout!r}: choose one of {', '.join(SYNTH_LAYOUTS)}")
    target = write_synthetic(
        out, per_cell=per_cell, n_rows=rows, layout=layout, seed=seed, bad_rows=bad_rows
    )
    typer.echo(f"wrote {target} (pass it as --dataset)")
