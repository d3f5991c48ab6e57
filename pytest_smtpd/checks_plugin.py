"""The pytest side of the content checks: the ``smtpd_lint`` ini option and
the marker's ``lint=`` (every message of a test linted at teardown), the
``smtpd_dkim`` and ``email_snapshot`` fixtures, and a failing test's
messages and HTML previews in its pytest-html report. Loaded by
``plugin.py``; the checks themselves (and dkimpy, syrupy) are imported only
when used."""

from __future__ import annotations

from collections.abc import Generator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from .dkim import DKIMKey

__all__ = ["LINT_LEVELS", "email_snapshot", "lint_level", "smtpd_dkim"]

#: ``smtpd_lint`` and ``lint=``: off (default), or the severity that fails.
LINT_LEVELS = ("off", "error", "warning")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        "smtpd_lint",
        "lint every message of a test at teardown: off (default), error (fail on errors) or warning (on warnings too)",
        default="",
    )


def pytest_configure(config: pytest.Config) -> None:
    value = str(config.getini("smtpd_lint") or "").strip()
    if value and value not in LINT_LEVELS:
        raise pytest.UsageError(f"smtpd_lint = {value!r}: expected one of {', '.join(LINT_LEVELS)}")


def lint_level(request: pytest.FixtureRequest) -> str:
    """The test's lint level: the closest ``smtpd`` marker's ``lint=``, else
    the ``smtpd_lint`` ini option, else ``"off"``."""
    level: Any = None
    source = "@pytest.mark.smtpd(lint=...)"
    for marker in request.node.iter_markers("smtpd"):
        if "lint" in marker.kwargs:
            level = marker.kwargs["lint"]
            break
    if level is None:
        level = str(request.config.getini("smtpd_lint") or "").strip() or "off"
        source = "smtpd_lint"
    if level not in LINT_LEVELS:
        raise pytest.UsageError(f"{source} = {level!r}: expected one of {', '.join(LINT_LEVELS)}")
    return str(level)


@pytest.fixture(autouse=True)
def _smtpd_lint_at_teardown(request: pytest.FixtureRequest) -> Iterator[None]:
    """With a lint level set, lint the messages of a test that uses ``smtpd``
    once it has run (before the server is stopped or cleared)."""
    if "smtpd" not in request.fixturenames:
        yield
        return
    level = lint_level(request)
    if level == "off":
        yield
        return
    # Set up here, so that its teardown comes after this one's.
    server = request.getfixturevalue("smtpd")
    yield
    from .lint import check_messages

    problem = None
    try:
        check_messages(server.messages.snapshot(), level)  # not "looked at" for strict mode
    except AssertionError as exc:
        problem = f"smtpd lint ({level}): {exc}"
    if problem is not None:
        pytest.fail(problem, pytrace=False)


@pytest.fixture
def smtpd_dkim() -> Iterator[DKIMKey]:
    """A fresh RSA test key to sign with (``domain``, ``selector``,
    ``private_key_pem``, ``public_key_dns``); ``message.verify_dkim()`` and
    ``assert_sent(dkim_valid=True)`` check signatures against it, no DNS."""
    from .dkim import forget_key, make_key

    key = make_key()
    try:
        yield key
    finally:
        forget_key(key)


@pytest.fixture
def email_snapshot(request: pytest.FixtureRequest) -> Any:  # an EmailSnapshotAssertion: syrupy is optional
    """syrupy's ``snapshot`` for messages: ``assert message == email_snapshot``
    compares a normalised ``.eml``; ``email_snapshot(ignore_headers=[...])``
    normalises more headers. Needs ``pytest-smtpd[snapshot]``."""
    from .snapshot import email_snapshot_for  # a clear error without syrupy

    return email_snapshot_for(request.getfixturevalue("snapshot"))


# Outermost (tryfirst): after plugin.py's hook has saved the previews.
@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if not report.failed or call.when == "teardown" or not item.config.pluginmanager.hasplugin("html"):
        return
    from . import plugin

    server = item.stash.get(plugin.USED_SERVER, None)
    messages = list(server.messages) if server is not None else []
    if not messages:
        return
    from pytest_html import extras  # type: ignore[import-untyped, unused-ignore]

    from .preview import report_html
    from .report import safe_name

    save_dir = item.config.stash[plugin.SETTINGS].save_dir
    stem = safe_name(item.nodeid)
    previews = [
        save_dir / f"{stem}-{index}.html" if save_dir is not None else None for index in range(1, len(messages) + 1)
    ]
    previews = [path if path is not None and path.exists() else None for path in previews]
    html_path = getattr(item.config.option, "htmlpath", None)
    report_dir = Path(html_path).resolve().parent if html_path else None
    extra = extras.html(report_html(messages, previews, report_dir))
    report.extras = [*getattr(report, "extras", []), extra]  # type: ignore[attr-defined]
