"""The sans-I/O ``ServerConnection``, driven with bytes only."""

from __future__ import annotations

import copy
import random
from collections.abc import Callable

import pytest
from core_helpers import (
    CLIENT,
    CRLF,
    RECIPIENT,
    SENDER,
    assert_usable,
    drain,
    greeted,
    in_data,
    in_rcpt,
    new_connection,
    receive_and_get,
    reply_codes,
    send_line,
    three_ways,
)

from pytest_smtpd import replies
from pytest_smtpd._readers import DataReader
from pytest_smtpd.connection import (
    DEFAULT_COMMAND_SIZE_LIMIT,
    DEFAULT_DATA_SIZE_LIMIT,
    DSN_MAIL_ALLOWANCE,
    DSN_RCPT_ALLOWANCE,
    SIZE_ALLOWANCE,
    SMTPUTF8_ALLOWANCE,
    ServerConnection,
    SessionConfig,
)
from pytest_smtpd.errors import LocalProtocolError
from pytest_smtpd.events import NEED_DATA, CommandReceived, ConnectionClosed, Envelope, MessageReceived, NeedData
from pytest_smtpd.replies import Reply
from pytest_smtpd.state import COMMAND_STATES, State

OK = replies.OK.to_bytes()
PEER_CLOSED = ConnectionClosed("peer closed the connection")
BODY = b"Subject: hi\r\n\r\nHello.\r\n"
END = b".\r\n"
#: A small data_size_limit, so byte-by-byte feeds of a full message stay fast.
SMALL_LIMIT = 60
CHUNK = 64 * 1024
#: How much never-ending input the memory tests push through.
FLOOD = 8 * 1024 * 1024

UTF8 = SessionConfig(enable_SMTPUTF8=True)
DSN = SessionConfig(enable_DSN=True)
DECODE = SessionConfig(decode_data=True)
DEFAULT_KEYWORDS = [f"SIZE {DEFAULT_DATA_SIZE_LIMIT}", "8BITMIME", "PIPELINING", "HELP"]


def ehlo_reply(keywords: list[str], hostname: str = "localhost") -> bytes:
    return Reply(250, "\n".join([hostname, *keywords])).to_bytes()


def mail_state(config: SessionConfig | None = None, ehlo: bool = True) -> ServerConnection:
    conn = greeted(config, ehlo)
    assert send_line(conn, f"MAIL FROM:<{SENDER}>") == OK
    assert conn.state is State.MAIL
    return conn


SETUPS: dict[str, Callable[[], ServerConnection]] = {
    "connected": new_connection,
    "helo": lambda: greeted(ehlo=False),
    "ehlo": greeted,
    "mail": mail_state,
    "rcpt": in_rcpt,
}


def advance(conn: ServerConnection) -> None:
    """Send the command that moves the session on from where it stands, and
    check that it works: the session is still usable."""
    state = conn.state
    if state is State.CONNECTED:
        assert send_line(conn, "HELO again.example") == Reply(250, "localhost").to_bytes()
        assert conn.state is State.GREETED
    elif state is State.GREETED:
        assert send_line(conn, "MAIL FROM:<later@example.com>") == OK
        assert conn.state is State.MAIL
        assert conn.envelope.mail_from == "later@example.com"
    elif state in (State.MAIL, State.RCPT):
        assert send_line(conn, "RCPT TO:<later@example.com>") == OK
        assert conn.state is State.RCPT
        assert conn.envelope.rcpt_tos[-1] == "later@example.com"
    else:
        raise AssertionError(f"no command to advance from {state}")


def full_message(conn: ServerConnection, data: bytes = BODY) -> MessageReceived:
    """Send a message in DATA state and return its event (answered with 250)."""
    events, out = receive_and_get(conn, data + END)
    assert out == OK
    assert len(events) == 1
    assert isinstance(events[0], MessageReceived)
    return events[0]


def line_of(verb: str, total: int) -> str:
    """A valid ``verb`` command line that is ``total`` octets long with its CRLF."""
    if verb == "NOOP":
        head, tail = "NOOP ", ""
    elif verb == "MAIL":
        head, tail = "MAIL FROM:<", "@example.com>"
    elif verb == "RCPT":
        head, tail = "RCPT TO:<", "@example.com>"
    else:
        raise AssertionError(verb)
    line = head + "a" * (total - len(CRLF) - len(head) - len(tail)) + tail
    assert len(line.encode()) + len(CRLF) == total
    return line


# -- greeting and configuration -------------------------------------------------


def test_greeting_default() -> None:
    conn = ServerConnection()
    assert conn.data_to_send() == b"220 localhost Python SMTP proxy version 0.3\r\n"
    assert conn.data_to_send() == b""
    assert conn.state is State.CONNECTED
    assert conn.next_event() is NEED_DATA


