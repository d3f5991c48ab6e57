"""Postfix as the sending MTA, relaying to our server: what a test of an app
behind a local MTA sees. Postfix speaks PIPELINING, 8BITMIME and SMTPUTF8,
STARTTLS with verification, SASL AUTH, DSN requests, LMTP and enhanced status
codes, and reacts to our replies by deferring or bouncing. Offered CHUNKING,
it still sends DATA: its SMTP client has no BDAT."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from postfix_sender import (
    AUTH_PASSWORD,
    AUTH_USER,
    DELIVERY_TIMEOUT,
    PostfixSender,
    postfix_sender_fixture,  # noqa: F401 (the postfix_sender fixture)
)

from pytest_smtpd import Message, Server

SENDER = "app@sender.test"


@pytest.fixture
def relay(postfix_sender: PostfixSender) -> Iterator[Callable[..., Server]]:
    """Start our server on the port Postfix relays to, with the given
    options; stopped, and Postfix's queue emptied, at the end of the test."""
    started: list[Server] = []

    def start(**options: Any) -> Server:
        server = Server("127.0.0.1", postfix_sender.port, **options)
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
    postfix_sender.empty_queue()


def compose(subject: str, body: bytes = b"Hello from behind Postfix.\r\n", headers: bytes = b"") -> bytes:
    return f"From: {SENDER}\r\nTo: someone@plain.test\r\nSubject: {subject}\r\n".encode() + headers + b"\r\n" + body


def arrived(server: Server, subject: str, postfix_sender: PostfixSender) -> Message:
    try:
        [message] = server.messages.wait_for(1, timeout=DELIVERY_TIMEOUT, where=lambda m: m.subject == subject)
    except TimeoutError as exc:
        raise AssertionError(f"{exc}\nPostfix log:\n{postfix_sender.log()}") from None
    return message


def body_of(data: bytes) -> bytes:
    return data.split(b"\r\n\r\n", 1)[1]


@pytest.mark.parametrize("chunking", [False, True], ids=["plain", "chunking-offered"])
def test_postfix_relays_bit_exact_with_chunking_offered_or_not(
    relay: Callable[..., Server], postfix_sender: PostfixSender, chunking: bool
) -> None:
    """Postfix's SMTP client has no BDAT (its CHUNKING is server-side only,
    3.4 on): offered CHUNKING, it goes on with DATA, and the message is the
    same. BDAT itself is proven with raw clients in test_chunking.py."""
    server = relay(enable_CHUNKING=chunking)
    subject = f"relay {uuid.uuid4()}"
    body = b"".join(b"line %d: .dots, tabs\tand spaces  \r\n" % n for n in range(200)) + b".\r\n..\r\nend\r\n"
    postfix_sender.send(compose(subject, body), SENDER, ["bob@plain.test", "carol@plain.test"])
    message = arrived(server, subject, postfix_sender)
    assert message.mail_from == SENDER
    assert sorted(message.rcpt_tos) == ["bob@plain.test", "carol@plain.test"]
    assert body_of(message.data) == body
    assert message.transfer == "DATA"
    session = message.session
    assert session is not None
    assert ("S: 250-CHUNKING" in session.format_transcript()) is chunking
    assert session.commands[:4] == ["EHLO", "MAIL", "RCPT", "RCPT"]
    assert session.pipelined  # Postfix pipelines MAIL and RCPT
    assert session.helo == "sender.test"


def test_postfix_sends_8bitmime_and_smtputf8(relay: Callable[..., Server], postfix_sender: PostfixSender) -> None:
    server = relay(enable_SMTPUTF8=True)
    subject = f"utf8 {uuid.uuid4()}"
    body = "Grüße, déjà vu.\r\n".encode()
    message_bytes = compose(
        subject,
        body,
        b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n",
    )
    postfix_sender.send(message_bytes, SENDER, ["jörg@plain.test"])
    message = arrived(server, subject, postfix_sender)
    assert message.rcpt_tos == ["jörg@plain.test"]
    assert "SMTPUTF8" in message.mail_options
    assert "BODY=8BITMIME" in message.mail_options
    assert body_of(message.data) == body


def test_postfix_verifies_our_certificate_over_starttls(
    relay: Callable[..., Server], postfix_sender: PostfixSender
) -> None:
    server = relay(tls="starttls", require_starttls=True)
    subject = f"tls {uuid.uuid4()}"
    postfix_sender.send(compose(subject), SENDER, ["bob@tls.test"])
    message = arrived(server, subject, postfix_sender)
    assert message.tls is not None and message.tls.mode == "starttls"
    postfix_sender.wait_for_log("Verified TLS connection established to localhost[127.0.0.1]")


def test_postfix_logs_in_with_sasl(relay: Callable[..., Server], postfix_sender: PostfixSender) -> None:
    server = relay(tls="starttls", auth={AUTH_USER: AUTH_PASSWORD}, auth_required=True)
    subject = f"auth {uuid.uuid4()}"
    postfix_sender.send(compose(subject), SENDER, ["bob@auth.test"])
    message = arrived(server, subject, postfix_sender)
    assert message.auth_identity == AUTH_USER
    session = message.session
    assert session is not None and session.commands[:4] == ["EHLO", "STARTTLS", "EHLO", "AUTH"]


