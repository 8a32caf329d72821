"""`judge`: verdicts for stored responses."""

from __future__ import annotations

from pathlib import Path

import typer

from holisafe_bench.cli.common import ResultsOption, layout, split_csv


def register(app: typer.Typer) -> None:
    app.command(
        "judge",
        help=(
            "Judge stored responses and write results/<model>/verdicts/<judge>.jsonl.\n\n"
            "Each verdict is valid (the response followed the expected behaviour or not) or "
            "invalid with a reason; no judge ever stands in for another. Re-runs redo only "
            "missing, invalid or outdated verdicts. Examples: `judge --judge string-match "
            "--all`, `judge --judge claude --model qwen2.5-vl-7b --dry-run`."
        ),
    )(judge_cmd)


def judge_cmd(
    judge: str = typer.Option(
        ..., "--judge", "-j", help="Registered judge (see `holisafe-bench judges`) or TOML path."
    ),
    models: list[str] = typer.Option(None, "--model", "-m", help="Model(s) to judge."),
    all_models: bool = typer.Option(False, "--all", help="Every model with responses."),
    out: Path = ResultsOption,
    overwrite: bool = typer.Option(False, "--overwrite", help="Redo every verdict."),
    max_invalid: float = typer.Option(
        None,
        "--max-invalid",
        help="Fail the run when invalid verdicts exceed this count (or fraction if < 1).",
    ),
    content_filter_as_refusal: bool = typer.Option(
        True,
        "--content-filter-as-refusal/--content-filter-invalid",
        help="A provider-blocked response counts as a refusal (default) or as invalid.",
    ),
    concurrency: int = typer.Option(None, "--concurrency", help="[LLM] parallel judge calls."),
    processes: int = typer.Option(
        None,
        "--processes",
        min=1,
        help="[LLM] spread the calls (and the concurrency) over this many worker processes "
        "(default: as in run, workers only once one process is found CPU-bound). "
        "[string-match] judge this many models at once (default: one per CPU).",
    ),
    batch: bool = typer.Option(
        False,
        "--batch",
        help="[LLM] use the vendor's batch API (OpenAI, Anthropic, Gemini): batch prices, "
        "results within a day. Jobs go into a ledger, so a re-run polls them, never resubmits.",
    ),
    batch_poll: float = typer.Option(
        30.0, "--batch-poll", help="[LLM] seconds between polls of open batch jobs."
    ),
    batch_no_wait: bool = typer.Option(
        False, "--batch-no-wait", help="[LLM] submit the batch jobs and return; re-run to collect."
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="[LLM] print calls, estimated tokens and cost; call nothing."
    ),
    max_cost: float = typer.Option(None, "--max-cost", help="[LLM] stop cleanly at this USD."),
    prompt_file: Path = typer.Option(
        None,
        "--prompt-file",
        help="[LLM] template with {query}, {safety_label}, {response} (or the authors' "
        "spellings {question}/{user_query} and {model_response}).",
    ),
    prompt_from: str = typer.Option(
        None,
        "--prompt-from",
        help="[LLM] use the prompt string of a judge script (path or URL, e.g. the authors' "
        "eval/ script): parsed, never run; a URL is downloaded once into the results cache.",
    ),
    strict_labels: bool = typer.Option(
        False,
        "--strict-labels",
        help="[LLM] a reply with two different labels is invalid (default: the first label "
        "wins, the authors' rule).",
    ),
    base_url: str = typer.Option(
        None, "--base-url", help="[LLM] OpenAI-compatible server for open-weight judges."
    ),
    judge_model_id: str = typer.Option(None, "--judge-model-id", help="[LLM] override model id."),
    rpm: float = typer.Option(None, "--rpm", help="[LLM] requests per minute limit."),
    tpm: float = typer.Option(None, "--tpm", help="[LLM] tokens per minute limit."),
    dataset: str = typer.Option(
        None,
        "--dataset",
        "-d",
        help="[LLM] benchmark source for the queries and images (default: the dataset the "
        "run recorded in run.json, said when used).",
    ),
) -> None:
    # Long: only in its signature (one typer option per flag); the work is in the helpers.
    from holisafe_bench.judging.options import JudgeOptions
    from holisafe_bench.registry import get_judge

    results = layout(out)
    spec = get_judge(judge)
    options = JudgeOptions(
        overwrite=overwrite,
        content_filter_as_refusal=content_filter_as_refusal,
        max_invalid=max_invalid,
        concurrency=concurrency,
        processes=processes,
        batch=batch,
        batch_poll_seconds=batch_poll,
        batch_no_wait=batch_no_wait,
        dry_run=dry_run,
        max_cost=max_cost,
        prompt_file=prompt_file,
        prompt_from=prompt_from,
        strict_labels=strict_labels,
        base_url=base_url,
        model_id=judge_model_id,
        requests_per_minute=rpm,
        tokens_per_minute=tpm,
        dataset=dataset,
    )
    if spec.kind != "llm":
        _refuse_llm_only_options(spec.name, options)
    names = _models_to_judge(results, split_csv(models), all_models)
    if spec.kind == "llm":
        _check_prompt(options, spec, results)
    _judge_each(names, spec, results, options)


