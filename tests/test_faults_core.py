"""Faults in the sans-I/O core: bytes in, replies and events out. What each
action does to the replies and the state, at each kind of step, and the
``max_messages_per_connection`` limit."""

from __future__ import annotations

import pytest
from core_helpers import CLIENT, CRLF, RECIPIENT, SENDER, drain, reply_codes

from pytest_smtpd import replies
from pytest_smtpd.connection import ServerConnection, SessionConfig
from pytest_smtpd.events import CommandReceived, ConnectionClosed, Event, FaultFired, MessageReceived, NeedData
from pytest_smtpd.faults import Fault, Faults
from pytest_smtpd.state import State

BUSY = "450 4.2.1 Mailbox busy"
MESSAGE = b"Subject: hi\r\n\r\nHello\r\n"


def connect(*rules: Fault, config: SessionConfig | None = None, session: int = 1) -> tuple[ServerConnection, bytes]:
    conn = ServerConnection(config, faults=Faults(rules), session_number=session)
    return conn, conn.data_to_send()


def feed(conn: ServerConnection, data: bytes) -> tuple[list[Event], bytes]:
    conn.receive_data(data)
    return drain(conn), conn.data_to_send()


def transaction(conn: ServerConnection, message: bytes = MESSAGE) -> tuple[list[Event], bytes]:
    """EHLO, MAIL, RCPT, DATA and the message, pipelined."""
    commands = [f"EHLO {CLIENT}", f"MAIL FROM:<{SENDER}>", f"RCPT TO:<{RECIPIENT}>", "DATA"]
    data = CRLF.join(line.encode() for line in commands) + CRLF + message + b".\r\n"
    return feed(conn, data)


def kinds(events: list[Event]) -> list[str]:
    return [type(event).__name__ for event in events]


def test_no_rules_change_nothing() -> None:
    conn, greeting = connect()
    assert greeting.startswith(b"220 ")
    events, out = transaction(conn)
    assert kinds(events) == ["MessageReceived"]
    assert reply_codes(out) == [250, 250, 250, 354, 250]


def test_a_reply_fault_answers_instead_of_running_the_command() -> None:
    conn, _ = connect(Fault.reply("RCPT", BUSY))
    events, out = transaction(conn)
    # RCPT did not run: DATA has no recipient; the message lines are then
    # commands, as for any client that ignores a failed DATA.
    assert kinds(events)[0] == "FaultFired"
    assert reply_codes(out)[:4] == [250, 250, 450, 503]
    assert b"450 4.2.1 Mailbox busy\r\n" in out
    assert conn.envelope.rcpt_tos == []


def test_a_421_fault_closes_the_session() -> None:
    conn, _ = connect(Fault.reply("MAIL", "421 4.3.2 Shutting down"))
    events, out = transaction(conn)
    assert kinds(events) == ["FaultFired", "ConnectionClosed"]
    assert reply_codes(out) == [250, 421]
    assert conn.state is State.CLOSED


def test_a_fault_at_connect_replaces_the_greeting() -> None:
    conn, greeting = connect(Fault.reply("CONNECT", "421 4.3.2 Try later"))
    assert greeting == b"421 4.3.2 Try later\r\n"
    events = drain(conn)
    assert kinds(events) == ["FaultFired", "ConnectionClosed"]
    assert isinstance(events[0], FaultFired) and events[0].step == "CONNECT"


def test_a_554_greeting_keeps_the_session_open() -> None:
    conn, greeting = connect(Fault.reply("CONNECT", "554 5.3.2 No service"))
    assert greeting == b"554 5.3.2 No service\r\n"
    assert kinds(drain(conn)) == ["FaultFired"]
    _, out = feed(conn, b"QUIT\r\n")
    assert reply_codes(out) == [221]


def test_a_fault_for_another_session_does_not_fire() -> None:
    conn, greeting = connect(Fault.reply("CONNECT", "421 4.3.2 Try later", session=2), session=1)
    assert greeting.startswith(b"220 ")
    assert drain(conn) == []


def test_disconnect_closes_without_a_reply() -> None:
    conn, _ = connect(Fault.disconnect("DATA"))
    events, out = transaction(conn)
    assert kinds(events) == ["FaultFired", "ConnectionClosed"]
    assert reply_codes(out) == [250, 250, 250]  # no 354
    assert isinstance(events[1], ConnectionClosed) and events[1].reason == "fault: DATA: disconnect"


@pytest.mark.parametrize("after_bytes", [0, 1, 10, len(MESSAGE) + 2])
def test_disconnect_after_bytes_cuts_the_message_off(after_bytes: int) -> None:
    conn, _ = connect(Fault.disconnect("DATA", after_bytes=after_bytes))
    for chunk in [f"EHLO {CLIENT}\r\nMAIL FROM:<{SENDER}>\r\nRCPT TO:<{RECIPIENT}>\r\nDATA\r\n".encode()]:
        events, out = feed(conn, chunk)
    assert reply_codes(out) == [250, 250, 250, 354]
    # The rest of the message arrives byte by byte: the cut comes after
    # after_bytes octets, or at the end of a shorter message.
    collected: list[Event] = []
    body = MESSAGE + b".\r\n"
    for index in range(len(body)):
        more, out = feed(conn, body[index : index + 1])
        collected += more
        assert out == b""
        if collected:
            break
    assert kinds(collected) == ["ConnectionClosed"]
    assert index + 1 == min(max(after_bytes, 1), len(body))
    assert not any(isinstance(event, MessageReceived) for event in events + collected)


