"""The pytest plugin: the ``smtpd``, ``smtpd_session`` and ``smtpd_options``
fixtures, the ``smtpd`` marker, the ``smtpd_*`` ini options, the "smtpd"
report section and ``--smtpd-save-dir``."""

from __future__ import annotations

import os
import socket
import sys
import types
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from . import fixture_state, loopthread
from .assertions import FixtureServer
from .fixture_state import USED_SERVER as USED_SERVER  # checks_plugin.py reads it here
from .fixture_state import SMTPDLateMessageWarning
from .matching import describe_session_end
from .server import Server  # noqa: F401  (pytest_smtpd.plugin.Server, as before)

__all__ = ["SMTPDLateMessageWarning", "SMTPDReportWarning", "smtpd", "smtpd_loop", "smtpd_options", "smtpd_session"]

#: The content checks' fixtures and ini option (lint, DKIM, snapshots, previews), and
#: ``--smtpd-web``, the dev inbox over the tests' mail (it imports aiohttp only when given).
pytest_plugins = ["pytest_smtpd.checks_plugin", "pytest_smtpd.inbox.pytest_plugin"]

MARKER_HELP = (
    "smtpd(**options): options for the smtpd fixture's server, as Server() takes them, "
    "e.g. data_size_limit=1000, enable_SMTPUTF8=True, decode_data=True, hostname='mx.test'; "
    "and strict=True: fail at teardown for messages the test never looked at"
)

#: The name our entry point registers under: ``-p no:pytest-smtpd`` turns this
#: plugin off, and smtpdfix's ``-p no:smtpd`` leaves it on.
PLUGIN_NAME = "pytest-smtpd"
#: Seconds sessions still open at teardown get to finish (a worker's QUIT)
#: before the server closes them with 421.
DEFAULT_TEARDOWN_GRACE = 1.0

#: ini name -> help. Every value is checked when pytest starts.
INI_OPTIONS = {
    "smtpd_host": "address the smtpd fixture's server listens on (default 127.0.0.1)",
    "smtpd_port": "port of the smtpd fixture's server; 0 (default) picks a free one; "
    "under pytest-xdist worker gwN listens on port + N",
    "smtpd_hostname": "name in the server's greeting and EHLO reply (default: the machine's FQDN)",
    "smtpd_data_size_limit": "largest message in octets, 0 for no limit (default 33554432)",
    "smtpd_enable_SMTPUTF8": "offer SMTPUTF8: true or false (default false)",
    "smtpd_tls": "starttls or implicit (default: no TLS)",
    "smtpd_auth": "offer AUTH to these users: user:password, space-separated for several",
    "smtpd_scope": "function (default: a server per test) or session (one server, reset after each test)",
    "smtpd_save_dir": "save each failing test's messages here as .eml files and an mbox",
    "smtpd_teardown_grace": f"seconds sessions still open at teardown get to finish (default {DEFAULT_TEARDOWN_GRACE})",
    "smtpd_strict": "true: a test fails at teardown when messages arrived that it never looked at (default false)",
}


class SMTPDReportWarning(pytest.PytestWarning):
    """Building a failing test's "smtpd" report section or saving its
    messages (``--smtpd-save-dir``) failed: the run goes on without it."""


@dataclass
class Settings:
    """The ini options, checked."""

    #: ``Server`` options from ini (only those set).
    options: dict[str, Any] = field(default_factory=dict)
    scope: str = "function"
    save_dir: Path | None = None
    teardown_grace: float = DEFAULT_TEARDOWN_GRACE
    #: ``smtpd_strict``: the default of the marker's ``strict``.
    strict: bool = False


def _bad(name: str, value: str, expected: str) -> pytest.UsageError:
    return pytest.UsageError(f"{name} = {value!r}: expected {expected}")


def _int(name: str, value: str, low: int, high: int | None = None) -> int:
    try:
        number = int(value)
    except ValueError:
        number = -1
    if number < low or (high is not None and number > high):
        raise _bad(name, value, f"a whole number from {low}" + (f" to {high}" if high is not None else " up"))
    return number


def xdist_worker_number(config: pytest.Config, early: bool = False) -> int:
    """N for pytest-xdist's worker ``gwN``; 0 outside xdist. Read from the
    worker's config, not the environment: a pytest run inside a worker's
    test (pytester) is no worker. ``early``, before xdist has set the
    config (at ``pytest_load_initial_conftests``): from the environment."""
    worker = str(getattr(config, "workerinput", {}).get("workerid", ""))
    if early and not worker:
        worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    return int(worker[2:]) if worker.startswith("gw") and worker[2:].isdigit() else 0


