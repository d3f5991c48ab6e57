"""Real clients sending internationalized mail to the ``smtpd`` fixture
with its SMTPUTF8 option on and off (issue 18): smtplib (``send_message``
with ``policy.SMTPUTF8``, ``sendmail`` with ``mail_options=["SMTPUTF8"]``),
aiosmtplib, Django's ``EmailMessage``, and a real Postfix relaying to the
fixture's port. With the option on, the mail arrives and the assertions
find it in either address form; with it off, each client refuses or
bounces, and nothing arrives."""

from __future__ import annotations

import asyncio
import smtplib
import uuid
from collections.abc import Iterator
from email.message import EmailMessage
from email.policy import SMTPUTF8
from typing import Any

import aiosmtplib
import pytest
from postfix_sender import PostfixSender, postfix_sender_fixture  # noqa: F401 (the postfix_sender fixture)

from conftest import TIMEOUT
from pytest_smtpd import FixtureServer

SENDER = "josé@例え.jp"
RECIPIENT = "jürgen@bücher.de"
ON = pytest.param(True, marks=pytest.mark.smtpd(enable_SMTPUTF8=True), id="smtputf8-on")
OFF = pytest.param(False, marks=pytest.mark.smtpd(enable_SMTPUTF8=False), id="smtputf8-off")


def international() -> EmailMessage:
    message = EmailMessage(policy=SMTPUTF8)
    message["From"] = f"José <{SENDER}>"
    message["To"] = f"Jürgen <{RECIPIENT}>"
    message["Subject"] = "Grüße aus 東京"
    message.set_content("Hallo, 世界. https://例え.jp/ページ\n")
    return message


def assert_arrived(smtpd: FixtureServer) -> None:
    [message] = smtpd.assert_sent(
        mail_from="josé@xn--r8jz45g.jp", rcpt_to="jürgen@xn--bcher-kva.de", to=RECIPIENT, subject="Grüße aus 東京"
    )
    assert "SMTPUTF8" in message.mail_options
    assert message.from_ == SENDER
    assert message.text == "Hallo, 世界. https://例え.jp/ページ\n"
    assert message.links == ["https://例え.jp/ページ"]


def assert_no_mail_command(smtpd: FixtureServer) -> None:
    smtpd.assert_sent(count=0)
    assert all("MAIL" not in session.commands for session in smtpd.sessions)


@pytest.mark.parametrize("offered", [ON, OFF])
def test_smtplib_send_message_with_policy_smtputf8(smtpd: FixtureServer, offered: bool) -> None:
    with smtplib.SMTP(smtpd.host, smtpd.port, timeout=TIMEOUT) as client:
        if offered:
            client.send_message(international())
        else:
            with pytest.raises(smtplib.SMTPNotSupportedError, match="SMTPUTF8"):
                client.send_message(international())
    if offered:
        assert_arrived(smtpd)
        # send_message wrote the headers as UTF-8, not as RFC 2047 words.
        assert "To: Jürgen <jürgen@bücher.de>\r\n".encode() in smtpd.messages.last.data
    else:
        assert_no_mail_command(smtpd)


@pytest.mark.parametrize("offered", [ON, OFF])
def test_smtplib_sendmail_with_the_smtputf8_mail_option(smtpd: FixtureServer, offered: bool) -> None:
    data = international().as_bytes(policy=SMTPUTF8.clone(linesep="\r\n"))
    with smtplib.SMTP(smtpd.host, smtpd.port, timeout=TIMEOUT) as client:
        if offered:
            client.sendmail(SENDER, [RECIPIENT], data, mail_options=["SMTPUTF8"])
        else:
            with pytest.raises(smtplib.SMTPNotSupportedError, match="SMTPUTF8"):
                client.sendmail(SENDER, [RECIPIENT], data, mail_options=["SMTPUTF8"])
    if offered:
        assert_arrived(smtpd)
        assert smtpd.messages.last.data == data
    else:
        assert_no_mail_command(smtpd)