def test_a_message_shorter_than_after_bytes_is_cut_at_its_end() -> None:
    conn, _ = connect(Fault.disconnect("DATA", after_bytes=10_000))
    events, out = transaction(conn)
    assert kinds(events) == ["FaultFired", "ConnectionClosed"]
    assert reply_codes(out) == [250, 250, 250, 354]


def test_delay_runs_the_step_at_the_next_call() -> None:
    conn, _ = connect(Fault.delay("MAIL", 2))
    conn.receive_data(f"EHLO {CLIENT}\r\nMAIL FROM:<{SENDER}>\r\nRCPT TO:<{RECIPIENT}>\r\n".encode())
    event = conn.next_event()
    assert isinstance(event, FaultFired) and event.fault.seconds == 2
    assert reply_codes(conn.data_to_send()) == [250]  # the EHLO's, not MAIL's yet
    assert conn.next_event() is NeedData.NEED_DATA
    assert reply_codes(conn.data_to_send()) == [250, 250]  # MAIL's, then RCPT's
    assert conn.envelope.rcpt_tos == [RECIPIENT]


def test_delay_of_the_greeting() -> None:
    conn, greeting = connect(Fault.delay("CONNECT", 1))
    assert greeting == b""
    assert isinstance(conn.next_event(), FaultFired)
    assert conn.next_event() is NeedData.NEED_DATA
    assert conn.data_to_send().startswith(b"220 ")


def test_delay_of_the_message_reply_hands_the_message_over_after_it() -> None:
    conn, _ = connect(Fault.delay("MESSAGE", 3))
    conn.receive_data(f"EHLO {CLIENT}\r\nMAIL FROM:<{SENDER}>\r\nRCPT TO:<{RECIPIENT}>\r\nDATA\r\n".encode())
    conn.receive_data(MESSAGE + b".\r\nNOOP\r\n")
    event = conn.next_event()
    assert isinstance(event, FaultFired) and event.step == "MESSAGE"
    assert reply_codes(conn.data_to_send()) == [250, 250, 250, 354]
    message = conn.next_event()
    assert isinstance(message, MessageReceived) and message.data == MESSAGE
    conn.answer_message()
    assert conn.next_event() is NeedData.NEED_DATA
    assert reply_codes(conn.data_to_send()) == [250, 250]  # the message's, then NOOP's


def test_abort_during_a_delay_drops_the_step() -> None:
    conn, _ = connect(Fault.delay("MAIL", 2))
    conn.receive_data(f"EHLO {CLIENT}\r\nMAIL FROM:<{SENDER}>\r\n".encode())
    assert isinstance(conn.next_event(), FaultFired)
    conn.data_to_send()
    conn.abort(replies.IDLE_TIMEOUT)
    assert isinstance(conn.next_event(), ConnectionClosed)
    assert conn.data_to_send() == replies.IDLE_TIMEOUT.to_bytes()
    assert conn.envelope.mail_from is None


def test_stall_reads_nothing_more_until_abort() -> None:
    conn, _ = connect(Fault.stall("RCPT"))
    events, out = transaction(conn)
    assert kinds(events) == ["FaultFired"]
    assert reply_codes(out) == [250, 250]
    events, out = feed(conn, b"NOOP\r\n")
    assert (events, out) == ([], b"")
    conn.abort(replies.IDLE_TIMEOUT)
    assert kinds(drain(conn)) == ["ConnectionClosed"]
    assert conn.data_to_send() == replies.IDLE_TIMEOUT.to_bytes()


def test_a_reply_fault_after_the_dot_drops_the_message() -> None:
    conn, _ = connect(Fault.reply("MESSAGE", "554 5.6.0 Rejected", match="Hello"))
    events, out = transaction(conn)
    assert kinds(events) == ["FaultFired"]
    assert reply_codes(out) == [250, 250, 250, 354, 554]
    assert conn.state is State.GREETED
    assert conn.messages_received == 0
    # The next message does not match: it goes through.
    events, out = feed(conn, f"MAIL FROM:<{SENDER}>\r\nRCPT TO:<{RECIPIENT}>\r\nDATA\r\nBye\r\n.\r\n".encode())
    assert kinds(events) == ["MessageReceived"]


def test_a_reply_fault_after_the_dot_in_lmtp_answers_each_recipient() -> None:
    conn, _ = connect(Fault.reply("MESSAGE", "452 4.2.2 Full"), config=SessionConfig(lmtp=True))
    lines = ["LHLO c", f"MAIL FROM:<{SENDER}>", "RCPT TO:<a@x>", "RCPT TO:<b@x>", "DATA"]
    _, out = feed(conn, "\r\n".join(lines).encode() + b"\r\n" + MESSAGE + b".\r\n")
    assert reply_codes(out) == [250, 250, 250, 250, 354, 452, 452]


