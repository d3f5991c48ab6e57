"""The pytest plugin: the ``smtpd`` fixture and the ``smtpd`` marker."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from . import loopthread
from .server import Server

__all__ = ["smtpd"]

MARKER_HELP = (
    "smtpd(**options): options for the smtpd fixture's server, as Server() takes them, "
    "e.g. data_size_limit=1000, enable_SMTPUTF8=True, decode_data=True, hostname='mx.test'"
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", MARKER_HELP)


def _marker_options(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The options of every ``smtpd`` marker on the test, the closest winning."""
    options: dict[str, Any] = {}
    for marker in reversed(list(request.node.iter_markers("smtpd"))):
        if marker.args:
            raise pytest.UsageError(
                "the smtpd marker takes keyword arguments only, e.g. @pytest.mark.smtpd(data_size_limit=100)"
            )
        options.update(marker.kwargs)
    return options


@pytest.fixture(scope="session")
def smtpd_loop() -> Iterator[None]:
    """Keeps the servers' event-loop thread running for the test session, so
    that each test's server costs a bind and a close; the thread stops when
    the session ends."""
    with loopthread.kept_running():
        yield


@pytest.fixture
def smtpd(request: pytest.FixtureRequest, smtpd_loop: None) -> Iterator[Server]:
    """A running SMTP server on 127.0.0.1 and a free port.

    ``smtpd.host`` and ``smtpd.port`` say where; ``smtpd.messages`` holds
    what it accepted. Options come from ``@pytest.mark.smtpd(...)``.
    """
    options = _marker_options(request)
    try:
        server = Server(**options)
    except (TypeError, ValueError) as exc:
        raise pytest.UsageError(f"@pytest.mark.smtpd: {exc}") from exc
    server.start()
    try:
        yield server
    finally:
        server.stop()