@pytest.mark.parametrize("offered", [ON, OFF])
def test_aiosmtplib(smtpd: FixtureServer, offered: bool) -> None:
    async def send() -> Any:
        return await aiosmtplib.send(international(), hostname=smtpd.host, port=smtpd.port, timeout=TIMEOUT)

    if offered:
        asyncio.run(send())
        assert_arrived(smtpd)
    else:
        with pytest.raises(aiosmtplib.SMTPNotSupported, match="SMTPUTF8"):
            asyncio.run(send())
        assert_no_mail_command(smtpd)


@pytest.mark.parametrize("offered", [ON, OFF])
def test_django_sends_idn_domains_as_a_labels_and_never_uses_smtputf8(smtpd: FixtureServer, offered: bool) -> None:
    """Django does not use SMTPUTF8: it writes an IDN domain as its A-label
    (IDNA 2003), a non-ASCII display name as RFC 2047 words and sends the
    body as 8-bit UTF-8, so its mail arrives either way, and the
    criteria find it by the Unicode form the application used."""
    from django.conf import settings  # type: ignore[import-untyped]
    from django.core import mail  # type: ignore[import-untyped]
    from django.test.utils import override_settings  # type: ignore[import-untyped]

    if not settings.configured:
        settings.configure()
    backend = "django.core.mail.backends.smtp.EmailBackend"
    if hasattr(mail, "mailers"):  # Django 6.1 on: MAILERS
        options = {"host": smtpd.host, "port": smtpd.port, "timeout": TIMEOUT}
        configured = override_settings(MAILERS={"default": {"BACKEND": backend, "OPTIONS": options}})
    else:
        configured = override_settings(
            EMAIL_BACKEND=backend, EMAIL_HOST=smtpd.host, EMAIL_PORT=smtpd.port, EMAIL_TIMEOUT=TIMEOUT
        )
    with configured:
        message = mail.EmailMessage("Grüße aus 東京", "Hallo, 世界.", "José <app@例え.jp>", ["Jürgen <bob@bücher.de>"])
        assert message.send() == 1
    [received] = smtpd.assert_sent(
        from_="app@例え.jp",
        mail_from="app@例え.jp",
        to="bob@bücher.de",
        rcpt_to="bob@bücher.de",
        subject="Grüße aus 東京",
    )
    assert received.rcpt_tos == ["bob@xn--bcher-kva.de"]
    assert "SMTPUTF8" not in received.mail_options
    headers, _, body = received.data.partition(b"\r\n\r\n")
    assert headers.isascii() and body == "Hallo, 世界.\r\n".encode()  # 8bit
    assert received.email["From"].addresses[0].display_name == "José"
    assert received.text is not None and received.text.rstrip("\n") == "Hallo, 世界."


class TestPostfixRelaysToTheFixture:
    """A real Postfix as the client: it uses SMTPUTF8 when the fixture offers
    it, and bounces the message (it cannot be downgraded) when not."""

    @pytest.fixture
    def smtpd_options(self, postfix_sender: PostfixSender) -> Iterator[dict[str, Any]]:
        yield {"port": postfix_sender.port}
        postfix_sender.empty_queue()

    @pytest.mark.parametrize("offered", [ON, OFF])
    def test_postfix(self, smtpd: FixtureServer, postfix_sender: PostfixSender, offered: bool) -> None:
        token = uuid.uuid4().hex
        recipient = f"jürgen-{token[:8]}@plain.test"
        message = international()
        message.replace_header("To", recipient)
        message.replace_header("Subject", f"Grüße {token}")
        postfix_sender.send(message.as_bytes(policy=SMTPUTF8), "app@sender.test", [recipient])
        if offered:
            try:
                [received] = smtpd.assert_sent(rcpt_to=recipient, subject=f"Grüße {token}", timeout=30)
            except AssertionError as exc:
                raise AssertionError(f"{exc}\nPostfix log:\n{postfix_sender.log()}") from None
            assert "SMTPUTF8" in received.mail_options
            assert received.to == [recipient]
        else:
            log = postfix_sender.wait_for_log("SMTPUTF8 is required")
            assert f"to=<{recipient}>" in log and "status=bounced" in log
            smtpd.assert_not_sent(rcpt_to=recipient)
