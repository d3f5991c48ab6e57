"""The fixture's life over a suite (issue 19), run inside pytester with real
sockets: nothing outlives a test's report, a shared server is put back as
configured before each test, mail belongs to the test its session began
in (the late-mail warning otherwise), strict mode, ``SMTPD_PORT`` under
xdist; and a port-0 server restarted on its old port."""

from __future__ import annotations

import smtplib
import socket
import warnings

import pytest
from pytester_helpers import INI, SESSION_INI
from test_plugin_config import free_ports

from pytest_smtpd import FixtureServer, Server

# -- flat memory ------------------------------------------------------------------

HELD_CHECK = """
    import gc
    import smtplib
    import sys
    import weakref

    import pytest
    from pytest_smtpd.message import Message
    from pytest_smtpd.sessions import Session

    servers = {}

    def send(smtpd, subject):
        with smtplib.SMTP(smtpd.host, smtpd.port, timeout=10) as client:
            data = f"Subject: {subject}\\r\\n\\r\\n".encode() + b"x" * 50000
            client.sendmail("a@example.com", ["b@example.com"], data)

    @pytest.mark.parametrize("n", range(3))
    def test_passes(smtpd, n):
        send(smtpd, f"passes {n}")
        smtpd.assert_sent(subject=f"passes {n}")
        servers[n] = weakref.ref(smtpd)

    def test_fails(smtpd):
        send(smtpd, "fails")
        servers["failing"] = weakref.ref(smtpd)
        assert False, "this test fails: its report has an smtpd section"

    def test_zz_nothing_is_held():
        # pytest keeps the last failure's traceback (and with it the frame of
        # the failing test) for post-mortem debugging: not the plugin's to drop.
        sys.last_traceback = sys.last_value = sys.last_exc = None
        # The passing tests' mail is freed as soon as let go of, not left to
        # the garbage collector (the failing test's traceback is a cycle).
        assert [o for o in gc.get_objects() if isinstance(o, Message) and o.subject.startswith("passes")] == []
        gc.collect()
        assert [o for o in gc.get_objects() if isinstance(o, (Message, Session))] == []
        alive = [name for name, ref in servers.items() if ref() is not None]
        assert len(servers) == 4 and alive == ([] if SCOPE == "function" else [0, 1, 2, "failing"])
"""


@pytest.mark.parametrize("scope", ["function", "session"])
def test_no_server_message_or_session_outlives_its_tests_reports(strict: pytest.Pytester, scope: str) -> None:
    save_dir = strict.path / "saved"
    strict.makeini(INI + f"smtpd_scope = {scope}\nsmtpd_save_dir = {save_dir}\n")
    strict.makepyfile(f"SCOPE = {scope!r}\n" + HELD_CHECK.replace("\n    ", "\n"))
    # In a subprocess: an inline run's hook recorder keeps every call's traceback.
    result = strict.runpytest_subprocess(timeout=60)
    result.assert_outcomes(passed=4, failed=1)
    # The failing test's report and saved mail were made before its server went.
    result.stdout.fnmatch_lines(["*- smtpd -*", "1 message(s), 1 session(s)*"])
    assert sorted(path.suffix for path in save_dir.iterdir()) == [".eml", ".mbox"]


# -- a shared server that isolates ------------------------------------------------------