def test_greeting_custom() -> None:
    assert ServerConnection(SessionConfig(greeting="mx.test ready")).data_to_send() == b"220 mx.test ready\r\n"
    assert ServerConnection(SessionConfig(hostname="mx.test")).data_to_send().startswith(b"220 mx.test Python")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"decode_data": True, "enable_SMTPUTF8": True}, "cannot be set to True at the same time"),
        ({"data_size_limit": -1}, "data_size_limit must be 0"),
        ({"command_size_limit": DEFAULT_COMMAND_SIZE_LIMIT - 1}, "command_size_limit must be at least 512"),
    ],
)
def test_session_config_rejects(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SessionConfig(**kwargs)  # type: ignore[arg-type]


def test_session_config_edges_accepted() -> None:
    assert SessionConfig(data_size_limit=0).data_size_limit == 0
    assert SessionConfig(command_size_limit=DEFAULT_COMMAND_SIZE_LIMIT).command_size_limit == 512


# -- HELO / EHLO -----------------------------------------------------------------


def test_helo() -> None:
    conn = new_connection()
    assert send_line(conn, "HELO client.example") == b"250 localhost\r\n"
    assert conn.state is State.GREETED
    assert conn.helo == "client.example"
    assert conn.extended is False


@pytest.mark.parametrize(
    ("config", "keywords"),
    [
        (SessionConfig(), DEFAULT_KEYWORDS),
        (DECODE, [f"SIZE {DEFAULT_DATA_SIZE_LIMIT}", "PIPELINING", "HELP"]),
        (UTF8, [f"SIZE {DEFAULT_DATA_SIZE_LIMIT}", "8BITMIME", "SMTPUTF8", "PIPELINING", "HELP"]),
        (DSN, [f"SIZE {DEFAULT_DATA_SIZE_LIMIT}", "8BITMIME", "DSN", "PIPELINING", "HELP"]),
        (SessionConfig(data_size_limit=0), ["8BITMIME", "PIPELINING", "HELP"]),
        (SessionConfig(data_size_limit=1000), ["SIZE 1000", "8BITMIME", "PIPELINING", "HELP"]),
        (SessionConfig(extra_ehlo_keywords=("XFOO",)), ["SIZE 33554432", "8BITMIME", "PIPELINING", "XFOO", "HELP"]),
    ],
)
def test_ehlo_keywords(config: SessionConfig, keywords: list[str]) -> None:
    conn = new_connection(config)
    assert send_line(conn, "EHLO client.example") == ehlo_reply(keywords)
    assert conn.state is State.GREETED
    assert conn.helo == "client.example"
    assert conn.extended is True


def test_ehlo_uses_hostname() -> None:
    conn = new_connection(SessionConfig(hostname="mx.test", data_size_limit=0))
    assert send_line(conn, "EHLO x") == ehlo_reply(["8BITMIME", "PIPELINING", "HELP"], hostname="mx.test")


@pytest.mark.parametrize("first", ["HELO", "EHLO"])
@pytest.mark.parametrize("second", ["HELO", "EHLO"])
def test_second_greeting_accepted_and_resets_transaction(first: str, second: str) -> None:
    # RFC 5321 4.1.4: a later HELO/EHLO is legal and acts like RSET.
    conn = in_rcpt(ehlo=first == "EHLO")
    out = send_line(conn, f"{second} other.example")
    expected = b"250 localhost\r\n" if second == "HELO" else ehlo_reply(DEFAULT_KEYWORDS)
    assert out == expected
    assert conn.state is State.GREETED
    assert conn.envelope == Envelope()
    assert conn.helo == "other.example"
    assert conn.extended is (second == "EHLO")
    advance(conn)


@pytest.mark.parametrize("verb", ["HELO", "EHLO"])
def test_greeting_without_name_is_501_and_changes_nothing(verb: str) -> None:
    conn = in_rcpt()
    envelope = copy.deepcopy(conn.envelope)
    assert send_line(conn, verb) == Reply(501, f"Syntax: {verb} hostname").to_bytes()
    assert send_line(conn, f"{verb} ") == Reply(501, f"Syntax: {verb} hostname").to_bytes()
    assert conn.state is State.RCPT
    assert conn.envelope == envelope
    assert conn.helo == CLIENT
    advance(conn)


# -- simple commands -------------------------------------------------------------


@pytest.mark.parametrize("setup", SETUPS)
@pytest.mark.parametrize("line", ["NOOP", "NOOP anything at all"])
def test_noop_in_every_command_state(setup: str, line: str) -> None:
    conn = SETUPS[setup]()
    state, envelope = conn.state, copy.deepcopy(conn.envelope)
    assert send_line(conn, line) == OK
    assert conn.state is state
    assert conn.envelope == envelope


@pytest.mark.parametrize("setup", SETUPS)
def test_quit(setup: str) -> None:
    conn = SETUPS[setup]()
    events, out = receive_and_get(conn, b"QUIT\r\nNOOP\r\n")
    assert out == b"221 Bye\r\n"
    assert events == [ConnectionClosed("QUIT")]
    assert conn.state is State.CLOSED
    # Whatever comes later is ignored.
    events, out = receive_and_get(conn, b"NOOP\r\n")
    assert (events, out) == ([ConnectionClosed("QUIT")], b"")


@pytest.mark.parametrize(("setup", "after"), [("connected", State.CONNECTED), ("helo", State.GREETED)])
def test_rset_before_and_after_greeting(setup: str, after: State) -> None:
    conn = SETUPS[setup]()
    assert send_line(conn, "RSET") == OK
    assert conn.state is after


@pytest.mark.parametrize("setup", ["mail", "rcpt"])
def test_rset_clears_transaction(setup: str) -> None:
    conn = SETUPS[setup]()
    assert send_line(conn, "RSET") == OK
    assert conn.state is State.GREETED
    assert conn.envelope == Envelope()
    assert conn.helo == CLIENT
    advance(conn)


SUPPORTED = "Supported commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY"


@pytest.mark.parametrize(
    ("setup", "line", "reply"),
    [
        ("connected", "HELP", Reply(214, SUPPORTED)),
        ("ehlo", "HELP", Reply(214, SUPPORTED)),
        ("ehlo", "HELP mail", Reply(214, "Syntax: MAIL FROM:<address> [SP <mail-parameters>]")),
        ("helo", "HELP MAIL", Reply(214, "Syntax: MAIL FROM:<address>")),
        ("ehlo", "HELP rcpt", Reply(214, "Syntax: RCPT TO:<address> [SP <mail-parameters>]")),
        ("ehlo", "HELP NOOP", Reply(214, "Syntax: NOOP")),
        ("rcpt", "HELP XYZZY", Reply(501, SUPPORTED)),
    ],
)
def test_help(setup: str, line: str, reply: Reply) -> None:
    conn = SETUPS[setup]()
    state = conn.state
    assert send_line(conn, line) == reply.to_bytes()
    assert conn.state is state


@pytest.mark.parametrize("setup", SETUPS)
def test_vrfy_and_expn(setup: str) -> None:
    conn = SETUPS[setup]()
    state = conn.state
    assert send_line(conn, "VRFY someone") == replies.VRFY_REPLY.to_bytes()
    assert replies.VRFY_REPLY.code == 252
    assert send_line(conn, "EXPN list") == replies.EXPN_REPLY.to_bytes()
    assert replies.EXPN_REPLY.code == 502
    assert conn.state is state


CASE_SESSION: list[tuple[str, str]] = [
    ("EHLO", " client.example"),
    ("HELP", ""),
    ("VRFY", " someone"),
    ("EXPN", " list"),
    ("NOOP", ""),
    ("MAIL FROM:", "<a@b.example> BODY=7BIT"),
    ("RCPT TO:", "<c@d.example>"),
    ("RSET", ""),
    ("MAIL FROM:", "<a@b.example>"),
    ("RCPT TO:", "<c@d.example>"),
    ("DATA", ""),
    ("", "hi\r\n."),
    ("HELO", " x"),
    ("QUIT", ""),
]
CASE_CODES = [250, 214, 252, 502, 250, 250, 250, 250, 250, 250, 354, 250, 250, 221]


def _alternate(text: str) -> str:
    return "".join(c.lower() if i % 2 else c.upper() for i, c in enumerate(text))


@pytest.mark.parametrize("transform", [str.upper, str.lower, _alternate, str.swapcase])
def test_commands_are_case_insensitive(transform: Callable[[str], str]) -> None:
    data = b"".join((transform(verb) + rest).encode() + CRLF for verb, rest in CASE_SESSION)
    outcome = three_ways(new_connection, data)
    assert reply_codes(outcome.out) == CASE_CODES
    envelope = Envelope(mail_from="a@b.example", rcpt_tos=["c@d.example"])
    assert outcome.events == [
        MessageReceived(envelope=envelope, data=b"hi\r\n", helo="client.example"),
        ConnectionClosed("QUIT"),
    ]


# -- replies to bad input, and the session stays usable ----------------------------

EHLO_MAIL_SYNTAX = Reply(501, "Syntax: MAIL FROM:<address> [SP <mail-parameters>]")
EHLO_RCPT_SYNTAX = Reply(501, "Syntax: RCPT TO:<address> [SP <mail-parameters>]")


@pytest.mark.parametrize(
    ("setup", "line", "reply"),
    [
        # 503: out of sequence
        ("connected", "MAIL FROM:<a@b>", replies.SEND_HELO_FIRST),
        ("connected", "RCPT TO:<a@b>", replies.SEND_HELO_FIRST),
        ("connected", "DATA", replies.SEND_HELO_FIRST),
        ("ehlo", "RCPT TO:<a@b>", replies.NEED_MAIL),
        ("ehlo", "DATA", replies.NEED_RCPT),
        ("mail", "DATA", replies.NEED_RCPT),
        ("mail", "MAIL FROM:<x@y>", replies.NESTED_MAIL),
        ("rcpt", "MAIL FROM:<x@y>", replies.NESTED_MAIL),
        # 500: unknown, empty, not UTF-8
        ("ehlo", "FOO", replies.unknown_command("FOO")),
        ("rcpt", "FOO bar", replies.unknown_command("FOO")),
        ("ehlo", "", replies.BAD_SYNTAX),
        ("ehlo", b"NOOP \xff", replies.NOT_UTF8),
        # A bare CR or LF does not end a command; it is masked in the reply.
        ("ehlo", "NOOP\nNOOP", Reply(500, 'Error: command "NOOP?NOOP" not recognized')),
        ("ehlo", "FOO\rBAR", Reply(500, 'Error: command "FOO?BAR" not recognized')),
        ("ehlo", "X\x00", Reply(500, 'Error: command "X?" not recognized')),
        # 501: syntax
        ("ehlo", "MAIL", EHLO_MAIL_SYNTAX),
        ("ehlo", "MAIL TO:<a@b>", EHLO_MAIL_SYNTAX),
        ("ehlo", "MAIL <a@b>", EHLO_MAIL_SYNTAX),
        ("helo", "MAIL", Reply(501, "Syntax: MAIL FROM:<address>")),
        ("helo", "MAIL FROM:<a@b> SIZE=10", Reply(501, "Syntax: MAIL FROM:<address>")),
        ("mail", "RCPT", EHLO_RCPT_SYNTAX),
        ("mail", "RCPT FROM:<a@b>", EHLO_RCPT_SYNTAX),
        ("mail", "RCPT TO:<>", EHLO_RCPT_SYNTAX),
        ("rcpt", "DATA now", Reply(501, "Syntax: DATA")),
        ("rcpt", "RSET now", Reply(501, "Syntax: RSET")),
        ("ehlo", "VRFY", Reply(501, "Syntax: VRFY <address>")),
        ("ehlo", "MAIL FROM:<a@b> BODY=9BIT", replies.BAD_BODY),
        ("ehlo", "MAIL FROM:<a@b> BODY", replies.BAD_BODY),
        ("ehlo", "MAIL FROM:<a@b> SIZE=abc", EHLO_MAIL_SYNTAX),
        ("ehlo", "MAIL FROM:<a@b> SIZE", EHLO_MAIL_SYNTAX),
        ("ehlo", "MAIL FROM:<a@b> SIZE=-1", EHLO_MAIL_SYNTAX),
        ("ehlo", "MAIL FROM:<a@b> SIZE=" + "9" * 21, EHLO_MAIL_SYNTAX),
        ("ehlo", "MAIL FROM:<a@b> SIZE=1 size=2", Reply(501, "Error: duplicate parameter")),
        ("ehlo", "MAIL FROM:<a@b> =1", Reply(501, "Error: bad parameter keyword ''")),
        ("ehlo", "MAIL FROM:<a@b> X=", Reply(501, "Error: bad value for parameter 'X'")),
        # 552: SIZE above the limit
        ("ehlo", f"MAIL FROM:<a@b> SIZE={DEFAULT_DATA_SIZE_LIMIT + 1}", replies.MESSAGE_TOO_BIG),
        # 555: parameters not offered
        ("ehlo", "MAIL FROM:<a@b> SMTPUTF8", replies.MAIL_PARAMS_UNKNOWN),
        ("ehlo", "MAIL FROM:<a@b> XFOO=1", replies.MAIL_PARAMS_UNKNOWN),
        ("ehlo", "MAIL FROM:<a@b> RET=FULL", replies.MAIL_PARAMS_UNKNOWN),
        ("ehlo", "MAIL FROM:<a@b> ENVID=x", replies.MAIL_PARAMS_UNKNOWN),
        ("mail", "RCPT TO:<c@d> NOTIFY=NEVER", replies.RCPT_PARAMS_UNKNOWN),
        ("mail", "RCPT TO:<c@d> XFOO", replies.RCPT_PARAMS_UNKNOWN),
        # 553: non-ASCII without SMTPUTF8
        ("ehlo", "MAIL FROM:<ü@example.com>", replies.NEEDS_SMTPUTF8),
        ("mail", "RCPT TO:<ü@example.com>", replies.NEEDS_SMTPUTF8),
    ],
)
def test_error_reply_changes_nothing_and_session_goes_on(setup: str, line: str | bytes, reply: Reply) -> None:
    raw = line.encode() if isinstance(line, str) else line
    outcome = three_ways(SETUPS[setup], raw + CRLF)
    assert outcome.out == reply.to_bytes()
    conn = SETUPS[setup]()
    state, envelope, helo = conn.state, copy.deepcopy(conn.envelope), conn.helo
    assert send_line(conn, line) == reply.to_bytes()
    assert conn.state is state
    assert conn.envelope == envelope
    assert conn.helo == helo
    assert_usable(conn)
    advance(conn)


@pytest.mark.parametrize(
    ("config", "setup", "line", "reply"),
    [
        (DECODE, greeted, "MAIL FROM:<a@b> BODY=8BITMIME", replies.MAIL_PARAMS_UNKNOWN),
        (DECODE, greeted, "MAIL FROM:<a@b> BODY=7BIT", replies.MAIL_PARAMS_UNKNOWN),
        (UTF8, greeted, "MAIL FROM:<a@b> SMTPUTF8=yes", replies.SMTPUTF8_NO_ARGS),
        (UTF8, greeted, "MAIL FROM:<ü@example.com>", replies.NEEDS_SMTPUTF8),
        (UTF8, mail_state, "RCPT TO:<ü@example.com>", replies.NEEDS_SMTPUTF8),
        (SessionConfig(data_size_limit=1000), greeted, "MAIL FROM:<a@b> SIZE=1001", replies.MESSAGE_TOO_BIG),
        (DSN, greeted, "MAIL FROM:<a@b> RET=SOME", replies.MAIL_PARAMS_UNKNOWN),
        (DSN, greeted, "MAIL FROM:<a@b> RET", replies.MAIL_PARAMS_UNKNOWN),
        (DSN, greeted, "MAIL FROM:<a@b> ENVID", replies.MAIL_PARAMS_UNKNOWN),
        (DSN, mail_state, "RCPT TO:<c@d> NOTIFY", replies.RCPT_PARAMS_UNKNOWN),
        (DSN, mail_state, "RCPT TO:<c@d> XFOO=1", replies.RCPT_PARAMS_UNKNOWN),
    ],
)
def test_config_dependent_errors(
    config: SessionConfig, setup: Callable[[SessionConfig], ServerConnection], line: str, reply: Reply
) -> None:
    conn = setup(config)
    state, envelope = conn.state, copy.deepcopy(conn.envelope)
    assert send_line(conn, line) == reply.to_bytes()
    assert conn.state is state
    assert conn.envelope == envelope
    advance(conn)


MALFORMED: list[tuple[str, int]] = [
    ("<a@example.com", 501),
    ("<a@example.com SIZE=10", 501),
    ("<a\x00b@example.com>", 501),
    ("<a\rb@example.com>", 501),
    ("<a\nb@example.com>", 501),
    ("<a@example.com>\n", 501),
    ("<a@example.com>\r", 501),
    ("<a@example.com> \x00", 501),
    ("<a b@example.com>", 501),
    ("<a@example.com>x", 501),
    ("a@example.com>", 501),
    ("<<a@example.com>>", 501),
    ("<@route.example>", 501),
    ("<@route.example:>", 501),
    ("", 501),
    ("<a@>", 553),
    ("<[a]@example.com>", 553),
    ("<ä@example.com>", 553),
]


@pytest.mark.parametrize(("address", "code"), MALFORMED)
@pytest.mark.parametrize("verb", ["MAIL", "RCPT"])
def test_malformed_address_never_recorded(verb: str, address: str, code: int) -> None:
    conn = greeted() if verb == "MAIL" else mail_state()
    state, envelope = conn.state, copy.deepcopy(conn.envelope)
    keyword = "FROM:" if verb == "MAIL" else "TO:"
    out = send_line(conn, f"{verb} {keyword}{address}")
    assert reply_codes(out) == [code]
    assert conn.state is state
    assert conn.envelope == envelope
    advance(conn)


# -- MAIL and RCPT -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("argument", "address"),
    [
        ("<a@example.com>", "a@example.com"),
        ("<>", ""),
        ("a@example.com", "a@example.com"),
        (" <a@example.com>", "a@example.com"),
        ("<@r1.example,@r2.example:a@example.com>", "a@example.com"),
        ('<"john doe"@example.com>', '"john doe"@example.com'),
        ("<postmaster>", "postmaster"),
    ],
)
def test_mail_from_addresses(argument: str, address: str) -> None:
    conn = greeted()
    assert send_line(conn, f"MAIL FROM:{argument}") == OK
    assert conn.state is State.MAIL
    assert conn.envelope == Envelope(mail_from=address)


