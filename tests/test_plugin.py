"""The pytest plugin, run inside pytester: the ``smtpd`` fixture, the
``smtpd`` marker, their errors, and isolation between tests."""

from __future__ import annotations

import pytest

from conftest import run_python


def test_fixture_is_available_and_receives_mail(strict: pytest.Pytester) -> None:
    strict.makepyfile(
        """
        import smtplib

        def test_send(smtpd):
            assert smtpd.is_running()
            assert smtpd.host == "127.0.0.1" and smtpd.port > 0
            with smtplib.SMTP(smtpd.host, smtpd.port, timeout=5) as client:
                client.sendmail("a@example.com", ["b@example.com"], b"Subject: hi\\r\\n\\r\\nbody\\r\\n")
            (message,) = smtpd.messages
            assert message.mail_from == "a@example.com"
            assert message.email["Subject"] == "hi"
        """
    )
    result = strict.runpytest_inprocess()
    result.assert_outcomes(passed=1)


def test_fixture_server_is_stopped_after_the_test(strict: pytest.Pytester) -> None:
    strict.makepyfile(
        """
        import socket
        import pytest

        addresses = []

        def test_first(smtpd):
            addresses.append(smtpd.address)

        def test_then_nothing_listens_there():
            with socket.socket() as probe, pytest.raises(ConnectionRefusedError):
                probe.settimeout(5)
                probe.connect(addresses[0])
        """
    )
    strict.runpytest_inprocess().assert_outcomes(passed=2)


def test_marker_passes_options(strict: pytest.Pytester) -> None:
    strict.makepyfile(
        """
        import smtplib
        import pytest

        pytestmark = pytest.mark.smtpd(hostname="module.test", data_size_limit=999)

        @pytest.mark.smtpd(data_size_limit=100, enable_SMTPUTF8=True)
        def test_options(smtpd):
            with smtplib.SMTP(smtpd.host, smtpd.port, timeout=5) as client:
                code, text = client.ehlo()
                assert text.splitlines()[0] == b"module.test"  # from the module marker
                assert client.esmtp_features["size"] == "100"  # the closest marker wins
                assert client.has_extn("smtputf8")

        def test_module_marker_only(smtpd):
            assert smtpd.session_config.data_size_limit == 999
            assert not smtpd.session_config.enable_SMTPUTF8
        """
    )
    strict.runpytest_inprocess().assert_outcomes(passed=2)


#: A marker with a misspelt option (test_failure_output runs it beside pytest-asyncio).
MARKER_TYPO = """
import pytest

@pytest.mark.smtpd(data_size_limt=100)
def test_typo(smtpd):
    pass
"""


def test_unknown_marker_option_is_a_clear_error(strict: pytest.Pytester) -> None:
    strict.makepyfile(MARKER_TYPO)
    result = strict.runpytest_inprocess()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["@pytest.mark.smtpd: unknown option data_size_limt=100; did you mean data_size_limit=?"]
    )


def test_bad_marker_value_is_a_clear_error(strict: pytest.Pytester) -> None:
    strict.makepyfile(
        """
        import pytest

        @pytest.mark.smtpd(data_size_limit=-1)
        def test_negative(smtpd):
            pass
        """
    )
    result = strict.runpytest_inprocess()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*@pytest.mark.smtpd*data_size_limit must be 0 (no limit) or positive, got -1*"])


def test_positional_marker_argument_is_a_clear_error(strict: pytest.Pytester) -> None:
    strict.makepyfile(
        """
        import pytest

        @pytest.mark.smtpd(100)
        def test_positional(smtpd):
            pass
        """
    )
    result = strict.runpytest_inprocess()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["@pytest.mark.smtpd takes keyword arguments only, *"])


def test_messages_do_not_leak_between_tests(strict: pytest.Pytester) -> None:
    strict.makepyfile(
        """
        import smtplib
        import pytest

        def send(smtpd, subject):
            with smtplib.SMTP(smtpd.host, smtpd.port, timeout=5) as client:
                client.sendmail("a@example.com", ["b@example.com"], f"Subject: {subject}\\r\\n\\r\\n".encode())

        @pytest.mark.parametrize("n", range(3))
        def test_each_starts_empty(smtpd, n):
            assert list(smtpd.messages) == []
            send(smtpd, f"test {n}")
            assert [m.subject for m in smtpd.messages] == [f"test {n}"]

        def test_a_failing_test_does_not_leak_either(smtpd):
            send(smtpd, "left behind")
            assert False, "fails on purpose"

        def test_after_the_failure(smtpd):
            assert list(smtpd.messages) == []
        """
    )
    result = strict.runpytest_inprocess()
    result.assert_outcomes(passed=4, failed=1)
    result.stdout.fnmatch_lines(["*fails on purpose*"])


def test_marker_is_registered(strict: pytest.Pytester) -> None:
    result = strict.runpytest_inprocess("--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.smtpd(**options):*"])


def test_loading_the_plugin_leaves_the_stdlib_style_classes_and_tls_unloaded() -> None:
    # What every pytest run pays at start-up: the fixture's server, not the
    # stdlib-style classes (nor aiosmtplib, which the proxies bring) nor
    # trustme/cryptography, which load when a server first uses TLS.
    check = (
        "import sys, pytest, pytest_smtpd.plugin\n"
        "loaded = [m for m in ('pytest_smtpd.compat', 'pytest_smtpd.proxy', 'pytest_smtpd.mailman',"
        " 'aiosmtplib', 'trustme', 'cryptography') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
        "from pytest_smtpd import SMTPServer, PureProxy, MailmanProxy, DebuggingServer, SMTPChannel, loop\n"
        "assert SMTPServer.__module__ == 'pytest_smtpd.compat' and 'aiosmtplib' in sys.modules\n"
    )
    result = run_python(check)
    assert result.returncode == 0, result.stderr


def test_loading_the_plugin_leaves_the_server_and_asyncio_for_the_first_fixture() -> None:
    # Issue 22: the plugin loads in every pytest run, also in one whose tests
    # use no server. The server, the message model, asyncio, email.policy
    # and ssl load when a test first asks for them (the second line shows
    # the same names do load then).
    heavy = ["asyncio", "email.policy", "pytest_smtpd.connection", "pytest_smtpd.message", "pytest_smtpd.server", "ssl"]
    check = (
        "import sys, pytest\n"
        "import pytest_smtpd.plugin, pytest_smtpd.checks_plugin, pytest_smtpd.inbox.pytest_plugin\n"
        f"heavy = {heavy!r}\n"
        "print([m for m in heavy if m in sys.modules])\n"
        "from pytest_smtpd import Server, Message\n"
        "import pytest_smtpd.plugin as plugin\n"
        "assert plugin.Server is Server and plugin.FixtureServer.__module__ == 'pytest_smtpd.assertions'\n"
        "print([m for m in heavy if m in sys.modules])\n"
    )
    result = run_python(check)
    assert result.returncode == 0, result.stderr
    before, after = result.stdout.splitlines()
    assert before == "[]"
    assert after == str(heavy)
