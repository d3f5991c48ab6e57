"""The protocol trace: every line at DEBUG on ``pytest_smtpd.trace``,
message data as a size, AUTH secrets never shown."""

from __future__ import annotations

import base64
import logging
import smtplib

import pytest

from conftest import Wire
from pytest_smtpd import Server
from pytest_smtpd.connection import ServerConnection, SessionConfig


def test_trace_shows_commands_and_replies(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="pytest_smtpd.trace")
    with Server() as server, smtplib.SMTP(server.host, server.port, timeout=5) as client:
        client.sendmail("a@example.com", ["b@example.com"], b"Subject: secret body\r\n\r\nhidden\r\n")
    text = caplog.text
    assert "> ehlo" in text.lower()
    assert "> mail from:<a@example.com>" in text.lower()  # smtplib's case varies by version
    assert "< 250 OK" in text
    assert "bytes of message data>" in text
    assert "hidden" not in text


def test_trace_masks_auth(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="pytest_smtpd.trace")
    with Server(auth={"alice": "pa55word"}) as server, smtplib.SMTP(server.host, server.port, timeout=5) as client:
        client.ehlo()
        client.login("alice", "pa55word")
        client.sendmail("a@example.com", ["b@example.com"], b"x\r\n")
    text = caplog.text
    assert "AUTH CRAM-MD5" in text  # the mechanism is shown...
    assert "pa55word" not in text  # ...the secret, in any form, is not
    assert base64.b64encode(b"pa55word").decode() not in text
    assert "alice" not in text


def test_trace_is_off_by_default(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="pytest_smtpd")
    with Server() as server, smtplib.SMTP(server.host, server.port, timeout=5) as client:
        client.noop()
    assert "NOOP" not in caplog.text.upper()


def test_trace_over_a_socket_never_shows_a_password_sent_in_pieces(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="pytest_smtpd.trace")
    secret = base64.b64encode(b"\0alice\0pa55word").decode()
    with Server(auth={"alice": "pa55word"}) as server, Wire(server.address) as wire:
        assert wire.command("EHLO client.test") == 250
        line = f"AUTH PLAIN {secret}\r\n".encode()
        for piece in (line[:2], line[2:14], line[14:]):
            wire.send(piece)  # with TCP_NODELAY these often arrive as separate reads
        assert wire.reply()[0] == 235
    assert "AUTH PLAIN ****" in caplog.text
    assert secret not in caplog.text and secret[:8] not in caplog.text


def test_an_auth_line_in_the_read_that_ends_a_message_is_masked(caplog: pytest.LogCaptureFixture) -> None:
    """The end of a message and the start of an AUTH line in one read, the
    rest of the secret in the next: the core knows each line for what it is."""
    caplog.set_level(logging.DEBUG, logger="pytest_smtpd.trace")
    with Server(auth={"user": "s3cret"}) as server, Wire(server.address) as wire:
        assert wire.command("EHLO client.test") == 250
        for line in ("MAIL FROM:<a@example.com>", "RCPT TO:<b@example.com>", "DATA"):
            wire.command(line)
        wire.send(b"hello\r\n.\r\nAUTH PLAIN AHVz")
        assert wire.reply()[0] == 250
        wire.send(b"ZXIAczNjcmV0\r\n")
        assert wire.reply()[0] == 235
    text = caplog.text
    assert "AUTH PLAIN ****" in text
    assert "<10 bytes of message data>" in text
    assert "AHVz" not in text and "ZXIAczNjcmV0" not in text and "hello" not in text
    [session] = server.sessions
    assert [entry.line for entry in session.transcript if entry.direction == "client"][-2:] == [
        "<10 bytes of message data>",
        "AUTH PLAIN ****",
    ]


@pytest.mark.parametrize(
    ("sent", "shown"),
    [
        (b"AUTH PLAIN AGFsaWNlAHB3\r\n", ["AUTH PLAIN ****"]),
        (b"AUTH LOGIN\r\nYWxpY2U=\r\ncGFzc3dvcmQ=\r\nNOOP\r\n", ["AUTH LOGIN", "****", "****", "NOOP"]),
        (b"AUTH LOGIN\r\n*\r\n", ["AUTH LOGIN", "*"]),
        (b"NOOP\r\nQUIT\r\n", ["NOOP", "QUIT"]),
        (b"NOOP " + b"x" * 600 + b"\r\n", ["<a 607-octet line, too long>"]),
        (b"NOOP " + b"x" * 20000, ["<a line too long, dropped>"]),
    ],
    ids=["auth-plain", "auth-login", "auth-cancelled", "commands", "too-long", "too-long-unfinished"],
)
def test_the_core_records_client_lines_with_secrets_masked(sent: bytes, shown: list[str]) -> None:
    core = ServerConnection(SessionConfig(auth_mechanisms=("PLAIN", "LOGIN")), record=True)
    core.receive_data(b"EHLO c\r\n")
    core.next_event()
    core.receive_data(sent)
    if sent.endswith(b"x"):
        core.next_event()
        core.receive_data(b"\r\n")
    for _ in range(10):
        event = core.next_event()
        if type(event).__name__ == "AuthRequested":
            core.answer_auth(True)
        elif type(event).__name__ in ("NeedData", "ConnectionClosed"):
            break
    assert core.transcript is not None
    assert [line for direction, line in core.transcript if direction == "client"][1:] == shown


def test_the_core_records_nothing_unless_asked() -> None:
    core = ServerConnection(SessionConfig())
    core.receive_data(b"EHLO c\r\n")
    core.next_event()
    assert core.transcript is None
    assert core.commands == []
