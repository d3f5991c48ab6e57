"""``smtpd.assert_sent`` / ``assert_not_sent``: criteria of every kind, and
failure messages that explain a near miss."""

from __future__ import annotations

import re
import smtplib
import threading
from dataclasses import dataclass, field
from email.message import EmailMessage

import pytest

from conftest import TIMEOUT
from pytest_smtpd.assertions import FixtureServer
from pytest_smtpd.matching import explain_miss


def send(
    server: FixtureServer,
    subject: str = "Welcome",
    to: str = "bob@example.com",
    body: str = "Hello Bob",
    **headers: str,
) -> None:
    message = EmailMessage()
    message["From"] = "app@example.com"
    message["To"] = to
    message["Subject"] = subject
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    message.set_content(body)
    with smtplib.SMTP(server.host, server.port, timeout=TIMEOUT) as client:
        client.send_message(message)


def test_assert_sent_returns_the_matching_messages(smtpd: FixtureServer) -> None:
    send(smtpd, subject="Welcome")
    send(smtpd, subject="Receipt", to="carol@example.com")
    [welcome] = smtpd.assert_sent(to="bob@example.com", subject="Welcome")
    assert welcome.subject == "Welcome"
    assert len(smtpd.assert_sent()) == 2
    assert smtpd.assert_sent(count=1, to="carol@EXAMPLE.com")[0].subject == "Receipt"
    smtpd.assert_sent(count=0, to="CAROL@example.com")  # the local part is compared as written
    smtpd.assert_sent(from_="app@EXAMPLE.com", mail_from="app@example.com", rcpt_to="carol@example.com")
    smtpd.assert_sent(subject=re.compile(r"^Rec"), text="Hello", header={"To": "carol@example.com"})
    smtpd.assert_sent(subject=lambda subject: subject.startswith("Wel"), count=1)
    smtpd.assert_sent(count=0, subject="Goodbye")


def test_attachment_and_html_criteria(smtpd: FixtureServer) -> None:
    message = EmailMessage()
    message["Subject"] = "Invoice"
    message.set_content("see attached")
    message.add_alternative("<p>see <b>attached</b></p>", subtype="html")
    message.add_attachment(b"%PDF", maintype="application", subtype="pdf", filename="invoice-7.pdf")
    with smtplib.SMTP(smtpd.host, smtpd.port, timeout=TIMEOUT) as client:
        client.send_message(message, "app@example.com", ["bob@example.com"])
    smtpd.assert_sent(attachment="invoice-7.pdf", html="<b>attached</b>", bcc="bob@example.com")
    smtpd.assert_sent(attachment=re.compile(r"invoice-\d+\.pdf"))
    with pytest.raises(AssertionError, match=r"attachment: 'receipt.pdf' not in \['invoice-7.pdf'\]"):
        smtpd.assert_sent(attachment="receipt.pdf")


def test_near_miss_says_criterion_by_criterion_what_differs(smtpd: FixtureServer) -> None:
    send(smtpd, subject="Welcome", to="bob@example.org")
    send(smtpd, subject="Newsletter", to="alice@example.com")
    with pytest.raises(AssertionError) as failure:
        smtpd.assert_sent(to="bob@example.com", subject="Welcome!", from_="app@example.com")
    text = str(failure.value)
    assert text.splitlines()[0] == (
        "expected at least 1 message(s) matching to='bob@example.com', subject='Welcome!',"
        " from_='app@example.com', found 0"
    )
    assert "2 message(s) arrived:" in text
    # Envelope and header addresses are labelled apart, as the criteria name them.
    assert (
        "#1 mail_from 'app@example.com', rcpt_to ['bob@example.org'], To: ['bob@example.org'], subject 'Welcome'"
        in text
    )
    assert "closest, #1:" in text  # two criteria off, against three for #2
    assert "ok   from_: 'app@example.com'" in text
    assert "FAIL to: 'bob@example.com' not in ['bob@example.org']" in text
    assert "FAIL subject: expected 'Welcome!', got 'Welcome'" in text


