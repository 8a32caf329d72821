"""`guard` (a guard model's verdict on each sample) and `guards` (what is registered)."""

from __future__ import annotations

from pathlib import Path

import typer

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
from holisafe_bench.cli.run_cmds import RayAddressCommand

GUARD_HELP = (
    "Classify every sample with a guard model and write "
    "results/<guard>/guard/<protocol>.jsonl: predicted unsafe yes/no, a score in [0, 1] when "
    "the guard gives one, its category (own taxonomy and mapped onto HoliSafe's image "
    "labels), the raw output; unreadable outputs are kept as invalid, never counted as safe "
    "or unsafe.\n\n"
    "Protocols: 'image' (default) asks whether the image is harmful, scored against "
    "image_safe and image_safety_label; 'input' asks whether the image+query request is "
    "harmful, scored with SSS safe and the four other types unsafe. The paper does not say "
    "which one its guard table used.\n\n"
    "--model takes a registered guard (holisafe-bench guards: the Safe-VLMs' safety heads, "
    "Llama Guard, LLaVAGuard, ShieldGemma 2), a guard TOML file, or any registered chat "
    "model or API model, which is then asked zero-shot with a short classification prompt. "
    "Resumes like run. Score with: holisafe-bench guard-score.\n\n"
    "Example: holisafe-bench guard --model safellava-7b --protocol image. Offline, on a "
    "random-weight Safe-VLM: holisafe-bench guard --model tiny-safellava-random -d sample"
)


def register(app: typer.Typer) -> None:
    app.command("guard", help=GUARD_HELP, cls=RayAddressCommand)(guard_cmd)
    app.command(
        "guards",
        help="List the registered guards (guards/*.toml); any chat model in "
        "`holisafe-bench models` can also be a zero-shot guard.",
    )(guards_cmd)


def guard_cmd(
    model: str = typer.Option(
        ..., "--model", "-m", help="Registered guard, guard TOML, or any chat model (zero-shot)."
    ),
    protocol: str = typer.Option(
        "image", "--protocol", help="image (is the image harmful?) or input (is the request?)."
    ),
    zero_shot: bool = typer.Option(
        False,
        "--zero-shot",
        help="Use the model as a zero-shot guard even if it has a guard file of its own "
        "(results then go under <model>-zero-shot).",
    ),
    dataset: str = DatasetOption,
    out: Path = ResultsOption,
    limit: int = LimitOption,
    types: list[str] = TypesOption,
    categories: list[str] = CategoriesOption,
    ids: list[str] = IdsOption,
    overwrite: bool = typer.Option(False, "--overwrite", help="Discard earlier verdicts."),
    batch_size: int = typer.Option(
        None, "--batch-size", min=1, help="Samples per forward pass or engine batch."
    ),
    concurrency: int = typer.Option(None, "--concurrency", min=1, help="Parallel API requests."),
    processes: int = typer.Option(
        None, "--processes", min=1, help="API guards: worker processes (as in run)."
    ),
    base_url: str = typer.Option(
        None, "--base-url", help="OpenAI-compatible server URL for an API or served guard."
    ),
    ray: str = typer.Option(
        None,
        "--ray",
        metavar="[ADDRESS]",
        help="Classify on a Ray cluster, as run --ray does ('auto', 'ray://host:port', "
        "'host:port'; --ray alone starts Ray here): the guard's replicas answer, this "
        "process writes. Open-weight guards only.",
    ),
    max_replicas: int = typer.Option(
        None, "--max-replicas", min=1, help="With --ray: at most N replicas of the guard."
    ),
) -> None:
    # Long: only in its signature (one typer option per flag).
    from rich.console import Console

    from holisafe_bench.dataset import load_benchmark
    from holisafe_bench.errors import HolisafeError
    from holisafe_bench.guarding.spec import get_guard
    from holisafe_bench.guarding.verdict import PROTOCOLS
    from holisafe_bench.progress import stage_progress
    from holisafe_bench.stages.guard import GuardOptions, execute_guard, plan_guard

    if protocol not in PROTOCOLS:
        raise HolisafeError(f"--protocol {protocol!r}: expected one of {', '.join(PROTOCOLS)}")
    console = Console(stderr=True, soft_wrap=True)
    spec = get_guard(model, zero_shot=zero_shot)
    if base_url:
        spec = spec.model_copy(update={"api": spec.api.model_copy(update={"base_url": base_url})})
    bench = load_benchmark(dataset)
    chosen = chosen_samples(bench.samples, limit=limit, types=types, categories=categories, ids=ids)
    options = GuardOptions(
        protocol=protocol,
        overwrite=overwrite,
        batch_size=batch_size,
        concurrency=concurrency,
        processes=processes,
    )
    if max_replicas is not None and ray is None:
        raise HolisafeError("--max-replicas needs --ray")
    plan = plan_guard(spec, chosen, layout(out), options)
    with stage_progress(f"guard {spec.name} ({protocol})", len(chosen)) as progress:
        count = lambda rec: progress.advance(**{rec.outcome: 1})  # noqa: E731
        if ray is None:
            summary = execute_guard(plan, bench, on_record=count)
        else:
            summary = _guard_on_ray(plan, bench, ray, max_replicas, count)
    _print_summary(console, summary)


def _guard_on_ray(plan, bench, address: str, max_replicas: int | None, on_record):
    from holisafe_bench.distributed.ray_cluster import parse_address
    from holisafe_bench.distributed.ray_guard import guard_on_ray
    from holisafe_bench.distributed.ray_run import RaySettings

    settings = RaySettings(address=parse_address(address), max_replicas=max_replicas)
    return guard_on_ray(plan, bench, settings, on_record=on_record)


def _print_summary(console, summary) -> None:
    outcomes = ", ".join(f"{k} {v}" for k, v in sorted(summary.outcomes.items())) or "nothing new"
    console.print(
        f"{summary.guard} ({summary.protocol}): {summary.selected} selected, "
        f"{summary.already_done} already done, {summary.attempted} attempted ({outcomes}) "
        f"in {summary.elapsed_s:.1f}s",
        markup=False,
        highlight=False,
    )
    if summary.outcomes.get("error"):
        console.print("re-run the same command to retry the failed samples", markup=False)
    console.print(f"verdicts: {summary.output}", markup=False, highlight=False)


def guards_cmd(
    as_json: bool = typer.Option(False, "--json"),
    check: Path = typer.Option(None, "--check", help="Validate a guard TOML file and exit."),
) -> None:
    import json

    from holisafe_bench.guarding.spec import get_guard, load_guards

    if check is not None:
        spec = get_guard(str(check))
        typer.echo(f"{check}: valid guard {spec.name!r} ({spec.kind}, parser {spec.parser})")
        return
    specs = sorted(load_guards().values(), key=lambda s: (s.paper_order or 1000, s.name))
    if as_json:
        typer.echo(json.dumps([s.model_dump(mode="json") for s in specs], indent=2))
        return
    width = max((len(s.name) for s in specs), default=4)
    typer.echo(f"{'name':<{width}}  {'kind':<12}  {'protocols':<11}  runs on")
    for s in specs:
        runs_on = s.model or f"{s.provider}: {s.checkpoint}"
        protocols = ",".join(s.protocols)
        typer.echo(f"{s.name:<{width}}  {s.kind:<12}  {protocols:<11}  {runs_on}")
