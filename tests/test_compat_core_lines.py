"""The protocol core's hooks for the stdlib line interface, without sockets:
``deliver_lines`` / ``LineReceived`` / ``process_line()``, the per-session
``delegated_verbs``, and ``SessionConfig.pipelining``."""

from __future__ import annotations

import pytest
from core_helpers import greeted, new_connection

from pytest_smtpd import replies
from pytest_smtpd.connection import ServerConnection, SessionConfig
from pytest_smtpd.events import NEED_DATA, CommandReceived, LineReceived, MessageReceived
from pytest_smtpd.state import State


def reading_lines(config: SessionConfig | None = None) -> ServerConnection:
    conn = new_connection(config)
    conn.deliver_lines = True
    return conn


@pytest.mark.parametrize("chunk", [None, 1])
def test_each_command_line_is_delivered_then_run_when_handed_back(chunk: int | None) -> None:
    conn = reading_lines()
    data = b"HELO client.test\r\nNOOP\r\n"
    pieces = [data] if chunk is None else [data[i : i + chunk] for i in range(len(data))]
    events = []
    for piece in pieces:
        conn.receive_data(piece)
        while (event := conn.next_event()) is not NEED_DATA:
            events.append(event)
            assert isinstance(event, LineReceived)
            conn.process_line(event.line)
    assert events == [LineReceived(b"HELO client.test"), LineReceived(b"NOOP")]
    assert conn.data_to_send() == b"250 localhost\r\n250 OK\r\n"
    assert conn.state is State.GREETED


def test_a_handed_back_line_runs_before_further_input() -> None:
    conn = reading_lines()
    conn.receive_data(b"HELO a.test\r\nHELO b.test\r\n")
    first = conn.next_event()
    assert first == LineReceived(b"HELO a.test")
    conn.process_line(b"HELO a.test")
    assert conn.next_event() == LineReceived(b"HELO b.test")  # a.test ran in between
    assert conn.helo == "a.test"


def test_a_line_not_handed_back_gets_no_reply_from_the_core() -> None:
    conn = reading_lines()
    conn.receive_data(b"SECRET\r\n")
    assert conn.next_event() == LineReceived(b"SECRET")
    conn.push("334 go on")  # the application answered it itself
    assert conn.next_event() is NEED_DATA
    assert conn.data_to_send() == b"334 go on\r\n"


def test_only_crlf_ends_a_delivered_line() -> None:
    conn = reading_lines()
    conn.receive_data(b"NOOP\nQUIT\rX\r\n")
    assert conn.next_event() == LineReceived(b"NOOP\nQUIT\rX")


def test_a_line_over_every_limit_is_answered_by_the_core_and_not_delivered() -> None:
    conn = reading_lines()
    longest = conn.config.longest_line
    conn.receive_data(b"X" * (longest - 2) + b"\r\n" + b"Y" * (longest - 1) + b"\r\n" + b"NOOP\r\n")
    assert conn.next_event() == LineReceived(b"X" * (longest - 2))  # just within
    conn.process_line(b"X" * (longest - 2))  # ... but over the limit of its verb: 500
    assert conn.next_event() == LineReceived(b"NOOP")  # the one over every limit was never shown
    assert conn.data_to_send() == replies.LINE_TOO_LONG.to_bytes() * 2


def test_a_line_over_the_limit_arriving_in_pieces_is_dropped_as_it_comes() -> None:
    conn = reading_lines()
    for _ in range(10):
        conn.receive_data(b"Z" * 1000)
        assert conn.next_event() is NEED_DATA
    conn.receive_data(b"\r\nNOOP\r\n")
    assert conn.next_event() == LineReceived(b"NOOP")
    assert conn.data_to_send() == replies.LINE_TOO_LONG.to_bytes()


def test_message_data_and_sasl_responses_are_not_delivered_as_lines() -> None:
    conn = reading_lines(SessionConfig(auth_mechanisms=("PLAIN",)))
    for line in (b"EHLO c.test", b"MAIL FROM:<a@b.test>", b"RCPT TO:<c@d.test>", b"DATA"):
        conn.receive_data(line + b"\r\n")
        event = conn.next_event()
        assert event == LineReceived(line)
        conn.process_line(line)
    conn.receive_data(b"Subject: x\r\n\r\nbody\r\n.\r\n")
    message = conn.next_event()
    assert isinstance(message, MessageReceived)
    conn.answer_message()
    conn.receive_data(b"AUTH PLAIN\r\n")
    assert conn.next_event() == LineReceived(b"AUTH PLAIN")
    conn.process_line(b"AUTH PLAIN")
    assert conn.next_event() is NEED_DATA
    assert conn.state is State.AUTH
    conn.receive_data(b"*\r\n")  # a SASL response: the core's own
    assert conn.next_event() is NEED_DATA
    assert conn.data_to_send().endswith(replies.AUTH_CANCELLED.to_bytes())


def test_delegated_verbs_are_per_session() -> None:
    config = SessionConfig(delegated_verbs=frozenset({"VRFY"}))
    mine, other = greeted(config), greeted(config)
    mine.delegated_verbs = frozenset({"XFOO"})
    for conn in (mine, other):
        conn.receive_data(b"VRFY x\r\nXFOO\r\n")
    assert mine.next_event() == CommandReceived("XFOO", None)
    assert other.next_event() == CommandReceived("VRFY", "x")
    assert mine.data_to_send() == replies.VRFY_REPLY.to_bytes()


@pytest.mark.parametrize("pipelining", [True, False])
def test_pipelining_keyword(pipelining: bool) -> None:
    conn = new_connection(SessionConfig(pipelining=pipelining))
    assert ("PIPELINING" in conn.ehlo_keywords()) is pipelining


def test_the_transcript_shows_handed_back_lines_and_masks_the_ones_kept() -> None:
    conn = ServerConnection(record=True)
    conn.deliver_lines = True
    conn.receive_data(b"HELO client.test\r\nc2VjcmV0\r\nNOOP\r\n")
    assert conn.next_event() == LineReceived(b"HELO client.test")
    conn.process_line(b"HELO client.test")
    assert conn.next_event() == LineReceived(b"c2VjcmV0")
    conn.push("235 kept by the application")
    assert conn.next_event() == LineReceived(b"NOOP")
    conn.process_line(b"NOOP")
    assert conn.next_event() is NEED_DATA
    assert conn.transcript is not None
    assert [line for _, line in conn.transcript][1:] == [
        "HELO client.test",
        "250 localhost",
        "<a line the application read itself>",
        "235 kept by the application",
        "NOOP",
        "250 OK",
    ]
