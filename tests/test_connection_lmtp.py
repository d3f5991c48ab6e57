"""LMTP mode of the protocol core (RFC 2033), driven with bytes only."""

from __future__ import annotations

import pytest
from core_helpers import reply_codes

from pytest_smtpd import replies
from pytest_smtpd.connection import ServerConnection, SessionConfig
from pytest_smtpd.errors import LocalProtocolError
from pytest_smtpd.events import NEED_DATA, MessageReceived
from pytest_smtpd.replies import Reply

LMTP = SessionConfig(lmtp=True)
TRANSACTION = (
    b"LHLO client.example\r\n"
    b"MAIL FROM:<list-bounces@example.com>\r\n"
    b"RCPT TO:<a@example.com>\r\n"
    b"RCPT TO:<b@example.com>\r\n"
    b"DATA\r\n"
    b"Subject: hi\r\n\r\nbody\r\n.\r\n"
)


def until_message(config: SessionConfig = LMTP) -> tuple[ServerConnection, MessageReceived]:
    conn = ServerConnection(config)
    conn.receive_data(TRANSACTION)
    event = conn.next_event()
    assert isinstance(event, MessageReceived)
    conn.data_to_send()
    return conn, event


def test_lhlo_greets_and_lists_extensions() -> None:
    conn = ServerConnection(LMTP)
    conn.data_to_send()
    conn.receive_data(b"LHLO client.example\r\n")
    assert conn.next_event() is NEED_DATA
    out = conn.data_to_send()
    assert out.startswith(b"250-") and b"PIPELINING" in out
    assert conn.extended


@pytest.mark.parametrize("verb", [b"HELO", b"EHLO"])
def test_helo_and_ehlo_are_not_lmtp(verb: bytes) -> None:
    conn = ServerConnection(LMTP)
    conn.data_to_send()
    conn.receive_data(verb + b" client.example\r\n")
    conn.next_event()
    assert reply_codes(conn.data_to_send()) == [500]


def test_lhlo_is_not_smtp() -> None:
    conn = ServerConnection(SessionConfig())
    conn.data_to_send()
    conn.receive_data(b"LHLO client.example\r\nHELP\r\n")
    conn.next_event()
    out = conn.data_to_send()
    assert reply_codes(out) == [500, 214]
    help_reply = out.split(b"\r\n")[1]
    assert b"EHLO" in help_reply and b"LHLO" not in help_reply


def test_one_reply_per_recipient_in_order() -> None:
    conn, event = until_message()
    assert event.envelope.rcpt_tos == ["a@example.com", "b@example.com"]
    conn.answer_message([replies.OK, Reply(550, "5.1.1 No such user")])
    # LMTP speaks ENHANCEDSTATUSCODES by default; a code the reply has is kept.
    assert conn.data_to_send() == b"250 2.0.0 OK\r\n550 5.1.1 No such user\r\n"


def test_a_single_reply_is_repeated_for_each_recipient() -> None:
    conn, _ = until_message()
    conn.answer_message(None)
    assert conn.data_to_send() == b"250 2.0.0 OK\r\n250 2.0.0 OK\r\n"


def test_lmtp_without_enhanced_status_codes_keeps_bare_replies() -> None:
    conn, _ = until_message(SessionConfig(lmtp=True, enable_ENHANCEDSTATUSCODES=False))
    conn.answer_message(None)
    assert conn.data_to_send() == b"250 OK\r\n250 OK\r\n"


def test_wrong_number_of_replies_raises() -> None:
    conn, _ = until_message()
    with pytest.raises(LocalProtocolError, match="1 replies for 2 recipients"):
        conn.answer_message([replies.OK])


def test_reply_list_in_smtp_mode_raises() -> None:
    conn = ServerConnection(SessionConfig())
    conn.receive_data(TRANSACTION.replace(b"LHLO", b"EHLO"))
    assert isinstance(conn.next_event(), MessageReceived)
    with pytest.raises(LocalProtocolError):
        conn.answer_message([replies.OK, replies.OK])