def test_what_a_test_changes_on_the_shared_server_is_undone_before_the_next(strict: pytest.Pytester) -> None:
    strict.makeini(SESSION_INI)
    strict.makeconftest(
        """
        import pytest

        @pytest.fixture(scope="session")
        def smtpd_options():
            return {"timeout": 30, "max_connections": 5, "faults": ["HELO=554 5.7.1 no HELO here"]}
        """
    )
    strict.makepyfile(
        """
        import dataclasses
        import smtplib
        import pytest

        ports = []

        def send(smtpd):
            with smtplib.SMTP(smtpd.host, smtpd.port, timeout=10) as client:
                client.sendmail("a@example.com", ["b@example.com"], b"Subject: x\\r\\n\\r\\nx\\r\\n")

        def test_1_stops_it(smtpd):
            ports.append(smtpd.port)
            send(smtpd)
            smtpd.stop()
            with pytest.raises(OSError):
                send(smtpd)

        def test_2_changes_everything(smtpd):
            assert smtpd.is_running() and smtpd.port == ports[0]
            assert list(smtpd.messages) == [] and list(smtpd.sessions) == []
            send(smtpd)
            smtpd.handler = lambda message: "550 5.7.1 rejected"
            smtpd.timeout = 0.5
            smtpd.max_connections = 1
            smtpd.keep_messages = False
            smtpd.session_config = dataclasses.replace(smtpd.session_config, data_size_limit=10)
            smtpd.faults.reply("MAIL", "451 4.3.0 try later")
            smtpd.faults.reply("EHLO", "554 5.7.1 no EHLO either")

        def test_3_gets_it_as_configured(smtpd):
            assert smtpd.is_running() and smtpd.port == ports[0]
            assert list(smtpd.messages) == [] and list(smtpd.sessions) == []
            assert smtpd.handler is None and smtpd.keep_messages
            assert (smtpd.timeout, smtpd.max_connections) == (30, 5)
            assert smtpd.session_config.data_size_limit == 33554432
            assert [str(rule.fault) for rule in smtpd.faults.rules] == [str(smtpd.faults.rules[0].fault)]
            with smtplib.SMTP(smtpd.host, smtpd.port, timeout=10) as client:
                assert client.helo()[0] == 554  # the configured fault is back, counting again
            send(smtpd)
            [message] = smtpd.assert_sent(subject="x")
            assert message.test == smtpd.sessions[-1].test
        """
    )
    strict.runpytest_inprocess().assert_outcomes(passed=3)


# -- attribution --------------------------------------------------------------------------


def test_sessions_and_messages_carry_the_test_they_began_in(strict: pytest.Pytester) -> None:
    strict.makepyfile(
        """
        import smtplib

        def test_attributed(smtpd, request):
            with smtplib.SMTP(smtpd.host, smtpd.port, timeout=10) as client:
                client.sendmail("a@example.com", ["b@example.com"], b"Subject: x\\r\\n\\r\\n")
            [message] = smtpd.messages
            assert message.test == smtpd.sessions[0].test == request.node.nodeid
            assert request.node.nodeid.endswith("::test_attributed")
        """
    )
    strict.runpytest_inprocess().assert_outcomes(passed=1)


POOLED = """
    import smtplib

    pool = []

    def test_a_opens_a_pooled_connection(smtpd):
        client = smtplib.SMTP(smtpd.host, smtpd.port, timeout=10)
        client.ehlo()
        pool.append(client)

    def test_b_sends_on_it(smtpd):
        pool[0].sendmail("pool@example.com", ["b@example.com"], b"Subject: pooled\\r\\n\\r\\n")
        pool[0].quit()
        with smtplib.SMTP(smtpd.host, smtpd.port, timeout=10) as client:
            client.sendmail("own@example.com", ["b@example.com"], b"Subject: own\\r\\n\\r\\n")
        smtpd.assert_not_sent(subject="pooled")
        assert [message.subject for message in smtpd.messages] == ["own"]
        assert [session.helo for session in smtpd.sessions] != []
        assert all(session.test.endswith("test_b_sends_on_it") for session in smtpd.sessions)
"""


def test_mail_of_a_session_begun_in_an_earlier_test_is_not_the_next_tests(strict: pytest.Pytester) -> None:
    strict.makeini(SESSION_INI)
    strict.makepyfile(POOLED.replace("\n    ", "\n"))
    result = strict.runpytest_inprocess()
    # filterwarnings = error: the warning fails test_b's teardown, naming both tests.
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_b_sends_on_it*",
            "*SMTPDLateMessageWarning: <Message from 'pool@example.com'*subject 'pooled'> reached the shared"
            " smtpd server in a session that began in *::test_a_opens_a_pooled_connection;"
            " *::test_b_sends_on_it does not see it",
        ]
    )
    result = strict.runpytest_inprocess("-W", "default::pytest_smtpd.plugin.SMTPDLateMessageWarning")
    result.assert_outcomes(passed=2, warnings=1)


