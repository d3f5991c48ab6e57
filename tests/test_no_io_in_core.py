"""The protocol core stays sans-I/O: none of its modules imports a module that
does I/O or concurrency, directly or through another import form."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import pytest_smtpd

PACKAGE = Path(pytest_smtpd.__file__).parent
REQUIRED_CORE = ["connection", "_parse", "state", "replies", "events", "errors", "dsn"]
#: Further core modules of the planned layout, checked once they exist.
OPTIONAL_CORE = [
    "auth",
    "_buffer",
    "_readers",
    "recorder",
    "_commands",
    "_extensions",
    "_faulting",
    "limits",
    "_dispatch",
    "_channel",
]
CORE = REQUIRED_CORE + [name for name in OPTIONAL_CORE if (PACKAGE / f"{name}.py").exists()]
FORBIDDEN = {"asyncio", "socket", "ssl", "threading", "selectors"}


def imported_modules(source: str) -> set[str]:
    """Every module an ``import`` or ``from ... import`` names, top-level or nested."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name | ast.Attribute)
            and (node.func.id if isinstance(node.func, ast.Name) else node.func.attr) in ("__import__", "import_module")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.add(node.args[0].value)
    return found


def io_imports(source: str) -> set[str]:
    return {name for name in imported_modules(source) if name.split(".")[0] in FORBIDDEN}


def test_core_modules_exist() -> None:
    assert [name for name in REQUIRED_CORE if not (PACKAGE / f"{name}.py").is_file()] == []


@pytest.mark.parametrize("module", CORE)
def test_core_module_does_no_io(module: str) -> None:
    source = (PACKAGE / f"{module}.py").read_text(encoding="utf-8")
    assert io_imports(source) == set()


def test_core_imports_only_core_modules() -> None:
    """Relative imports stay inside the core, so I/O cannot come in through
    a non-core module of the package either."""
    for module in CORE:
        tree = ast.parse((PACKAGE / f"{module}.py").read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level > 0:
                names = [node.module] if node.module else [alias.name for alias in node.names]
                assert set(names) <= set(CORE), f"{module}.py imports {names}"


@pytest.mark.parametrize(
    "source",
    [
        "import socket",
        "import asyncio.events",
        "from ssl import SSLContext",
        "import os, threading as t",
        "def f():\n    import selectors",
        "import importlib\nimportlib.import_module('socket')",
        "__import__('asyncio')",
    ],
)
def test_the_check_catches_io_imports(source: str) -> None:
    assert io_imports(source)


def test_the_check_ignores_harmless_imports() -> None:
    assert io_imports("import re\nfrom . import socket_like\nfrom .errors import socket") == set()
