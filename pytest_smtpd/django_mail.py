"""The ``smtpd_django`` fixture's work: Django's email settings pointed at a
test's server for the test, and put back afterwards. Django is imported
only when a test uses it; the plugin offers the fixture only where Django
is installed."""

from __future__ import annotations

import contextlib
import importlib.util
import os
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from .assertions import FixtureServer

__all__ = ["EveryTest", "django_installed", "mail_settings", "pointed_at"]

#: Django's SMTP backend, which sends through a real socket (smtplib).
SMTP_BACKEND = "django.core.mail.backends.smtp.EmailBackend"


def django_installed() -> bool:
    """Whether Django can be imported (found without importing it)."""
    try:
        return importlib.util.find_spec("django") is not None
    except (ImportError, ValueError):
        return False


def _login(server: FixtureServer) -> tuple[str, str]:
    """The first user and password of a server with ``auth={...}``; none
    otherwise, so that production credentials in the settings are not
    tried on a server that offers no AUTH."""
    auth = server.options.get("auth")
    if isinstance(auth, Mapping) and auth:
        user, password = next(iter(auth.items()))
        return str(user), str(password)
    return "", ""


def mail_settings(server: FixtureServer, mailers: bool = False) -> dict[str, Any]:
    """The Django settings that send mail to ``server``: the SMTP backend,
    its host and port, STARTTLS or implicit TLS as the server speaks, and
    its login if it has one. ``mailers``: as Django 6.1's ``MAILERS``
    (the default mailer) instead of the ``EMAIL_*`` settings."""
    user, password = _login(server)
    if mailers:
        options = {"host": server.host, "port": server.port, "username": user, "password": password}
        options |= {"use_tls": server.tls == "starttls", "use_ssl": server.tls == "implicit"}
        return {"BACKEND": SMTP_BACKEND, "OPTIONS": options}
    return {
        "EMAIL_BACKEND": SMTP_BACKEND,
        "EMAIL_HOST": server.host,
        "EMAIL_PORT": server.port,
        "EMAIL_USE_TLS": server.tls == "starttls",
        "EMAIL_USE_SSL": server.tls == "implicit",
        "EMAIL_HOST_USER": user,
        "EMAIL_HOST_PASSWORD": password,
        # A client certificate of the settings' own would make Django build
        # a context that trusts no CA: the test CA could not be trusted.
        "EMAIL_SSL_CERTFILE": None,
        "EMAIL_SSL_KEYFILE": None,
    }


@contextlib.contextmanager
def pointed_at(server: FixtureServer) -> Iterator[FixtureServer]:
    """Point Django's email settings at ``server`` (``override_settings``),
    and for a TLS server trust its test CA (``client_env`` in the
    environment, read by ``ssl.create_default_context()``), until the end
    of the block."""
    from django.conf import settings  # type: ignore[import-untyped]
    from django.core import mail  # type: ignore[import-untyped]
    from django.test.utils import override_settings  # type: ignore[import-untyped]

    if not settings.configured and not os.environ.get("DJANGO_SETTINGS_MODULE"):
        pytest.fail(
            "smtpd_django: Django's settings are not configured: set DJANGO_SETTINGS_MODULE (pytest-django's"
            " --ds or django_settings_module ini), or call django.conf.settings.configure() in a conftest.py",
            pytrace=False,
        )
    if hasattr(mail, "mailers"):  # Django 6.1 and later configure mail with MAILERS
        mailers = dict(getattr(settings, "MAILERS", None) or {})
        overrides = {"MAILERS": {**mailers, "default": mail_settings(server, mailers=True)}}
    else:
        overrides = mail_settings(server)
    with pytest.MonkeyPatch.context() as patch, override_settings(**overrides):
        if server.ca is not None:
            for name, value in server.client_env.items():
                patch.setenv(name, value)
        yield server


class EveryTest:
    """Registered with ``smtpd_django = true``: every test gets
    ``smtpd_django``, as pytest-django's ``mailoutbox`` is always there."""

    @pytest.fixture(autouse=True)
    def _smtpd_django_in_every_test(self, smtpd_django: FixtureServer) -> None:
        """Asks for ``smtpd_django``, so that every test has it."""
