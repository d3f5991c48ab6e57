"""The pytest plugin: the ``smtpd``, ``smtpd_session``, ``smtpd_options``
and (with Django) ``smtpd_django`` fixtures, the ``smtpd`` marker, the
"smtpd" report section and ``--smtpd-save-dir``. The ``smtpd_*`` ini
options and the checks of every option are in ``config``."""

from __future__ import annotations

import sys
import types
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

from . import fixture_state
from .config import (  # noqa: F401  (DEFAULT_TEARDOWN_GRACE, Settings: importable from here, as before)
    DEFAULT_TEARDOWN_GRACE,
    INI_OPTIONS,
    OptionError,
    Settings,
    blame,
    check_layer,
    marker_options,
    read_settings,
    xdist_worker_number,
)
from .django_mail import EveryTest, django_installed, pointed_at
from .fixture_state import USED_SERVER as USED_SERVER  # checks_plugin.py reads it here
from .fixture_state import SMTPDLateMessageWarning

if TYPE_CHECKING:
    from .assertions import FixtureServer

# pytest imports this module (and so this package) at start-up, in every run
# that has the plugin installed, whether or not a test uses a server: the
# server, the message model and asyncio load with the first smtpd fixture
# (``_built``), not here.

__all__ = [
    "SMTPDLateMessageWarning",
    "SMTPDReportWarning",
    "smtpd",
    "smtpd_django",
    "smtpd_loop",
    "smtpd_options",
    "smtpd_session",
]

#: The content checks' fixtures and ini option (lint, DKIM, snapshots, previews), and
#: ``--smtpd-web``, the dev inbox over the tests' mail (it imports aiohttp only when given).
pytest_plugins = ["pytest_smtpd.checks_plugin", "pytest_smtpd.inbox.pytest_plugin"]

MARKER_HELP = (
    "smtpd(**options): options for the smtpd fixture's server, as Server() takes them, "
    "e.g. data_size_limit=1000, enable_SMTPUTF8=True, decode_data=True, hostname='mx.test'; "
    "report='full'|'summary'|'off' for the test's smtpd report section, "
    "and strict=True: fail at teardown for messages the test never looked at"
)

#: The name our entry point registers under: ``-p no:pytest-smtpd`` turns this
#: plugin off, and smtpdfix's ``-p no:smtpd`` leaves it on.
PLUGIN_NAME = "pytest-smtpd"


class SMTPDReportWarning(pytest.PytestWarning):
    """Building a failing test's "smtpd" report section or saving its
    messages (``--smtpd-save-dir``) failed: the run goes on without it."""


SETTINGS = pytest.StashKey[Settings]()
#: Sessions cut off at teardown and not yet put in a teardown report:
#: (test node id, description).
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
    if config.stash[SETTINGS].django:
        if not django_installed():
            raise pytest.UsageError("smtpd_django = true: Django is not installed (pip install django)")
        config.pluginmanager.register(EveryTest(), "pytest-smtpd-django")
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


T = TypeVar("T")


def _or_fail(build: Callable[[], T]) -> T:
    """``build()``; an ``OptionError`` fails the test's setup with its one
    line naming the source (no traceback through the plugin)."""
    try:
        return build()
    except OptionError as exc:
        problem = str(exc)
    pytest.fail(problem, pytrace=False)  # out of the except block: no chained traceback