def test_faults_see_verbs_that_a_subclass_handles_itself() -> None:
    config = SessionConfig(delegated_verbs=frozenset({"RCPT"}))
    conn, _ = connect(Fault.reply("RCPT", BUSY), config=config)
    events, out = feed(conn, f"EHLO {CLIENT}\r\nMAIL FROM:<{SENDER}>\r\nRCPT TO:<{RECIPIENT}>\r\n".encode())
    assert kinds(events) == ["FaultFired"]
    assert out.endswith(b"450 4.2.1 Mailbox busy\r\n")


def test_a_rule_added_mid_session_applies_from_the_next_step() -> None:
    faults = Faults()
    conn = ServerConnection(faults=faults)
    conn.data_to_send()
    feed(conn, f"EHLO {CLIENT}\r\n".encode())
    faults.reply("MAIL", BUSY)
    _, out = feed(conn, f"MAIL FROM:<{SENDER}>\r\n".encode())
    assert out == b"450 4.2.1 Mailbox busy\r\n"


def test_max_messages_per_connection() -> None:
    conn = ServerConnection(SessionConfig(max_messages_per_connection=2))
    conn.data_to_send()
    feed(conn, f"EHLO {CLIENT}\r\n".encode())
    one = f"MAIL FROM:<{SENDER}>\r\nRCPT TO:<{RECIPIENT}>\r\nDATA\r\n".encode() + MESSAGE + b".\r\n"
    for _ in range(2):
        events, out = feed(conn, one)
        assert kinds(events) == ["MessageReceived"]
    events, out = feed(conn, one)
    assert kinds(events) == ["ConnectionClosed"]
    assert out == b"421 4.7.0 Too many messages in this connection, closing\r\n"


def test_max_messages_per_connection_is_checked() -> None:
    with pytest.raises(ValueError, match="max_messages_per_connection must be 0"):
        SessionConfig(max_messages_per_connection=-1)


def test_disconnect_after_bytes_when_a_subclass_handles_data() -> None:
    """The CommandReceived for DATA follows the FaultFired; the message the
    delegated DATA then starts is cut off."""
    conn, _ = connect(
        Fault.disconnect("DATA", after_bytes=5), config=SessionConfig(delegated_verbs=frozenset({"DATA"}))
    )
    conn.receive_data(f"EHLO {CLIENT}\r\nMAIL FROM:<{SENDER}>\r\nRCPT TO:<{RECIPIENT}>\r\nDATA\r\n".encode())
    assert isinstance(conn.next_event(), FaultFired)
    command = conn.next_event()
    assert isinstance(command, CommandReceived) and command.verb == "DATA"
    conn.handle_command("DATA", None)
    assert conn.next_event() is NeedData.NEED_DATA
    assert reply_codes(conn.data_to_send()) == [250, 250, 250, 354]
    events, _ = feed(conn, MESSAGE + b".\r\n")
    assert kinds(events) == ["ConnectionClosed"]


def test_a_refused_data_leaves_the_next_message_whole() -> None:
    """disconnect(after_bytes) fired on a DATA that got a 503: the message
    of a later DATA is not cut."""
    conn, _ = connect(Fault.disconnect("DATA", after_bytes=5, times=1))
    _, out = feed(conn, f"EHLO {CLIENT}\r\nDATA\r\n".encode())
    assert reply_codes(out) == [250, 503]
    events, _ = transaction(conn)
    assert kinds(events) == ["MessageReceived"]


def test_a_stalled_session_holds_nothing_more_it_is_sent() -> None:
    conn, _ = connect(Fault.stall("MAIL"))
    feed(conn, f"EHLO {CLIENT}\r\nMAIL FROM:<{SENDER}>\r\n".encode())
    assert conn.stalled
    for _ in range(100):
        conn.receive_data(b"x" * 10_000)
    assert len(conn._inbox) == 0


@pytest.mark.parametrize("fault", [Fault.stall("MESSAGE"), Fault.delay("MESSAGE", 5)])
def test_abort_while_the_message_reply_waits_does_not_call_the_message_cut_off(fault: Fault) -> None:
    conn = ServerConnection(faults=Faults([fault]), record=True)
    conn.data_to_send()
    conn.receive_data(f"EHLO {CLIENT}\r\nMAIL FROM:<{SENDER}>\r\nRCPT TO:<{RECIPIENT}>\r\nDATA\r\n".encode())
    conn.receive_data(MESSAGE + b".\r\n")
    assert isinstance(conn.next_event(), FaultFired)
    conn.abort()
    assert isinstance(conn.next_event(), ConnectionClosed)
    assert conn.transcript is not None
    client_lines = [line for direction, line in conn.transcript if direction == "client"]
    assert client_lines[-1] == f"<{len(MESSAGE) + 3} bytes of message data>"
