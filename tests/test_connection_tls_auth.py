"""STARTTLS and AUTH in the protocol core, driven with bytes only."""

from __future__ import annotations

import base64
import hmac

import pytest
from core_helpers import new_connection, reply_codes

from pytest_smtpd import replies
from pytest_smtpd.auth import Credentials
from pytest_smtpd.connection import AUTH_LINE_LIMIT, ServerConnection, SessionConfig
from pytest_smtpd.errors import LocalProtocolError
from pytest_smtpd.events import NEED_DATA, AuthRequested, MessageReceived, StartTLS
from pytest_smtpd.state import State

ALL_MECHANISMS = ("PLAIN", "LOGIN", "CRAM-MD5", "XOAUTH2")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def line(prefix: str, payload: bytes) -> bytes:
    """``prefix`` and base64 ``payload`` as one CRLF-terminated line."""
    return (prefix + b64(payload)).encode("ascii") + b"\r\n"


def feed(conn: ServerConnection, data: bytes) -> tuple[object, bytes]:
    """Feed ``data``; return the first event (or NEED_DATA) and the replies."""
    conn.receive_data(data)
    return conn.next_event(), conn.data_to_send()


def ehlo(config: SessionConfig, *, tls: bool = False) -> ServerConnection:
    conn = ServerConnection(config, tls=tls)
    conn.data_to_send()
    event, out = feed(conn, b"EHLO client.example\r\n")
    assert event is NEED_DATA and out.startswith(b"250-")
    return conn


def ehlo_keywords(conn: ServerConnection) -> list[str]:
    return conn.ehlo_keywords()


# -- STARTTLS -------------------------------------------------------------


def test_starttls_is_offered_until_tls_is_active() -> None:
    config = SessionConfig(starttls=True)
    assert "STARTTLS" in ehlo_keywords(ehlo(config))
    assert "STARTTLS" not in ehlo_keywords(ehlo(config, tls=True))


def test_starttls_discards_pipelined_plaintext_and_resets_the_session() -> None:
    conn = ehlo(SessionConfig(starttls=True))
    # A man in the middle appends a command after STARTTLS in the same packet.
    event, out = feed(conn, b"STARTTLS\r\nMAIL FROM:<evil@example.com>\r\n")
    assert isinstance(event, StartTLS)
    assert out == replies.READY_FOR_TLS.to_bytes()
    assert conn.state.name == "TLS_PENDING"
    with pytest.raises(LocalProtocolError):
        conn.next_event()
    conn.receive_data(b"RCPT TO:<evil@example.com>\r\n")  # still plaintext: dropped
    conn.tls_started()
    assert conn.tls and conn.state is State.CONNECTED and conn.helo == ""
    assert conn.next_event() is NEED_DATA
    assert conn.data_to_send() == b""
    # The client must EHLO again; MAIL before it is out of sequence.
    _, out = feed(conn, b"MAIL FROM:<a@example.com>\r\n")
    assert reply_codes(out) == [503]
    assert conn.envelope.mail_from is None


def test_starttls_not_offered_is_502() -> None:
    _, out = feed(ehlo(SessionConfig()), b"STARTTLS\r\n")
    assert reply_codes(out) == [502]


def test_starttls_twice_is_503() -> None:
    conn = ehlo(SessionConfig(starttls=True), tls=True)
    _, out = feed(conn, b"STARTTLS\r\n")
    assert out == replies.TLS_ALREADY_ACTIVE.to_bytes()


def test_starttls_inside_a_transaction_is_503() -> None:
    conn = ehlo(SessionConfig(starttls=True))
    feed(conn, b"MAIL FROM:<a@example.com>\r\n")
    _, out = feed(conn, b"STARTTLS\r\n")
    assert out == replies.NOT_IN_TRANSACTION.to_bytes()
    assert conn.state is State.MAIL


@pytest.mark.parametrize("command", [b"MAIL FROM:<a@example.com>", b"AUTH PLAIN"])
def test_require_tls_answers_530_before_starttls(command: bytes) -> None:
    config = SessionConfig(starttls=True, require_tls=True, auth_mechanisms=("PLAIN",))
    conn = ehlo(config)
    _, out = feed(conn, command + b"\r\n")
    assert out == replies.STARTTLS_FIRST.to_bytes()
    conn = ehlo(config, tls=True)
    _, out = feed(conn, b"MAIL FROM:<a@example.com>\r\n")
    assert reply_codes(out) == [250]


# -- AUTH -----------------------------------------------------------------


def auth_conn(**options: object) -> ServerConnection:
    return ehlo(SessionConfig(auth_mechanisms=ALL_MECHANISMS, **options))  # type: ignore[arg-type]


def test_ehlo_lists_the_mechanisms() -> None:
    assert "AUTH PLAIN LOGIN CRAM-MD5 XOAUTH2" in auth_conn().ehlo_keywords()


