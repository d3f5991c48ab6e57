"""The ``smtpd_django`` fixture and ``smtpd_django = true``, run inside
pytester: a Django suite configured in its conftest.py (as pytest-django
would, the in-memory backend included) sends with ``send_mail`` through
Django's SMTP backend and a real socket to the test's server, over
plaintext, STARTTLS and implicit TLS with AUTH; the settings and the
environment are as before once the test is over."""

from __future__ import annotations

import pytest
from pytester_helpers import PACKAGE_ROOT, start_up_error, strict_ini

#: The suite below keeps its mail settings as EMAIL_*, which Django 6.1 deprecates for MAILERS.
INI = strict_ini(ignore=["ignore:The EMAIL_:DeprecationWarning", "ignore:The EMAIL_:PendingDeprecationWarning"])

#: The suite's own settings: production-like mail settings that the fixture
#: must override for the test and put back.
CONFTEST = """
import os

import django
from django.conf import settings

if not settings.configured:
    settings.configure()
from django.test.utils import override_settings

SUITE = override_settings(
    EMAIL_BACKEND="django.core.mail.backends.locmem.EmailBackend",
    EMAIL_HOST="smtp.production.invalid",
    EMAIL_PORT=587,
    EMAIL_HOST_USER="prod-user",
    EMAIL_HOST_PASSWORD="prod-password",
    EMAIL_USE_TLS=False,
    EMAIL_USE_SSL=False,
    EMAIL_TIMEOUT=10,
)
SUITE.enable()


def pytest_unconfigure():
    SUITE.disable()
"""

SUITE_SETTINGS = """
import os

from django.conf import settings


def assert_suite_settings():
    assert settings.EMAIL_BACKEND == "django.core.mail.backends.locmem.EmailBackend"
    assert (settings.EMAIL_HOST, settings.EMAIL_PORT) == ("smtp.production.invalid", 587)
    assert settings.EMAIL_HOST_USER == "prod-user"
    assert "SSL_CERT_FILE" not in os.environ  # the test CA's trust ended with the test
"""


@pytest.fixture
def suite(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    pytester.makeini(INI)
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(suite_settings=SUITE_SETTINGS)
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    return pytester


def test_smtpd_django_sends_django_mail_to_the_test_server(suite: pytest.Pytester) -> None:
    suite.makepyfile(
        """
        import pytest
        from django.core import mail

        from suite_settings import assert_suite_settings

        def test_send(smtpd_django, smtpd):
            assert smtpd_django is smtpd
            assert mail.send_mail("Welcome", "Hello Bob", "app@example.com", ["bob@example.com"]) == 1
            [message] = smtpd.assert_sent(subject="Welcome", to="bob@example.com", text="Hello Bob")
            assert message.tls is None and message.auth_identity is None
            assert not getattr(mail, "outbox", [])  # not the in-memory backend

        @pytest.mark.smtpd(tls="starttls", auth={"alice": "s3cret"}, auth_requires_tls=True)
        def test_starttls_and_auth(smtpd_django):
            mail.send_mail("Hi", "Body", "app@example.com", ["bob@example.com"])
            [message] = smtpd_django.messages
            assert message.tls is not None and message.tls.mode == "starttls"
            assert message.auth_identity == "alice"

        @pytest.mark.smtpd(tls="implicit")
        def test_implicit_tls(smtpd_django):
            mail.send_mail("Hi", "Body", "app@example.com", ["bob@example.com"])
            [message] = smtpd_django.messages
            assert message.tls is not None and message.tls.mode == "implicit"

        def test_settings_are_the_suites_again():
            assert_suite_settings()
            mail.send_mail("Kept", "Body", "app@example.com", ["bob@example.com"])
            assert [m.subject for m in mail.outbox] == ["Kept"]
        """
    )
    result = suite.runpytest_inprocess("-p", "no:randomly")
    result.assert_outcomes(passed=4)


def test_ini_switch_applies_it_to_every_test(suite: pytest.Pytester) -> None:
    suite.makeini(INI + "smtpd_django = true\n")
    suite.makepyfile(
        """
        from django.conf import settings
        from django.core import mail

        def test_without_asking(smtpd):
            mail.send_mail("Welcome", "Hello", "app@example.com", ["bob@example.com"])
            smtpd.assert_sent(subject="Welcome")

        def test_another_test_another_server(smtpd):
            if hasattr(mail, "mailers"):  # Django 6.1 and later: MAILERS
                assert settings.MAILERS["default"]["OPTIONS"]["port"] == smtpd.port
            else:
                assert settings.EMAIL_PORT == smtpd.port
            mail.send_mail("Again", "Hello", "app@example.com", ["bob@example.com"])
            assert [m.subject for m in smtpd.messages] == ["Again"]
        """
    )
    suite.runpytest_inprocess().assert_outcomes(passed=2)


def test_without_the_switch_django_keeps_its_settings(suite: pytest.Pytester) -> None:
    """The fixture is what changes them: a test that does not ask keeps the suite's."""
    suite.makepyfile(
        """
        from suite_settings import assert_suite_settings

        def test_untouched(smtpd):
            assert_suite_settings()
        """
    )
    suite.runpytest_inprocess().assert_outcomes(passed=1)


def test_a_bad_switch_value_is_a_usage_error(suite: pytest.Pytester) -> None:
    result = start_up_error(suite, "-o", "smtpd_django=sometimes")
    result.stderr.fnmatch_lines(["*smtpd_django = 'sometimes': expected true or false*"])


def test_unconfigured_django_is_one_clear_error(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run in a subprocess: this process's Django is configured already."""
    pytester.makeini(INI)
    monkeypatch.setenv("PYTHONPATH", PACKAGE_ROOT)
    monkeypatch.delenv("DJANGO_SETTINGS_MODULE", raising=False)
    pytester.makepyfile("def test_send(smtpd_django): pass")
    result = pytester.runpytest_subprocess(timeout=60)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["smtpd_django: Django's settings are not configured: set DJANGO_SETTINGS_MODULE*"])


def test_the_plugin_imports_django_only_when_used(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makeini(INI)
    monkeypatch.setenv("PYTHONPATH", PACKAGE_ROOT)
    pytester.makepyfile(
        """
        import sys

        import pytest_smtpd.plugin

        def test_plain(smtpd):
            assert hasattr(pytest_smtpd.plugin, "smtpd_django")  # offered: Django is installed
            assert "django" not in sys.modules
        """
    )
    result = pytester.runpytest_subprocess(timeout=60)
    result.assert_outcomes(passed=1)
