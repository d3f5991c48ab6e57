"""The "smtpd" report section's modes and length (``smtpd_report``,
``report=``, ``smtpd_report_lines``), and the "sessions cut off at
teardown" summary, also under pytest-xdist; run inside pytester with real
servers and clients."""

from __future__ import annotations

import re

import pytest
from pytester_helpers import INI, PACKAGE_ROOT

#: A test with a refused recipient, a delivered message and a failed
#: assert_sent: every part of the section has something to show.
REFUSED_AND_MISSED = """
import smtplib
import pytest

def send(smtpd, subject, rcpt="bob@example.com"):
    with smtplib.SMTP(smtpd.host, smtpd.port, timeout=10) as client:
        client.sendmail("app@example.com", [rcpt], f"Subject: {subject}\\r\\nTo: {rcpt}\\r\\n\\r\\nbody\\r\\n".encode())

MARK

def test_fails(smtpd):
    send(smtpd, "Welcome")
    with smtplib.SMTP(smtpd.host, smtpd.port, timeout=10) as client:
        client.ehlo("refused.test")
        client.mail("app@example.com")
        assert client.rcpt("nobody@example.com")[0] == 550
    smtpd.assert_sent(subject="Welcome!")
"""


def section(output: str) -> list[str]:
    """The lines of the first "smtpd" section in ``output``."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip("- ") == "smtpd")
    end = next(i for i in range(start + 1, len(lines)) if lines[i].startswith(("---", "===", "___")))
    return lines[start + 1 : end]


def refusing_project(strict: pytest.Pytester, mark: str = "") -> None:
    strict.makeconftest(
        """
        import pytest

        @pytest.fixture
        def smtpd_options():
            from pytest_smtpd import Fault
            return {"faults": [Fault.reply("RCPT", "550 5.1.1 No such user", match="nobody@")]}
        """
    )
    strict.makepyfile(REFUSED_AND_MISSED.replace("MARK", mark))


def test_summary_by_default_lists_messages_near_miss_and_last_error_without_transcripts(
    strict: pytest.Pytester,
) -> None:
    refusing_project(strict)
    result = strict.runpytest_inprocess()
    result.assert_outcomes(failed=1)
    lines = section(result.stdout.str())
    assert lines[0] == "1 message(s), 2 session(s)"
    assert lines[1] == "message #1: MAIL FROM:<app@example.com> RCPT TO:<bob@example.com>"
    assert lines[2].startswith("  subject 'Welcome', ")
    assert lines[3] == "last failed assertion: expected at least 1 message(s) matching subject='Welcome!', found 0"
    assert lines[4:6] == ["closest, #1:", "  FAIL subject: expected 'Welcome!', got 'Welcome'"]
    assert lines[6].startswith("last error reply: '550 5.1.1 No such user' (to RCPT), in session #2 from 127.0.0.1:")
    assert lines[7] == "1 session(s) ended without a message:"
    assert lines[8].endswith(": said QUIT after RCPT; last error reply: '550 5.1.1 No such user' (to RCPT)")
    assert lines[9:] == ["transcripts: smtpd_report = full, or @pytest.mark.smtpd(report='full')"]


@pytest.mark.parametrize(
    ("ini", "mark"),
    [
        ("smtpd_report = full\n", ""),
        ("", "@pytest.mark.smtpd(report='full')"),
        ("smtpd_report = off\n", "pytestmark = pytest.mark.smtpd(report='full')"),
    ],
    ids=["ini", "marker", "marker-over-ini"],
)
def test_full_adds_each_sessions_transcript(strict: pytest.Pytester, ini: str, mark: str) -> None:
    strict.makeini(INI + ini)
    refusing_project(strict, mark)
    result = strict.runpytest_inprocess()
    result.assert_outcomes(failed=1)
    lines = section(result.stdout.str())
    assert "last failed assertion: expected at least 1 message(s) matching subject='Welcome!', found 0" in lines
    assert any(line.startswith("session #2: ") for line in lines)
    assert any(line.lower().endswith("> rcpt to:<nobody@example.com>") for line in lines)
    assert any(line.endswith("< 550 5.1.1 No such user") for line in lines)
    assert not any(line.startswith("transcripts: ") for line in lines)


@pytest.mark.parametrize(
    ("ini", "mark"),
    [("smtpd_report = off\n", ""), ("smtpd_report = full\n", "@pytest.mark.smtpd(report='off')")],
    ids=["ini", "marker"],
)
def test_off_leaves_the_section_out(strict: pytest.Pytester, ini: str, mark: str) -> None:
    strict.makeini(INI + ini)
    refusing_project(strict, mark)
    result = strict.runpytest_inprocess()
    result.assert_outcomes(failed=1)
    assert "- smtpd -" not in result.stdout.str()
    assert "message #1:" not in result.stdout.str()


MANY = """
import smtplib