@pytest.mark.parametrize(
    ("config", "params", "options"),
    [
        (SessionConfig(), "BODY=7BIT", ["BODY=7BIT"]),
        (SessionConfig(), "body=8bitmime", ["BODY=8BITMIME"]),
        (SessionConfig(), "SIZE=1000", ["SIZE=1000"]),
        (SessionConfig(), f"SIZE={DEFAULT_DATA_SIZE_LIMIT}", [f"SIZE={DEFAULT_DATA_SIZE_LIMIT}"]),
        (SessionConfig(), "SIZE=0", ["SIZE=0"]),
        (SessionConfig(data_size_limit=1000), "SIZE=1000", ["SIZE=1000"]),
        (SessionConfig(data_size_limit=0), "SIZE=99999999999", ["SIZE=99999999999"]),
        (UTF8, "SMTPUTF8", ["SMTPUTF8"]),
        (UTF8, "SIZE=10 BODY=8BITMIME smtputf8", ["SIZE=10", "BODY=8BITMIME", "SMTPUTF8"]),
        (DSN, "RET=hdrs ENVID=QQ314159", ["RET=HDRS", "ENVID=QQ314159"]),
        (DSN, "RET=FULL", ["RET=FULL"]),
    ],
)
def test_mail_parameters_land_in_mail_options(config: SessionConfig, params: str, options: list[str]) -> None:
    conn = greeted(config)
    assert send_line(conn, f"MAIL FROM:<{SENDER}> {params}") == OK
    assert conn.state is State.MAIL
    assert conn.envelope.mail_from == SENDER
    assert conn.envelope.mail_options == options
    assert conn.envelope.smtputf8 is ("SMTPUTF8" in options)


