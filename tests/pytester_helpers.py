"""What the tests that run a pytest inside pytester share: the ini of a
project as strict as ours (and the ``strict`` fixture of tests/conftest.py
that writes it), a run that must stop at start-up, and where this package
is for a run in a subprocess."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

import pytest_smtpd

#: For the runs in a subprocess (``runpytest_subprocess``, xdist): import this
#: package, wherever it is (pytester keeps only the test's directory in
#: PYTHONPATH).
PACKAGE_ROOT = str(Path(pytest_smtpd.__file__).resolve().parents[1])

#: In-process runs re-register our plugin module, which the outer run has
#: imported already (how an editable install is laid out decides whether
#: pytest warns about it).
REWRITE_WARNING = (
    "ignore:Module already imported so cannot be rewritten. pytest_smtpd:pytest.PytestAssertRewriteWarning"
)


def strict_ini(*extra: str, warnings: str = "error", ignore: Sequence[str] = (), asyncio: bool = False) -> str:
    """A pytester project's ini as strict as ours: warnings are ``warnings``
    (errors unless a test wants to see one shown as a warning), markers must
    be registered, and unrelated plugins are left out (pytester re-imports
    them at every run, hypothesis alone costing a second). ``ignore`` are
    more ``filterwarnings`` lines; with ``asyncio`` pytest-asyncio is loaded,
    in strict mode. ``extra`` are lines of ini to end with, each ending
    with a newline."""
    filters = "".join(f"    {line}\n" for line in (warnings, REWRITE_WARNING, *ignore))
    addopts = "addopts = --strict-markers -p no:hypothesispytest -p no:benchmark -p no:randomly -p no:cacheprovider\n"
    plugins = (
        "asyncio_mode = strict\nasyncio_default_fixture_loop_scope = function\n" if asyncio else "    -p no:asyncio\n"
    )
    return "[pytest]\nfilterwarnings =\n" + filters + addopts + plugins + "".join(extra)


#: The usual strict ini, for ``INI + "smtpd_scope = session\n"``.
INI = strict_ini()

#: The same for a server shared by the whole run.
SESSION_INI = INI + "smtpd_scope = session\n"


def start_up_error(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """Run pytest in-process with ``args`` over a test that must never run:
    it must stop at start-up with a usage error (whose text the caller checks
    in the result's stderr)."""
    pytester.makepyfile("def test_never(): pass")
    result = pytester.runpytest_inprocess(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    return result