def test_mail_of_a_session_begun_between_tests_is_a_warning_naming_the_test_before(strict: pytest.Pytester) -> None:
    strict.makeini(SESSION_INI)
    strict.makepyfile(
        """
        import smtplib

        address = []

        def test_first(smtpd):
            address.append(smtpd.address)

        def test_a_late_background_job():
            with smtplib.SMTP(*address[0], timeout=10) as client:
                client.sendmail("job@example.com", ["b@example.com"], b"Subject: late report\\r\\n\\r\\n")

        def test_next(smtpd):
            assert list(smtpd.messages) == []
        """
    )
    result = strict.runpytest_inprocess()
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(
        ["*SMTPDLateMessageWarning: <Message from 'job@example.com'*subject 'late report'>*test_next does not see it"]
    )
    # Not an error where warnings are shown rather than raised; the next test still starts empty.
    result = strict.runpytest_inprocess("-W", "default::pytest_smtpd.plugin.SMTPDLateMessageWarning")
    result.assert_outcomes(passed=3, warnings=1)
    result.stdout.fnmatch_lines(
        ["*in a session that began between tests (after *::test_first ended); *::test_next does not see it"]
    )


XDIST_APP = """
    # conftest.py: the app's settings are read as the first conftest loads
    import os

    import pytest

    MAIL_PORT = int(os.environ["SMTPD_PORT"])

    @pytest.fixture
    def send_mail():
        import smtplib

        def send(subject):
            with smtplib.SMTP("127.0.0.1", MAIL_PORT, timeout=10) as client:
                client.sendmail("app@example.com", ["b@example.com"], f"Subject: {subject}\\r\\n\\r\\n".encode())

        return send
"""


def app_suite(pytester: pytest.Pytester, ini: str) -> None:
    """A suite with ``ini`` whose app reads its mail port as XDIST_APP does."""
    pytester.makeini(ini)
    pytester.makeconftest(XDIST_APP.replace("\n    ", "\n"))


def test_under_xdist_each_workers_app_reads_its_port_from_smtpd_port(strict: pytest.Pytester) -> None:
    port = free_ports(2)
    app_suite(strict, SESSION_INI + f"smtpd_port = {port}\n")
    strict.makepyfile(
        f"""
        import os
        import conftest
        import pytest

        @pytest.mark.parametrize("n", range(8))
        def test_app_mail(smtpd, send_mail, n):
            assert conftest.MAIL_PORT == smtpd.port == {port} + int(os.environ["PYTEST_XDIST_WORKER"][2:])
            send_mail(f"mail {{n}}")
            [message] = smtpd.assert_sent(count=1)
            assert message.subject == f"mail {{n}}" and message.test.endswith(f"[{{n}}]")
        """
    )
    # filterwarnings = error: a false late-mail warning would be an error.
    result = strict.runpytest_subprocess("-n", "2", "-p", "xdist", timeout=60)
    result.assert_outcomes(passed=8)


def test_smtpd_port_is_set_without_xdist_and_put_back_after(strict: pytest.Pytester) -> None:
    port = free_ports(1)
    app_suite(strict, INI + f"smtpd_port = {port}\n")
    strict.makepyfile(
        f"""
        import conftest

        def test_app_mail(smtpd, send_mail):
            assert conftest.MAIL_PORT == smtpd.port == {port}
            send_mail("hello")
            smtpd.assert_sent(subject="hello")
        """
    )
    strict.runpytest_inprocess().assert_outcomes(passed=1)
    import os

    assert "SMTPD_PORT" not in os.environ


# -- strict mode ------------------------------------------------------------------------------