def test_null_sender_with_parameters() -> None:
    conn = greeted()
    assert send_line(conn, "MAIL FROM:<> SIZE=10") == OK
    assert conn.envelope == Envelope(mail_from="", mail_options=["SIZE=10"])


def test_rcpt_accumulates_recipients_and_dsn_options() -> None:
    conn = mail_state(DSN)
    assert send_line(conn, "RCPT TO:<one@example.com> NOTIFY=SUCCESS,FAILURE") == OK
    assert send_line(conn, "RCPT TO:<two@example.com>") == OK
    assert send_line(conn, "rcpt to:<three@example.com> ORCPT=rfc822;three@example.com") == OK
    assert conn.state is State.RCPT
    assert conn.envelope.rcpt_tos == ["one@example.com", "two@example.com", "three@example.com"]
    assert conn.envelope.rcpt_options == ["NOTIFY=SUCCESS,FAILURE", "ORCPT=rfc822;three@example.com"]


def test_smtputf8_addresses() -> None:
    conn = greeted(UTF8)
    assert send_line(conn, "MAIL FROM:<üser@exämple.com> SMTPUTF8") == OK
    assert send_line(conn, "RCPT TO:<ré@exämple.com>") == OK
    assert conn.envelope == Envelope(
        mail_from="üser@exämple.com", rcpt_tos=["ré@exämple.com"], mail_options=["SMTPUTF8"], smtputf8=True
    )


