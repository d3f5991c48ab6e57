"""Configuring the fixture, run inside pytester: the ``smtpd_*`` ini options
and their checks, ``smtpd_options``, the marker winning over both, the
shared server of ``smtpd_scope = session``, and a fixed port under xdist."""

from __future__ import annotations

import socket

import pytest
from pytester_helpers import INI, SESSION_INI, start_up_error


def test_ini_options_configure_the_server(strict: pytest.Pytester) -> None:
    strict.makeini(
        INI + "smtpd_hostname = mx.ini.test\n"
        "smtpd_data_size_limit = 4096\n"
        "smtpd_enable_SMTPUTF8 = true\n"
        "smtpd_auth = alice:s3cret bob:pa:ss\n"
        "smtpd_tls = starttls\n"
    )
    strict.makepyfile(
        """
        import smtplib

        def test_options(smtpd):
            with smtplib.SMTP(smtpd.host, smtpd.port, timeout=10) as client:
                code, text = client.ehlo()
                assert text.splitlines()[0] == b"mx.ini.test"
                assert client.esmtp_features["size"] == "4096"
                assert client.has_extn("smtputf8") and client.has_extn("starttls")
                client.starttls(context=smtpd.client_context())
                client.login("bob", "pa:ss")  # the first colon separates
            assert smtpd.tls == "starttls"
        """
    )
    strict.runpytest_inprocess().assert_outcomes(passed=1)


def test_command_line_o_overrides_the_ini_file(strict: pytest.Pytester) -> None:
    strict.makeini(INI + "smtpd_hostname = from.ini.test\n")
    strict.makepyfile(
        """
        def test_hostname(smtpd):
            assert smtpd.session_config.hostname == "from.command.line"
        """
    )
    strict.runpytest_inprocess("-o", "smtpd_hostname=from.command.line").assert_outcomes(passed=1)


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (
            "smtpd_host=smtp.invalid",
            "smtpd_host = 'smtp.invalid': expected an address to listen on, such as 127.0.0.1 or ::1",
        ),
        ("smtpd_hostname=mx test", "smtpd_hostname = 'mx test': expected a host name without spaces"),
        ("smtpd_port=http", "smtpd_port = 'http': expected a whole number from 0 to 65535"),
        ("smtpd_port=70000", "smtpd_port = '70000': expected a whole number from 0 to 65535"),
        ("smtpd_data_size_limit=-5", "smtpd_data_size_limit = '-5': expected a whole number from 0 up"),
        ("smtpd_enable_SMTPUTF8=maybe", "smtpd_enable_SMTPUTF8 = 'maybe': expected true or false"),
        ("smtpd_tls=ssl", "smtpd_tls = 'ssl': expected starttls or implicit"),
        ("smtpd_auth=alice", "smtpd_auth = 'alice': expected user:password pairs separated by spaces"),
        ("smtpd_scope=module", "smtpd_scope = 'module': expected function or session"),
        ("smtpd_teardown_grace=soon", "smtpd_teardown_grace = 'soon': expected a finite number of seconds, 0 or more"),
        ("smtpd_report=short", "smtpd_report = 'short': expected full, summary or off"),
        ("smtpd_report_lines=-1", "smtpd_report_lines = '-1': expected a whole number from 0 up"),
    ],
)
def test_bad_ini_values_stop_pytest_at_start_up(strict: pytest.Pytester, option: str, message: str) -> None:
    result = start_up_error(strict, "-o", option)
    result.stderr.fnmatch_lines([f"ERROR: -o on the command line: {message}"])


def test_save_dir_that_is_a_file_stops_pytest_at_start_up(strict: pytest.Pytester) -> None:
    strict.makefile(".txt", artifacts="not a directory")
    result = start_up_error(strict, "--smtpd-save-dir", "artifacts.txt")
    result.stderr.fnmatch_lines(["*smtpd_save_dir = 'artifacts.txt': expected a directory (this is a file)*"])


