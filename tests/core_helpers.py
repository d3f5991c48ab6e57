"""Helpers that drive the sans-I/O core with bytes only, no sockets (the
habit of h11's ``tests/helpers.py``)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from pytest_smtpd import replies
from pytest_smtpd.connection import ServerConnection, SessionConfig
from pytest_smtpd.events import ConnectionClosed, Envelope, Event, MessageReceived, NeedData
from pytest_smtpd.replies import Reply
from pytest_smtpd.state import COMMAND_STATES, State

CRLF = b"\r\n"
#: One reply line as RFC 5321 4.2 has it: three digits, SP or "-", text, CRLF.
REPLY_LINE = re.compile(rb"[2-5][0-9][0-9][ -][^\r\n]*\r\n")
#: Bytes that begin a next command without finishing it (h11's "trailing data").
TRAILING = b"NOO"

CLIENT = "client.example"
SENDER = "sender@example.com"
RECIPIENT = "rcpt@example.com"


def new_connection(config: SessionConfig | None = None) -> ServerConnection:
    """A connection whose greeting has already been taken out."""
    conn = ServerConnection(config)
    greeting = conn.data_to_send()
    assert greeting.startswith(b"220 ")
    return conn


def drain(conn: ServerConnection, answer: Reply | None = None) -> list[Event]:
    """Pull events until the core needs data or is closed, answering each
    message with ``answer`` (None: 250 OK)."""
    events: list[Event] = []
    while True:
        event = conn.next_event()
        if isinstance(event, NeedData):
            return events
        events.append(event)
        if isinstance(event, MessageReceived):
            conn.answer_message(answer)
        elif isinstance(event, ConnectionClosed):
            return events


def receive_and_get(conn: ServerConnection, data: bytes, answer: Reply | None = None) -> tuple[list[Event], bytes]:
    """Feed ``data`` at once; return the events and the bytes to send."""
    conn.receive_data(data)
    events = drain(conn, answer)
    return events, conn.data_to_send()


def send_line(conn: ServerConnection, line: str | bytes) -> bytes:
    """Send one command line (CRLF added); return the reply bytes, asserting
    that it produced no event."""
    raw = line.encode("utf-8") if isinstance(line, str) else line
    events, out = receive_and_get(conn, raw + CRLF)
    assert events == []
    return out


def reply_lines(out: bytes) -> list[bytes]:
    """Split output into reply lines, checking every line is whole and well formed."""
    lines = out.splitlines(keepends=True)
    for line in lines:
        assert REPLY_LINE.fullmatch(line), line
    return lines


def reply_codes(out: bytes) -> list[int]:
    """The code of each reply in ``out``; a multi-line reply counts once."""
    codes: list[int] = []
    pending: int | None = None
    for line in reply_lines(out):
        code = int(line[:3])
        assert pending is None or pending == code, out
        if line[3:4] == b"-":
            pending = code
        else:
            pending = None
            codes.append(code)
    assert pending is None, f"unfinished multi-line reply in {out!r}"
    return codes


def greeted(config: SessionConfig | None = None, ehlo: bool = True) -> ServerConnection:
    conn = new_connection(config)
    out = send_line(conn, f"{'EHLO' if ehlo else 'HELO'} {CLIENT}")
    assert reply_codes(out) == [250]
    assert conn.state is State.GREETED
    return conn


def in_rcpt(config: SessionConfig | None = None, ehlo: bool = True) -> ServerConnection:
    """A connection after HELO/EHLO, MAIL and one RCPT."""
    conn = greeted(config, ehlo)
    assert send_line(conn, f"MAIL FROM:<{SENDER}>") == replies.OK.to_bytes()
    assert send_line(conn, f"RCPT TO:<{RECIPIENT}>") == replies.OK.to_bytes()
    assert conn.state is State.RCPT
    return conn


def in_data(config: SessionConfig | None = None, ehlo: bool = True) -> ServerConnection:
    conn = in_rcpt(config, ehlo)
    assert send_line(conn, "DATA") == replies.START_DATA.to_bytes()
    assert conn.state is State.DATA
    return conn


def assert_usable(conn: ServerConnection) -> None:
    """The session still answers a valid command, and that leaves it as it was."""
    state = conn.state
    assert send_line(conn, "NOOP") == replies.OK.to_bytes()
    assert conn.state is state


@dataclass
class Outcome:
    """What one way of feeding produced."""

    events: list[Event]
    out: bytes
    state: State
    envelope: Envelope


def _feed(conn: ServerConnection, chunks: Iterable[bytes]) -> Outcome:
    events: list[Event] = []
    out = b""
    for chunk in chunks:
        conn.receive_data(chunk)
        events += drain(conn)
        out += conn.data_to_send()
    return Outcome(events, out, conn.state, conn.envelope)


def three_ways(make: Callable[[], ServerConnection], data: bytes) -> Outcome:
    """Feed ``data`` whole, byte by byte, and followed by the start of a next
    command, and check that all three give the same events, replies and state
    (h11's ``tr()``). Returns the outcome of the whole feed."""
    whole = _feed(make(), [data])
    bytewise = _feed(make(), [data[i : i + 1] for i in range(len(data))])
    assert bytewise == whole
    conn = make()
    trailing = _feed(conn, [data + TRAILING])
    assert (trailing.events, trailing.out) == (whole.events, whole.out)
    if whole.state in COMMAND_STATES:
        assert trailing == whole
        # The trailing bytes wait for the rest of their command.
        rest = _feed(conn, [b"P" + CRLF])
        assert rest.out == replies.OK.to_bytes()
    return whole