# -- DATA --------------------------------------------------------------------------


def test_message_event_and_reply() -> None:
    conn = in_rcpt()
    assert send_line(conn, "RCPT TO:<second@example.com>") == OK
    assert send_line(conn, "DATA") == replies.START_DATA.to_bytes()
    conn.receive_data(BODY + END)
    event = conn.next_event()
    assert event == MessageReceived(
        envelope=Envelope(mail_from=SENDER, rcpt_tos=[RECIPIENT, "second@example.com"]), data=BODY, helo=CLIENT
    )
    waiting = conn.state  # a local, so mypy does not narrow conn.state for the rest of the test
    assert waiting is State.MESSAGE_PENDING
    assert conn.data_to_send() == b""  # the verdict is the application's
    conn.answer_message()
    assert conn.data_to_send() == OK
    assert conn.state is State.GREETED
    assert conn.envelope == Envelope()
    assert conn.next_event() is NEED_DATA
    advance(conn)


def test_answer_message_with_own_reply() -> None:
    conn = in_data()
    conn.receive_data(BODY + END)
    assert isinstance(conn.next_event(), MessageReceived)
    conn.answer_message(Reply(550, "No thanks"))
    assert conn.data_to_send() == b"550 No thanks\r\n"
    assert conn.state is State.GREETED
    assert conn.envelope == Envelope()


def test_event_envelope_is_not_touched_by_the_next_transaction() -> None:
    conn = in_data()
    first = full_message(conn)
    assert send_line(conn, "MAIL FROM:<other@example.com>") == OK
    assert send_line(conn, "RCPT TO:<x@example.com>") == OK
    assert first.envelope == Envelope(mail_from=SENDER, rcpt_tos=[RECIPIENT])


def test_empty_message() -> None:
    conn = in_data()
    assert full_message(conn, b"").data == b""


@pytest.mark.parametrize(
    ("sent", "data"),
    [
        (b"..foo\r\n", b".foo\r\n"),
        (b"..\r\n", b".\r\n"),
        (b"...\r\n", b"..\r\n"),
        (b"a\r\n..b\r\n..\r\nc\r\n", b"a\r\n.b\r\n.\r\nc\r\n"),
        (b"a.\r\n.b\r\n", b"a.\r\nb\r\n"),  # a lone leading dot is removed too (RFC 5321 4.5.2)
        (b"no dots at all\r\n", b"no dots at all\r\n"),
    ],
)
def test_dot_unstuffing(sent: bytes, data: bytes) -> None:
    outcome = three_ways(in_data, sent + END)
    assert [event.data for event in outcome.events if isinstance(event, MessageReceived)] == [data]
    assert outcome.state is State.GREETED


@pytest.mark.parametrize(
    ("inner", "kept"),
    [
        (b"\n.\n", b"\n.\n"),
        (b"\r.\r", b"\r.\r"),
        (b"\n.\r\n", b"\n.\r\n"),
        (b"\r.\r\n", b"\r.\r\n"),
        (b"\n.\r", b"\n.\r"),
        (b"\r\n.\n", b"\r\n\n"),
        (b"\r\n.\r", b"\r\n\r"),
    ],
)
def test_only_crlf_dot_crlf_ends_the_message(inner: bytes, kept: bytes) -> None:
    # SMTP smuggling: a lone LF or CR around the dot must not end the message,
    # so the commands after it stay message text.
    smuggled = b"MAIL FROM:<evil@example.com>\r\nRCPT TO:<victim@example.com>\r\nDATA\r\nforged\r\n"
    outcome = three_ways(in_data, b"before" + inner + smuggled + END)
    envelope = Envelope(mail_from=SENDER, rcpt_tos=[RECIPIENT])
    assert outcome.events == [MessageReceived(envelope=envelope, data=b"before" + kept + smuggled, helo=CLIENT)]
    assert outcome.out == OK
    assert outcome.state is State.GREETED


@pytest.mark.parametrize("separator", [b"\n", b"\r"])
def test_bare_cr_or_lf_does_not_end_a_command(separator: bytes) -> None:
    # One line, "HELO x<LF>MAIL FROM:<a@b>": a greeting name with a control
    # character in it, refused as a whole; no MAIL runs.
    outcome = three_ways(new_connection, b"HELO x" + separator + b"MAIL FROM:<a@b>\r\n")
    assert reply_codes(outcome.out) == [501]
    assert outcome.state is State.CONNECTED
    assert outcome.envelope == Envelope()


def test_data_with_argument_is_501() -> None:
    conn = in_rcpt()
    assert send_line(conn, "DATA x") == Reply(501, "Syntax: DATA").to_bytes()
    assert conn.state is State.RCPT
    assert send_line(conn, "DATA") == replies.START_DATA.to_bytes()


def test_commands_after_message_in_same_chunk() -> None:
    conn = in_rcpt()
    events, out = receive_and_get(conn, b"DATA\r\n" + BODY + END + b"MAIL FROM:<next@example.com>\r\nNOOP\r\n")
    assert [type(event) for event in events] == [MessageReceived]
    assert out == replies.START_DATA.to_bytes() + OK + OK + OK
    assert conn.state is State.MAIL
    assert conn.envelope == Envelope(mail_from="next@example.com")


def test_two_messages_in_one_session() -> None:
    conn = in_data()
    assert full_message(conn, b"one\r\n").envelope.rcpt_tos == [RECIPIENT]
    events, out = receive_and_get(conn, b"MAIL FROM:<>\r\nRCPT TO:<b@example.com>\r\nDATA\r\ntwo\r\n.\r\n")
    assert events == [
        MessageReceived(envelope=Envelope(mail_from="", rcpt_tos=["b@example.com"]), data=b"two\r\n", helo=CLIENT)
    ]
    assert reply_codes(out) == [250, 250, 354, 250]


# -- data size limit -------------------------------------------------------------------

LIMITED = SessionConfig(data_size_limit=SMALL_LIMIT)
EXACT = b"x" * (SMALL_LIMIT - 2) + CRLF
#: Stuffed dots do not count: raw 70 octets, 60 after unstuffing.
EXACT_STUFFED = b"..abc\r\n" * 10
ONE_OVER_STUFFED = b"..abc\r\n" * 9 + b"..abcd\r\n"


def limited_data() -> ServerConnection:
    return in_data(LIMITED)