def read_settings(config: pytest.Config) -> Settings:
    """The ``smtpd_*`` ini options as ``Settings``; a ``pytest.UsageError``
    naming the first bad value."""

    def ini(name: str) -> str:
        return str(config.getini(name) or "").strip()

    settings = Settings()
    options = settings.options
    if value := ini("smtpd_host"):
        try:
            socket.getaddrinfo(value, None, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError):
            raise _bad("smtpd_host", value, "an address to listen on, such as 127.0.0.1 or ::1") from None
        options["host"] = value
    if value := ini("smtpd_port"):
        port = _int("smtpd_port", value, 0, 65535)
        if port:
            worker = xdist_worker_number(config)
            port += worker
            if port > 65535:
                raise _bad("smtpd_port", value, f"a port that leaves room for xdist worker gw{worker}")
        options["port"] = port
    if value := ini("smtpd_hostname"):
        if any(char.isspace() or not char.isprintable() for char in value):
            raise _bad("smtpd_hostname", value, "a host name without spaces")
        options["hostname"] = value
    if value := ini("smtpd_data_size_limit"):
        options["data_size_limit"] = _int("smtpd_data_size_limit", value, 0)
    if value := ini("smtpd_enable_SMTPUTF8"):
        if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
            raise _bad("smtpd_enable_SMTPUTF8", value, "true or false")
        options["enable_SMTPUTF8"] = value.lower() in ("true", "1", "yes")
    if value := ini("smtpd_tls"):
        if value not in ("starttls", "implicit"):
            raise _bad("smtpd_tls", value, "starttls or implicit")
        options["tls"] = value
    if value := ini("smtpd_auth"):
        users: dict[str, str] = {}
        for pair in value.split():
            user, colon, password = pair.partition(":")
            if not colon or not user:
                raise _bad("smtpd_auth", value, "user:password pairs separated by spaces")
            users[user] = password
        options["auth"] = users
    if value := ini("smtpd_scope"):
        if value not in ("function", "session"):
            raise _bad("smtpd_scope", value, "function or session")
        settings.scope = value
    save_dir = config.getoption("smtpd_save_dir", None) or ini("smtpd_save_dir")
    if save_dir:
        settings.save_dir = Path(save_dir)
        if not settings.save_dir.is_absolute():
            settings.save_dir = config.rootpath / settings.save_dir
        if settings.save_dir.exists() and not settings.save_dir.is_dir():
            raise _bad("smtpd_save_dir", str(save_dir), "a directory (this is a file)")
    if value := ini("smtpd_teardown_grace"):
        try:
            grace = float(value)
        except ValueError:
            grace = -1.0
        if not grace >= 0:
            raise _bad("smtpd_teardown_grace", value, "a number of seconds, 0 or more")
        settings.teardown_grace = grace
    if value := ini("smtpd_strict"):
        if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
            raise _bad("smtpd_strict", value, "true or false")
        settings.strict = value.lower() in ("true", "1", "yes")
    return settings


SETTINGS = pytest.StashKey[Settings]()
#: Sessions cut off at teardown: (test node id, description).
CUT_OFF = pytest.StashKey[list[tuple[str, str]]]()
#: Tests whose messages were saved already.
SAVED = pytest.StashKey[set[str]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("smtpd", "pytest-smtpd")
    group.addoption(
        "--smtpd-save-dir",
        dest="smtpd_save_dir",
        default=None,
        metavar="DIR",
        help="save each failing test's messages in DIR as .eml files and an mbox (ini: smtpd_save_dir)",
    )
    for name, help_text in INI_OPTIONS.items():
        parser.addini(name, help_text, default="")


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config) -> None:
    """``SMTPD_PORT`` for an app whose settings load with the first
    conftest.py (or pytest-django's settings): the worker is known from the
    environment this early. ``pytest_configure`` sets it again from the
    worker's config."""
    value = str(early_config.getini("smtpd_port") or "").strip()
    if value.isdigit() and int(value):  # a bad value is reported by pytest_configure
        port = int(value) + xdist_worker_number(early_config, early=True)
        fixture_state.export_port(early_config, port if port <= 65535 else None)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", MARKER_HELP)
    config.stash[SETTINGS] = read_settings(config)
    fixture_state.export_port(config, config.stash[SETTINGS].options.get("port"))
    config.stash[CUT_OFF] = []
    config.stash[SAVED] = set()


