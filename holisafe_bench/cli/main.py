"""Entry point: a Typer group that only composes the subcommand modules."""

from __future__ import annotations

import logging
import os
import sys

import typer
from typer.core import TyperGroup

from holisafe_bench.cli import (
    analysis_cmds,
    data_cmds,
    demo_cmd,
    guard_cmds,
    guard_score_cmds,
    interop_cmds,
    judge_cmds,
    registry_cmds,
    run_cmds,
    score_cmds,
)
from holisafe_bench.errors import HolisafeError

# One naming convention: --results DIR is the results root, -o/--output FILE a file written.
# Older spellings keep working without being shown in --help.
HIDDEN_ALIASES = {"--out": "--results", "--out-file": "--output"}


def canonical_option(arg: str) -> str:
    name, sep, value = arg.partition("=")
    return HIDDEN_ALIASES.get(name, name) + sep + value if name in HIDDEN_ALIASES else arg


class _Group(TyperGroup):
    def parse_args(self, ctx, args: list[str]) -> list[str]:
        return super().parse_args(ctx, [canonical_option(a) for a in args])


app = typer.Typer(
    cls=_Group,
    name="holisafe-bench",
    help=(
        "Evaluation harness for HoliSafe-Bench (arXiv 2506.04704).\n\n"
        "Pipeline: dataset -> run -> responses -> judge -> verdicts -> score -> "
        "leaderboard / report. Every stage reads the previous stage's files under the "
        "results folder and can be re-run alone; every stage resumes where it stopped."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    # Plain Click help: wraps at any width and never cuts an option name (Rich panels did).
    rich_markup_mode=None,
)

for module in (
    data_cmds,
    registry_cmds,
    run_cmds,
    interop_cmds,
    judge_cmds,
    guard_cmds,
    guard_score_cmds,
    score_cmds,
    analysis_cmds,
    demo_cmd,
):
    module.register(app)


@app.callback()
def _root(
    verbose: bool = typer.Option(
        False, "--verbose", "-v", help="Show tracebacks and debug logs on errors."
    ),
) -> None:
    if verbose:
        os.environ["HOLISAFE_VERBOSE"] = "1"
    from holisafe_bench.providers.keys import SecretFilter

    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    for handler in logging.getLogger().handlers:  # what httpx logs at debug: the headers
        handler.addFilter(SecretFilter())


def main() -> None:
    try:
        app()
    except HolisafeError as exc:
        if os.environ.get("HOLISAFE_VERBOSE"):
            raise
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except OSError as exc:  # a file that cannot be written or read (a folder, no space, ...)
        if os.environ.get("HOLISAFE_VERBOSE"):
            raise
        where = f": {exc.filename}" if exc.filename else ""
        print(f"error: {exc.strerror or exc}{where}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:  # outside typer's own handling (at import, say)
        _say_interrupted()
        sys.exit(130)
    except SystemExit as exc:
        # Typer turns Ctrl-C into a silent exit 130: say what the user has.
        if exc.code == 130 and _from_interrupt(exc):
            _say_interrupted()
        raise


def _say_interrupted() -> None:
    print(
        "interrupted: every record written so far is kept; run the same command again to "
        "resume where it stopped",
        file=sys.stderr,
    )


def _from_interrupt(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, KeyboardInterrupt):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
