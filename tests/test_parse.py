"""Command-line, path and ESMTP-parameter parsing on their own (``_parse.py``)."""

from __future__ import annotations

import pytest

from pytest_smtpd._parse import ParseError, parse_params, parse_path, split_command, strip_keyword

SYNTAX_ERROR = 501
BAD_MAILBOX = 553


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("mail FROM:<a@b>", ("MAIL", "FROM:<a@b>")),
        ("NOOP", ("NOOP", None)),
        ("NOOP ", ("NOOP", "")),
        ("HELO   client.example  ", ("HELO", "client.example")),
        ("eHlO x y", ("EHLO", "x y")),
        ("", ("", None)),
        # Only a space separates the verb: a bare LF stays inside it.
        ("NOOP\nQUIT", ("NOOP\nQUIT", None)),
        ("MAIL\tFROM:<a@b>", ("MAIL\tFROM:<A@B>", None)),
        ("MAIL FROM:<a@b>\n", ("MAIL", "FROM:<a@b>\n")),
        ("HELO x\r", ("HELO", "x\r")),
    ],
)
def test_split_command(line: str, expected: tuple[str, str | None]) -> None:
    assert split_command(line) == expected


@pytest.mark.parametrize(
    ("keyword", "argument", "expected"),
    [
        ("FROM:", "FROM:<a@b>", "<a@b>"),
        ("FROM:", "from:<a@b>", "<a@b>"),
        ("FROM:", "FrOm:   <a@b>", "<a@b>"),
        ("TO:", "To:", ""),
        ("FROM:", "TO:<a@b>", None),
        ("FROM:", "FROM <a@b>", None),
        ("FROM:", "FRO", None),
        ("TO:", "", None),
    ],
)
def test_strip_keyword(keyword: str, argument: str, expected: str | None) -> None:
    assert strip_keyword(keyword, argument) == expected


@pytest.mark.parametrize(
    ("text", "address", "rest"),
    [
        ("<user@example.com>", "user@example.com", ""),
        ("<>", "", ""),
        ("<a@b> SIZE=10 BODY=7BIT", "a@b", "SIZE=10 BODY=7BIT"),
        ("<a@b>   SIZE=10  ", "a@b", "SIZE=10"),
        ("a@b", "a@b", ""),
        ("a@b SIZE=1", "a@b", "SIZE=1"),
        ("<@r1.example,@r2.example:a@b>", "a@b", ""),
        ('<"john doe"@example.com>', '"john doe"@example.com', ""),
        ('<"a>b"@example.com> X=1', '"a>b"@example.com', "X=1"),
        ('<"a\\"b"@example.com>', '"a\\"b"@example.com', ""),
        ("<postmaster>", "postmaster", ""),
        # Non-ASCII parses; whether it is allowed is the connection's call.
        ("<üser@example.com>", "üser@example.com", ""),
    ],
)
def test_parse_path_valid(text: str, address: str, rest: str) -> None:
    assert parse_path(text) == (address, rest)


@pytest.mark.parametrize(
    ("text", "code", "message"),
    [
        ("<a@b", SYNTAX_ERROR, "unterminated <address>"),
        ("<a@b SIZE=10", SYNTAX_ERROR, "unterminated <address>"),
        ('<"a@b>', SYNTAX_ERROR, "unterminated <address>"),
        ("<a\x00b@c>", SYNTAX_ERROR, "control character in address"),
        ("<a\rb@c>", SYNTAX_ERROR, "control character in address"),
        ("<a\nb@c>", SYNTAX_ERROR, "control character in address"),
        ("<a\tb@c>", SYNTAX_ERROR, "control character in address"),
        ("<a\x7fb@c>", SYNTAX_ERROR, "control character in address"),
        ("<a@b> X=\r", SYNTAX_ERROR, "control character in address"),
        ("<a@b>SIZE=1", SYNTAX_ERROR, "text after >"),
        ("<<a@b>>", SYNTAX_ERROR, "text after >"),
        ("", SYNTAX_ERROR, "malformed address"),
        ("a@b>", SYNTAX_ERROR, "malformed address"),
        ("a<b@c", SYNTAX_ERROR, "malformed address"),
        ("<a b@c>", SYNTAX_ERROR, "malformed address"),
        ('<a"b@c>', SYNTAX_ERROR, "unterminated <address>"),
        ("<@route>", SYNTAX_ERROR, "malformed source route"),
        ("<@route:>", SYNTAX_ERROR, "malformed source route"),
        ("<a@>", BAD_MAILBOX, "malformed address"),
        ("<a@b@>", BAD_MAILBOX, "malformed address"),
        ("<[a]@b>", BAD_MAILBOX, "malformed address"),
    ],
)
def test_parse_path_invalid(text: str, code: int, message: str) -> None:
    with pytest.raises(ParseError) as info:
        parse_path(text)
    assert info.value.code == code
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", []),
        ("SIZE=10 smtputf8", [("SIZE", "10"), ("SMTPUTF8", None)]),
        ("body=8bitmime", [("BODY", "8bitmime")]),
        ("  A=1   b  ", [("A", "1"), ("B", None)]),
        ("X-FOO=bar ORCPT=rfc822;a@b", [("X-FOO", "bar"), ("ORCPT", "rfc822;a@b")]),
    ],
)
def test_parse_params_valid(text: str, expected: list[tuple[str, str | None]]) -> None:
    assert parse_params(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("=1", "bad parameter keyword ''"),
        ("-A=1", "bad parameter keyword '-A'"),
        ("A_B=1", "bad parameter keyword 'A_B'"),
        ("Ä=1", "bad parameter keyword 'Ä'"),
        ("A=", "bad value for parameter 'A'"),
        ("A=b=c", "bad value for parameter 'A'"),
        ("A=\x01", "bad value for parameter 'A'"),
        ("OK=1 A=", "bad value for parameter 'A'"),
    ],
)
def test_parse_params_invalid(text: str, message: str) -> None:
    with pytest.raises(ParseError, match="^" + message + "$") as info:
        parse_params(text)
    assert info.value.code == SYNTAX_ERROR


def test_parse_error_is_a_value_error_with_default_code() -> None:
    error = ParseError("nope")
    assert isinstance(error, ValueError)
    assert error.code == SYNTAX_ERROR
    assert ParseError("bad", code=BAD_MAILBOX).code == BAD_MAILBOX


@pytest.mark.parametrize(
    "address",
    [
        "a@b",
        "user.name+tag@sub.example.com",
        '"a b"@example.com',
        '"a\\"b"@example.com',
        "postmaster",
        "a@[127.0.0.1]",
        "a@[IPv6:::1]",
        "a@x_y.test",
        "δοκιμή@παράδειγμα.δοκιμή",
    ],
)
def test_mailbox_syntax_accepted(address: str) -> None:
    assert parse_path(f"<{address}>") == (address, "")


@pytest.mark.parametrize("address", ["a@@b", "a@[b", ":", ",", "a..b@x", ".a@x", "a@-x", "a@x.", "a@b@c", "a@"])
def test_malformed_mailbox_is_553(address: str) -> None:
    with pytest.raises(ParseError) as info:
        parse_path(f"<{address}>")
    assert info.value.code == 553
