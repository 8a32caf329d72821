"""`run` (responses from a registered model) and `merge` (combine data-parallel shards)."""

from __future__ import annotations

from pathlib import Path

import typer
from typer.core import TyperCommand

from holisafe_bench.cli.common import (
    CategoriesOption,
    DatasetOption,
    IdsOption,
    LimitOption,
    ResultsOption,
    TypesOption,
    chosen_samples,
    layout,
)
from holisafe_bench.distributed.ray_cluster import LOCAL as RAY_LOCAL  # imports no ray


class RayAddressCommand(TyperCommand):
    """A command whose --ray takes an optional address (Click options take a value or
    none): `run` and `guard`."""

    def parse_args(self, ctx, args: list[str]) -> list[str]:
        return super().parse_args(ctx, bare_ray_flag(args))


def bare_ray_flag(args: list[str]) -> list[str]:
    """A bare `--ray` (last, or followed by another option) becomes `--ray=local`; `run`
    and `guard` take no positional argument, so a word after --ray is always its address."""
    out = []
    for index, arg in enumerate(args):
        after = args[index + 1] if index + 1 < len(args) else None
        bare = arg == "--ray" and (after is None or after.startswith("-"))
        out.append(f"--ray={RAY_LOCAL}" if bare else arg)
    return out


def register(app: typer.Typer) -> None:
    app.command(
        "run",
        cls=RayAddressCommand,
        help=(
            "Run a model over the benchmark and write results/<model>/responses.jsonl.\n\n"
            "Resumes by default: samples already answered are skipped, failed or missing "
            "ones are redone. Example: holisafe-bench run --model qwen2.5-vl-7b --limit 50\n\n"
            "Several --model values run one after another, or all at once with --ray "
            "(open-weight models on a Ray cluster: holisafe-bench run -m A -m B --ray auto). "
            "API models are not run on Ray: one machine already saturates a vendor's rate "
            "limit."
        ),
    )(run_cmd)
    app.command(
        "merge",
        help="Combine the shards of a data-parallel run (--shard i/n) into responses.jsonl.",
    )(merge_cmd)


def run_cmd(
    model: list[str] = typer.Option(
        ...,
        "--model",
        "-m",
        help="Registered model name (see `holisafe-bench models`) or a TOML path; repeat "
        "for several models.",
    ),
    dataset: str = DatasetOption,
    out: Path = ResultsOption,
    limit: int = LimitOption,
    types: list[str] = TypesOption,
    categories: list[str] = CategoriesOption,
    ids: list[str] = IdsOption,
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
        "processes (1: none, this process sends them). Default: one process, moving to workers "
        "(one per 32 concurrent requests, up to the CPU count) only if its first rounds of "
        "requests asked for half a core or more.",
    ),
    batch_size: int = typer.Option(None, "--batch-size", help="Requests per engine batch."),
    tensor_parallel_size: int = typer.Option(
        None, "--tensor-parallel-size", help="GPUs per model replica (vllm)."
    ),
    base_url: str = typer.Option(
        None, "--base-url", help="OpenAI-compatible server URL (e.g. a `vllm serve` endpoint)."
    ),
    ray: str = typer.Option(
        None,
        "--ray",
        metavar="[ADDRESS]",
        help="Run on a Ray cluster: 'auto' (the cluster this machine belongs to), "
        "'ray://host:port' or 'host:port'; --ray alone starts Ray on this machine. Each "
        "model's replicas reserve its tensor-parallel size in GPUs (CPUs on a cluster "
        "without GPUs); several --model values run at once, one progress line each. "
        "Open-weight models only (vllm, transformers, baseline): API models are refused, "
        "as one machine already saturates a vendor's rate limit. Needs "
        "pip install 'holisafe-bench[ray]'.",
    ),
    max_replicas: int = typer.Option(
        None,
        "--max-replicas",
        min=1,
        help="With --ray: at most N replicas (actors) per model (default: as many as the "
        "cluster holds, shared equally between the models).",
    ),
) -> None:
    # Long: only in its signature (one typer option per flag).
    from holisafe_bench.dataset import load_benchmark
    from holisafe_bench.errors import HolisafeError
    from holisafe_bench.registry import get_model
    from holisafe_bench.stages.run import RunOptions, Shard

    if max_replicas is not None and ray is None:
        raise HolisafeError("--max-replicas needs --ray")
    specs = [_with_overrides(get_model(name), tensor_parallel_size, base_url) for name in model]
    _check_distinct(specs)
    if ray is not None:
        from holisafe_bench.distributed.ray_cluster import parse_address
        from holisafe_bench.distributed.sizing import check_runs_on_ray

        parse_address(ray)  # a bad address fails before the dataset loads
        for spec in specs:
            check_runs_on_ray(spec)
    bench = load_benchmark(dataset)
    chosen = chosen_samples(
        bench.samples,
        limit=limit,
        types=types,
        categories=categories,
        ids=ids,
        sample_n=sample,
        seed=seed,
    )
    if bench.issues:
        _console().print(
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
    if ray is None:
        for spec in specs:  # one after another, each with its own progress bar
            _run_here(spec, bench, chosen, layout(out), options)
    else:
        _run_on_ray(specs, bench, chosen, layout(out), options, ray, max_replicas)


def _console():
    from rich.console import Console

    return Console(stderr=True, soft_wrap=True)


def _check_distinct(specs) -> None:
    from holisafe_bench.errors import HolisafeError

    names = [spec.name for spec in specs]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise HolisafeError(f"--model {repeated[0]!r} is given twice: each model runs once")


def _record_counter(progress):
    return lambda rec: progress.advance(**{rec.outcome: 1}, out_tokens=rec.usage.output_tokens)


def _run_here(spec, bench, chosen, results, options) -> None:
    from holisafe_bench.progress import stage_progress
    from holisafe_bench.stages.run import run_model

    total = len(options.shard.select(chosen)) if options.shard else len(chosen)
    with stage_progress(f"run {spec.name}", total) as progress:
        summary = run_model(
            spec, bench, chosen, results, options, on_record=_record_counter(progress)
        )
    _print_summary(_console(), summary)


def _run_on_ray(specs, bench, chosen, results, options, address, max_replicas) -> None:
    """Every model at once on the cluster, one progress line each; a model that fails
    leaves the others running, and its reason is the command's error at the end."""
    from holisafe_bench.distributed.progress_lines import progress_lines
    from holisafe_bench.distributed.ray_cluster import parse_address
    from holisafe_bench.distributed.ray_run import RaySettings, run_on_ray
    from holisafe_bench.errors import HolisafeError
    from holisafe_bench.stages.run import plan_run

    plans = [plan_run(spec, chosen, results, options) for spec in specs]
    settings = RaySettings(address=parse_address(address), max_replicas=max_replicas)
    entries = [(f"run {plan.spec.name}", len(plan.samples), len(plan.todo)) for plan in plans]
    with progress_lines(entries) as lines:
        outcomes = run_on_ray(
            plans, bench, settings, on_record=[_record_counter(line) for line in lines]
        )
    console = _console()
    failures = []
    for plan, outcome in zip(plans, outcomes, strict=True):
        if isinstance(outcome, Exception):
            reason = " ".join(str(outcome).split())
            failures.append(reason if plan.spec.name in reason else f"{plan.spec.name}: {reason}")
        else:
            _print_summary(console, outcome)
    if failures:
        raise HolisafeError("; ".join(failures))


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
