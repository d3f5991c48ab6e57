"""The inbox's list view (``summary_of``) reads a plain header section
itself instead of through the message model's views (340 µs a message
against 8): for every header section, the two must agree, and the plain
reading must be the one that runs for ordinary test mail."""

from __future__ import annotations

import smtplib
from datetime import datetime, timezone
from email.message import EmailMessage
from email.utils import format_datetime

import pytest
from inbox_helpers import TIMEOUT, Running, running

from pytest_smtpd.inbox.store import _plain_summary, _viewed_summary, summary_of
from pytest_smtpd.message import Message

pytest.importorskip("aiohttp")

__all__ = ["running"]

BODY = b"\r\nHello.\r\n"

#: Header sections the plain reading takes: it must agree with the views.
PLAIN = [
    b"From: a@example.com\r\nTo: b@example.com\r\nSubject: hi\r\n",
    b"From: App Name <app@example.com>\r\nTo: b@example.com, Carol <c@example.com>\r\nSubject: Welcome!\r\n",
    b"from: a@example.com\r\nTO: b@example.com\r\nsubject: lower case names\r\n",
    b"From: a@example.com\r\nTo: b@example.com\r\nTo: second@example.com\r\nSubject: two To fields\r\n",
    b"From: o'brien+tag@mail.example.com\r\nTo: x_y.z@sub.example.org\r\nSubject: odd but plain atoms\r\n",
    b"From: a@example.com\r\nSubject: no To at all\r\n",
    b"To: b@example.com\r\nSubject: no From\r\n",
    b"From: a@example.com\r\nTo: b@example.com\r\n",
    b"From: a@example.com\r\nTo: b@example.com\r\nSubject: \r\n",
    b"From: a@example.com\r\nTo: b@example.com\r\nSubject: Two Subjects\r\nSubject: second\r\n",
    b"From: a@example.com\r\nTo: b@example.com\r\nSubject:no space after the colon\r\n",
    b"From: a@example.com\r\nTo: b@example.com\r\nDate: Mon, 07 Dec 2026 11:30:05 +0000\r\nSubject: dated\r\n",
    b"From: a@example.com\r\nTo: b@example.com\r\nDate: 7 Dec 2026 11:30 -0500\r\nSubject: short date\r\n",
    b"From: a@example.com\r\nTo: b@example.com\r\nDate: Tue, 07 Dec 2026 11:30:05 +0000\r\nSubject: wrong weekday\r\n",
    b"From: a@example.com\r\nTo: b@example.com\r\nDate: Mon, 07 Dec 2026 11:30:05 -0000\r\nSubject: no zone\r\n",
    b"From: a@example.com\r\nTo: b@example.com\r\nContent-Type: text/plain; charset=utf-8\r\nSubject: typed\r\n",
    b"From: a@example.com\r\nTo: b@example.com\r\nMIME-Version: 1.0\r\nX-Mailer: test\r\nSubject: more fields\r\n",
    b"From:   a@example.com   \r\nTo:\tb@example.com\r\nSubject: spaces round the addresses\r\n",
]

#: Header sections it leaves to the views (each for a reason the views handle).
NOT_PLAIN = [
    b"From: =?utf-8?q?J=C3=B6rg?= <j@example.com>\r\nTo: b@example.com\r\nSubject: encoded word\r\n",
    "From: a@example.com\r\nTo: b@example.com\r\nSubject: Grüße\r\n".encode(),
    "From: a@bücher.example\r\nTo: b@example.com\r\nSubject: IDN\r\n".encode(),
    b"From: a@example.com\r\nTo: b@example.com\r\nSubject: folded\r\n continues here\r\n",
    b'From: "Doe, John" <j@example.com>\r\nTo: b@example.com\r\nSubject: quoted name\r\n',
    b"From: a@example.com (comment)\r\nTo: b@example.com\r\nSubject: comment\r\n",
    b"From: a@example.com\r\nTo: undisclosed-recipients:;\r\nSubject: group\r\n",
    b"From: a@example.com\r\nTo: b@example.com,\r\nSubject: trailing comma\r\n",
    b"From: a@example.com\r\nTo: b@example.com\r\nSubject: trailing space \r\n",
    b"From: a@example.com\r\nTo: b@example.com\r\nDate: yesterday\r\nSubject: bad date\r\n",
    b"From: a@example.com\r\nTo: b@example.com\r\nDate: 31 Feb 2026 10:00 +0000\r\nSubject: no such day\r\n",
    b"From: a@example.com\r\nTo: b@example.com\r\nDate: 07 Dec 2026 29:00 +0000\r\nSubject: no such hour\r\n",
    b"From: a@example.com\r\nTo: b@example.com\r\nContent-Type: multipart/mixed; boundary=x\r\nSubject: multi\r\n",
    b"From a@example.com Mon Dec  7 11:30:05 2026\r\nFrom: a@example.com\r\nSubject: mbox line\r\n",
    b"From: a@example.com\r\nnot a field\r\nSubject: junk line\r\n",
    b"From: <a@example.com>\r\nTo: b@example.com\r\nSubject: bare angle brackets\r\n",
]


def message_of(head: bytes) -> Message:
    return Message(peer=("127.0.0.1", 1), mail_from="a@example.com", rcpt_tos=["b@example.com"], data=head + BODY)


@pytest.mark.parametrize("head", PLAIN)
def test_the_plain_reading_agrees_with_the_views(head: bytes) -> None:
    plain = _plain_summary(head + b"\r\n")
    assert plain is not None, "this header section should be read plainly"
    assert plain == _viewed_summary(message_of(head), head + b"\r\n")


@pytest.mark.parametrize("head", NOT_PLAIN)
def test_anything_else_is_left_to_the_views(head: bytes) -> None:
    assert _plain_summary(head + b"\r\n") is None
    summary = summary_of(message_of(head))  # the views read it, as before
    assert summary == {**summary, **_viewed_summary(message_of(head), head + b"\r\n")}


def test_mail_as_smtplib_sends_it_is_read_plainly_and_listed_the_same(running: Running) -> None:
    # Through the socket and the REST API: what EmailMessage writes for a
    # plain message (with a Date) takes the plain reading, and the list
    # shows what the message's own views say.
    message = EmailMessage()
    message["From"] = "App <app@example.com>"
    message["To"] = "bob@example.com, carol@example.com"
    message["Subject"] = "Your receipt"
    message["Date"] = format_datetime(datetime(2026, 12, 7, 11, 30, tzinfo=timezone.utc))
    message.set_content("Thanks.")
    with smtplib.SMTP(*running.server.address, timeout=TIMEOUT) as client:
        client.send_message(message)
    [summary] = running.http.get("/api/messages")["messages"]
    [received] = running.server.messages
    head = received.data[: received.data.index(b"\r\n\r\n") + 4]
    assert _plain_summary(head) is not None
    assert summary["from"] == received.from_ == "app@example.com"
    assert summary["to"] == received.to == ["bob@example.com", "carol@example.com"]
    assert summary["subject"] == received.subject == "Your receipt"
    assert summary["date"] == str(received.email["Date"])
    assert summary["attachments"] == 0
