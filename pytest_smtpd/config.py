"""The plugin's configuration, checked: the ``smtpd_*`` ini options, the
``Server`` options of ``smtpd_options`` and ``@pytest.mark.smtpd``, and the
marker's own options. Every bad value becomes one short message that names
where it came from (the ini file, ``-o`` on the command line,
``smtpd_options``, the marker) and what would be right."""

from __future__ import annotations

import difflib
import functools
import inspect
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from .options import OPTIONS, Invalid, boolean, whole

__all__ = [
    "DEFAULT_REPORT_LINES",
    "DEFAULT_TEARDOWN_GRACE",
    "INI_OPTIONS",
    "MARKER_OPTIONS",
    "REPORT_MODES",
    "OptionError",
    "Settings",
    "blame",
    "check_layer",
    "marker_options",
    "read_settings",
    "xdist_worker_number",
]

#: Seconds sessions still open at teardown get to finish (a worker's QUIT)
#: before the server closes them with 421.
DEFAULT_TEARDOWN_GRACE = 1.0
#: What a failing test's "smtpd" report section shows.
REPORT_MODES = ("full", "summary", "off")
#: The section is cut after this many lines (a test that sent thousands of
#: messages should not bury its own failure).
DEFAULT_REPORT_LINES = 200

#: What the ini options of ``Server`` options add to the table's help.
_INI_NOTES = {"port": "under pytest-xdist worker gwN listens on port + N"}
#: ini name -> help. Every value is checked when pytest starts. The
#: ``Server`` options come from the options table; the rest are the plugin's.
INI_OPTIONS = {
    **{
        row.ini_name: "; ".join(filter(None, [row.ini_help, _INI_NOTES.get(row.name)]))
        for row in OPTIONS.values()
        if row.ini is not None
    },
    "smtpd_scope": "function (default: a server per test) or session (one server, reset after each test)",
    "smtpd_save_dir": "save each failing test's messages here as .eml files and an mbox",
    "smtpd_teardown_grace": f"seconds sessions still open at teardown get to finish (default {DEFAULT_TEARDOWN_GRACE})",
    "smtpd_report": "what a failing test's smtpd report section shows: full (with transcripts), "
    "summary (default) or off",
    "smtpd_report_lines": "the longest smtpd report section, in lines, 0 for no limit "
    f"(default {DEFAULT_REPORT_LINES})",
    "smtpd_django": "true: point Django's email settings at the smtpd server in every test (default false)",
    "smtpd_strict": "true: a test fails at teardown when messages arrived that it never looked at (default false)",
}

#: The marker's options that are not ``Server`` options -> what they take
#: (``lint=`` is the content checks', checked in checks_plugin.py).
MARKER_OPTIONS = {"report": "full, summary or off", "lint": "off, error or warning", "strict": "True or False"}


class OptionError(Exception):
    """A bad option: the message says where it came from and what is right."""


@dataclass
class Settings:
    """The ini options, checked."""

    #: ``Server`` options from ini (only those set).
    options: dict[str, Any] = field(default_factory=dict)
    scope: str = "function"
    save_dir: Path | None = None
    teardown_grace: float = DEFAULT_TEARDOWN_GRACE
    report: str = "summary"
    report_lines: int = DEFAULT_REPORT_LINES
    django: bool = False
    #: ``smtpd_strict``: the default of the marker's ``strict``.
    strict: bool = False


def xdist_worker_number(config: pytest.Config, early: bool = False) -> int:
    """N for pytest-xdist's worker ``gwN``; 0 outside xdist. Read from the
    worker's config, not the environment: a pytest run inside a worker's
    test (pytester) is no worker. ``early``, before xdist has set the
    config (at ``pytest_load_initial_conftests``): from the environment."""
    worker = str(getattr(config, "workerinput", {}).get("workerid", ""))
    if early and not worker:
        worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    return int(worker[2:]) if worker.startswith("gw") and worker[2:].isdigit() else 0


# -- ini options --------------------------------------------------------------


