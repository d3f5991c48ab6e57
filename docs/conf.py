"""Sphinx configuration: ``nox -s docs`` builds the site with ``-W
--keep-going -n`` (warnings are errors, every reference must resolve)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pytest_smtpd import __version__  # noqa: E402

project = "pytest-smtpd"
author = "pytest-smtpd developers"
copyright = "pytest-smtpd developers"
release = __version__
version = __version__

extensions = ["sphinx.ext.autodoc"]
html_theme = "furo"
html_title = f"pytest-smtpd {release}"
exclude_patterns = ["_build"]
nitpicky = True
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "undoc-members": False, "show-inheritance": True}

# No intersphinx: CI has no network (only package registries), and the build
# must pass offline. References to names outside this project (the standard
# library, pytest, aiosmtplib, trustme) are therefore left unlinked, and the
# nitpicky check ignores exactly those: names in these packages, builtins,
# and typing's generics. A name of ours that does not resolve still fails.
_EXTERNAL_MODULES = (
    "asyncio|collections|email|enum|os|pathlib|re|socket|ssl|threading|types|typing|typing_extensions"
    "|datetime|logging|argparse|contextlib|smtplib|_pytest|pytest|aiosmtplib|trustme"
)
_BUILTINS = (
    "None|bool|bytes|bytearray|int|float|str|dict|list|tuple|set|frozenset|object|type|callable"
    "|Exception|BaseException|ValueError|TypeError|RuntimeError|OSError|TimeoutError|IndexError"
    "|KeyError|AssertionError|Warning|UserWarning|memoryview|Ellipsis|NotImplemented"
)
nitpick_ignore_regex = [
    (r"py:.*", rf"(?:{_EXTERNAL_MODULES})(?:\..*)?"),
    (r"py:.*", rf"(?:{_BUILTINS})"),
    # Type aliases and generics as autodoc prints them (``Callable[[...], ...]`` pieces).
    (r"py:.*", r"(?:Any|Callable|Awaitable|Iterator|Iterable|Generator|Sequence|Mapping|Literal|Optional|Union)"),
]
# Ours, private, but the type of a public attribute (Faults.rules): left
# unlinked rather than documented.
nitpick_ignore = [("py:class", "pytest_smtpd.faults._Rule")]
# Checked at import: the regexes compile.
for _domain, _target in nitpick_ignore_regex:
    re.compile(_target)