def _marker_options(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The ``Server`` options of every ``smtpd`` marker on the test, the
    closest winning, and ``strict=`` (the fixture's); the marker's other own
    options (``report=``, and ``lint=`` of the content checks,
    checks_plugin.py) left out."""
    server, own = _or_fail(lambda: marker_options(list(reversed(list(request.node.iter_markers("smtpd"))))))
    if "strict" in own:
        server["strict"] = own["strict"]
    return server


def _layers(request: pytest.FixtureRequest, smtpd_options: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Where the test's ``Server`` options come from, the closest last:
    (source, options) for the ini, ``smtpd_options`` and the markers."""
    return [
        ("the smtpd_* ini options", request.config.stash[SETTINGS].options),
        ("the smtpd_options fixture", dict(smtpd_options)),
        ("@pytest.mark.smtpd", _marker_options(request)),
    ]


def _start(
    options: dict[str, Any], layers: Sequence[tuple[str, Mapping[str, Any]]], nodeid: str | None = None
) -> FixtureServer:
    """A started ``FixtureServer``; a bad option fails the test's setup with
    one line naming its source (no traceback through the plugin)."""
    server = _or_fail(lambda: _built(options, layers))
    server.current_test = nodeid  # its sessions are this test's
    server.start()
    return server


def _built(options: dict[str, Any], layers: Sequence[tuple[str, Mapping[str, Any]]]) -> FixtureServer:
    """``FixtureServer(**options)``; an ``OptionError`` naming the layer a bad option came from."""
    from .assertions import FixtureServer

    for source, layer in layers[1:]:  # the ini options were checked at start-up
        check_layer(source, layer)
    try:
        return FixtureServer(**options)
    except (TypeError, ValueError) as exc:
        raise OptionError(f"{blame(layers, lambda o: FixtureServer(**o))}: {exc}") from None


def _strict(
    layers: list[tuple[str, dict[str, Any]]], options: dict[str, Any], default: bool
) -> tuple[bool, list[tuple[str, dict[str, Any]]]]:
    """``strict`` taken out of the merged options (it is the fixture's, not
    a ``Server`` option) and out of each layer: its value, and the layers."""
    source = next((source for source, layer in reversed(layers) if "strict" in layer), "smtpd_options")
    strict = _or_fail(lambda: fixture_state.pop_strict(options, default, source))
    return strict, [(source, {k: v for k, v in layer.items() if k != "strict"}) for source, layer in layers]


def _stop(server: FixtureServer, config: pytest.Config, nodeid: str) -> None:
    """Stop ``server``, giving open sessions the teardown grace to finish;
    note the sessions this stop cut off (not those the test's own stop()
    ended), for the terminal summary."""
    from .matching import describe_session_end

    ended_before = {id(session) for session in server.sessions if not session.is_open}
    server.stop(grace=config.stash[SETTINGS].teardown_grace)
    for session in server.sessions:
        if session.ended_by == "stop" and id(session) not in ended_before:
            config.stash[CUT_OFF].append((nodeid, describe_session_end(session, by_teardown=True)))


@pytest.fixture(scope="session")
def smtpd_loop() -> Iterator[None]:
    """Keeps the servers' event-loop thread running for the test session, so
    that each test's server costs a bind and a close; the thread stops when
    the session ends."""
    from . import loopthread

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
    layers = [
        ("the smtpd_* ini options", request.config.stash[SETTINGS].options),
        ("the smtpd_options fixture", _session_visible_options(request)),
    ]
    _, layers = _strict(layers, {}, False)  # strict is the smtpd fixture's, per test
    server = _start({**layers[0][1], **layers[1][1]}, layers)
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
    layers = _layers(request, smtpd_options)
    options = {key: value for _, layer in layers for key, value in layer.items()}
    strict, layers = _strict(layers, options, settings.strict)
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
    server = _start(options, layers, nodeid)
    used = fixture_state.use(request.node, server, strict)
    try:
        yield server
    finally:
        fixture_state.end_own(used, lambda: _stop(server, request.config, nodeid))


if django_installed():

    @pytest.fixture
    def smtpd_django(smtpd: FixtureServer) -> Iterator[FixtureServer]:
        """The ``smtpd`` server, with Django's email settings pointed at it
        for the test (the SMTP backend, host, port, TLS as the server speaks
        it, its login) and the test CA trusted; all put back afterwards.
        ``smtpd_django = true`` (ini) gives it to every test."""
        with pointed_at(smtpd):
            yield smtpd


# -- reports --------------------------------------------------------------------


def _report_mode(item: pytest.Item) -> str:
    """``report=`` of the closest marker, else ``smtpd_report``."""
    try:
        _, own = marker_options(list(reversed(list(item.iter_markers("smtpd")))))
    except OptionError:  # the test's setup failed with it already
        own = {}
    return str(own.get("report") or item.config.stash[SETTINGS].report)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if call.when == "teardown":
        # Sessions cut off by this teardown (or the shared server's, at the
        # last one) ride on its report: under xdist, to the controller.
        cut_off, item.config.stash[CUT_OFF] = item.config.stash[CUT_OFF], []
        if cut_off:
            report.smtpd_cut_off = cut_off  # type: ignore[attr-defined]
        fixture_state.forget(item)  # the last report: let go of the server
        return
    server = item.stash.get(USED_SERVER, None)
    if server is None or not report.failed:
        return
    fixture_state.note_failed(item)
    from .report import save_artifacts, section

    settings = item.config.stash[SETTINGS]
    messages = server.messages.snapshot()  # the report does not count as looking (strict mode)
    try:
        text = section(server, messages, mode=_report_mode(item), max_lines=settings.report_lines)
        if text is not None:
            report.sections.append(("smtpd", text))
    except Exception as exc:  # a report is no reason to end the run
        _report_trouble(item, report, "building the smtpd report section", exc)
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


def __getattr__(name: str) -> Any:
    """``pytest_smtpd.plugin.Server`` and ``FixtureServer``, as before, loaded when asked for."""
    if name in ("Server", "FixtureServer"):
        from . import assertions, server

        return server.Server if name == "Server" else assertions.FixtureServer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """List the sessions teardown cut off, from the teardown reports (a
    worker's, under xdist, arrive as the controller's reports)."""
    cut_off = [
        (str(nodeid), str(text))
        for reports in terminalreporter.stats.values()
        for report in reports
        for nodeid, text in getattr(report, "smtpd_cut_off", None) or ()
    ]
    if cut_off:
        terminalreporter.write_sep("-", "smtpd: sessions cut off at teardown")
        for nodeid, description in cut_off:
            terminalreporter.write_line(f"{nodeid}: {description}")
