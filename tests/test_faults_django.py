"""Django's SMTP backend driven into faults. It sends with smtplib, so it
reports what smtplib does; these tests show that nothing in the backend
hides a fault (``fail_silently`` is off): a refused recipient, a hang-up
mid-DATA, a stall past its timeout, a bad certificate. Django 6.1 configures
mail with ``MAILERS``, earlier versions with ``EMAIL_*`` settings."""

from __future__ import annotations

import smtplib
import ssl
from typing import Any

import pytest
from django.conf import settings as django_settings  # type: ignore[import-untyped]
from django.core import mail as django_mail  # type: ignore[import-untyped]
from django.test.utils import override_settings  # type: ignore[import-untyped]

from pytest_smtpd import Fault, Server
from pytest_smtpd.tls import Certificate

HAS_MAILERS = hasattr(django_mail, "mailers")


@pytest.fixture(scope="module", autouse=True)
def _django_configured() -> None:
    if not django_settings.configured:
        django_settings.configure()


def mail_settings(server: Server, *, timeout: float = 10, use_tls: bool = False) -> dict[str, Any]:
    if HAS_MAILERS:
        options = {"host": server.host, "port": server.port, "timeout": timeout, "use_tls": use_tls}
        return {"MAILERS": {"default": {"BACKEND": "django.core.mail.backends.smtp.EmailBackend", "OPTIONS": options}}}
    return {
        "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
        "EMAIL_HOST": server.host,
        "EMAIL_PORT": server.port,
        "EMAIL_TIMEOUT": timeout,
        "EMAIL_USE_TLS": use_tls,
    }


def send(server: Server, **options: Any) -> int:
    with override_settings(**mail_settings(server, **options)):
        sent: int = django_mail.send_mail("Hi", "Body " * 40, "a@example.com", ["b@example.com"])
        return sent


@pytest.mark.smtpd(faults=[Fault.reply("RCPT", "450 4.2.1 Mailbox busy")])
def test_django_reports_a_refused_recipient(smtpd: Server) -> None:
    with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        send(smtpd)
    assert refused.value.recipients == {"b@example.com": (450, b"4.2.1 Mailbox busy")}


@pytest.mark.smtpd(faults=[Fault.disconnect("DATA", after_bytes=50)])
def test_django_reports_a_hang_up_mid_data(smtpd: Server) -> None:
    with pytest.raises(smtplib.SMTPServerDisconnected):
        send(smtpd)
    assert len(smtpd.messages) == 0


@pytest.mark.smtpd(faults=[Fault.stall("MAIL")])
def test_django_times_out_on_a_stall(smtpd: Server) -> None:
    with pytest.raises(smtplib.SMTPServerDisconnected, match="timed out"):
        send(smtpd, timeout=0.5)


@pytest.mark.smtpd(faults=[Fault.reply("MESSAGE", "451 4.3.0 Try again later", times=1)])
def test_django_reports_a_451_after_the_dot_and_a_retry_goes_through(smtpd: Server) -> None:
    with pytest.raises(smtplib.SMTPDataError) as error:
        send(smtpd)
    assert error.value.smtp_code == 451
    assert send(smtpd) == 1
    assert len(smtpd.messages) == 1 and len(smtpd.sessions) == 2


@pytest.mark.parametrize("certificate", ["valid", "expired"])
def test_django_refuses_an_expired_certificate(certificate: Certificate, monkeypatch: pytest.MonkeyPatch) -> None:
    """Trusting the test CA (as the TLS recipe does, through ``client_env``),
    Django sends over the valid certificate and refuses the expired one."""
    with Server(tls="starttls", tls_certificate=certificate) as server:
        for name, value in server.client_env.items():
            monkeypatch.setenv(name, value)
        if certificate == "valid":
            assert send(server, use_tls=True) == 1
            return
        with pytest.raises(ssl.SSLCertVerificationError) as error:
            send(server, use_tls=True)
        assert error.value.verify_code == 10
