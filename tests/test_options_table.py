"""The options table (pytest_smtpd/options.py) and the layers made from it
agree: ``Server``'s signature, ``SMTPServer``'s, the ``smtpd_*`` ini options,
the command line's flags and the README's options tables. A parameter added
to one layer without a row, or a default that drifts, fails here."""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import re
import smtplib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_smtpd import Server
from pytest_smtpd.cli import build_parser
from pytest_smtpd.compat import DATA_SIZE_DEFAULT, SMTPChannel, SMTPServer
from pytest_smtpd.config import INI_OPTIONS, read_settings
from pytest_smtpd.faults import Fault
from pytest_smtpd.options import DEFAULTS, OPTIONS, Invalid, given_flags

ROOT = Path(__file__).resolve().parent.parent

#: The stdlib ``smtpd.SMTPServer``'s positional defaults (Python 3.11, the last
#: with the module): the compat class keeps them, whatever ours are.
STDLIB_DEFAULTS = {"data_size_limit": 33554432, "enable_SMTPUTF8": False, "decode_data": False}


def parameters(function: Callable[..., object]) -> dict[str, inspect.Parameter]:
    return {
        name: p
        for name, p in inspect.signature(function).parameters.items()
        if name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    }


def drift(server_class: type[Server]) -> list[str]:
    """How ``server_class``'s signature differs from the table: what has no
    row, what has a row but no parameter, and each default that differs."""
    taken = parameters(server_class.__init__)
    problems = [f"{name}: no row in the options table" for name in taken if name not in OPTIONS]
    problems += [f"{name}: a row, but no parameter" for name in OPTIONS if name not in taken]
    for name, parameter in taken.items():
        if name in OPTIONS and parameter.default != OPTIONS[name].default:
            problems.append(f"{name}: default {parameter.default!r}, the table's {OPTIONS[name].default!r}")
    if not problems and list(taken) != list(OPTIONS):
        problems.append("the rows are not in the signature's order")
    return problems


# -- Server --------------------------------------------------------------------


def test_every_server_parameter_has_a_row_with_the_same_default() -> None:
    assert drift(Server) == []
    # The defaults are real values in the signature (config.check_layer reads them).
    signature = parameters(Server.__init__)
    assert signature["data_size_limit"].default == 33554432
    assert signature["enable_ENHANCEDSTATUSCODES"].default is None
    assert dataclasses.asdict(DEFAULTS) == {name: row.default for name, row in OPTIONS.items()}


def test_a_parameter_without_a_row_or_a_drifted_default_is_caught() -> None:
    class Shiny(Server):
        def __init__(self, host: str = "127.0.0.1", port: int = 0, *, shiny: bool = False, **options: Any) -> None:
            super().__init__(host, port, **options)

    class Drifted(Server):
        def __init__(self, host: str = "127.0.0.1", port: int = 0, *, backlog: int = 5, **options: Any) -> None:
            super().__init__(host, port, backlog=backlog, **options)

    assert "shiny: no row in the options table" in drift(Shiny)
    assert "hostname: a row, but no parameter" in drift(Shiny)
    assert "backlog: default 5, the table's 128" in drift(Drifted)


def test_each_row_says_what_it_does_and_how_the_docs_show_its_default() -> None:
    for row in OPTIONS.values():
        assert row.help and "\n" not in row.help, row.name
        assert row.default_text, row.name
    assert OPTIONS["hostname"].default_text == "getfqdn()"
    assert OPTIONS["tls_certificate"].default_text == '"valid"'
    assert OPTIONS["timeout"].why.startswith("RFC 5321 4.5.3.2.7")


# -- the stdlib-compatible classes -----------------------------------------------


def test_smtpserver_takes_the_shared_options_with_servers_defaults() -> None:
    taken = parameters(SMTPServer.__init__)
    keyword_only = {name for name, p in taken.items() if p.kind is p.KEYWORD_ONLY}
    assert keyword_only == {name for name, row in OPTIONS.items() if row.compat == "ours"}
    server = parameters(Server.__init__)
    for name in keyword_only:
        assert taken[name].default == server[name].default, name
    assert taken["enable_ENHANCEDSTATUSCODES"].default is None  # was False, Server's None


def test_smtpserver_and_smtpchannel_keep_the_stdlibs_positional_defaults() -> None:
    stdlib = {name for name, row in OPTIONS.items() if row.compat == "stdlib"}
    assert stdlib == set(STDLIB_DEFAULTS)
    for function in (SMTPServer.__init__, SMTPChannel.__init__):
        taken = parameters(function)
        assert {name: taken[name].default for name in stdlib} == STDLIB_DEFAULTS, function
        assert all(taken[name].kind is inspect.Parameter.POSITIONAL_OR_KEYWORD for name in stdlib)
    assert STDLIB_DEFAULTS["data_size_limit"] == DATA_SIZE_DEFAULT
    # Ours are the same, so the command line (stdlib classes) and Server agree.
    assert all(OPTIONS[name].default == value for name, value in STDLIB_DEFAULTS.items())


