"""Reading a message: ``from_``, ``to``, ``cc``, ``bcc``, ``subject``,
``text``, ``html``, ``attachments`` and ``links``, decoded from what real
clients send, and ``messages.filter`` / ``messages.last``."""

from __future__ import annotations

import re
import smtplib
from email.message import EmailMessage

import pytest

from conftest import TIMEOUT
from pytest_smtpd import Server


def send(server: Server, message: EmailMessage | bytes, rcpt_tos: list[str] | None = None) -> None:
    with smtplib.SMTP(server.host, server.port, timeout=TIMEOUT) as client:
        if isinstance(message, bytes):
            client.sendmail("app@example.com", rcpt_tos or ["bob@example.com"], message)
        else:
            client.send_message(message, to_addrs=rcpt_tos)


def welcome() -> EmailMessage:
    message = EmailMessage()
    message["From"] = "Ünïcode Sender <app@example.com>"
    message["To"] = "Bob <bob@example.com>, carol@example.com"
    message["Cc"] = "dave@example.com"
    message["Subject"] = "Wïllkommen, Bob"
    message.set_content("Héllo Bob,\nconfirm at https://app.test/confirm?token=abc.\nThanks\n")
    message.add_alternative(
        '<p>Héllo Bob, <a href="https://app.test/confirm?token=abc&amp;x=1">confirm</a>'
        " or see https://app.test/help</p>",
        subtype="html",
    )
    message.add_attachment(b"%PDF-1.4 binary \x00\xff", maintype="application", subtype="pdf", filename="invoice.pdf")
    message.add_attachment("a,b\n1,2\n", filename="données.csv")
    return message


def test_views_decode_what_smtplib_sent(smtpd: Server) -> None:
    send(smtpd, welcome(), rcpt_tos=["bob@example.com", "carol@example.com", "dave@example.com", "eve@example.com"])
    message = smtpd.messages.last
    assert message.from_ == "app@example.com"
    assert message.to == ["bob@example.com", "carol@example.com"]
    assert message.cc == ["dave@example.com"]
    assert message.bcc == ["eve@example.com"]
    assert message.subject == "Wïllkommen, Bob"  # RFC 2047 on the wire
    assert b"=?utf-8?" in message.data
    assert message.text == "Héllo Bob,\nconfirm at https://app.test/confirm?token=abc.\nThanks\n"
    assert message.html is not None and message.html.startswith("<p>Héllo Bob")
    assert [(a.filename, a.content_type) for a in message.attachments] == [
        ("invoice.pdf", "application/pdf"),
        ("données.csv", "text/plain"),
    ]
    assert message.attachments[0].content == b"%PDF-1.4 binary \x00\xff"
    # A text attachment sent as 7bit crossed the wire with CRLF line endings, and keeps them.
    assert message.attachments[1].content == b"a,b\r\n1,2\r\n"
    # The text's link without its sentence's full stop, then the html's, once each.
    assert message.links == [
        "https://app.test/confirm?token=abc",
        "https://app.test/confirm?token=abc&x=1",
        "https://app.test/help",
    ]


def test_quoted_printable_and_base64_bodies_in_other_charsets(smtpd: Server) -> None:
    qp = (
        b"From: app@example.com\r\nTo: bob@example.com\r\nSubject: =?iso-8859-1?q?caf=E9?=\r\n"
        b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=iso-8859-1\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\ncaf=E9 cr=E8me\r\n"
    )
    b64 = (
        b"From: app@example.com\r\nTo: bob@example.com\r\nSubject: html only\r\n"
        b"MIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\nPGI+w6k8L2I+\r\n"
    )
    send(smtpd, qp)
    send(smtpd, b64)
    first, second = smtpd.messages
    assert (first.subject, first.text, first.html) == ("café", "café crème\n", None)
    assert (second.text, second.html) == (None, "<b>é</b>")
    assert first.attachments == [] and first.links == []


def test_a_plain_message_without_headers(smtpd: Server) -> None:
    send(smtpd, b"just a body\r\n")
    message = smtpd.messages.last
    assert (message.from_, message.to, message.cc, message.subject) == (None, [], [], None)
    assert message.bcc == ["bob@example.com"]  # in neither To nor Cc: a blind copy
    assert message.text == "just a body\n"


def test_bcc_compares_domains_in_any_case(smtpd: Server) -> None:
    send(smtpd, b"To: Bob@Example.COM\r\n\r\nhi\r\n", rcpt_tos=["Bob@example.com", "bob@example.com"])
    # The local part is compared as written: "bob" is another mailbox than "Bob".
    assert smtpd.messages.last.bcc == ["bob@example.com"]


def test_last_and_filter(smtpd: Server) -> None:
    with pytest.raises(IndexError, match="no message has arrived yet"):
        _ = smtpd.messages.last
    for subject in ("one", "two", "three"):
        send(smtpd, f"Subject: {subject}\r\nTo: bob@example.com\r\n\r\nbody {subject}\r\n".encode())
    assert smtpd.messages.last.subject == "three"
    assert [m.subject for m in smtpd.messages.filter(subject=re.compile("^t"))] == ["two", "three"]
    assert [m.subject for m in smtpd.messages.filter(to="bob@EXAMPLE.com", text="body one")] == ["one"]
    assert smtpd.messages.filter(subject=lambda s: s == "nope") == []
    with pytest.raises(TypeError, match="unknown criterion 'subjet'"):
        smtpd.messages.filter(subjet="one")
