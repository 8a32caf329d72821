"""Where a judge's prompt comes from: the judge's template, `--prompt-file`, or
`--prompt-from` a judge script (the authors' released `eval/` scripts).

A script is parsed with `ast` and never imported or run: the prompt is a string literal
assigned to a name. A URL is downloaded once into the results cache."""

from __future__ import annotations

import ast
import os
import textwrap
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from holisafe_bench.errors import HolisafeError
from holisafe_bench.judging.options import JudgeOptions
from holisafe_bench.judging.template import (
    PromptTemplate,
    checked_template,
    load_template,
    scan_placeholders,
    spelled,
)
from holisafe_bench.provenance import sha256_file, sha256_text
from holisafe_bench.registry import JudgeSpec

MAX_SCRIPT_BYTES = 5 * 1024 * 1024  # a judge script is a few kB; anything this big is not one
_STRIP_METHODS = {"strip", "lstrip", "rstrip"}


def choose_template(options: JudgeOptions, judge: JudgeSpec, cache_dir: Path) -> PromptTemplate:
    """The prompt template an LLM judge uses: --prompt-from, --prompt-file, or its own."""
    if options.prompt_from and options.prompt_file:
        raise HolisafeError("give either --prompt-file or --prompt-from, not both")
    if options.prompt_from:
        return template_from_script(options.prompt_from, cache_dir)
    if options.prompt_file:
        return load_template(options.prompt_file, user_file=True)
    return load_template(judge.prompt_template or "default.txt")


def template_from_script(path_or_url: str, cache_dir: Path) -> PromptTemplate:
    path = _local_copy(path_or_url, cache_dir)
    found = find_prompt(path, origin=path_or_url)
    provenance = {
        "prompt_script_origin": path_or_url,
        "prompt_script_sha256": sha256_file(path),
        "prompt_script_variable": found.name,
        "prompt_script_line": found.line,
    }
    if _is_url(path_or_url):
        provenance["prompt_script_cached_copy"] = str(path)
    return checked_template(
        found.text,
        f"{path_or_url} ({found.name}, line {found.line})",
        format_style=found.format_style,
        provenance=provenance,
    )


# -- fetching ----------------------------------------------------------------------------


def _is_url(path_or_url: str) -> bool:
    return urllib.parse.urlsplit(path_or_url).scheme in ("http", "https")


def _local_copy(path_or_url: str, cache_dir: Path) -> Path:
    if not _is_url(path_or_url):
        path = Path(path_or_url)
        if not path.is_file():
            raise HolisafeError(f"--prompt-from {path_or_url}: no such file")
        return path
    name = Path(urllib.parse.urlsplit(path_or_url).path).name or "script.py"
    target = cache_dir / "prompt_scripts" / f"{sha256_text(path_or_url)[:16]}-{name}"
    if not target.is_file():  # downloaded once; a re-run reads the same bytes
        _download(path_or_url, target)
    return target


def _download(url: str, target: Path) -> None:
    try:
        with urllib.request.urlopen(url, timeout=60) as reply:
            data = reply.read(MAX_SCRIPT_BYTES + 1)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise HolisafeError(
            f"--prompt-from {url}: download failed ({reason}); check the URL, or download "
            "the script and pass its path"
        ) from exc
    if len(data) > MAX_SCRIPT_BYTES:
        raise HolisafeError(f"--prompt-from {url}: over {MAX_SCRIPT_BYTES} bytes, not a script")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + f".{os.getpid()}.part")
    partial.write_bytes(data)
    os.replace(partial, target)  # never a half-written copy under the final name


# -- finding the prompt in a script ------------------------------------------------------


@dataclass(frozen=True)
class ScriptPrompt:
    text: str
    name: str
    line: int
    format_style: bool


def find_prompt(path: Path, *, origin: str) -> ScriptPrompt:
    """The best prompt string of a Python script: a literal assigned to a name, holding a
    response and a query placeholder; more inputs covered and fewer unknown placeholders
    win, then the first in the file."""
    tree = _parse(path, origin)
    candidates = []
    for name, line, text in _assigned_strings(tree):
        inputs, unknown = scan_placeholders(text, format_style=True)
        if {"query", "response"} <= inputs:
            candidates.append(((-len(inputs), len(unknown), line), name, line, text))
    if not candidates:
        raise HolisafeError(
            f"{origin}: no prompt string found (a string assigned to a name, with a response "
            f"placeholder {spelled('response')} and a query placeholder {spelled('query')}); "
            "pass the judge script itself, or the prompt text with --prompt-file"
        )
    _, name, line, text = min(candidates, key=lambda c: c[0])
    return ScriptPrompt(text, name, line, _used_with_format(tree, name))


def _parse(path: Path, origin: str) -> ast.Module:
    try:
        return ast.parse(path.read_bytes(), filename=str(path))
    except SyntaxError as exc:
        raise HolisafeError(
            f"{origin}: not a Python script ({exc.msg}, line {exc.lineno}); for a file on "
            "GitHub pass its raw URL (raw.githubusercontent.com), not the page"
        ) from exc
    except (OSError, ValueError) as exc:
        raise HolisafeError(f"{origin}: cannot read it as a Python script ({exc})") from exc


def _assigned_strings(tree: ast.Module):
    """(name, line, text) of every string literal assigned to a name or attribute."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        else:
            continue
        text = _literal_text(value)
        if text is None:
            continue
        for target in targets:
            name = _target_name(target)
            if name:
                yield name, node.lineno, text


def _target_name(target: ast.expr) -> str | None:
    if isinstance(target, ast.Name):
        return target.id
    if isinstance(target, ast.Attribute):
        return target.attr
    return None


def _literal_text(node: ast.expr) -> str | None:
    """The value of a string built from literals only: a constant (implicit concatenation
    and triple quotes are already one constant), `a + b`, `.strip()` and `dedent(...)`.
    f-strings are not templates (their values are filled in where they are written)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _literal_text(node.left), _literal_text(node.right)
        return None if left is None or right is None else left + right
    if isinstance(node, ast.Call) and not node.keywords:
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr in _STRIP_METHODS and not node.args:
            inner = _literal_text(func.value)
            return None if inner is None else getattr(inner, func.attr)()
        called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        if called == "dedent" and len(node.args) == 1:
            inner = _literal_text(node.args[0])
            return None if inner is None else textwrap.dedent(inner)
    return None


def _used_with_format(tree: ast.Module, name: str) -> bool:
    """Whether the script fills the prompt with str.format (then `{{` means `{`). A prompt
    the script fills with .replace is plain text; with neither seen, str.format is assumed,
    its placeholders being written in that syntax."""
    methods = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _target_name(node.value) == name:
            methods.add(node.attr)
    return bool(methods & {"format", "format_map"}) or "replace" not in methods