def test_closest_wins_ini_then_smtpd_options_then_markers(strict: pytest.Pytester) -> None:
    strict.makeini(INI + "smtpd_hostname = ini.test\nsmtpd_data_size_limit = 1000\n")
    strict.makeconftest(
        """
        import pytest

        @pytest.fixture
        def smtpd_options():
            return {"data_size_limit": 2000, "enable_SMTPUTF8": True}
        """
    )
    strict.makepyfile(
        """
        import pytest

        pytestmark = pytest.mark.smtpd(data_size_limit=3000)

        def config(smtpd):
            c = smtpd.session_config
            return c.hostname, c.data_size_limit, c.enable_SMTPUTF8

        def test_module_marker(smtpd):
            assert config(smtpd) == ("ini.test", 3000, True)

        @pytest.mark.smtpd(hostname="class.test")
        class TestClass:
            def test_class_marker(self, smtpd):
                assert config(smtpd) == ("class.test", 3000, True)

            @pytest.mark.smtpd(data_size_limit=4000, hostname="test.test")
            def test_test_marker(self, smtpd):
                assert config(smtpd) == ("test.test", 4000, True)

        class TestOverride:
            @pytest.fixture
            def smtpd_options(self):
                return {"hostname": "override.test"}

            def test_class_smtpd_options(self, smtpd):
                assert config(smtpd) == ("override.test", 3000, False)
        """
    )
    strict.runpytest_inprocess().assert_outcomes(passed=4)


def test_bad_smtpd_options_are_a_clear_error(strict: pytest.Pytester) -> None:
    strict.makepyfile(
        """
        import pytest

        @pytest.fixture
        def smtpd_options():
            return {"data_size_limt": 5}

        def test_typo(smtpd):
            pass
        """
    )
    result = strict.runpytest_inprocess()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["the smtpd_options fixture: unknown option data_size_limt=5; did you mean data_size_limit=?"]
    )


