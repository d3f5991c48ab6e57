"""Message.lint(), smtpd.assert_well_formed and the smtpd_lint option: each
finding code from a faulty message sent through a real socket, and clean
messages from smtplib, aiosmtplib, Django and Flask-Mailman."""

from __future__ import annotations

import asyncio
import re
import smtplib
import socket
from collections.abc import Iterator
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any

import aiosmtplib
import pytest
from pytester_helpers import INI, SESSION_INI

from pytest_smtpd.assertions import FixtureServer
from pytest_smtpd.lint import CODES, LintFinding
from pytest_smtpd.message import Message

HEAD = (
    b"Date: Mon, 07 Dec 2026 10:00:00 +0000\r\n"
    b"From: Alice <alice@example.test>\r\n"
    b"To: bob@example.test\r\n"
    b"Message-ID: <1@example.test>\r\n"
    b"Subject: hello\r\n"
)
TEXT = b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n"
CLEAN = HEAD + TEXT + b"\r\nHello Bob.\r\n"


def without(data: bytes, header: bytes) -> bytes:
    """``data`` without the header line starting with ``header``."""
    return b"".join(line for line in data.splitlines(keepends=True) if not line.startswith(header))


class RawClient:
    """An SMTP client on a plain socket that sends the data exactly as given."""

    def __init__(self, server: FixtureServer) -> None:
        self.sock = socket.create_connection((server.host, server.port), timeout=10)
        self.file = self.sock.makefile("rb")
        self.reply()

    def reply(self) -> str:
        lines = []
        for _ in range(100):
            line = self.file.readline().decode("ascii", "replace").rstrip("\r\n")
            lines.append(line)
            if line[3:4] != "-":
                break
        return "\n".join(lines)

    def command(self, line: bytes, expect: str) -> str:
        self.sock.sendall(line + b"\r\n")
        answer = self.reply()
        assert answer.startswith(expect), (line, answer)
        return answer

    def send(
        self, data: bytes, *, mail: bytes = b"MAIL FROM:<alice@example.test>", helo: bytes = b"EHLO c.test"
    ) -> None:
        self.command(helo, "250")
        self.command(mail, "250")
        self.command(b"RCPT TO:<bob@example.test>", "250")
        self.command(b"DATA", "354")
        self.sock.sendall(data + (b"" if data.endswith(b"\r\n") else b"\r\n") + b".\r\n")
        assert self.reply().startswith("250")
        self.command(b"QUIT", "221")
        self.sock.close()


def raw_send(server: FixtureServer, data: bytes, **how: bytes) -> Message:
    RawClient(server).send(data, **how)
    (message,) = server.assert_sent(count=1)
    return message


def codes(message: Message) -> list[str]:
    return [finding.code for finding in message.lint()]


MULTIPART = HEAD + b"MIME-Version: 1.0\r\n"
EIGHT_BIT = b"MAIL FROM:<alice@example.test> BODY=8BITMIME"