# -- living beside smtpdfix -------------------------------------------------


def _smtpdfix(config: pytest.Config) -> object | None:
    """smtpdfix's plugin, when it is loaded too: it defines ``smtpd`` as well."""
    plugins: list[object] = list(config.pluginmanager.get_plugins())
    return next((p for p in plugins if str(getattr(p, "__name__", "")).startswith("smtpdfix")), None)


def _registered_before(config: pytest.Config, first: object, then: object) -> bool:
    """Whether plugin ``first`` was registered before ``then`` (the plugin
    manager keeps names in registration order)."""
    order = [plugin for _, plugin in config.pluginmanager.list_name_plugin()]
    return first in order and then in order and order.index(first) < order.index(then)


def _conftest_defines_smtpd(config: pytest.Config) -> bool:
    for name, plugin in config.pluginmanager.list_name_plugin():
        if name and name.endswith("conftest.py"):
            values = vars(plugin).values() if hasattr(plugin, "__dict__") else ()
            if hasattr(plugin, "smtpd") or any(getattr(v, "name", None) == "smtpd" and callable(v) for v in values):
                return True
    return False


CLASH_LINE = (
    "smtpd: pytest-smtpd and smtpdfix both define the smtpd fixture; pytest-smtpd's wins. "
    f"Use -p no:{PLUGIN_NAME} for smtpdfix's, or -p no:smtpd to turn smtpdfix off."
)


