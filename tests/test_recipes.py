"""docs/recipes.rst and README's cheat sheet run as written: each python
block named ``# test_x.py`` is a test module, run inside pytester with the
project's strictness (warnings are errors)."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest
from pytester_helpers import strict_ini

ROOT = Path(__file__).parent.parent
RECIPES = ROOT / "docs" / "recipes.rst"
INI = strict_ini(asyncio=True)


def python_blocks(text: str, only_tests: bool = False) -> dict[str, str]:
    """Each ``.. code-block:: python`` of ``text`` by the file name its first
    line gives (``# test_x.py``); with ``only_tests``, blocks without one
    are left out."""
    blocks = {}
    for match in re.finditer(r"^\.\. code-block:: python\n\n((?:    .*\n|\n)+)", text, re.MULTILINE):
        code = textwrap.dedent(match.group(1))
        name = re.match(r"# (test_\w+)\.py", code)
        if name is None and only_tests:
            continue
        assert name is not None, f"a recipe must start with its file name: {code[:60]!r}"
        blocks[name.group(1)] = code
    return blocks


BLOCKS = python_blocks(RECIPES.read_text(encoding="utf-8"))
#: How many tests each recipe holds.
EXPECTED = {
    "test_flask_signup": 1,
    "test_django_welcome": 2,
    "test_fastapi_receipt": 1,
    "test_nightly_report": 2,
    "test_worker": 1,
}


def test_every_recipe_is_run() -> None:
    assert sorted(BLOCKS) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_recipe(pytester: pytest.Pytester, name: str) -> None:
    pytester.makeini(INI)
    pytester.makepyfile(**{name: BLOCKS[name]})
    pytester.runpytest_inprocess().assert_outcomes(passed=EXPECTED[name])


def test_worker_recipe_never_gets_421_on_quit(pytester: pytest.Pytester) -> None:
    """Issue 7: before the teardown grace, the worker's QUIT met the closing
    server in about half the runs (421, an exception in the thread, an error
    under filterwarnings = error). Twenty runs, each ending while the worker
    may still be saying QUIT. (With ``-o smtpd_teardown_grace=0`` 12 to 19
    of the 20 errored when this was written.)"""
    pytester.makeini(INI)
    worker = BLOCKS["test_worker"].replace(
        "def test_worker_sends_the_welcome_mail(smtpd):",
        "import pytest\n\n@pytest.mark.parametrize('run', range(20))\n"
        "def test_worker_sends_the_welcome_mail(smtpd, run):",
    )
    pytester.makepyfile(test_worker=worker)
    result = pytester.runpytest_inprocess()
    result.assert_outcomes(passed=20)
    assert "SMTPServerDisconnected" not in result.stdout.str()
    assert "Exception in thread" not in result.stdout.str()


def test_readme_cheat_sheet(pytester: pytest.Pytester) -> None:
    readme = python_blocks((ROOT / "README.rst").read_text(encoding="utf-8"), only_tests=True)
    pytester.makeini(INI)
    pytester.makepyfile(test_signup=readme["test_signup"])
    pytester.runpytest_inprocess().assert_outcomes(passed=7)