#: code -> (message data, MAIL command): each faulty in that one way.
FAULTY: dict[str, tuple[bytes, bytes]] = {
    "bare-lf": (CLEAN + b"one\ntwo\r\n", b""),
    "bare-cr": (CLEAN + b"one\rtwo\r\n", b""),
    "line-too-long": (CLEAN + b"x" * 999 + b"\r\n", b""),
    "nul-byte": (CLEAN + b"a\x00b\r\n", b""),
    "8bit-without-8bitmime": (
        HEAD + b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: 8bit\r\n\r\nh\xc3\xa9\r\n",
        b"",
    ),
    "utf8-without-smtputf8": (CLEAN.replace(b"Subject: hello", b"Subject: h\xc3\xa9llo"), EIGHT_BIT),
    "size-mismatch": (CLEAN, b"MAIL FROM:<alice@example.test> SIZE=10"),
    "malformed-header": (HEAD + b"this line is no header\r\n" + TEXT + b"\r\nbody\r\n", b""),
    "missing-date": (without(CLEAN, b"Date:"), b""),
    "bad-date": (CLEAN.replace(b"Mon, 07 Dec 2026 10:00:00 +0000", b"yesterday"), b""),
    "missing-from": (without(CLEAN, b"From:"), b""),
    "sender-required": (
        CLEAN.replace(b"From: Alice <alice@example.test>", b"From: alice@example.test, eve@example.test"),
        b"",
    ),
    "missing-message-id": (without(CLEAN, b"Message-ID:"), b""),
    "duplicate-header": (CLEAN.replace(b"Subject: hello\r\n", b"Subject: hello\r\nSubject: again\r\n"), b""),
    "bcc-leaked": (
        CLEAN.replace(b"To: bob@example.test\r\n", b"To: bob@example.test\r\nBcc: carol@example.test\r\n"),
        b"",
    ),
    "missing-mime-version": (without(CLEAN, b"MIME-Version:"), b""),
    "mime-no-boundary": (MULTIPART + b"Content-Type: multipart/mixed\r\n\r\n--x\r\n\r\na\r\n--x--\r\n", b""),
    "mime-bad-boundary": (
        MULTIPART + b'Content-Type: multipart/mixed; boundary="abc"\r\n\r\n--xyz\r\n\r\na\r\n--xyz--\r\n',
        b"",
    ),
    "mime-bad-encoding": (HEAD + TEXT + b"Content-Transfer-Encoding: x-rot13\r\n\r\nuryyb\r\n", b""),
    "mime-8bit-in-7bit": (
        HEAD + b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: 7bit\r\n\r\nh\xc3\xa9\r\n",
        EIGHT_BIT,
    ),
    "mime-bad-base64": (HEAD + TEXT + b"Content-Transfer-Encoding: base64\r\n\r\naGVsbG8!!\r\n", b""),
    "charset-missing": (
        HEAD + b"MIME-Version: 1.0\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: 8bit\r\n\r\nh\xc3\xa9\r\n",
        EIGHT_BIT,
    ),
    "no-text-alternative": (
        HEAD + b"MIME-Version: 1.0\r\nContent-Type: text/html; charset=us-ascii\r\n\r\n<p>hi</p>\r\n",
        b"",
    ),
    "envelope-from-mismatch": (CLEAN, b"MAIL FROM:<bounce@elsewhere.test>"),
}


def test_every_code_has_a_faulty_message() -> None:
    # auth-without-tls needs a session, not data: test_auth_in_clear.
    assert set(FAULTY) | {"auth-without-tls"} == set(CODES)


@pytest.mark.parametrize("code", list(FAULTY))
def test_a_faulty_message_gets_its_code(smtpd: FixtureServer, code: str) -> None:
    data, mail = FAULTY[code]
    message = raw_send(smtpd, data, **({"mail": mail} if mail else {}))
    findings = [finding for finding in message.lint() if finding.code == code]
    assert findings, message.lint()
    (finding,) = findings
    assert finding.severity == CODES[code].severity
    assert finding.reference == CODES[code].reference
    assert finding.detail
    # Each faulty message differs from the clean one in that one way.
    assert {f.code for f in message.lint()} == {code}


def test_clean_raw_message_lints_clean(smtpd: FixtureServer) -> None:
    assert raw_send(smtpd, CLEAN).lint() == []


def test_details_say_where(smtpd: FixtureServer) -> None:
    message = raw_send(smtpd, CLEAN + b"ok\r\n" + b"y" * 1200 + b"\r\none\ntwo\n")
    by_code = {finding.code: finding for finding in message.lint()}
    assert by_code["line-too-long"].detail == "1 line(s) over 998 octets, the first is line 11 (1200 octets)"
    assert by_code["bare-lf"].detail == "2 bare LF(s), the first on line 12"
    assert str(by_code["bare-lf"]) == "error bare-lf: 2 bare LF(s), the first on line 12 (RFC 5321 section 2.3.8)"


def test_998_octets_is_not_too_long(smtpd: FixtureServer) -> None:
    assert raw_send(smtpd, CLEAN + b"x" * 998 + b"\r\n").lint() == []


def test_8bit_without_8bitmime_offered(smtpd: FixtureServer) -> None:
    message = raw_send(smtpd, FAULTY["8bit-without-8bitmime"][0])
    (finding,) = message.lint()
    assert finding.detail == "8-bit octets (the first on line 10), and MAIL FROM had no BODY=8BITMIME"


def test_8bit_with_8bitmime_is_clean(smtpd: FixtureServer) -> None:
    data = FAULTY["8bit-without-8bitmime"][0]
    assert raw_send(smtpd, data, mail=EIGHT_BIT).lint() == []