@contextlib.contextmanager
def compat_server(**options: Any) -> Iterator[SMTPServer]:
    server = SMTPServer(("127.0.0.1", 0), None, **options)
    try:
        yield server
    finally:
        server.close()


def extensions(address: tuple[str, int], lmtp: bool = False) -> set[str]:
    """The extension keywords the server offers to smtplib's EHLO (LHLO)."""
    client = smtplib.LMTP() if lmtp else smtplib.SMTP()
    client.connect(*address)
    try:
        code, _ = client.ehlo("client.test")
        assert code == 250
        return set(client.esmtp_features)
    finally:
        client.quit()


@pytest.mark.parametrize("enable", [None, True, False])
def test_smtpserver_offers_enhanced_status_codes_as_server_does(enable: bool | None) -> None:
    given: dict[str, Any] = {} if enable is None else {"enable_ENHANCEDSTATUSCODES": enable}
    with Server(**given) as server, compat_server(**given) as compat:
        ours, theirs = extensions(server.address), extensions(compat.address)
    assert ("enhancedstatuscodes" in ours) is bool(enable)
    # The stdlib's EHLO offered no PIPELINING; the rest is the same.
    assert theirs == ours - {"pipelining"}


def test_smtpserver_in_lmtp_mode_offers_them_by_default_as_server_does() -> None:
    # LMTP is no SMTPServer option; a subclass switching its server to it
    # (as here) gets the codes RFC 2033 clients expect, as Server(lmtp=True)
    # does. With the old default (False) they were off.
    with Server(lmtp=True) as server, compat_server() as compat:
        backend = compat._server
        backend.session_config = dataclasses.replace(backend.session_config, lmtp=True)
        ours, theirs = extensions(server.address, lmtp=True), extensions(compat.address, lmtp=True)
    assert "enhancedstatuscodes" in ours
    assert theirs == ours - {"pipelining"}


# -- ini options ---------------------------------------------------------------------

#: Per ini option: a good text with the value it becomes, and a bad text.
INI_SAMPLES: dict[str, tuple[str, object, str]] = {
    "host": ("::1", "::1", "smtp.invalid"),
    "port": ("2525", 2525, "70000"),
    "hostname": ("mx.ini.test", "mx.ini.test", "mx test"),
    "data_size_limit": ("4096", 4096, "-5"),
    "enable_SMTPUTF8": ("yes", True, "maybe"),
    "tls": ("implicit", "implicit", "smtps"),
    "auth": ("alice:s3cret bob:pa:ss", {"alice": "s3cret", "bob": "pa:ss"}, "alice"),
}


def test_every_ini_row_is_an_ini_option_with_the_tables_help() -> None:
    rows = {name: row for name, row in OPTIONS.items() if row.ini is not None}
    assert set(rows) == set(INI_SAMPLES)
    for name, row in rows.items():
        assert INI_OPTIONS[f"smtpd_{name}"].startswith(row.ini.help or row.help), name  # type: ignore[union-attr]
    assert "(default 33554432)" in INI_OPTIONS["smtpd_data_size_limit"]
    assert "(default false)" in INI_OPTIONS["smtpd_enable_SMTPUTF8"]
    # The plugin's own keys come after the Server options', in the table's order.
    assert list(INI_OPTIONS)[: len(rows)] == [f"smtpd_{name}" for name in rows]


def test_every_ini_option_parses_to_its_value(pytester: pytest.Pytester) -> None:
    overrides = [f"-osmtpd_{name}={text}" for name, (text, _, _) in INI_SAMPLES.items()]
    settings = read_settings(pytester.parseconfig("-p", "no:asyncio", *overrides))
    assert settings.options == {name: value for name, (_, value, _) in INI_SAMPLES.items()}
    # And Server takes them.
    server = Server(**{name: value for name, value in settings.options.items() if name != "tls"})
    assert server.port == 2525


@pytest.mark.parametrize("name", list(INI_SAMPLES))
def test_every_ini_option_refuses_a_bad_text_naming_what_is_expected(pytester: pytest.Pytester, name: str) -> None:
    bad = INI_SAMPLES[name][2]
    parse = OPTIONS[name].ini.parse  # type: ignore[union-attr]
    with pytest.raises(Invalid) as expected:
        parse(bad)
    config = pytester.parseconfig("-p", "no:asyncio", f"-osmtpd_{name}={bad}")
    with pytest.raises(pytest.UsageError) as refused:
        read_settings(config)
    assert str(refused.value) == f"-o on the command line: smtpd_{name} = {bad!r}: expected {expected.value}"


