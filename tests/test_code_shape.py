"""House rules that keep the code easy to change: no function over 60 lines in the package
unless a comment at its top says why (`# Long: ...`)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "holisafe_bench"
LIMIT = 60


def _explained(lines: list[str], node: ast.AST) -> bool:
    """A `# Long:` comment among the first lines of the body (after a docstring)."""
    body = node.body
    start = body[0].end_lineno if isinstance(body[0], ast.Expr) else node.body[0].lineno - 1
    head = lines[node.lineno : start + 3]
    return any(line.strip().startswith("# Long:") for line in head)


def test_no_function_over_60_lines_without_a_reason():
    long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        lines = text.splitlines()
        for node in ast.walk(ast.parse(text)):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            size = node.end_lineno - node.lineno + 1
            if size > LIMIT and not _explained(lines, node):
                long.append(
                    f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.name} ({size})"
                )
    assert not long, "functions over 60 lines without a '# Long:' reason:\n" + "\n".join(long)