@pytest.mark.smtpd(decode_data=True)
def test_8bit_to_a_server_that_did_not_offer_8bitmime(smtpd: FixtureServer) -> None:
    data = FAULTY["8bit-without-8bitmime"][0]
    message = raw_send(smtpd, data)
    (finding,) = [f for f in message.lint() if f.code == "8bit-without-8bitmime"]
    assert finding.detail.endswith("and MAIL FROM had no BODY=8BITMIME (the server did not offer 8BITMIME)")


@pytest.mark.smtpd(enable_SMTPUTF8=True)
def test_utf8_with_smtputf8_is_clean(smtpd: FixtureServer) -> None:
    data, _ = FAULTY["utf8-without-smtputf8"]
    message = raw_send(smtpd, data, mail=b"MAIL FROM:<alice@example.test> BODY=8BITMIME SMTPUTF8")
    assert message.lint() == []


@pytest.mark.smtpd(auth={"alice": "secret"})
def test_auth_in_clear(smtpd: FixtureServer) -> None:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "alice@example.test", "bob@example.test", "hi"
    msg["Date"], msg["Message-ID"] = formatdate(), make_msgid(domain="example.test")
    msg.set_content("hello")
    with smtplib.SMTP(smtpd.host, smtpd.port) as client:
        client.login("alice", "secret")
        client.send_message(msg)
    (message,) = smtpd.assert_sent(count=1)
    (finding,) = message.lint()
    assert (finding.code, finding.severity) == ("auth-without-tls", "warning")
    assert finding.detail == "AUTH as 'alice' on a session without TLS"


@pytest.mark.smtpd(tls="starttls", auth={"alice": "secret"})
def test_auth_after_starttls_is_clean(smtpd: FixtureServer) -> None:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "alice@example.test", "bob@example.test", "hi"
    msg["Date"], msg["Message-ID"] = formatdate(), make_msgid(domain="example.test")
    msg.set_content("hello")
    with smtplib.SMTP(smtpd.host, smtpd.port) as client:
        client.starttls(context=smtpd.client_context())
        client.login("alice", "secret")
        client.send_message(msg)
    assert smtpd.assert_sent(count=1)[0].lint() == []


def test_size_may_leave_out_the_last_crlf(smtpd: FixtureServer) -> None:
    # smtplib declares SIZE= before adding the CRLF that ends the last line.
    with smtplib.SMTP(smtpd.host, smtpd.port) as client:
        client.sendmail("alice@example.test", ["bob@example.test"], CLEAN.rstrip(b"\r\n"))
    (message,) = smtpd.messages
    assert message.mail_options == [f"SIZE={len(message.data) - 2}"]
    assert message.lint() == []
    smtpd.clear()
    (finding,) = raw_send(smtpd, CLEAN, mail=f"MAIL FROM:<alice@example.test> SIZE={len(CLEAN) - 3}".encode()).lint()
    assert finding.detail == f"MAIL declared SIZE={len(CLEAN) - 3}, the message has {len(CLEAN)} octets"


def test_subdomain_envelope_is_aligned(smtpd: FixtureServer) -> None:
    assert raw_send(smtpd, CLEAN, mail=b"MAIL FROM:<bounces@mail.example.test>").lint() == []


def test_multipart_part_with_duplicate_content_type(smtpd: FixtureServer) -> None:
    data = (
        MULTIPART + b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\n'
        b"Content-Type: text/plain; charset=us-ascii\r\nContent-Type: text/html\r\n\r\na\r\n--b--\r\n"
    )
    findings = raw_send(smtpd, data).lint()
    assert [f.code for f in findings] == ["duplicate-header"]
    assert findings[0].detail.startswith("part 1 (")


def test_unclosed_boundary(smtpd: FixtureServer) -> None:
    data = MULTIPART + b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\n\r\na\r\n'
    (finding,) = raw_send(smtpd, data).lint()
    assert finding.code == "mime-bad-boundary"
    assert "never closed" in finding.detail


# -- clean paths --------------------------------------------------------------


def an_email(html: bool = True) -> EmailMessage:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "Alice <alice@example.test>", "bob@example.test", "Your order"
    msg["Date"], msg["Message-ID"] = formatdate(), make_msgid(domain="example.test")
    msg.set_content("Thanks for your order, 4 items.\n" + "A long line, " * 30 + "\n")
    if html:
        msg.add_alternative("<p>Thanks for your <b>order</b>.</p>\n", subtype="html")
    msg.add_attachment(b"%PDF-1.4 \x00\xff" * 50, maintype="application", subtype="pdf", filename="invoice.pdf")
    return msg