STRICT_TESTS = """
    import smtplib
    import pytest

    def send(smtpd, *subjects):
        with smtplib.SMTP(smtpd.host, smtpd.port, timeout=10) as client:
            for subject in subjects:
                client.sendmail("a@example.com", ["b@example.com"], f"Subject: {subject}\\r\\n\\r\\n".encode())

    def test_one_never_looked_at(smtpd):
        send(smtpd, "seen", "unseen")
        smtpd.assert_sent(subject="seen")

    def test_none_looked_at(smtpd):
        send(smtpd, "a", "b")
        assert len(smtpd.messages) == 2   # counting is not looking

    def test_only_a_snapshot_taken(smtpd):
        send(smtpd, "a", "b")
        # a copy for reporting, as the failure report reads it: not looking
        assert [m.subject for m in smtpd.messages.snapshot()] == ["a", "b"]

    @pytest.mark.parametrize("look", ["iteration", "indexing", "slice", "last", "filter", "wait_for", "assert_sent"])
    def test_looked_at(smtpd, look):
        send(smtpd, "a", "b")
        if look == "iteration":
            assert [m.subject for m in smtpd.messages] == ["a", "b"]
        elif look == "indexing":
            assert smtpd.messages[0].subject == "a" and smtpd.messages[1].subject == "b"
        elif look == "slice":
            assert len(smtpd.messages[:]) == 2
        elif look == "last":
            assert smtpd.messages[0] and smtpd.messages.last.subject == "b"
        elif look == "filter":
            assert len(smtpd.messages.filter(rcpt_to="b@example.com")) == 2
        elif look == "wait_for":
            assert len(smtpd.messages.wait_for(count=2, timeout=5)) == 2
        else:
            smtpd.assert_sent(count=2)

    def test_failing_says_only_its_failure(smtpd):
        send(smtpd, "a")
        assert False, "the test's own failure"

    @pytest.mark.smtpd(strict=False)
    def test_marker_turns_it_off(smtpd):
        send(smtpd, "a")
"""


@pytest.mark.parametrize("scope", ["function", "session"])
def test_strict_mode_fails_a_test_at_teardown_for_mail_it_never_looked_at(strict: pytest.Pytester, scope: str) -> None:
    strict.makeini(INI + f"smtpd_strict = true\nsmtpd_scope = {scope}\n")
    strict.makepyfile(STRICT_TESTS.replace("\n    ", "\n"))
    result = strict.runpytest_inprocess()
    result.assert_outcomes(passed=11, failed=1, errors=3)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_one_never_looked_at*",
            "smtpd strict mode: 1 message(s) arrived that the test never looked at (with assert_sent, wait_for,"
            " filter, last, indexing or iteration):",
            "  <Message from 'a@example.com' to *, * bytes, subject 'unseen'>",
        ]
    )
    result.stdout.fnmatch_lines(["*ERROR at teardown of test_none_looked_at*", "smtpd strict mode: 2 message(s)*"])
    result.stdout.fnmatch_lines(
        ["*ERROR at teardown of test_only_a_snapshot_taken*", "smtpd strict mode: 2 message(s)*"]
    )
    assert "ERROR at teardown of test_failing_says_only_its_failure" not in result.stdout.str()


