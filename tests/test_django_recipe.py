"""The Django recipe of docs/tls-auth.rst, run as written: Django's SMTP
backend with STARTTLS or implicit TLS and AUTH, trusting the fixture's CA
through ``client_env`` with verification on, and refusing an untrusted
server."""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Iterator

import pytest
from django.conf import settings as django_settings  # type: ignore[import-untyped]
from django.core.mail import get_connection, send_mail  # type: ignore[import-untyped]
from django.test.utils import override_settings  # type: ignore[import-untyped]

from pytest_smtpd import Server


@pytest.fixture(scope="module", autouse=True)
def _django_configured() -> None:
    if not django_settings.configured:
        django_settings.configure()


def email_settings(server: Server, **more: object) -> dict[str, object]:
    return {
        "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
        "EMAIL_HOST": server.host,
        "EMAIL_PORT": server.port,
        "EMAIL_HOST_USER": "alice",
        "EMAIL_HOST_PASSWORD": "s3cret",
        "EMAIL_TIMEOUT": 10,
        **more,
    }


@pytest.fixture
def trusting(smtpd: Server, monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    """The recipe's step: the fixture's CA in the environment."""
    for name, value in smtpd.client_env.items():
        monkeypatch.setenv(name, value)
    yield smtpd


@pytest.mark.smtpd(tls="starttls", auth={"alice": "s3cret"}, auth_requires_tls=True)
def test_django_sends_over_starttls(trusting: Server) -> None:
    with override_settings(**email_settings(trusting, EMAIL_USE_TLS=True)):
        assert send_mail("Hi", "Body", "a@example.com", ["b@example.com"]) == 1
    [message] = trusting.messages
    assert message.tls is not None and message.tls.mode == "starttls"
    assert message.auth_identity == "alice"
    assert (message.mail_from, message.rcpt_tos) == ("a@example.com", ["b@example.com"])
    assert message.email["Subject"] == "Hi"


@pytest.mark.smtpd(tls="implicit", auth={"alice": "s3cret"})
def test_django_sends_over_implicit_tls(trusting: Server) -> None:
    with override_settings(**email_settings(trusting, EMAIL_USE_SSL=True)):
        assert send_mail("Hi", "Body", "a@example.com", ["b@example.com"]) == 1
    [message] = trusting.messages
    assert message.tls is not None and message.tls.mode == "implicit"
    assert message.auth_identity == "alice"


@pytest.mark.smtpd(tls="starttls", auth={"alice": "s3cret"})
def test_django_without_the_ca_refuses_the_server(smtpd: Server) -> None:
    """Verification really is on: without ``client_env`` the handshake fails."""
    with override_settings(**email_settings(smtpd, EMAIL_USE_TLS=True)):
        connection = get_connection()
        try:
            with pytest.raises(ssl.SSLCertVerificationError):
                send_mail("Hi", "Body", "a@example.com", ["b@example.com"], connection=connection)
        finally:
            connection.close()  # Django leaves it open when open() fails
    assert smtpd.messages == []


@pytest.mark.smtpd(tls="starttls", auth={"alice": "s3cret"})
def test_django_wrong_password_is_535(trusting: Server) -> None:
    with override_settings(**email_settings(trusting, EMAIL_USE_TLS=True, EMAIL_HOST_PASSWORD="wrong")):
        connection = get_connection()
        try:
            with pytest.raises(smtplib.SMTPAuthenticationError) as raised:
                send_mail("Hi", "Body", "a@example.com", ["b@example.com"], connection=connection)
        finally:
            connection.close()  # Django leaves it open when open() fails
    assert raised.value.smtp_code == 535
    assert trusting.messages == []