def test_smtplib_lints_clean(smtpd: FixtureServer) -> None:
    with smtplib.SMTP(smtpd.host, smtpd.port) as client:
        client.send_message(an_email())
    smtpd.assert_well_formed(level="warning")


@pytest.mark.smtpd(enable_SMTPUTF8=True)
def test_smtplib_utf8_lints_clean(smtpd: FixtureServer) -> None:
    msg = an_email()
    del msg["Subject"]
    msg["Subject"] = "Commande reçue ✓"
    with smtplib.SMTP(smtpd.host, smtpd.port) as client:
        client.send_message(msg)
    (message,) = smtpd.assert_sent(count=1)
    assert message.lint() == []


def test_aiosmtplib_lints_clean(smtpd: FixtureServer) -> None:
    asyncio.run(aiosmtplib.send(an_email(), hostname=smtpd.host, port=smtpd.port))
    smtpd.assert_well_formed(level="warning")


@pytest.fixture
def django_smtp(smtpd: FixtureServer) -> Iterator[None]:
    """Django's SMTP backend pointed at ``smtpd``: ``MAILERS`` from Django
    6.1 on, the ``EMAIL_*`` settings before."""
    from django.conf import settings  # type: ignore[import-untyped]
    from django.core import mail  # type: ignore[import-untyped]
    from django.test.utils import override_settings  # type: ignore[import-untyped]

    if not settings.configured:
        settings.configure()
    backend = "django.core.mail.backends.smtp.EmailBackend"
    if hasattr(mail, "mailers"):
        options = {"host": smtpd.host, "port": smtpd.port, "timeout": 10}
        chosen: dict[str, Any] = {"MAILERS": {"default": {"BACKEND": backend, "OPTIONS": options}}}
    else:
        chosen = {"EMAIL_BACKEND": backend, "EMAIL_HOST": smtpd.host, "EMAIL_PORT": smtpd.port, "EMAIL_TIMEOUT": 10}
    with override_settings(**chosen):
        yield


def test_django_lints_clean(smtpd: FixtureServer, django_smtp: None) -> None:
    from django.core.mail import EmailMultiAlternatives  # type: ignore[import-untyped]

    mail = EmailMultiAlternatives("Your order", "Thanks for your order.", "alice@example.test", ["bob@example.test"])
    mail.attach_alternative("<p>Thanks for your <b>order</b>.</p>", "text/html")
    mail.attach("invoice.pdf", b"%PDF-1.4 \x00\xff" * 50, "application/pdf")
    assert mail.send() == 1
    smtpd.assert_well_formed(level="warning")


def test_flask_mailman_lints_clean(smtpd: FixtureServer) -> None:
    from flask import Flask
    from flask_mailman import EmailMultiAlternatives, Mail  # type: ignore[import-untyped]

    app = Flask(__name__)
    app.config.update(MAIL_SERVER=smtpd.host, MAIL_PORT=smtpd.port, MAIL_DEFAULT_SENDER="alice@example.test")
    Mail(app)
    with app.app_context():
        mail = EmailMultiAlternatives("Your order", "Thanks for your order.", to=["bob@example.test"])
        mail.attach_alternative("<p>Thanks for your <b>order</b>.</p>", "text/html")
        assert mail.send() == 1
    smtpd.assert_well_formed(level="warning")


def test_smtplib_and_django_send_8bit_without_8bitmime(smtpd: FixtureServer, django_smtp: None) -> None:
    """What lint is for: both send a UTF-8 body as 8bit and never say
    BODY=8BITMIME (send_message adds it only for non-ASCII addresses)."""
    from django.core.mail import EmailMessage as DjangoMessage

    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "alice@example.test", "bob@example.test", "Grüße"
    msg["Date"], msg["Message-ID"] = formatdate(), make_msgid(domain="example.test")
    msg.set_content("Grüße, Bob.\n")
    assert msg["Content-Transfer-Encoding"] == "8bit"
    with smtplib.SMTP(smtpd.host, smtpd.port) as client:
        client.send_message(msg)
    assert DjangoMessage("Grüße", "Grüße, Bob.", "alice@example.test", ["bob@example.test"]).send() == 1
    assert [codes(message) for message in smtpd.messages] == [["8bit-without-8bitmime"]] * 2
    smtpd.assert_well_formed(ignore=["8bit-without-8bitmime"])


# -- assert_well_formed and the teardown check ------------------------------