def _overridden(config: pytest.Config) -> set[str]:
    """The ini names given with ``-o name=value``."""
    return {item.partition("=")[0].strip() for item in getattr(config.option, "override_ini", None) or ()}


def _ini_keys(config: pytest.Config) -> set[str]:
    """The names set in the ini file and with ``-o``."""
    inicfg = getattr(config, "_inicfg", None)  # pytest 9; earlier ones have config.inicfg
    if inicfg is None:
        inicfg = getattr(config, "inicfg", {})
    return set(inicfg) | _overridden(config)


def _source(config: pytest.Config, name: str) -> str:
    if name in _overridden(config):
        return "-o on the command line"
    return config.inipath.name if config.inipath is not None else "the ini file"


def nearest(name: str, choices: Iterable[str], prefix: str = "") -> str | None:
    """The choice ``name`` most likely meant: one differing only in case,
    else the closest spelling (of what follows the ``prefix`` they share),
    else None."""
    choices = list(choices)
    same_case = [choice for choice in choices if choice.lower() == name.lower()]
    if same_case:
        return same_case[0]
    tails = {choice[len(prefix) :]: choice for choice in choices}
    close = difflib.get_close_matches(name[len(prefix) :], list(tails), n=1, cutoff=0.6)
    return tails[close[0]] if close else None


def _unknown_keys(config: pytest.Config) -> None:
    """A ``smtpd_`` ini name that is not ours is a mistake (pytest would
    only warn, and the option would silently not apply)."""
    registered = getattr(getattr(config, "_parser", None), "_inidict", {})  # ours and checks_plugin's
    known = [*INI_OPTIONS, *(name for name in registered if name.startswith("smtpd_") and name not in INI_OPTIONS)]
    for name in sorted(_ini_keys(config)):
        if not name.lower().startswith("smtpd_") or name in known:
            continue
        try:
            config.getini(name)
        except ValueError:  # registered by no plugin
            guess = nearest(name, known, prefix="smtpd_")
            fix = f"did you mean {guess}?" if guess else f"the options are: {', '.join(known)}"
            raise pytest.UsageError(f"{_source(config, name)}: unknown option {name}; {fix}") from None


def read_settings(config: pytest.Config) -> Settings:
    """The ``smtpd_*`` ini options as ``Settings``; a ``pytest.UsageError``
    naming the first bad value, where it was set and what is expected."""
    _unknown_keys(config)

    def ini(name: str) -> str:
        return str(config.getini(name) or "").strip()

    def bad(name: str, value: str, expected: str) -> pytest.UsageError:
        return pytest.UsageError(f"{_source(config, name)}: {name} = {value!r}: expected {expected}")

    def parsed(name: str, value: str, parse: Callable[[str], Any]) -> Any:
        try:
            return parse(value)
        except Invalid as exc:
            raise bad(name, value, str(exc)) from None

    settings = Settings()
    options = settings.options
    for row in OPTIONS.values():
        if row.ini is not None and (value := ini(row.ini_name)):
            options[row.name] = parsed(row.ini_name, value, row.ini.parse)
    if options.get("port"):
        worker = xdist_worker_number(config)
        if options["port"] + worker > 65535:
            raise bad("smtpd_port", ini("smtpd_port"), f"a port that leaves room for xdist worker gw{worker}")
        options["port"] += worker
    if value := ini("smtpd_scope"):
        if value not in ("function", "session"):
            raise bad("smtpd_scope", value, "function or session")
        settings.scope = value
    save_dir = config.getoption("smtpd_save_dir", None) or ini("smtpd_save_dir")
    if save_dir:
        settings.save_dir = Path(save_dir)
        if not settings.save_dir.is_absolute():
            settings.save_dir = config.rootpath / settings.save_dir
        if settings.save_dir.exists() and not settings.save_dir.is_dir():
            from_option = config.getoption("smtpd_save_dir", None)
            where = "--smtpd-save-dir" if from_option else _source(config, "smtpd_save_dir")
            raise pytest.UsageError(f"{where}: smtpd_save_dir = {save_dir!r}: expected a directory (this is a file)")
    if value := ini("smtpd_teardown_grace"):
        try:
            grace = float(value)
        except ValueError:
            grace = -1.0
        # inf would hold teardown for good on a session left open; nan compares false.
        if not (math.isfinite(grace) and grace >= 0):
            raise bad("smtpd_teardown_grace", value, "a finite number of seconds, 0 or more")
        settings.teardown_grace = grace
    if value := ini("smtpd_report"):
        if value not in REPORT_MODES:
            raise bad("smtpd_report", value, "full, summary or off")
        settings.report = value
    if value := ini("smtpd_report_lines"):
        settings.report_lines = parsed("smtpd_report_lines", value, whole(0))
    if value := ini("smtpd_django"):
        settings.django = parsed("smtpd_django", value, boolean)
    if value := ini("smtpd_strict"):
        settings.strict = parsed("smtpd_strict", value, boolean)
    return settings


