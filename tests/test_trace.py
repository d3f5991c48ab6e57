"""The protocol trace: every line at DEBUG on ``pytest_smtpd.trace``,
message data as a size, AUTH secrets never shown."""

from __future__ import annotations

import base64
import logging
import smtplib

import pytest

from pytest_smtpd import Server
from pytest_smtpd.state import State
from pytest_smtpd.transport import describe_input


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


@pytest.mark.parametrize(
    ("data", "state", "shown"),
    [
        (b"AUTH PLAIN AGFsaWNlAHB3\r\n", State.GREETED, "AUTH PLAIN ****"),
        (b"AUTH LOGIN\r\nYWxpY2U=\r\n", State.GREETED, "AUTH LOGIN | ****"),
        (b"cGFzc3dvcmQ=\r\n", State.AUTH, "****"),
        (b"NOOP\r\nQUIT\r\n", State.GREETED, "NOOP | QUIT"),
        (b"line one\r\n", State.DATA, "<10 bytes of message data>"),
    ],
)
def test_describe_input(data: bytes, state: State, shown: str) -> None:
    assert describe_input(data, state) == shown