def free_ports(count: int) -> int:
    """A port P such that P .. P+count-1 are free now (bounded tries)."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            first = int(probe.getsockname()[1])
        if first + count > 65535:
            continue
        taken = []
        try:
            for port in range(first, first + count):
                sock = socket.socket()
                taken.append(sock)
                sock.bind(("127.0.0.1", port))
            return first
        except OSError:
            continue
        finally:
            for sock in taken:
                sock.close()
    raise AssertionError("no run of free ports found in 50 tries")


def test_fixed_port(strict: pytest.Pytester) -> None:
    port = free_ports(1)
    strict.makeini(INI + f"smtpd_port = {port}\n")
    strict.makepyfile(
        f"""
        import smtplib

        def test_one(smtpd):
            assert smtpd.port == {port}

        def test_again_after_the_first_closed(smtpd):
            assert smtpd.port == {port}
            with smtplib.SMTP("127.0.0.1", {port}, timeout=10) as client:
                client.sendmail("a@example.com", ["b@example.com"], b"hi")
            assert len(smtpd.messages) == 1
        """
    )
    strict.runpytest_inprocess().assert_outcomes(passed=2)


def test_fixed_port_under_xdist_is_port_plus_worker_number(strict: pytest.Pytester) -> None:
    port = free_ports(2)
    strict.makeini(INI + f"smtpd_port = {port}\n")
    strict.makepyfile(
        f"""
        import os
        import smtplib
        import pytest

        @pytest.mark.parametrize("n", range(6))
        def test_worker_port(smtpd, n):
            worker = int(os.environ["PYTEST_XDIST_WORKER"][2:])
            assert smtpd.port == {port} + worker
            with smtplib.SMTP(smtpd.host, smtpd.port, timeout=10) as client:
                client.sendmail("a@example.com", ["b@example.com"], b"Subject: " + str(n).encode() + b"\\r\\n\\r\\n")
            assert [m.subject for m in smtpd.messages] == [str(n)]
        """
    )
    result = strict.runpytest_subprocess("-n", "2", "-p", "xdist", timeout=60)
    result.assert_outcomes(passed=6)


def test_session_scope_shares_one_server_cleared_per_test(strict: pytest.Pytester) -> None:
    strict.makeini(SESSION_INI)
    strict.makepyfile(
        """
        import smtplib
        import pytest

        ports = []

        def send(smtpd, subject):
            with smtplib.SMTP(smtpd.host, smtpd.port, timeout=10) as client:
                client.sendmail("a@example.com", ["b@example.com"], f"Subject: {subject}\\r\\n\\r\\n".encode())

        @pytest.mark.parametrize("n", range(3))
        def test_shared(smtpd, smtpd_session, n):
            assert smtpd is smtpd_session
            ports.append(smtpd.port)
            assert list(smtpd.messages) == []
            send(smtpd, n)
            assert [m.subject for m in smtpd.messages] == [str(n)]

        @pytest.mark.smtpd(data_size_limit=100)
        def test_other_options_get_their_own_server(smtpd, smtpd_session):
            assert smtpd is not smtpd_session and smtpd.port != smtpd_session.port
            assert smtpd.session_config.data_size_limit == 100

        def test_same_options_by_marker_share(smtpd, smtpd_session):
            assert smtpd is smtpd_session

        def test_the_same_server_throughout(smtpd):
            assert set(ports) == {smtpd.port}
        """
    )
    strict.runpytest_inprocess().assert_outcomes(passed=6)


def test_session_scoped_smtpd_options_configure_the_shared_server(strict: pytest.Pytester) -> None:
    strict.makeini(SESSION_INI)
    strict.makeconftest(
        """
        import pytest

        @pytest.fixture(scope="session")
        def smtpd_options():
            return {"hostname": "shared.test"}
        """
    )
    strict.makepyfile(
        """
        import pytest

        def test_shared(smtpd, smtpd_session):
            assert smtpd is smtpd_session
            assert smtpd.session_config.hostname == "shared.test"

        class TestNarrower:
            @pytest.fixture
            def smtpd_options(self):
                return {"hostname": "narrow.test"}

            def test_own_server(self, smtpd, smtpd_session):
                assert smtpd is not smtpd_session
                assert smtpd.session_config.hostname == "narrow.test"
        """
    )
    strict.runpytest_inprocess().assert_outcomes(passed=2)


def test_narrower_smtpd_options_first_still_give_each_test_its_options(strict: pytest.Pytester) -> None:
    """The shared server started under a narrower override cannot see the
    session-scoped one (pytest resolves names per test): it starts from the
    ini options, and tests whose options differ get their own server."""
    strict.makeini(SESSION_INI)
    strict.makeconftest(
        """
        import pytest

        @pytest.fixture(scope="session")
        def smtpd_options():
            return {"hostname": "shared.test"}
        """
    )
    strict.makepyfile(
        """
        import pytest

        class TestNarrower:
            @pytest.fixture
            def smtpd_options(self):
                return {"hostname": "narrow.test"}

            def test_first(self, smtpd):
                assert smtpd.session_config.hostname == "narrow.test"

        def test_then_session_options(smtpd):
            assert smtpd.session_config.hostname == "shared.test"
        """
    )
    strict.runpytest_inprocess().assert_outcomes(passed=2)


def test_session_scope_under_xdist_gives_each_worker_its_server(strict: pytest.Pytester) -> None:
    port = free_ports(2)
    strict.makeini(SESSION_INI + f"smtpd_port = {port}\n")
    strict.makepyfile(
        f"""
        import os
        import smtplib
        import pytest

        @pytest.mark.parametrize("n", range(6))
        def test_shared_per_worker(smtpd, smtpd_session, n):
            assert smtpd is smtpd_session
            assert smtpd.port == {port} + int(os.environ["PYTEST_XDIST_WORKER"][2:])
            assert list(smtpd.messages) == []
            with smtplib.SMTP(smtpd.host, smtpd.port, timeout=10) as client:
                client.sendmail("a@example.com", ["b@example.com"], b"hi")
            assert len(smtpd.messages) == 1
        """
    )
    result = strict.runpytest_subprocess("-n", "2", "-p", "xdist", timeout=60)
    result.assert_outcomes(passed=6)


# -- mistakes in the ini file and on the command line


@pytest.mark.parametrize(
    ("line", "message"),
    [
        # Case first: pytest would only warn, and SMTPUTF8 would silently stay off.
        ("smtpd_enable_smtputf8 = true", "unknown option smtpd_enable_smtputf8; did you mean smtpd_enable_SMTPUTF8?"),
        ("SMTPD_PORT = 2525", "unknown option SMTPD_PORT; did you mean smtpd_port?"),
        ("smtpd_teardown_grase = 2", "unknown option smtpd_teardown_grase; did you mean smtpd_teardown_grace?"),
        ("smtpd_colour = blue", "unknown option smtpd_colour; the options are: smtpd_host, smtpd_port, *"),
    ],
)
def test_an_unknown_smtpd_ini_key_names_the_nearest_one(strict: pytest.Pytester, line: str, message: str) -> None:
    strict.makeini(INI + line + "\n")
    result = start_up_error(strict)
    result.stderr.fnmatch_lines([f"ERROR: tox.ini: {message}"])


def test_an_unknown_key_on_the_command_line_is_named_as_from_there(strict: pytest.Pytester) -> None:
    result = start_up_error(strict, "-o", "smtpd_scop=session")
    result.stderr.fnmatch_lines(["ERROR: -o on the command line: unknown option smtpd_scop; did you mean smtpd_scope?"])


@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "1e400"])
def test_teardown_grace_must_be_finite(strict: pytest.Pytester, value: str) -> None:
    """inf was taken, and held teardown for good on a session left open."""
    strict.makeini(INI + f"smtpd_teardown_grace = {value}\n")
    result = start_up_error(strict)
    result.stderr.fnmatch_lines(
        [f"ERROR: tox.ini: smtpd_teardown_grace = '{value}': expected a finite number of seconds, 0 or more"]
    )


def test_a_bad_smtpd_options_value_is_blamed_on_smtpd_options_not_the_marker(strict: pytest.Pytester) -> None:
    strict.makeconftest(
        """
        import pytest

        @pytest.fixture
        def smtpd_options():
            return {"max_recipients": -3}
        """
    )
    strict.makepyfile(
        """
        import pytest

        @pytest.mark.smtpd(hostname="mx.test")
        def test_marked(smtpd):
            pass
        """
    )
    result = strict.runpytest_inprocess()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["the smtpd_options fixture: max_recipients must be 0 (no limit) or positive, got -3"])
    assert "@pytest.mark.smtpd:" not in result.stdout.str()


def test_save_dir_names_are_unique_per_test_and_readable(strict: pytest.Pytester) -> None:
    long_id = "x" * 200
    strict.makepyfile(
        test_names=f"""
        import smtplib
        import pytest

        @pytest.mark.parametrize("name", ["a/b", "a b", "a_b", "{long_id}1", "{long_id}2"])
        def test_fails(smtpd, name):
            with smtplib.SMTP(smtpd.host, smtpd.port, timeout=10) as client:
                client.sendmail("a@example.com", ["b@example.com"], f"Subject: {{name}}\\r\\n\\r\\n".encode())
            assert False
        """
    )
    result = strict.runpytest_inprocess("--smtpd-save-dir", "saved")
    result.assert_outcomes(failed=5)
    saved = strict.path / "saved"
    eml = sorted(saved.glob("*.eml"))
    assert len(eml) == 5 and len(list(saved.glob("*.mbox"))) == 5
    subjects = sorted(path.read_bytes().split(b"\r\n")[0].decode() for path in eml)
    assert subjects == sorted(f"Subject: {name}" for name in ["a/b", "a b", "a_b", f"{long_id}1", f"{long_id}2"])
    for path in eml:
        stem = path.name[: -len("-1.eml")]
        assert stem.startswith("test_names.py__test_fails_")  # readable: the test's own name
        assert len(stem) <= 150
    # Each name changed (/, space, brackets) or was cut: each ends in its hash.
    assert all(path.name[-17] == "-" and path.name[-16:-6].isalnum() for path in eml)
