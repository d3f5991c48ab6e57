"""The Django recipes of docs/tls-auth.rst, run as written: Django's SMTP
backend with STARTTLS or implicit TLS and AUTH, trusting the fixture's CA
through ``client_env`` with verification on, and refusing an untrusted
server. Django 6.1 configures mail with ``MAILERS``, earlier versions with
``EMAIL_*`` settings: the recipe for the installed Django is the one run."""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings as django_settings  # type: ignore[import-untyped]
from django.core import mail as django_mail  # type: ignore[import-untyped]
from django.test.utils import override_settings  # type: ignore[import-untyped]

from pytest_smtpd import Server

#: Django 6.1 and later: ``settings.MAILERS`` and ``django.core.mail.mailers``.
HAS_MAILERS = hasattr(django_mail, "mailers")


@pytest.fixture(scope="module", autouse=True)
def _django_configured() -> None:
    if not django_settings.configured:
        django_settings.configure()


def mail_settings(server: Server, tls: str, password: str = "s3cret") -> dict[str, Any]:
    """The recipe's settings; ``tls`` is ``"use_tls"`` (STARTTLS) or ``"use_ssl"`` (implicit)."""
    if HAS_MAILERS:
        options = {"host": server.host, "port": server.port, "username": "alice", "password": password}
        options |= {"timeout": 10, tls: True}
        return {"MAILERS": {"default": {"BACKEND": "django.core.mail.backends.smtp.EmailBackend", "OPTIONS": options}}}
    return {
        "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
        "EMAIL_HOST": server.host,
        "EMAIL_PORT": server.port,
        "EMAIL_HOST_USER": "alice",
        "EMAIL_HOST_PASSWORD": password,
        "EMAIL_TIMEOUT": 10,
        f"EMAIL_{tls.upper()}": True,
    }


def send_expecting_failure(expected: type[Exception]) -> pytest.ExceptionInfo[Exception]:
    """Send through the default mailer, expecting ``expected``; close the
    connection, which Django leaves open when opening it fails."""
    connection = django_mail.mailers.default if HAS_MAILERS else django_mail.get_connection()
    try:
        with pytest.raises(expected) as raised:
            connection.send_messages([django_mail.EmailMessage("Hi", "Body", "a@example.com", ["b@example.com"])])
    finally:
        connection.close()
    return raised


@pytest.fixture
def trusting(smtpd: Server, monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    """The recipe's step: the fixture's CA in the environment."""
    for name, value in smtpd.client_env.items():
        monkeypatch.setenv(name, value)
    yield smtpd


@pytest.mark.smtpd(tls="starttls", auth={"alice": "s3cret"}, auth_requires_tls=True)
def test_django_sends_over_starttls(trusting: Server) -> None:
    with override_settings(**mail_settings(trusting, "use_tls")):
        assert django_mail.send_mail("Hi", "Body", "a@example.com", ["b@example.com"]) == 1
    [message] = trusting.messages
    assert message.tls is not None and message.tls.mode == "starttls"
    assert message.auth_identity == "alice"
    assert (message.mail_from, message.rcpt_tos) == ("a@example.com", ["b@example.com"])
    assert message.email["Subject"] == "Hi"


@pytest.mark.smtpd(tls="implicit", auth={"alice": "s3cret"})
def test_django_sends_over_implicit_tls(trusting: Server) -> None:
    with override_settings(**mail_settings(trusting, "use_ssl")):
        assert django_mail.send_mail("Hi", "Body", "a@example.com", ["b@example.com"]) == 1
    [message] = trusting.messages
    assert message.tls is not None and message.tls.mode == "implicit"
    assert message.auth_identity == "alice"


@pytest.mark.smtpd(tls="starttls", auth={"alice": "s3cret"})
def test_django_without_the_ca_refuses_the_server(smtpd: Server) -> None:
    """Verification really is on: without ``client_env`` the handshake fails."""
    with override_settings(**mail_settings(smtpd, "use_tls")):
        send_expecting_failure(ssl.SSLCertVerificationError)
    assert smtpd.messages == []


@pytest.mark.smtpd(tls="starttls", auth={"alice": "s3cret"})
def test_django_wrong_password_is_535(trusting: Server) -> None:
    with override_settings(**mail_settings(trusting, "use_tls", password="wrong")):
        raised = send_expecting_failure(smtplib.SMTPAuthenticationError)
    assert isinstance(raised.value, smtplib.SMTPAuthenticationError) and raised.value.smtp_code == 535
    assert trusting.messages == []