def test_count_mismatch_and_nothing_arrived(smtpd: FixtureServer) -> None:
    with pytest.raises(AssertionError, match=r"found 0\nno message arrived\."):
        smtpd.assert_sent(subject="Welcome")
    send(smtpd)
    send(smtpd)
    with pytest.raises(AssertionError, match=r"expected exactly 1 message.*found 2"):
        smtpd.assert_sent(count=1, subject="Welcome")


def test_assert_not_sent(smtpd: FixtureServer) -> None:
    smtpd.assert_not_sent()
    send(smtpd, subject="Password reset")
    smtpd.assert_not_sent(subject="Welcome")
    with pytest.raises(AssertionError) as failure:
        smtpd.assert_not_sent(subject=re.compile("reset"))
    # The criteria told as assert_sent tells them, not as a dict.
    assert str(failure.value).splitlines() == [
        "expected no message matching subject=re.compile('reset'), found 1:",
        "  #1 mail_from 'app@example.com', rcpt_to ['bob@example.com'], To: ['bob@example.com'],"
        " subject 'Password reset', 177 bytes",
    ]


def test_bad_criteria_are_clear_errors(smtpd: FixtureServer) -> None:
    with pytest.raises(TypeError, match="unknown criterion 'subjet'; the criteria are: from_, mail_from, to"):
        smtpd.assert_sent(subjet="x")
    with pytest.raises(TypeError, match="to= takes a str, a compiled regex or a callable, got int"):
        smtpd.assert_sent(to=3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="header= takes a dict"):
        smtpd.assert_not_sent(header="X-Tag: 1")
    with pytest.raises(ValueError, match="count must be None or a whole number, 0 or more, got -1"):
        smtpd.assert_sent(count=-1)


def test_timeout_waits_for_a_worker_thread(smtpd: FixtureServer) -> None:
    go = threading.Event()

    def work() -> None:
        go.wait(TIMEOUT)
        send(smtpd, subject="From the worker")

    worker = threading.Thread(target=work)
    worker.start()
    try:
        with pytest.raises(AssertionError):
            smtpd.assert_sent(subject="From the worker")  # timeout=0: not yet
        go.set()
        [message] = smtpd.assert_sent(subject="From the worker", timeout=TIMEOUT)
        assert message.to == ["bob@example.com"]
    finally:
        go.set()
        worker.join(TIMEOUT)


def test_timeout_expires_with_the_explanation(smtpd: FixtureServer) -> None:
    send(smtpd, subject="Other")
    with pytest.raises(AssertionError, match=r"found 0 \(waited 0.05s\)\n1 message\(s\) arrived"):
        smtpd.assert_sent(subject="Never", timeout=0.05)


# -- sessions in the explanation (pure: records shaped as Server.sessions holds them)


@dataclass
class Entry:
    direction: str
    line: str
    time: float = 0.0


@dataclass
class FakeSession:
    peer: tuple[str, int]
    ended_by: str | None
    commands: list[str]
    transcript: list[Entry] = field(default_factory=list)
    messages: list[object] = field(default_factory=list)


def test_explanation_names_sessions_that_ended_without_a_message() -> None:
    refused = FakeSession(
        ("127.0.0.1", 40001),
        "quit",
        ["EHLO", "MAIL", "RCPT", "QUIT"],
        [
            Entry("client", "RCPT TO:<nobody@example.com>"),
            Entry("server", "550 5.1.1 No such user"),
            Entry("client", "QUIT"),
            Entry("server", "221 Bye"),
        ],
    )
    hung_up = FakeSession(("127.0.0.1", 40002), "client", ["EHLO"])
    delivered = FakeSession(("127.0.0.1", 40003), "quit", ["EHLO", "MAIL", "RCPT", "DATA"], messages=[object()])
    text = explain_miss([], {"subject": "Welcome"}, sessions=[refused, hung_up, delivered])
    assert text.splitlines() == [
        "expected at least 1 message(s) matching subject='Welcome', found 0",
        "no message arrived.",
        "2 session(s) ended without a message:",
        "  session from 127.0.0.1:40001: said QUIT after RCPT; last error reply: '550 5.1.1 No such user' (to RCPT)",
        "  session from 127.0.0.1:40002: the client hung up after EHLO",
    ]