def test_postfix_asks_for_dsn(relay: Callable[..., Server], postfix_sender: PostfixSender) -> None:
    server = relay(enable_DSN=True)
    subject = f"dsn {uuid.uuid4()}"
    postfix_sender.send(compose(subject), SENDER, ["bob@plain.test"], "-N", "success,delay,failure", "-V", "env-42")
    message = arrived(server, subject, postfix_sender)
    assert "ENVID=env-42" in message.mail_options
    assert message.dsn.envid == "env-42"
    [bob] = message.dsn.recipients
    assert sorted(bob.notify or ()) == ["DELAY", "FAILURE", "SUCCESS"]
    assert bob.orcpt == "rfc822;bob@plain.test"


def test_a_4xx_makes_postfix_defer_and_deliver_on_retry(
    relay: Callable[..., Server], postfix_sender: PostfixSender
) -> None:
    verdicts = iter(["451 4.3.0 try again later"])
    server = relay(handler=lambda message: next(verdicts, None))
    subject = f"defer {uuid.uuid4()}"
    postfix_sender.send(compose(subject), SENDER, ["bob@plain.test"])
    postfix_sender.wait_for_deferral()
    assert server.messages == []  # the 451 kept nothing
    postfix_sender.flush()
    message = arrived(server, subject, postfix_sender)
    assert message.subject == subject
    assert "status=deferred" in postfix_sender.wait_for_log("status=sent")


def test_a_5xx_makes_postfix_bounce_to_the_sender(relay: Callable[..., Server], postfix_sender: PostfixSender) -> None:
    """The bounce goes to the sender's domain, which Postfix relays to us too."""
    subject = f"bounce {uuid.uuid4()}"
    server = relay(handler=lambda message: "550 5.7.1 not wanted here" if message.subject == subject else None)
    postfix_sender.send(compose(subject), SENDER, ["bob@plain.test"])
    try:
        [bounce] = server.messages.wait_for(1, timeout=DELIVERY_TIMEOUT, where=lambda m: m.mail_from == "")
    except TimeoutError as exc:
        raise AssertionError(f"{exc}\nPostfix log:\n{postfix_sender.log()}") from None
    assert bounce.rcpt_tos == [SENDER]
    assert b"550 5.7.1 not wanted here" in bounce.data
    assert subject.encode() in bounce.data  # the returned headers


def test_postfix_delivers_over_lmtp_one_reply_per_recipient(
    relay: Callable[..., Server], postfix_sender: PostfixSender
) -> None:
    refused = "carol@lmtp.test"
    server = relay(
        lmtp=True, handler=lambda m: ["550 5.1.1 no such user" if r == refused else None for r in m.rcpt_tos]
    )
    subject = f"lmtp {uuid.uuid4()}"
    postfix_sender.send(compose(subject), SENDER, ["bob@lmtp.test", refused])
    message = arrived(server, subject, postfix_sender)
    assert sorted(message.rcpt_tos) == ["bob@lmtp.test", refused]
    session = message.session
    assert session is not None and session.commands[0] == "LHLO"
    # Postfix read one reply per recipient: bob delivered, carol refused.
    log = postfix_sender.wait_for_log(f"to=<{refused}>")
    assert "to=<bob@lmtp.test>" in log and "status=sent" in log
    assert "status=bounced" in log and "550 5.1.1 no such user" in log
    # LMTP mode speaks ENHANCEDSTATUSCODES by default (RFC 2033): Postfix logs our code.
    sent = [line for line in log.splitlines() if "to=<bob@lmtp.test>" in line and "status=sent" in line]
    assert sent and all("(250 2.0.0 OK)" in line for line in sent), sent


@pytest.mark.parametrize("enhanced", [False, True], ids=["bare", "enhanced"])
def test_postfix_reads_our_enhanced_status_codes(
    relay: Callable[..., Server], postfix_sender: PostfixSender, enhanced: bool
) -> None:
    """Postfix logs the reply that took the message: with ENHANCEDSTATUSCODES
    it carries our code, and Postfix's dsn= is the one we sent."""
    server = relay(enable_ENHANCEDSTATUSCODES=enhanced)
    recipient = f"enhanced-{uuid.uuid4().hex[:12]}@plain.test"
    subject = f"enhanced {recipient}"
    postfix_sender.send(compose(subject), SENDER, [recipient])
    message = arrived(server, subject, postfix_sender)
    session = message.session
    assert session is not None
    assert ("S: 250-ENHANCEDSTATUSCODES" in session.format_transcript()) is enhanced
    [line] = [line for line in postfix_sender.wait_for_log(f"to=<{recipient}>").splitlines() if recipient in line]
    assert "status=sent" in line and "dsn=2.0.0" in line
    assert ("(250 2.0.0 OK)" if enhanced else "(250 OK)") in line