def test_many(smtpd):
    with smtplib.SMTP(smtpd.host, smtpd.port, timeout=10) as client:
        for n in range(30):
            client.sendmail("app@example.com", ["bob@example.com"], f"Subject: n{n}\\r\\n\\r\\n".encode())
    assert False
"""


def test_a_long_list_shows_its_ends_and_a_count(strict: pytest.Pytester) -> None:
    strict.makepyfile(MANY)
    result = strict.runpytest_inprocess()
    result.assert_outcomes(failed=1)
    lines = section(result.stdout.str())
    assert lines[0] == "30 message(s), 1 session(s)"
    subjects = [line.split("'")[1] for line in lines if line.startswith("  subject ")]
    assert subjects == ["n0", "n1", "n2", "n3", "n4", "n25", "n26", "n27", "n28", "n29"]
    assert "... 20 more message(s) ..." in lines


@pytest.mark.parametrize(("limit", "expected"), [("5", 6), ("0", 23)])
def test_report_lines_caps_the_section(strict: pytest.Pytester, limit: str, expected: int) -> None:
    strict.makeini(INI + f"smtpd_report_lines = {limit}\n")
    strict.makepyfile(MANY)
    result = strict.runpytest_inprocess()
    result.assert_outcomes(failed=1)
    lines = section(result.stdout.str())
    assert len(lines) == expected
    if limit != "0":
        assert lines[-1] == "... 18 more line(s) cut (smtpd_report_lines = 5)"


# -- sessions cut off at teardown

CUT_OFF = """
import smtplib
import socket
import pytest

held = []

def open_session(smtpd, *commands):
    sock = socket.create_connection(smtpd.address, timeout=10)
    held.append(sock)
    assert sock.recv(1024).startswith(b"220")
    for command in commands:
        sock.sendall(command + b"\\r\\n")
        assert sock.recv(1024)[:1] in b"23"
    return sock

@pytest.mark.parametrize("n", range(2))
def test_left_in_data(smtpd, n):
    open_session(smtpd, b"EHLO lingering.test", b"MAIL FROM:<a@example.com>", b"RCPT TO:<b@example.com>", b"DATA")

def test_left_after_ehlo(smtpd):
    open_session(smtpd, b"EHLO lingering.test")

def test_stops_its_own_server(smtpd):
    client = smtplib.SMTP(smtpd.host, smtpd.port, timeout=10)
    client.ehlo()
    smtpd.stop()  # on purpose: the test's own stop, not teardown's
    client.close()
    [session] = smtpd.sessions
    assert session.ended_by == "stop"

def test_quits_in_time(smtpd):
    with smtplib.SMTP(smtpd.host, smtpd.port, timeout=10) as client:
        client.noop()

def test_tidy():
    for sock in held:
        sock.close()
