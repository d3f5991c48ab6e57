"""DSN requests (RFC 3461) recorded and typed: ``message.dsn``, with xtext
decoded; bad syntax is 501, an undefined value 555. No DSN is ever sent."""

from __future__ import annotations

import smtplib

import pytest

from conftest import TIMEOUT, Wire
from pytest_smtpd import Server
from pytest_smtpd.dsn import DSN, DSNRecipient, xtext_decode


def test_message_dsn_is_typed_per_recipient() -> None:
    with Server(enable_DSN=True) as server:
        with smtplib.SMTP(*server.address, timeout=TIMEOUT) as client:
            client.ehlo("client.test")
            client.mail("a@example.com", ["RET=HDRS", "ENVID=QQ+2B314"])
            client.rcpt("bob@example.com", ["NOTIFY=success,delay", "ORCPT=rfc822;bob+2Bold@example.com"])
            client.rcpt("carol@example.com", ["NOTIFY=NEVER"])
            client.rcpt("dave@example.com")
            client.data(b"x\r\n")
        [message] = server.messages
    assert message.dsn == DSN(
        ret="HDRS",
        envid="QQ+314",
        recipients=(
            DSNRecipient("bob@example.com", ("SUCCESS", "DELAY"), "rfc822;bob+old@example.com"),
            DSNRecipient("carol@example.com", ("NEVER",), None),
            DSNRecipient("dave@example.com", None, None),
        ),
    )
    assert message.dsn.recipient("carol@example.com").notify == ("NEVER",)
    assert message.rcpt_options == ["NOTIFY=SUCCESS,DELAY", "ORCPT=rfc822;bob+2Bold@example.com", "NOTIFY=NEVER"]


def test_a_message_without_a_request_has_an_empty_dsn() -> None:
    with Server() as server, smtplib.SMTP(*server.address, timeout=TIMEOUT) as client:
        client.sendmail("a@example.com", ["b@example.com"], b"x\r\n")
    [message] = server.messages
    assert message.dsn == DSN(None, None, (DSNRecipient("b@example.com", None, None),))


@pytest.mark.parametrize(
    ("line", "code"),
    [
        ("RCPT TO:<b@example.com> NOTIFY=SOMETIMES", 555),
        ("RCPT TO:<b@example.com> NOTIFY=NEVER,SUCCESS", 501),
        ("RCPT TO:<b@example.com> NOTIFY=SUCCESS,SUCCESS", 501),
        ("RCPT TO:<b@example.com> ORCPT=bob@example.com", 501),
        ("RCPT TO:<b@example.com> ORCPT=rfc822;bob+ZZ@example.com", 501),
    ],
)
def test_bad_rcpt_parameters(line: str, code: int) -> None:
    with Server(enable_DSN=True) as server, Wire(server.address) as wire:
        assert wire.command("EHLO c") == 250
        assert wire.command("MAIL FROM:<a@example.com>") == 250
        assert wire.command(line) == code
        assert wire.command("RCPT TO:<b@example.com>") == 250  # the session goes on


@pytest.mark.parametrize(("params", "code"), [("RET=ALL", 555), ("ENVID=a+zz", 501), ("ENVID=" + "x" * 101, 501)])
def test_bad_mail_parameters(params: str, code: int) -> None:
    with Server(enable_DSN=True) as server, Wire(server.address) as wire:
        assert wire.command("EHLO c") == 250
        assert wire.command(f"MAIL FROM:<a@example.com> {params}") == code


def test_xtext_decoding() -> None:
    assert xtext_decode("a+2Bb+3Dc") == "a+b=c"
    with pytest.raises(ValueError):
        xtext_decode("a+2b")  # hex digits are upper case
