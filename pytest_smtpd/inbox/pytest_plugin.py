"""``pytest --smtpd-web [HOST:]PORT``: the dev inbox over the ``smtpd`` and
``smtpd_session`` fixtures' servers while the tests run, each message and
session tagged with the node id of the test it came in, and each test's
outcome shown. The plugin module (pytest_smtpd.plugin) registers this one;
aiohttp is imported only when the option is given."""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING, Any

import pytest

from . import EXTRA_HINT, available, is_loopback

if TYPE_CHECKING:
    import asyncio

    from .web import WebInbox

__all__ = ["InboxRun"]


class InboxRun:
    """The inbox of one test session: which test runs now, which servers are tapped."""

    def __init__(self, web: WebInbox, loop: asyncio.AbstractEventLoop) -> None:
        self.web = web
        self.loop = loop
        #: The node id of the test running now (the last one, between tests).
        self.current: str | None = None
        self._tapped: set[int] = set()

    def tag(self, record: object = None) -> str | None:
        """The test a message or session belongs to: its own ``test``
        attribute where the model has one, else the test running now."""
        found = getattr(record, "test", None)
        return found if isinstance(found, str) and found else self.current

    def tap(self, server: Any) -> None:
        """Keep what ``server`` receives, once per server."""
        if id(server) in self._tapped:
            return
        self._tapped.add(id(server))
        self.web.inbox.attach(server, self.tag)

    # -- hooks (this object is registered as a plugin for the run) ---------------

    def pytest_report_header(self) -> str:
        return f"smtpd inbox: {self.web.url}"

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        self.current = item.nodeid

    @pytest.hookimpl(hookwrapper=True)
    def pytest_fixture_setup(self, fixturedef: pytest.FixtureDef[Any]) -> Generator[None]:
        yield
        if fixturedef.argname not in ("smtpd", "smtpd_session"):
            return
        from ..server import Server

        result = getattr(fixturedef, "cached_result", None)
        if result is not None and isinstance(result[0], Server):
            self.tap(result[0])

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "call" or report.failed:
            outcome = "failed" if report.failed else report.outcome
            self.loop.call_soon_threadsafe(self.web.inbox.test_finished, report.nodeid, outcome)

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        config.pluginmanager.unregister(self)
        self.web.stop()


def _address(text: str) -> tuple[str, int]:
    host, colon, port = text.rpartition(":")
    if not colon:
        host, port = "127.0.0.1", text
    host = host.strip("[]") or "127.0.0.1"
    if not (port.isascii() and port.isdigit() and int(port) <= 65535):
        raise pytest.UsageError(f"--smtpd-web {text!r}: expected [HOST:]PORT, PORT a number from 0 to 65535")
    if not is_loopback(host):
        raise pytest.UsageError(f"--smtpd-web {text!r}: the test run's inbox serves loopback addresses only")
    return ("127.0.0.1" if host == "localhost" else host), int(port)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.getgroup("smtpd", "pytest-smtpd").addoption(
        "--smtpd-web",
        dest="smtpd_web",
        default=None,
        metavar="[HOST:]PORT",
        help="serve the dev inbox (web UI and REST API) over the tests' mail while they run; "
        "under pytest-xdist worker gwN uses PORT + N (needs pytest-smtpd[web])",
    )


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    option = config.getoption("smtpd_web", None)
    if option is None:
        return
    if not available():
        raise pytest.UsageError(f"--smtpd-web: {EXTRA_HINT}")
    host, port = _address(option)
    from .. import loopthread
    from ..config import xdist_worker_number
    from .hub import Inbox
    from .web import WebInbox

    if port:
        port += xdist_worker_number(config)
    web = WebInbox(Inbox(), host, port)
    try:
        web.start()
    except OSError as exc:
        raise pytest.UsageError(f"--smtpd-web {option}: cannot listen on {host}:{port}: {exc}") from exc
    lease = loopthread.acquire_loop()
    loop = lease.loop
    lease.release()  # the web server holds its own
    config.pluginmanager.register(InboxRun(web, loop), "pytest-smtpd-inbox")