# -- the same through a real server and real clients


@pytest.mark.smtpd(handler=lambda message: "550 5.1.1 No such user here")
def test_nothing_sent_names_the_client_that_hung_up_and_the_refusal(smtpd: FixtureServer) -> None:
    with smtplib.SMTP(smtpd.host, smtpd.port, timeout=TIMEOUT) as client:
        client.ehlo("quitter.test")
        client.close()  # hangs up without QUIT
    # The server has seen that hang up long before this session's QUIT
    # (its EOF was ready while this one was still connecting).
    with smtplib.SMTP(smtpd.host, smtpd.port, timeout=TIMEOUT) as client, pytest.raises(smtplib.SMTPDataError):
        client.sendmail("app@example.com", ["nobody@example.com"], b"Subject: Welcome\r\n\r\nhi\r\n")
    with pytest.raises(AssertionError) as failure:
        smtpd.assert_sent(subject="Welcome")
    lines = str(failure.value).splitlines()
    assert lines[:3] == [
        "expected at least 1 message(s) matching subject='Welcome', found 0",
        "no message arrived.",
        "2 session(s) ended without a message:",
    ]
    assert lines[3].endswith("the client hung up after EHLO")
    # smtplib said RSET after the refusal, then QUIT.
    assert lines[4].endswith(
        "said QUIT after RSET; last error reply: '550 5.1.1 No such user here' (to the message data)"
    )


@pytest.mark.smtpd(data_size_limit=100)
def test_refusal_at_mail_is_named_with_its_command(smtpd: FixtureServer) -> None:
    with smtplib.SMTP(smtpd.host, smtpd.port, timeout=TIMEOUT) as client, pytest.raises(smtplib.SMTPSenderRefused):
        client.sendmail("app@example.com", ["bob@example.com"], b"x" * 200)
    with pytest.raises(AssertionError, match=r"last error reply: '552 .*' \(to MAIL\)"):
        smtpd.assert_sent()


def test_waiting_from_a_handler_is_a_clear_error(smtpd: FixtureServer) -> None:
    """A handler runs on the servers' loop thread: waiting there for mail
    would wait for itself. It gets an error (answered 451), not a hang."""
    errors: list[BaseException] = []

    def handler(message: object) -> None:
        try:
            smtpd.assert_sent(subject="x", timeout=1.0)
        except RuntimeError as exc:
            errors.append(exc)
            raise

    smtpd.handler = handler
    with (
        smtplib.SMTP(smtpd.host, smtpd.port, timeout=TIMEOUT) as client,
        pytest.raises(smtplib.SMTPDataError) as refused,
    ):
        client.sendmail("a@example.com", ["b@example.com"], b"Subject: x\r\n\r\n")
    assert refused.value.smtp_code == 451
    assert "cannot wait on the servers' loop thread" in str(errors[0])


def test_wait_for_from_a_handler_is_a_clear_error(smtpd: FixtureServer) -> None:
    errors: list[BaseException] = []

    def handler(message: object) -> None:
        try:
            smtpd.messages.wait_for(timeout=1.0)
        except RuntimeError as exc:
            errors.append(exc)
            raise

    smtpd.handler = handler
    with (
        smtplib.SMTP(smtpd.host, smtpd.port, timeout=TIMEOUT) as client,
        pytest.raises(smtplib.SMTPDataError),
    ):
        client.sendmail("a@example.com", ["b@example.com"], b"Subject: x\r\n\r\n")
    assert "wait_for cannot wait on the servers' loop thread" in str(errors[0])