def test_strict_marker_without_the_ini(strict: pytest.Pytester) -> None:
    strict.makepyfile(
        """
        import smtplib
        import pytest

        def send(smtpd):
            with smtplib.SMTP(smtpd.host, smtpd.port, timeout=10) as client:
                client.sendmail("a@example.com", ["b@example.com"], b"Subject: x\\r\\n\\r\\n")

        @pytest.mark.smtpd(strict=True)
        def test_strict(smtpd):
            send(smtpd)

        def test_lenient_by_default(smtpd):
            send(smtpd)
        """
    )
    result = strict.runpytest_inprocess()
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*ERROR at teardown of test_strict*", "smtpd strict mode: 1 message(s)*"])


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("ini", "*smtpd_strict = 'maybe': expected true or false*"),
        ("marker", "*@pytest.mark.smtpd: strict must be True or False, got 'yes'*"),
    ],
)
def test_a_bad_strict_value_is_a_clear_error(strict: pytest.Pytester, where: str, expected: str) -> None:
    if where == "ini":
        strict.makeini(INI + "smtpd_strict = maybe\n")
        strict.makepyfile("def test_x(smtpd):\n    pass\n")
    else:
        strict.makepyfile(
            "import pytest\n\n@pytest.mark.smtpd(strict='yes')\ndef test_x(smtpd):\n    pass\n",
        )
    result = strict.runpytest_subprocess(timeout=60)
    assert result.ret != 0
    result.stderr.fnmatch_lines([expected]) if where == "ini" else result.stdout.fnmatch_lines([expected])


# -- Server.reset and the port-0 restart -----------------------------------------------------------


def test_reset_puts_back_the_attributes_the_server_was_made_with() -> None:
    server = Server(timeout=30, max_connections=2)
    server.handler = lambda message: "550 no"
    server.timeout = 1
    server.max_connections = 0
    server.keep_messages = False
    assert server.reset() == []
    assert server.handler is None
    assert (server.timeout, server.max_connections, server.keep_messages) == (30, 2, True)


def test_a_port_0_server_restarted_binds_its_previous_port() -> None:
    server = Server()
    with server:
        first = server.port
    with server:
        assert server.port == first
        with smtplib.SMTP(*server.address, timeout=10) as client:
            assert client.noop()[0] == 250


def test_a_port_0_server_whose_port_was_taken_meanwhile_warns_and_takes_a_new_one() -> None:
    server = Server()
    with server:
        first = server.port
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", first))
        squatter.listen()
        with pytest.warns(RuntimeWarning, match=f"127.0.0.1:{first}, this server's port before it stopped, is in use"):
            server.start()
        second = server.port
        try:
            assert second not in (0, first)
            with smtplib.SMTP(*server.address, timeout=10) as client:
                assert client.noop()[0] == 250
        finally:
            server.stop()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with server:  # its latest port, free again
            assert server.port == second


def test_the_async_reads_count_as_looked_at_too(smtpd: FixtureServer) -> None:
    import asyncio

    with smtplib.SMTP(*smtpd.address, timeout=10) as client:
        for subject in ("a", "b", "c"):
            client.sendmail("a@example.com", ["b@example.com"], f"Subject: {subject}\r\n\r\n".encode())
    assert len(smtpd.messages.not_looked_at()) == 3
    asyncio.run(smtpd.messages.wait_for_async(count=1, timeout=5))
    assert [m.subject for m in smtpd.messages.not_looked_at()] == ["b", "c"]
    asyncio.run(smtpd.assert_sent_async(subject="b"))
    assert [m.subject for m in smtpd.messages.not_looked_at()] == ["c"]
    smtpd.assert_not_sent(subject="d")  # a negative assertion returns nothing: nothing looked at
    assert [m.subject for m in smtpd.messages.not_looked_at()] == ["c"]


def test_linting_at_teardown_is_not_looking_for_strict_mode(strict: pytest.Pytester) -> None:
    strict.makeini(INI + "smtpd_strict = true\nsmtpd_lint = error\n")
    strict.makepyfile(
        """
        import smtplib
        from email.message import EmailMessage
        from email.utils import formatdate, make_msgid

        def test_sends(smtpd):
            message = EmailMessage()
            message["From"], message["To"], message["Subject"] = "a@example.com", "b@example.com", "hello"
            message["Date"], message["Message-ID"] = formatdate(), make_msgid(domain="example.com")
            message.set_content("hi")
            with smtplib.SMTP(smtpd.host, smtpd.port, timeout=10) as client:
                client.send_message(message)
        """
    )
    result = strict.runpytest_inprocess()
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["smtpd strict mode: 1 message(s) arrived that the test never looked at*"])