@pytest.mark.parametrize("message", [EXACT, EXACT_STUFFED], ids=["plain", "stuffed"])
def test_message_of_exactly_the_limit_is_accepted(message: bytes) -> None:
    outcome = three_ways(limited_data, message + END)
    messages = [event for event in outcome.events if isinstance(event, MessageReceived)]
    assert len(messages) == 1
    assert len(messages[0].data) == SMALL_LIMIT
    assert outcome.out == OK


@pytest.mark.parametrize(
    "chunks",
    [[EXACT, b".", b"\r", b"\n"], [EXACT, b".\r", b"\n"], [EXACT + b".\r", b"\n"], [EXACT + b".", b"\r\n"]],
)
def test_exact_limit_with_terminator_split(chunks: list[bytes]) -> None:
    # A trailing "\r\n.\r" may be the start of the end marker, not message data.
    conn = limited_data()
    events = []
    for chunk in chunks:
        conn.receive_data(chunk)
        events += drain(conn)
    assert [len(e.data) for e in events if isinstance(e, MessageReceived)] == [SMALL_LIMIT]
    assert conn.data_to_send() == OK


@pytest.mark.parametrize("message", [b"x" * (SMALL_LIMIT - 1) + CRLF, ONE_OVER_STUFFED], ids=["plain", "stuffed"])
def test_message_one_over_the_limit_is_552(message: bytes) -> None:
    outcome = three_ways(limited_data, message + END)
    assert outcome.events == []
    assert outcome.out == replies.TOO_MUCH_DATA.to_bytes()
    assert replies.TOO_MUCH_DATA.code == 552
    assert outcome.state is State.GREETED
    assert outcome.envelope == Envelope()


def test_after_552_the_next_transaction_works() -> None:
    conn = limited_data()
    events, out = receive_and_get(conn, b"y" * 1000 + CRLF + END)
    assert (events, out) == ([], replies.TOO_MUCH_DATA.to_bytes())
    assert conn.state is State.GREETED
    assert send_line(conn, "MAIL FROM:<a@example.com>") == OK
    assert send_line(conn, "RCPT TO:<b@example.com>") == OK
    assert send_line(conn, "DATA") == replies.START_DATA.to_bytes()
    assert full_message(conn, b"small\r\n").data == b"small\r\n"


def test_no_limit() -> None:
    conn = in_data(SessionConfig(data_size_limit=0))
    big = (b"z" * 998 + CRLF) * 2048
    assert full_message(conn, big).data == big