def test_plain_initial_response_accepted() -> None:
    conn = auth_conn()
    event, out = feed(conn, line("AUTH PLAIN ", b"\0alice\0s3cret"))
    assert out == b""
    assert isinstance(event, AuthRequested)
    assert event.credentials == Credentials("PLAIN", "alice", "s3cret")
    conn.answer_auth(True)
    assert conn.data_to_send() == replies.AUTH_OK.to_bytes()
    assert conn.authenticated == event.credentials
    # AUTH twice is 503; the identity reaches the message.
    _, out = feed(conn, b"AUTH PLAIN\r\n")
    assert out == replies.AUTH_TWICE.to_bytes()
    conn.receive_data(b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\nhi\r\n.\r\n")
    message = conn.next_event()
    assert isinstance(message, MessageReceived)
    assert message.auth_identity == "alice"


def test_plain_without_initial_response_gets_334_then_credentials() -> None:
    conn = auth_conn()
    event, out = feed(conn, b"AUTH PLAIN\r\n")
    assert event is NEED_DATA and out == b"334 \r\n"
    assert conn.state is State.AUTH
    event, out = feed(conn, line("", b"boss\0alice\0pw"))
    assert isinstance(event, AuthRequested)
    assert event.credentials.authzid == "boss"


def test_wrong_password_is_535_and_session_goes_on() -> None:
    conn = auth_conn()
    feed(conn, line("AUTH PLAIN ", b"\0alice\0wrong"))
    conn.answer_auth(False)
    assert conn.data_to_send() == replies.AUTH_FAILED.to_bytes()
    assert conn.authenticated is None and conn.state is State.GREETED
    _, out = feed(conn, b"NOOP\r\n")
    assert reply_codes(out) == [250]


def test_login_as_smtplib_sends_it() -> None:
    conn = auth_conn()
    event, out = feed(conn, line("AUTH LOGIN ", b"alice"))
    assert event is NEED_DATA and base64.b64decode(out[4:]) == b"Password:"
    event, _ = feed(conn, line("", b"s3cret"))
    assert isinstance(event, AuthRequested)
    assert event.credentials == Credentials("LOGIN", "alice", "s3cret")


def test_cram_md5_exchange() -> None:
    conn = auth_conn()
    _, out = feed(conn, b"AUTH CRAM-MD5\r\n")
    assert out.startswith(b"334 ")
    challenge = base64.b64decode(out[4:-2])
    digest = hmac.new(b"s3cret", challenge, "md5").hexdigest()
    event, _ = feed(conn, line("", b"alice " + digest.encode()))
    assert isinstance(event, AuthRequested)
    assert event.credentials.matches("s3cret")


def test_star_cancels_with_501() -> None:
    conn = auth_conn()
    feed(conn, b"AUTH LOGIN\r\n")
    _, out = feed(conn, b"*\r\n")
    assert out == replies.AUTH_CANCELLED.to_bytes()
    assert conn.state is State.GREETED


def test_bad_base64_is_501_and_ends_the_exchange() -> None:
    conn = auth_conn()
    feed(conn, b"AUTH LOGIN\r\n")
    _, out = feed(conn, b"!!!\r\n")
    assert reply_codes(out) == [501]
    assert conn.state is State.GREETED


def test_unknown_mechanism_is_504() -> None:
    _, out = feed(auth_conn(), b"AUTH GSSAPI\r\n")
    assert out == replies.AUTH_UNKNOWN_MECHANISM.to_bytes()


def test_auth_during_transaction_is_503() -> None:
    conn = auth_conn()
    feed(conn, b"MAIL FROM:<a@example.com>\r\n")
    _, out = feed(conn, b"AUTH PLAIN\r\n")
    assert out == replies.NOT_IN_TRANSACTION.to_bytes()


def test_auth_requires_tls_is_538_without_tls() -> None:
    _, out = feed(auth_conn(auth_requires_tls=True), b"AUTH PLAIN\r\n")
    assert out == replies.AUTH_NEEDS_TLS.to_bytes()


def test_auth_required_is_530_for_mail() -> None:
    _, out = feed(auth_conn(auth_required=True), b"MAIL FROM:<a@example.com>\r\n")
    assert out == replies.AUTH_FIRST.to_bytes()


def test_auth_not_offered_is_502() -> None:
    conn = new_connection()
    feed(conn, b"EHLO x\r\n")
    _, out = feed(conn, b"AUTH PLAIN\r\n")
    assert reply_codes(out) == [502]


def test_auth_lines_may_be_long_but_are_bounded() -> None:
    conn = auth_conn()
    feed(conn, b"AUTH PLAIN\r\n")
    long_response = b64(b"\0alice\0" + b"p" * 5000).encode()
    event, _ = feed(conn, long_response + b"\r\n")
    assert isinstance(event, AuthRequested)
    conn.answer_auth(False)
    conn.data_to_send()
    feed(conn, b"AUTH PLAIN\r\n")
    event, out = feed(conn, b"A" * (AUTH_LINE_LIMIT + 10) + b"\r\n")
    assert event is NEED_DATA and reply_codes(out) == [500]
    assert conn.state is State.GREETED


def test_answer_auth_without_pending_credentials_raises() -> None:
    with pytest.raises(LocalProtocolError):
        auth_conn().answer_auth(True)


def test_unknown_mechanism_in_config_raises() -> None:
    with pytest.raises(ValueError, match="GSSAPI"):
        SessionConfig(auth_mechanisms=("GSSAPI",))