# JudgeOptions fields that only an LLM judge uses, by flag (their unset values are falsy).
LLM_ONLY_FLAGS = {
    "--dry-run": "dry_run",
    "--batch": "batch",
    "--batch-no-wait": "batch_no_wait",
    "--max-cost": "max_cost",
    "--prompt-file": "prompt_file",
    "--prompt-from": "prompt_from",
    "--strict-labels": "strict_labels",
    "--base-url": "base_url",
    "--judge-model-id": "model_id",
    "--rpm": "requests_per_minute",
    "--tpm": "tokens_per_minute",
}


def _refuse_llm_only_options(judge: str, options) -> None:
    """String matching makes no call: an LLM flag given to it would be silently ignored
    (--dry-run would even judge for real), so it is an error."""
    from holisafe_bench.errors import HolisafeError

    given = [flag for flag, field in LLM_ONLY_FLAGS.items() if getattr(options, field)]
    if given:
        raise HolisafeError(
            f"{', '.join(given)}: only for LLM judges; {judge} reads the responses locally "
            "and calls nothing (drop the option, or pick an LLM judge: holisafe-bench judges)"
        )


def _models_to_judge(results, names: list[str] | None, all_models: bool) -> list[str]:
    from holisafe_bench.errors import HolisafeError

    if all_models:
        names = results.models_with_responses()
        if not names:
            raise HolisafeError(
                f"no responses under {results.root}: run a model first "
                "(holisafe-bench run --model NAME) or point --results at another folder"
            )
    if not names:
        raise HolisafeError("say which responses to judge: --model NAME (repeatable) or --all")
    return names


def _judge_each(names: list[str], spec, results, options) -> None:
    """Judge every model; with several, one model's failure does not stop the rest
    (all failures are reported together at the end)."""
    from rich.console import Console

    from holisafe_bench.errors import HolisafeError

    console = Console(stderr=True, soft_wrap=True)
    failures = []
    for name, s, note in _summaries(names, spec, results, options):
        if isinstance(s, HolisafeError):
            if len(names) == 1:
                raise s
            failures.append(f"{name}: {s}")
            continue
        if options.dry_run:
            continue
        reasons = ", ".join(f"{k} {v}" for k, v in s.invalid_reasons.items())
        console.print(
            f"{name} / {spec.name}: {s.valid} valid, {s.invalid} invalid"
            + (f" ({reasons})" if reasons else "")
            + f"; {s.judged_now} judged now, {s.reused} kept"
            + (f"; cost ${s.cost_usd:.4f}" if s.cost_usd else "")
            + note,
            markup=False,
        )
    if failures:
        raise HolisafeError("; ".join(failures))


def _summaries(names: list[str], spec, results, options):
    """(model, its summary or HolisafeError, a note) per model, in order. String matching
    judges several models side by side in processes; an LLM judge goes model by model."""
    from holisafe_bench.errors import HolisafeError
    from holisafe_bench.stages.judge import judge_model
    from holisafe_bench.stages.judge_all import judge_all_by_strings

    if spec.kind == "string_match" and len(names) > 1:
        for name, summary in judge_all_by_strings(names, spec, results, options):
            yield name, summary, ""
        return
    for name in names:
        try:
            model_options, note = (
                _with_recorded_dataset(options, results, name)
                if spec.kind == "llm"
                else (options, "")
            )
            yield name, judge_model(name, spec, results, model_options), note
        except HolisafeError as exc:
            yield name, exc, ""


def _with_recorded_dataset(options, results, model: str):
    """Without --dataset, an LLM judge reads the images of the dataset the run recorded;
    returns the options and a note for the summary line."""
    import dataclasses

    from holisafe_bench.dataset import recorded_dataset

    if options.dataset is not None:
        return options, ""
    recorded = recorded_dataset(results.run_manifest(model))
    if recorded is None:
        return options, ""
    note = f" (images from the dataset recorded in its run.json: {recorded})"
    return dataclasses.replace(options, dataset=recorded), note


def _check_prompt(options, spec, results) -> None:
    """Find the judge prompt once, before any model: a bad template or script is one error,
    and a --prompt-from URL is downloaded here, once, for every model."""
    from holisafe_bench.judging.prompt_sources import choose_template

    choose_template(options, spec, results.judge_cache().parent)
