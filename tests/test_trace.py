"""The protocol trace: every line at DEBUG on ``pytest_smtpd.trace``,
message data as a size, AUTH secrets never shown."""

from __future__ import annotations

import base64
import logging
import smtplib

import pytest

from conftest import Wire
from pytest_smtpd import Server
from pytest_smtpd.state import State
from pytest_smtpd.transport import InputTrace, describe_input


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


def test_input_trace_masks_an_auth_line_split_across_reads() -> None:
    secret = base64.b64encode(b"\0alice\0TopSecret9").decode()
    trace = InputTrace()
    assert trace.feed(b"AU", State.GREETED) is None  # not a whole line yet
    assert trace.feed(f"TH PLAIN {secret[:6]}".encode(), State.GREETED) is None
    assert trace.feed(f"{secret[6:]}\r\n".encode(), State.GREETED) == "AUTH PLAIN ****"


def test_input_trace_masks_sasl_responses_until_the_final_auth_reply() -> None:
    trace = InputTrace()
    assert trace.feed(b"AUTH LOGIN\r\n", State.GREETED) == "AUTH LOGIN"
    trace.replied(b"334 VXNlcm5hbWU6\r\n")
    # The core may not have reached the AUTH state yet (say, a handler was busy).
    assert trace.feed(b"YWxp", State.GREETED) is None
    assert trace.feed(b"Y2U=\r\n", State.GREETED) == "****"
    trace.replied(b"334 UGFzc3dvcmQ6\r\n")
    assert trace.feed(b"cGFzc3dvcmQ=\r\n", State.GREETED) == "****"
    trace.replied(b"235 2.7.0 Authentication successful\r\n")
    assert trace.feed(b"NOOP\r\n", State.GREETED) == "NOOP"


def test_input_trace_reports_a_line_without_end_as_a_size_and_masks_its_rest() -> None:
    trace = InputTrace()
    assert trace.feed(b"AUTH PLAIN " + b"A" * InputTrace.MAX_PENDING, State.GREETED) == (
        f"<{InputTrace.MAX_PENDING + 11} bytes without a line end>"
    )
    assert trace.feed(b"AAAA\r\n", State.GREETED) == "****"


def test_input_trace_shows_data_sent_before_the_354_as_a_size() -> None:
    trace = InputTrace()
    assert trace.feed(b"DATA\r\nSubject: hidden\r\nmo", State.GREETED) == "DATA | <17 bytes of message data>"
    assert trace.feed(b"re\r\n.\r\n", State.DATA) == "<9 bytes of message data>"  # "mo" included
    assert describe_input(b"DATA\r\nSubject: hidden\r\n", State.GREETED) == "DATA | <17 bytes of message data>"


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
