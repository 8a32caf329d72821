"""`run` (responses from a registered model) and `merge` (combine data-parallel shards)."""

from __future__ import annotations

from pathlib import Path

import typer

from holisafe_bench.cli.common import DatasetOption, ResultsOption, layout, split_csv


def register(app: typer.Typer) -> None:
    app.command(
        "run",
        help=(
            "Run a model over the benchmark and write results/<model>/responses.jsonl.\n\n"
            "Resumes by default: samples already answered are skipped, failed or missing "
            "ones are redone. Example: holisafe-bench run --model qwen2.5-vl-7b --limit 50"
        ),
    )(run_cmd)
    app.command(
        "merge",
        help="Combine the shards of a data-parallel run (--shard i/n) into responses.jsonl.",
    )(merge_cmd)


def run_cmd(
    model: str = typer.Option(
        ...,
        "--model",
        "-m",
        help="Registered model name (see `holisafe-bench models`) or a TOML path.",
    ),
    dataset: str = DatasetOption,
    out: Path = ResultsOption,
    limit: int = typer.Option(None, "--limit", help="Only the first N samples (after filters)."),
    types: list[str] = typer.Option(
        None, "--types", help="Type codes to keep, e.g. SSU,UUU (repeat or comma-separate)."
    ),
    categories: list[str] = typer.Option(None, "--categories", help="Categories to keep."),
    ids: list[str] = typer.Option(None, "--ids", help="Sample ids to keep."),
    sample: int = typer.Option(None, "--sample", help="A deterministic random subset of N."),
    seed: int = typer.Option(0, "--seed", help="Seed for --sample."),
    shard: str = typer.Option(
        None, "--shard", help="Data-parallel shard i/n (0-based); combine with `merge`."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Discard earlier responses."),
    max_tokens: int = typer.Option(
        None, "--max-tokens", help="New-token limit (spec default 512)."
    ),
    temperature: float = typer.Option(
        None, "--temperature", help="Sampling temperature (default 0)."
    ),
    system_prompt: str = typer.Option(
        None, "--system-prompt", help="A system prompt (off by default, as in the paper)."
    ),
    concurrency: int = typer.Option(None, "--concurrency", help="Parallel API requests."),
    processes: int = typer.Option(
        None,
        "--processes",
        min=1,
        help="API models: spread the requests (and the concurrency) over this many worker "
        "processes; the SDKs cost 3-5 ms of CPU per request, so one process tops out at a "
        "few hundred requests per second (default: one per 32 concurrent requests, up to the "
        "CPU count; 1 for short runs).",
    ),
    batch_size: int = typer.Option(None, "--batch-size", help="Requests per engine batch."),
    tensor_parallel_size: int = typer.Option(
        None, "--tensor-parallel-size", help="GPUs per model replica (vllm)."
    ),
    base_url: str = typer.Option(
        None, "--base-url", help="OpenAI-compatible server URL (e.g. a `vllm serve` endpoint)."
    ),
) -> None:
    # Long: only in its signature (one typer option per flag).
    from rich.console import Console

    from holisafe_bench.dataset import load_benchmark, select
    from holisafe_bench.progress import stage_progress
    from holisafe_bench.registry import get_model
    from holisafe_bench.stages.run import RunOptions, Shard, run_model

    console = Console(stderr=True, soft_wrap=True)
    spec = _with_overrides(get_model(model), tensor_parallel_size, base_url)
    bench = load_benchmark(dataset)
    chosen = select(
        bench.samples,
        limit=limit,
        types=split_csv(types),
        categories=split_csv(categories),
        ids=[int(i) for i in split_csv(ids) or []] or None,
        sample_n=sample,
        seed=seed,
    )
    if bench.issues:
        console.print(
            f"[yellow]{len(bench.issues)} bad dataset row(s) skipped "
            "(see `holisafe-bench data verify`)[/]"
        )
    options = RunOptions(
        overwrite=overwrite,
        shard=Shard.parse(shard) if shard else None,
        max_tokens=max_tokens,
        temperature=temperature,
        system_prompt=system_prompt,
        concurrency=concurrency,
        processes=processes,
        batch_size=batch_size,
    )
    total = len(options.shard.select(chosen)) if options.shard else len(chosen)
    with stage_progress(f"run {spec.name}", total) as progress:
        summary = run_model(
            spec,
            bench,
            chosen,
            layout(out),
            options,
            on_record=lambda rec: progress.advance(
                **{rec.outcome: 1}, out_tokens=rec.usage.output_tokens
            ),
        )
    _print_summary(console, summary)


def _with_overrides(spec, tensor_parallel_size: int | None, base_url: str | None):
    if tensor_parallel_size:
        engine = spec.engine.model_copy(update={"tensor_parallel_size": tensor_parallel_size})
        spec = spec.model_copy(update={"engine": engine})
    if base_url:
        spec = spec.model_copy(update={"api": spec.api.model_copy(update={"base_url": base_url})})
    return spec


def _print_summary(console, summary) -> None:
    outcomes = ", ".join(f"{k} {v}" for k, v in sorted(summary.outcomes.items())) or "nothing new"
    console.print(
        f"[bold]{summary.model}[/]: {summary.selected} selected, {summary.already_done} already "
        f"done, {summary.attempted} attempted ({outcomes}) in {summary.elapsed_s:.1f}s"
    )
    errors = summary.outcomes.get("error", 0)
    if errors:
        console.print(f"[yellow]{errors} failed; re-run the same command to retry them[/]")
    console.print(f"responses: {summary.output}")


def merge_cmd(
    model: str = typer.Option(..., "--model", "-m", help="Model whose shards to merge."),
    out: Path = ResultsOption,
) -> None:
    from rich.console import Console

    from holisafe_bench.stages.merge import merge_shards

    summary = merge_shards(model, layout(out))
    console = Console(stderr=True, soft_wrap=True)
    if summary.replaced_earlier:
        console.print(
            f"replaced {summary.replaced_earlier} earlier response(s) of another run "
            f"({summary.replaced_because})",
            markup=False,
            highlight=False,
        )
    console.print(
        f"merged {len(summary.shards)} shard(s) of {model}: {summary.merged} record(s) written, "
        f"{summary.kept_existing} kept (already merged, or a newer or complete answer) "
        f"-> {summary.output}",
        markup=False,
        highlight=False,
    )