# -- command-line flags ----------------------------------------------------------------

#: Per flag: what is given on the command line, and what the namespace holds.
FLAG_SAMPLES: dict[str, tuple[list[str], object]] = {
    "data_size_limit": (["-s", "1000"], 1000),
    "enable_SMTPUTF8": (["-u"], True),
    "enable_DSN": (["--dsn"], True),
    "tls": (["--tls", "starttls"], "starttls"),
    "require_starttls": (["--require-starttls"], True),
    "auth": (["--auth", "alice:s3:cret", "--auth", "bob:x"], [("alice", "s3:cret"), ("bob", "x")]),
    "auth_required": (["--require-auth"], True),
    "enable_CHUNKING": (["--chunking"], True),
    "enable_ENHANCEDSTATUSCODES": (["--enhanced-status-codes"], True),
    "faults": (["--fault", "RCPT=450 4.2.1 Mailbox busy"], [Fault.parse("RCPT=450 4.2.1 Mailbox busy")]),
}


def test_every_flag_row_is_a_flag_that_parses_to_its_value() -> None:
    rows = {name: row for name, row in OPTIONS.items() if row.flag is not None}
    assert set(rows) == set(FLAG_SAMPLES)
    parser = build_parser()
    unset = parser.parse_args([])
    for name, (argv, value) in FLAG_SAMPLES.items():
        flag = rows[name].flag
        assert flag is not None
        args = parser.parse_args(argv)
        assert getattr(args, flag.name) == value, name
        assert given_flags(args, [name]) == {name: value}
        # Not given: the table's default, which Server then applies.
        assert getattr(unset, flag.name) == flag.default(rows[name]), name
        assert given_flags(unset, [name]) == {}, name
    assert unset.size == DEFAULTS.data_size_limit == DATA_SIZE_DEFAULT


def test_the_help_shows_the_tables_help_and_default() -> None:
    text = re.sub(r"\s+", " ", build_parser().format_help())
    assert "(default 33554432; 0: no limit)" in text
    for row in OPTIONS.values():
        if row.flag is not None:
            assert re.sub(r"\s+", " ", row.flag.help or row.help).replace("%(default)s", "33554432") in text


# -- the docs -----------------------------------------------------------------------------


def simple_tables(text: str) -> Iterator[list[list[str]]]:
    """The rows of each reST simple table in ``text``, each row a list of
    its cells (continuation lines joined in), without the header."""
    lines = text.splitlines()
    border = re.compile(r"^=+( +=+)+$")
    index = 0
    while index < len(lines):
        if not border.match(lines[index]):
            index += 1
            continue
        starts = [m.start() for m in re.finditer(r"=+", lines[index])]
        rows: list[list[str]] = []
        index += 1
        # The last border is followed by a blank line (or nothing).
        while index < len(lines) and not (border.match(lines[index]) and not "".join(lines[index + 1 : index + 2])):
            line = lines[index]
            if border.match(line):
                rows = []  # the header ends: the rows start
            elif line.strip():
                cells = [line[a:b].strip() for a, b in zip(starts, [*starts[1:], len(line) + 1], strict=True)]
                if cells[0] or not rows:
                    rows.append(cells)
                else:
                    rows[-1] = [f"{old} {new}".strip() for old, new in zip(rows[-1], cells, strict=True)]
            index += 1
        index += 1
        yield rows


def readme_server_options() -> dict[str, str]:
    """Option name -> default, from the README's "Server options" tables."""
    readme = (ROOT / "README.rst").read_text(encoding="utf-8")
    section = readme.split("\nServer options\n==============\n", 1)[1].split("\nExtensions\n==========\n", 1)[0]
    shown: dict[str, str] = {}
    for table in simple_tables(section):
        for row in table:
            names = re.findall(r"``(\w+)``", row[0])
            defaults = [cell.strip().strip("`") for cell in row[1].split(", ")] if len(names) > 1 else [row[1]]
            for name, default in zip(names, defaults, strict=True):
                shown[name] = default.replace("``", "")
    return shown


def test_the_readme_tables_list_every_server_option_with_the_tables_default() -> None:
    shown = readme_server_options()
    assert set(shown) == set(OPTIONS)
    assert {name: shown[name] for name in OPTIONS} == {name: row.default_text for name, row in OPTIONS.items()}


def test_the_ini_docs_list_every_ini_option() -> None:
    readme = (ROOT / "README.rst").read_text(encoding="utf-8")
    reference = (ROOT / "docs" / "reference.rst").read_text(encoding="utf-8")
    for name in INI_OPTIONS:
        assert re.search(rf"^``{name}``  ", readme, re.MULTILINE), name
        assert f".. confval:: {name}\n" in reference, name
