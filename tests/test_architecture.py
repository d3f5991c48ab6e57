"""The layout the README's "Architecture" table describes: every module is
in it, every module's docstring says its job, and no class grows past about
400 lines of code (issue 22; docstrings are the reference docs and do not
count)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import pytest_smtpd

PACKAGE = Path(pytest_smtpd.__file__).parent
README = PACKAGE.parent / "README.rst"
MODULES = sorted(path for path in PACKAGE.rglob("*.py") if "static" not in path.parts)
#: Lines of code a class may have, its docstrings not counted.
CLASS_LIMIT = 420


def architecture_section() -> str:
    text = README.read_text(encoding="utf-8")
    return text[text.index("Architecture\n====") : text.index("Development\n====")]


def test_every_module_is_in_the_architecture_table() -> None:
    named = set(re.findall(r"``(?:pytest_smtpd/)?([\w/]+\.py)``", architecture_section()))
    missing = [
        str(path.relative_to(PACKAGE)) for path in MODULES if path.name != "__init__.py" and path.name not in named
    ]
    assert missing == []


@pytest.mark.parametrize("path", MODULES, ids=lambda path: str(path.relative_to(PACKAGE)))
def test_every_module_says_its_job(path: Path) -> None:
    docstring = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
    assert docstring and len(docstring.split()) >= 4


def code_lines(node: ast.ClassDef) -> int:
    """The class's lines, less those of its own and its functions' docstrings."""
    lines = set(range(node.lineno, (node.end_lineno or node.lineno) + 1))
    for inner in ast.walk(node):
        if isinstance(inner, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and ast.get_docstring(inner):
            first = inner.body[0]
            lines -= set(range(first.lineno, (first.end_lineno or first.lineno) + 1))
    return len(lines)


def test_no_class_is_past_the_limit() -> None:
    big = {
        f"{path.relative_to(PACKAGE)}:{node.name}": code_lines(node)
        for path in MODULES
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.ClassDef) and code_lines(node) > CLASS_LIMIT
    }
    assert big == {}


def test_the_class_check_counts_code_not_docstrings() -> None:
    # Twin of the check above: a class of 430 lines of code fails it, the
    # same lines as a docstring do not.
    code = "class Big:\n" + "".join(f"    x{i} = {i}\n" for i in range(430))
    prose = 'class Long:\n    """' + "words\n" * 430 + '"""\n'
    assert code_lines(ast.parse(code).body[0]) > CLASS_LIMIT  # type: ignore[arg-type]
    assert code_lines(ast.parse(prose).body[0]) < CLASS_LIMIT  # type: ignore[arg-type]