def test_assert_well_formed_lists_each_message(smtpd: FixtureServer) -> None:
    RawClient(smtpd).send(CLEAN)
    RawClient(smtpd).send(without(CLEAN, b"Date:"))
    RawClient(smtpd).send(without(CLEAN, b"Message-ID:"))
    with pytest.raises(AssertionError) as raised:
        smtpd.assert_well_formed()
    text = str(raised.value)
    assert text.startswith("1 of 3 message(s) not well formed (1 finding(s) at level 'error'):\n")
    assert "#2 from 'alice@example.test' to ['bob@example.test'], subject 'hello':" in text
    assert "error missing-date: the message has no Date header (RFC 5322 section 3.6)" in text
    assert "#3" not in text  # a warning only
    with pytest.raises(AssertionError, match="2 of 3 message"):
        smtpd.assert_well_formed(level="warning")
    smtpd.assert_well_formed(ignore=["missing-date"])
    smtpd.assert_well_formed(smtpd.messages[0], level="warning")


def test_assert_well_formed_rejects_unknown_codes(smtpd: FixtureServer) -> None:
    RawClient(smtpd).send(CLEAN)
    with pytest.raises(ValueError, match="unknown lint code"):
        smtpd.assert_well_formed(ignore=["missing-dates"])
    with pytest.raises(ValueError, match="lint level"):
        smtpd.assert_well_formed(level="off")


def test_lint_finding_is_frozen() -> None:
    finding = LintFinding("bare-lf", "error", "x", "RFC 5321 section 2.3.8")
    with pytest.raises(AttributeError):
        finding.code = "other"  # type: ignore[misc]


LINT_TEST = """
import socket

import pytest

DATA = b"From: a@example.test\\r\\nTo: b@example.test\\r\\nSubject: s\\r\\n\\r\\nbody\\r\\n"


def send(smtpd, data=DATA):
    import smtplib
    with smtplib.SMTP(smtpd.host, smtpd.port) as client:
        client.sendmail("a@example.test", ["b@example.test"], data)


def test_no_date(smtpd):
    send(smtpd)


@pytest.mark.smtpd(lint="warning")
def test_no_date_marked(smtpd):
    send(smtpd, b"Date: Mon, 07 Dec 2026 10:00:00 +0000\\r\\n" + DATA)


@pytest.mark.smtpd(lint="off")
def test_off(smtpd):
    send(smtpd)


def test_no_mail(smtpd):
    pass
"""


def test_smtpd_lint_ini_fails_at_teardown(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI + "smtpd_lint = error\n")
    pytester.makepyfile(LINT_TEST)
    result = pytester.runpytest_inprocess("-rA")
    result.assert_outcomes(passed=4, errors=2)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_no_date*",
            "*smtpd lint (error): 1 of 1 message(s) not well formed*",
            "*error missing-date: the message has no Date header (RFC 5322 section 3.6)*",
            "*ERROR at teardown of test_no_date_marked*",
            "*smtpd lint (warning): 1 of 1 message(s) not well formed*",
            "*warning missing-message-id: the message has no Message-ID header*",
        ]
    )


def test_smtpd_lint_default_off(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI)
    pytester.makepyfile(LINT_TEST)
    result = pytester.runpytest_inprocess()
    result.assert_outcomes(passed=4, errors=1)  # only the marked test is linted (its call passed)
    result.stdout.fnmatch_lines(["*ERROR at teardown of test_no_date_marked*"])


def test_smtpd_lint_bad_value(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI + "smtpd_lint = strict\n")
    pytester.makepyfile(LINT_TEST)
    result = pytester.runpytest_inprocess()
    result.stderr.fnmatch_lines(["*smtpd_lint = 'strict': expected one of off, error, warning*"])
    assert result.ret != 0


def test_lint_marker_with_session_scope_shares_the_server(pytester: pytest.Pytester) -> None:
    pytester.makeini(SESSION_INI)
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.smtpd(lint="error")
        def test_one(smtpd, smtpd_session):
            assert smtpd is smtpd_session
        """
    )
    pytester.runpytest_inprocess().assert_outcomes(passed=1)


def test_the_docs_table_lists_every_code() -> None:
    from test_doc_examples import ROOT

    text = (ROOT / "docs" / "checks.rst").read_text(encoding="utf-8")
    rows = re.findall(r"   \* - ``([\w-]+)``\n     - (\w+)\n     - (.+)\n     - (.+)\n", text)
    assert rows == [(code, spec.severity, spec.summary, spec.reference) for code, spec in CODES.items()]