"""


@pytest.mark.parametrize("xdist", [False, True], ids=["in-process", "xdist-n2"])
def test_cut_off_summary_lists_only_teardowns_sessions_as_the_servers_doing(
    strict: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, xdist: bool
) -> None:
    strict.makepyfile(test_cut=CUT_OFF)
    if xdist:
        monkeypatch.setenv("PYTHONPATH", PACKAGE_ROOT)
        result = strict.runpytest_subprocess("-n", "2", "-p", "xdist", "-o", "smtpd_teardown_grace=0.05", timeout=60)
    else:
        result = strict.runpytest_inprocess("-o", "smtpd_teardown_grace=0.05")
    result.assert_outcomes(passed=6)
    output = result.stdout.str()
    lines = output[output.index("smtpd: sessions cut off at teardown") :].splitlines()[1:]
    listed = sorted(
        re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:PORT", line) for line in lines if line.startswith("test_cut.py::")
    )
    stopped = "session from 127.0.0.1:PORT: stopped by teardown"
    own_421 = "(the server's own 421 closed it)"
    assert listed == [
        f"test_cut.py::test_left_after_ehlo: {stopped} after EHLO {own_421}",
        f"test_cut.py::test_left_in_data[0]: {stopped} while the client was in DATA {own_421}",
        f"test_cut.py::test_left_in_data[1]: {stopped} while the client was in DATA {own_421}",
    ], output
    assert "test_stops_its_own_server" not in output
    assert "(to " not in "\n".join(listed)


def test_a_test_stopping_its_server_is_told_as_that(strict: pytest.Pytester) -> None:
    """The report section of a test that stopped its own server mid-session
    (pt5's case): the server's stop and its 421, not a reply to EHLO."""
    strict.makepyfile(
        """
        import smtplib

        def test_app_sees_server_shutdown(smtpd):
            client = smtplib.SMTP(smtpd.host, smtpd.port, timeout=10)
            client.ehlo()
            smtpd.stop()
            client.close()
            assert False, "fails to show its report"
        """
    )
    result = strict.runpytest_inprocess("-o", "smtpd_report=full")
    result.assert_outcomes(failed=1)
    lines = section(result.stdout.str())
    assert lines[1].startswith("session #1: session from 127.0.0.1:")
    assert lines[1].endswith(": closed by the server's stop() after EHLO (the server's own 421 closed it)")
    result = strict.runpytest_inprocess()  # the summary tells it too
    lines = section(result.stdout.str())
    assert lines[1:3] == ["1 session(s) ended without a message:", lines[2]]
    assert lines[2].endswith(": closed by the server's stop() after EHLO (the server's own 421 closed it)")
    assert "cut off at teardown" not in result.stdout.str()


def test_a_stop_in_the_middle_of_the_message_data_is_told_as_in_data() -> None:
    """Real socket, the message half sent: the server's 421 is no reply "to
    <22" (the size line of the unfinished data, as it read before), and an
    earlier refusal is still told with its command."""
    import socket

    from pytest_smtpd import Fault, Server
    from pytest_smtpd.matching import describe_session_end, last_error_reply

    server = Server(faults=[Fault.reply("RCPT", "550 5.1.1 No such user", match="nobody@")])
    server.start()
    try:
        with socket.create_connection(server.address, timeout=10) as sock:
            reader = sock.makefile("rb")
            assert reader.readline().startswith(b"220")
            for command in [b"EHLO c.test", b"MAIL FROM:<a@x.org>", b"RCPT TO:<nobody@x.org>", b"RCPT TO:<b@x.org>"]:
                sock.sendall(command + b"\r\n")
                while reader.readline()[3:4] == b"-":
                    pass
            sock.sendall(b"DATA\r\n")
            assert reader.readline().startswith(b"354")
            # Read or not yet read by the server when it stops, the data
            # is unfinished: the transcript's size line or the 354 says so.
            sock.sendall(b"Subject: half\r\n\r\npartial")
            session = server.sessions[0]
            server.stop()
    finally:
        server.stop()
    text = describe_session_end(session, by_teardown=True)
    assert text.endswith(
        ": stopped by teardown while the client was in DATA (the server's own 421 closed it);"
        " last error reply: '550 5.1.1 No such user' (to RCPT)"
    )
    assert last_error_reply(session) == "'550 5.1.1 No such user' (to RCPT)"