@pytest.hookimpl(trylast=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    """With smtpdfix loaded too, which plugin's ``smtpd`` a test gets would
    depend on the order the plugins were installed in. Registering ours once
    more, now that the fixture manager has read both, puts it last: it wins.
    Only when smtpdfix came second, and no conftest.py read so far defines
    ``smtpd``: a user's override must keep winning."""
    smtpdfix = _smtpdfix(session.config)
    if (
        smtpdfix is not None
        and _registered_before(session.config, sys.modules[__name__], smtpdfix)
        and not _conftest_defines_smtpd(session.config)
    ):
        holder = types.ModuleType("pytest_smtpd.plugin_wins")
        holder.smtpd = smtpd  # type: ignore[attr-defined]
        session.config.pluginmanager.register(holder, "pytest-smtpd-wins")


def pytest_report_header(config: pytest.Config) -> str | None:
    return CLASH_LINE if _smtpdfix(config) is not None else None


# -- fixtures -----------------------------------------------------------------


def _marker_options(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The options of every ``smtpd`` marker on the test, the closest winning."""
    options: dict[str, Any] = {}
    for marker in reversed(list(request.node.iter_markers("smtpd"))):
        if marker.args:
            raise pytest.UsageError(
                "the smtpd marker takes keyword arguments only, e.g. @pytest.mark.smtpd(data_size_limit=100)"
            )
        options.update(marker.kwargs)
    options.pop("lint", None)  # the content checks' (checks_plugin.py), not the server's
    return options


def _start(options: dict[str, Any], source: str, nodeid: str | None = None) -> FixtureServer:
    try:
        server = FixtureServer(**options)
    except (TypeError, ValueError) as exc:
        raise pytest.UsageError(f"{source}: {exc}") from exc
    server.current_test = nodeid  # its sessions are this test's
    server.start()
    return server


def _stop(server: FixtureServer, config: pytest.Config, nodeid: str) -> None:
    """Stop ``server``, giving open sessions the teardown grace to finish;
    note the sessions it had to cut off, for the terminal summary."""
    server.stop(grace=config.stash[SETTINGS].teardown_grace)
    for session in server.sessions:
        if session.ended_by == "stop":
            config.stash[CUT_OFF].append((nodeid, describe_session_end(session)))


@pytest.fixture(scope="session")
def smtpd_loop() -> Iterator[None]:
    """Keeps the servers' event-loop thread running for the test session, so
    that each test's server costs a bind and a close; the thread stops when
    the session ends."""
    with loopthread.kept_running():
        yield


@pytest.fixture(scope="session")
def smtpd_options() -> dict[str, Any]:
    """``Server`` options for the ``smtpd`` fixture (default none): override
    it in a conftest.py, module or class. They win over the ini options and
    lose to ``@pytest.mark.smtpd``. Give the override ``scope="session"`` to
    configure the shared server (``smtpd_session``) too."""
    return {}


def _session_visible_options(request: pytest.FixtureRequest) -> dict[str, Any]:
    """``smtpd_options`` as a session-scoped fixture sees it; an override of
    narrower scope (a module's, a test's) does not apply to the shared server."""
    try:
        options = request.getfixturevalue("smtpd_options")
    except pytest.fail.Exception:  # ScopeMismatch: a narrower override
        return {}
    return dict(options)


@pytest.fixture(scope="session")
def smtpd_session(request: pytest.FixtureRequest, smtpd_loop: None) -> Iterator[FixtureServer]:
    """One server for the whole test session (per xdist worker), built from
    the ini options and ``smtpd_options`` as seen at session scope. With
    ``smtpd_scope = session`` the ``smtpd`` fixture hands it to each test,
    put back as its configuration says after each test (reset, running)."""
    options = {**request.config.stash[SETTINGS].options, **_session_visible_options(request)}
    options.pop("strict", None)  # the smtpd fixture's, per test
    server = _start(options, "smtpd_session")
    try:
        yield server
    finally:
        _stop(server, request.config, "smtpd_session")


def _normalised(options: dict[str, Any]) -> dict[str, Any]:
    return {"host": "127.0.0.1", "port": 0, **options}


@pytest.fixture
def smtpd(request: pytest.FixtureRequest, smtpd_options: dict[str, Any], smtpd_loop: None) -> Iterator[FixtureServer]:
    """A running SMTP server on 127.0.0.1 and a free port.

    ``smtpd.host`` and ``smtpd.port`` say where; ``smtpd.messages`` holds
    what it accepted. Options: ini < ``smtpd_options`` < ``@pytest.mark.smtpd``.
    With ``smtpd_scope = session``, the shared ``smtpd_session`` server,
    with no messages or sessions and as configured, unless the test asks
    for other options. Each session (and its messages) carries the node id
    of the test it began in (``session.test``).
    """
    settings = request.config.stash[SETTINGS]
    marker = _marker_options(request)
    options = {**settings.options, **dict(smtpd_options), **marker}
    source = "@pytest.mark.smtpd" if marker else "smtpd_options"
    strict = fixture_state.pop_strict(options, settings.strict, source)
    nodeid = request.node.nodeid
    if settings.scope == "session":
        shared: FixtureServer = request.getfixturevalue("smtpd_session")
        if _normalised(shared.options) == _normalised(options):
            fixture_state.take_over(request.config, shared, nodeid)
            used = fixture_state.use(request.node, shared, strict, shared=True)
            try:
                yield shared
            finally:
                fixture_state.hand_back(request.config, used, nodeid)
            return
        if options.get("port") == shared.port:
            # The fixed port is the shared server's: this one takes a free port.
            options["port"] = 0
    server = _start(options, source, nodeid)
    used = fixture_state.use(request.node, server, strict)
    try:
        yield server
    finally:
        fixture_state.end_own(used, lambda: _stop(server, request.config, nodeid))


# -- reports --------------------------------------------------------------------


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if call.when == "teardown":
        fixture_state.forget(item)  # the last report: let go of the server
        return
    server = item.stash.get(USED_SERVER, None)
    if server is None or not report.failed:
        return
    fixture_state.note_failed(item)
    from .report import describe, save_artifacts

    messages = list(server.messages)
    sessions = list(server.sessions)
    try:
        report.sections.append(("smtpd", describe(messages, sessions)))
    except Exception as exc:  # a report is no reason to end the run
        _report_trouble(item, report, "building the smtpd report section", exc)
    settings = item.config.stash[SETTINGS]
    saved = item.config.stash[SAVED]
    if settings.save_dir is not None and item.nodeid not in saved:
        saved.add(item.nodeid)
        try:
            save_artifacts(messages, settings.save_dir, item.nodeid)
        except Exception as exc:  # a full disk is no reason to end the run either
            _report_trouble(item, report, f"saving its messages to {settings.save_dir}", exc)


def _report_trouble(item: pytest.Item, report: pytest.TestReport, what: str, exc: Exception) -> None:
    """A warning naming the test and the reason; under ``-W error`` (where
    the warning would be raised here, ending the run) a report section."""
    warning = SMTPDReportWarning(f"{item.nodeid}: {what} failed: {type(exc).__name__}: {exc}")
    try:
        item.warn(warning)
    except Warning:
        report.sections.append(("smtpd warning", str(warning)))


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    cut_off = config.stash.get(CUT_OFF, [])
    if cut_off:
        terminalreporter.write_sep("-", "smtpd: sessions cut off at teardown")
        for nodeid, description in cut_off:
            terminalreporter.write_line(f"{nodeid}: {description}")