# -- Server options from smtpd_options and markers ------------------------------


@functools.cache
def _server_parameters() -> dict[str, inspect.Parameter]:
    from .server import Server

    parameters = inspect.signature(Server.__init__).parameters
    return {name: p for name, p in parameters.items() if name != "self" and p.kind is not p.VAR_KEYWORD}


def _expected_type(parameter: inspect.Parameter) -> tuple[str, Callable[[object], bool]] | None:
    """What a simple option takes, told from its default and annotation:
    (description, check); None for those too rich to check here."""
    default, annotation = parameter.default, str(parameter.annotation)
    optional = "None" in annotation
    if isinstance(default, bool):
        return "True or False", lambda value: isinstance(value, bool)
    if isinstance(default, int) and annotation == "int":
        return "a whole number (int)", lambda value: isinstance(value, int) and not isinstance(value, bool)
    if isinstance(default, float) or annotation.startswith("float"):

        def finite(value: object) -> bool:
            if value is None:
                return optional
            return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)

        return "a finite number of seconds" + (" or None" if optional else ""), finite
    if isinstance(default, str) and annotation == "str":
        return "a str", lambda value: isinstance(value, str)
    return None


def check_layer(source: str, options: Mapping[str, Any], extra: Mapping[str, str] = {}) -> None:
    """``OptionError`` for an option of ``source`` that ``Server`` does not
    take (nor ``extra``: name -> what it takes), or of the wrong type."""
    parameters = _server_parameters()
    for name, value in options.items():
        if name in extra:
            continue
        parameter = parameters.get(name)
        if parameter is None:
            guess = nearest(name, [*parameters, *extra])
            fix = f"did you mean {guess}=?" if guess else "see the Server options in the README"
            raise OptionError(f"{source}: unknown option {name}={value!r}; {fix}")
        expected = _expected_type(parameter)
        if expected is not None and not expected[1](value):
            raise OptionError(f"{source}: {name}={value!r}: expected {expected[0]}")


def marker_options(markers: Sequence[Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ``Server`` options and the marker's own options (``report``) of
    ``markers``, closest last, each checked; ``OptionError`` otherwise."""
    server: dict[str, Any] = {}
    own: dict[str, Any] = {}
    for marker in markers:
        if marker.args:
            raise OptionError(
                "@pytest.mark.smtpd takes keyword arguments only, e.g. @pytest.mark.smtpd(data_size_limit=100)"
            )
        check_layer("@pytest.mark.smtpd", marker.kwargs, MARKER_OPTIONS)
        for name, value in marker.kwargs.items():
            (own if name in MARKER_OPTIONS else server)[name] = value
    report = own.get("report")
    if report is not None and report not in REPORT_MODES:
        raise OptionError(f"@pytest.mark.smtpd: report={report!r}: expected full, summary or off")
    return server, own


def blame(layers: Sequence[tuple[str, Mapping[str, Any]]], build: Callable[[dict[str, Any]], object]) -> str:
    """The source of the first layer whose options make ``build`` fail (a
    wrong value, or one that contradicts an earlier layer's)."""
    options: dict[str, Any] = {}
    for source, layer in layers:
        options.update(layer)
        try:
            build(dict(options))
        except (TypeError, ValueError):
            return source
    return layers[-1][0] if layers else "smtpd"