@pytest.mark.parametrize("line", [b"y" * 78 + CRLF, b"..\r\n", b"\r\n..."], ids=["text", "dots", "dot-runs"])
def test_oversized_data_keeps_memory_bounded(line: bytes) -> None:
    conn = in_data(SessionConfig(data_size_limit=1000))
    chunk = line * (CHUNK // len(line))
    for _ in range(FLOOD // len(chunk)):
        conn.receive_data(chunk)
        assert conn.next_event() is NEED_DATA
        assert isinstance(conn._reader, DataReader)
        assert conn._reader.held <= len(chunk)
        assert len(conn._inbox) == 0
    assert conn.data_to_send() == b""
    events, out = receive_and_get(conn, CRLF + END)
    assert (events, out) == ([], replies.TOO_MUCH_DATA.to_bytes())
    assert conn.state is State.GREETED
    assert conn.envelope == Envelope()
    advance(conn)


# -- command line limits ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "ehlo", "verb", "limit"),
    [
        (SessionConfig(), False, "NOOP", DEFAULT_COMMAND_SIZE_LIMIT),
        (SessionConfig(), True, "NOOP", DEFAULT_COMMAND_SIZE_LIMIT),
        (SessionConfig(), False, "MAIL", DEFAULT_COMMAND_SIZE_LIMIT),
        (SessionConfig(), True, "MAIL", DEFAULT_COMMAND_SIZE_LIMIT + SIZE_ALLOWANCE),
        (UTF8, True, "MAIL", DEFAULT_COMMAND_SIZE_LIMIT + SIZE_ALLOWANCE + SMTPUTF8_ALLOWANCE),
        (UTF8, False, "MAIL", DEFAULT_COMMAND_SIZE_LIMIT),
        (DSN, True, "MAIL", DEFAULT_COMMAND_SIZE_LIMIT + SIZE_ALLOWANCE + DSN_MAIL_ALLOWANCE),
        (SessionConfig(), True, "RCPT", DEFAULT_COMMAND_SIZE_LIMIT),
        (DSN, True, "RCPT", DEFAULT_COMMAND_SIZE_LIMIT + DSN_RCPT_ALLOWANCE),
        (SessionConfig(command_size_limit=1000), False, "NOOP", 1000),
    ],
)
def test_command_line_limit_both_sides(config: SessionConfig, ehlo: bool, verb: str, limit: int) -> None:
    assert (DEFAULT_COMMAND_SIZE_LIMIT, SIZE_ALLOWANCE, SMTPUTF8_ALLOWANCE) == (512, 26, 10)  # RFC 5321, 1870, 6531

    def make() -> ServerConnection:
        return mail_state(config, ehlo) if verb == "RCPT" else greeted(config, ehlo)

    at_limit = three_ways(make, line_of(verb, limit).encode() + CRLF)
    assert at_limit.out == OK
    over = three_ways(make, line_of(verb, limit + 1).encode() + CRLF)
    assert over.out == replies.LINE_TOO_LONG.to_bytes()
    assert over.state is make().state
    assert over.envelope == make().envelope


def test_line_limit_counts_octets_not_characters() -> None:
    limit = DEFAULT_COMMAND_SIZE_LIMIT + SIZE_ALLOWANCE + SMTPUTF8_ALLOWANCE
    head, tail = "MAIL FROM:<", "@example.com> SMTPUTF8"
    fits = head + "é" * ((limit - 2 - len(head) - len(tail)) // 2) + tail
    assert len(fits.encode()) + 2 in (limit, limit - 1)
    conn = greeted(UTF8)
    assert send_line(conn, fits) == OK
    conn = greeted(UTF8)
    too_long = head + "é" * ((limit - 2 - len(head) - len(tail)) // 2 + 1) + tail
    assert len(too_long) + 2 <= limit < len(too_long.encode()) + 2
    assert send_line(conn, too_long) == replies.LINE_TOO_LONG.to_bytes()
    assert conn.envelope == Envelope()


def test_second_ehlo_does_not_grow_the_limit() -> None:
    limit = DEFAULT_COMMAND_SIZE_LIMIT + SIZE_ALLOWANCE
    conn = greeted()
    for _ in range(3):
        assert reply_codes(send_line(conn, "EHLO again.example")) == [250]
    assert send_line(conn, line_of("MAIL", limit + 1)) == replies.LINE_TOO_LONG.to_bytes()
    assert send_line(conn, line_of("MAIL", limit)) == OK


def test_helo_after_ehlo_drops_the_allowance() -> None:
    conn = greeted()
    assert send_line(conn, "HELO again.example") == b"250 localhost\r\n"
    assert send_line(conn, line_of("MAIL", DEFAULT_COMMAND_SIZE_LIMIT + 1)) == replies.LINE_TOO_LONG.to_bytes()
    assert send_line(conn, line_of("MAIL", DEFAULT_COMMAND_SIZE_LIMIT)) == OK


@pytest.mark.parametrize("junk", [b"x", b"x\n", b"\rx", b"\r"], ids=["plain", "bare-lf", "bare-cr", "only-cr"])
def test_endless_line_keeps_memory_bounded(junk: bytes) -> None:
    conn = greeted()
    chunk = junk * (CHUNK // len(junk))
    for _ in range(FLOOD // len(chunk)):
        conn.receive_data(chunk)
        assert conn.next_event() is NEED_DATA
        assert len(conn._inbox) <= conn.config.longest_line
    assert conn.data_to_send() == b""
    events, out = receive_and_get(conn, b"\n" if junk.endswith(b"\r") else CRLF)
    assert (events, out) == ([], replies.LINE_TOO_LONG.to_bytes())
    assert conn.state is State.GREETED
    advance(conn)


def test_endless_line_with_crlf_split_across_chunks() -> None:
    conn = greeted()
    events, out = receive_and_get(conn, b"x" * 10_000 + b"\r")
    assert (events, out) == ([], b"")
    events, out = receive_and_get(conn, b"\nNOOP\r\n")
    assert (events, out) == ([], replies.LINE_TOO_LONG.to_bytes() + OK)


def test_long_line_byte_by_byte() -> None:
    outcome = three_ways(greeted, b"NOOP " + b"x" * 2000 + CRLF + b"NOOP\r\n")
    assert outcome.out == replies.LINE_TOO_LONG.to_bytes() + OK
    assert outcome.state is State.GREETED


# -- pipelining and feeding three ways ---------------------------------------------------


def test_pipelined_commands_answered_in_order() -> None:
    conn = new_connection()
    data = (
        b"EHLO client.example\r\n"
        b"MAIL FROM:<a@example.com>\r\n"
        b"RCPT TO:<b@example.com>\r\n"
        b"RCPT TO:<broken\r\n"
        b"RCPT TO:<c@example.com>\r\n"
        b"FOO\r\n"
        b"DATA\r\n"
    )
    events, out = receive_and_get(conn, data)
    assert events == []
    assert out == (
        ehlo_reply(DEFAULT_KEYWORDS)
        + OK
        + OK
        + Reply(501, "Error: unterminated <address>").to_bytes()
        + OK
        + replies.unknown_command("FOO").to_bytes()
        + replies.START_DATA.to_bytes()
    )
    assert conn.state is State.DATA
    assert conn.envelope.rcpt_tos == ["b@example.com", "c@example.com"]


SESSIONS: dict[str, bytes] = {
    "full": (
        b"EHLO client.example\r\nMAIL FROM:<a@example.com> SIZE=20\r\nRCPT TO:<b@example.com>\r\n"
        b"DATA\r\nSubject: x\r\n\r\n..dot\r\n.\r\nQUIT\r\n"
    ),
    "errors": b"MAIL FROM:<a@b>\r\nHELO x\r\nRCPT TO:<a@b>\r\nMAIL FROM:<a@b\r\nXYZ\r\n\r\nRSET\r\nNOOP\r\n",
    "two-messages": (
        b"HELO x\r\nMAIL FROM:<>\r\nRCPT TO:<a@b>\r\nDATA\r\n.\r\n"
        b"MAIL FROM:<c@d>\r\nRCPT TO:<e@f>\r\nDATA\r\nbody\r\n.\r\nRSET\r\n"
    ),
    "too-long": b"HELO x\r\n" + b"NOOP " + b"n" * 600 + b"\r\nMAIL FROM:<a@b>\r\n",
    "in-data": b"HELO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\npartial line",
}


@pytest.mark.parametrize("name", SESSIONS)
def test_sessions_fed_three_ways(name: str) -> None:
    three_ways(new_connection, SESSIONS[name])


def test_full_session_outcome() -> None:
    outcome = three_ways(new_connection, SESSIONS["full"])
    envelope = Envelope(mail_from="a@example.com", rcpt_tos=["b@example.com"], mail_options=["SIZE=20"])
    assert outcome.events == [
        MessageReceived(envelope=envelope, data=b"Subject: x\r\n\r\n.dot\r\n", helo="client.example"),
        ConnectionClosed("QUIT"),
    ]
    assert reply_codes(outcome.out) == [250, 250, 250, 354, 250, 221]


# -- misuse by the application ---------------------------------------------------------------


@pytest.mark.parametrize("setup", [*SETUPS, "data"])
def test_answer_message_without_message_raises(setup: str) -> None:
    conn = in_data() if setup == "data" else SETUPS[setup]()
    state = conn.state
    with pytest.raises(LocalProtocolError, match=f"no message waits for an answer \\(state {state.name}\\)"):
        conn.answer_message()
    assert conn.state is state
    assert conn.data_to_send() == b""


def test_next_event_while_message_pending_raises() -> None:
    conn = in_data()
    conn.receive_data(BODY + END + b"NOOP\r\n")
    assert isinstance(conn.next_event(), MessageReceived)
    with pytest.raises(LocalProtocolError, match=r"answer_message\(\) must be called before next_event\(\)"):
        conn.next_event()
    assert conn.state is State.MESSAGE_PENDING
    assert conn.data_to_send() == b""
    conn.answer_message()
    assert drain(conn) == []
    assert conn.data_to_send() == OK + OK


def test_answer_message_twice_raises() -> None:
    conn = in_data()
    full_message(conn)
    with pytest.raises(LocalProtocolError):
        conn.answer_message()


# -- end of input ------------------------------------------------------------------------------


@pytest.mark.parametrize("setup", SETUPS)
def test_eof_gives_connection_closed(setup: str) -> None:
    conn = SETUPS[setup]()
    events, out = receive_and_get(conn, b"")
    assert (events, out) == ([PEER_CLOSED], b"")
    assert conn.state is State.CLOSED
    assert conn.next_event() == PEER_CLOSED


def test_eof_after_partial_command() -> None:
    conn = greeted()
    conn.receive_data(b"MAIL FROM:<a@b>")
    conn.receive_data(b"")
    assert drain(conn) == [PEER_CLOSED]
    assert conn.data_to_send() == b""
    assert conn.envelope == Envelope()


def test_eof_after_complete_commands_answers_them_first() -> None:
    conn = greeted()
    conn.receive_data(b"NOOP\r\nRSET\r\n")
    conn.receive_data(b"")
    assert drain(conn) == [PEER_CLOSED]
    assert conn.data_to_send() == OK + OK


@pytest.mark.parametrize("partial", [b"\r\n", b"Subject: x\r\n", b"text\r\n.", b"text\r\n.\r"])
def test_eof_in_data_gives_no_message(partial: bytes) -> None:
    conn = in_data()
    events, out = receive_and_get(conn, partial)
    assert (events, out) == ([], b"")
    events, out = receive_and_get(conn, b"")
    assert (events, out) == ([PEER_CLOSED], b"")
    assert conn.state is State.CLOSED


def test_eof_after_complete_message_delivers_it() -> None:
    conn = in_data()
    conn.receive_data(BODY + END)
    conn.receive_data(b"")
    events = drain(conn)
    assert [type(event) for event in events] == [MessageReceived, ConnectionClosed]
    assert conn.data_to_send() == OK


def test_input_after_close_is_ignored() -> None:
    conn = greeted()
    receive_and_get(conn, b"")
    events, out = receive_and_get(conn, b"NOOP\r\n")
    assert (events, out) == ([PEER_CLOSED], b"")


# -- application hooks -------------------------------------------------------------------------


def test_abort_sends_421_and_closes() -> None:
    conn = in_data()
    conn.abort()
    assert conn.data_to_send() == replies.SHUTTING_DOWN.to_bytes()
    assert conn.state is State.CLOSED
    assert conn.next_event() == ConnectionClosed(replies.SHUTTING_DOWN.text)
    conn.abort()  # a second abort sends nothing
    assert conn.data_to_send() == b""


def test_close_sends_nothing() -> None:
    conn = greeted()
    conn.close()
    assert conn.data_to_send() == b""
    assert conn.next_event() == ConnectionClosed("closed by the application")


def test_push_queues_a_raw_line() -> None:
    conn = new_connection()
    conn.push("250 fine")
    assert conn.data_to_send() == b"250 fine\r\n"


def test_delegated_verb_becomes_an_event() -> None:
    conn = greeted(SessionConfig(delegated_verbs=frozenset({"VRFY", "XFOO"})))
    conn.receive_data(b"vrfy someone\r\nXFOO\r\n")
    assert conn.next_event() == CommandReceived("VRFY", "someone")
    assert conn.data_to_send() == b""
    assert conn.last_line == "vrfy someone"
    assert conn.handle_command("VRFY", "someone") is None
    assert conn.data_to_send() == replies.VRFY_REPLY.to_bytes()
    assert conn.next_event() == CommandReceived("XFOO", None)
    assert conn.next_event() is NEED_DATA
    conn.reply(Reply(250, "XFOO done"))
    assert conn.data_to_send() == b"250 XFOO done\r\n"
    assert conn.handle_command("XFOO", None) is None
    assert conn.data_to_send() == replies.unknown_command("XFOO").to_bytes()


# -- random input: one seeded, bounded invariant -------------------------------------------------

FUZZ_SEED = 20240611
FUZZ_ROUNDS = 300
FUZZ_TOKENS: list[bytes] = [
    b"HELO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n",
    b"HELO x",
    b"EHLO x",
    b"MAIL FROM:<a@b>",
    b"MAIL FROM:<>",
    b"mail from:",
    b"RCPT TO:<c@d>",
    b"RCPT TO:",
    b"DATA",
    b"RSET",
    b"NOOP",
    b"VRFY",
    b"EXPN x",
    b"HELP",
    b"qUiT",
    b" SIZE=",
    b" SIZE=10",
    b" BODY=8BITMIME",
    b" SMTPUTF8",
    b" RET=FULL",
    b" NOTIFY=NEVER",
    b"9",
    b" ",
    b"<",
    b">",
    b"@",
    b":",
    b"=",
    b'"',
    b".",
    b"..",
    b"\r\n",
    b"\r\n",
    b"\r\n",
    b"\r\n.\r\n",
    b"\r",
    b"\n",
    b"\x00",
    b"\t",
    b"\xff",
    b"\xc3\xa9",
    b"\xe2\x82",
    b"x" * 600,
]
FUZZ_CONFIGS = [
    SessionConfig(),
    SessionConfig(data_size_limit=20, enable_SMTPUTF8=True),
    SessionConfig(decode_data=True, enable_DSN=True, data_size_limit=0),
]


def _fuzz_input(rng: random.Random) -> bytes:
    parts = []
    for _ in range(rng.randrange(1, 40)):
        if rng.random() < 0.1:
            parts.append(rng.randbytes(rng.randrange(1, 8)))
        else:
            parts.append(rng.choice(FUZZ_TOKENS))
    return b"".join(parts)


def test_random_input_invariant() -> None:
    rng = random.Random(FUZZ_SEED)
    seen: set[type] = set()
    for _ in range(FUZZ_ROUNDS):
        conn = new_connection(rng.choice(FUZZ_CONFIGS))
        data = _fuzz_input(rng)
        cuts = sorted(rng.sample(range(len(data) + 1), min(len(data) + 1, rng.randrange(1, 6))))
        chunks = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)] + [b""]
        closed = False
        for chunk in chunks:
            conn.receive_data(chunk)
            while True:
                event = conn.next_event()
                seen.add(type(event))
                if isinstance(event, NeedData):
                    break
                if isinstance(event, ConnectionClosed):
                    closed = True
                    assert conn.state is State.CLOSED
                    break
                assert isinstance(event, MessageReceived)
                assert conn.state is State.MESSAGE_PENDING
                assert event.envelope.mail_from is not None
                assert event.envelope.rcpt_tos
                assert b"\r\n.\r\n" not in b"\r\n" + event.data
                if rng.random() < 0.2:
                    with pytest.raises(LocalProtocolError):
                        conn.next_event()
                conn.answer_message(rng.choice([None, Reply(550, "no")]))
            reply_codes(conn.data_to_send())  # whole, well-formed reply lines only
            if conn.state is not State.CLOSED:
                assert conn.state in COMMAND_STATES | {State.DATA}
        assert closed
        assert conn.state is State.CLOSED
    # The input reached every kind of outcome.
    assert seen == {NeedData, MessageReceived, ConnectionClosed}


@pytest.mark.parametrize("verb", ["HELO", "EHLO"])
def test_greeting_name_with_control_character_is_501(verb: str) -> None:
    conn = new_connection()
    out = send_line(conn, f"{verb} bad\tname")
    assert reply_codes(out) == [501]
    assert conn.helo == ""
