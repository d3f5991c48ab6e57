"""What a failing test leaves behind, run inside pytester: the "smtpd"
report section, ``--smtpd-save-dir`` files, and smtpdfix beside us."""

from __future__ import annotations

import base64
import mailbox
from pathlib import Path

import pytest
from pytester_helpers import INI

FAILING_AND_PASSING = """
import smtplib

def send(smtpd, subject):
    with smtplib.SMTP(smtpd.host, smtpd.port, timeout=10) as client:
        client.sendmail("app@example.com", ["bob@example.com", "eve@example.com"],
                        f"Subject: {subject}\\r\\n\\r\\nbody\\r\\n".encode())

def test_fails(smtpd):
    send(smtpd, "first")
    send(smtpd, "second")
    assert False, "fails on purpose"

def test_passes(smtpd):
    send(smtpd, "fine")
"""


def test_failing_test_report_has_an_smtpd_section(strict: pytest.Pytester) -> None:
    strict.makepyfile(FAILING_AND_PASSING)
    result = strict.runpytest_inprocess("-rA")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*- smtpd -*",
            "2 message(s), * session(s)",
            "message #1: MAIL FROM:<app@example.com> RCPT TO:<bob@example.com>, <eve@example.com>",
            "  subject 'first', * bytes, TLS none, AUTH none",
            "message #2: *",
            "  subject 'second', *",
        ]
    )
    # The passing test's report (shown by -rA) has no such section.
    assert "subject 'fine'" not in result.stdout.str()


def test_save_dir_keeps_failing_tests_messages(strict: pytest.Pytester) -> None:
    strict.makepyfile(test_mail=FAILING_AND_PASSING)
    result = strict.runpytest_inprocess("--smtpd-save-dir", "mail-artifacts")
    result.assert_outcomes(passed=1, failed=1)
    saved = strict.path / "mail-artifacts"
    assert sorted(p.name for p in saved.iterdir()) == [
        "test_mail.py__test_fails-1.eml",
        "test_mail.py__test_fails-2.eml",
        "test_mail.py__test_fails.mbox",
    ]
    assert (saved / "test_mail.py__test_fails-2.eml").read_bytes() == b"Subject: second\r\n\r\nbody\r\n"
    box = mailbox.mbox(saved / "test_mail.py__test_fails.mbox")
    try:
        messages = list(box)
        assert [message["Subject"] for message in messages] == ["first", "second"]
        assert messages[0].get_from().startswith("app@example.com ")
    finally:
        box.close()


def test_save_dir_from_the_ini_file_is_relative_to_the_rootdir(strict: pytest.Pytester) -> None:
    strict.makeini(INI + "smtpd_save_dir = build/mail\n")
    strict.makepyfile(test_mail=FAILING_AND_PASSING)
    (strict.path / "sub").mkdir()
    result = strict.runpytest_inprocess(str(strict.path / "test_mail.py"), "--rootdir", str(strict.path))
    result.assert_outcomes(passed=1, failed=1)
    assert len(list(Path(strict.path, "build", "mail").glob("*.eml"))) == 2


SMTPDFIX_STYLE = """
import smtplib

def test_smtpdfix_style(smtpd):
    with smtplib.SMTP(smtpd.hostname, smtpd.port) as client:
        assert client.noop()[0] == 250
"""

OURS = """
from pytest_smtpd import Server

def test_ours(smtpd):
    assert isinstance(smtpd, Server)
"""


def test_beside_smtpdfix_ours_wins_and_a_header_line_says_how_to_choose(strict: pytest.Pytester) -> None:
    strict.makepyfile(OURS)
    result = strict.runpytest_inprocess()
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            "smtpd: pytest-smtpd and smtpdfix both define the smtpd fixture; pytest-smtpd's wins."
            " Use -p no:pytest-smtpd for smtpdfix's, or -p no:smtpd to turn smtpdfix off."
        ]
    )


def test_p_no_smtpd_turns_off_smtpdfix_only(strict: pytest.Pytester) -> None:
    strict.makepyfile(OURS)
    result = strict.runpytest_inprocess("-p", "no:smtpd")
    result.assert_outcomes(passed=1)
    assert "smtpdfix-" not in result.stdout.str()  # not among the plugins
    assert "both define" not in result.stdout.str()


def test_p_no_pytest_smtpd_gives_smtpdfix_its_fixture(strict: pytest.Pytester) -> None:
    strict.makepyfile(SMTPDFIX_STYLE)
    result = strict.runpytest_subprocess("-p", "no:pytest-smtpd", timeout=60)
    result.assert_outcomes(passed=1)
    assert "both define" not in result.stdout.str()


def test_section_shows_session_transcripts_cut_to_a_readable_length() -> None:
    """The section's text from session records shaped as ``Server.sessions``
    holds them (pure: no server)."""
    from dataclasses import dataclass, field

    from pytest_smtpd.report import MAX_SECTION_LINES, MAX_TRANSCRIPT_LINES, describe

    @dataclass
    class Entry:
        direction: str
        line: str
        time: float

    @dataclass
    class Session:
        peer: tuple[str, int]
        ended_by: str | None
        commands: list[str]
        transcript: list[Entry] = field(default_factory=list)
        messages: list[object] = field(default_factory=list)

    login = Session(
        ("127.0.0.1", 5000),
        "quit",
        ["EHLO", "AUTH", "QUIT"],
        [
            Entry("server", "220 mx.test ESMTP", 0.0),
            Entry("client", "EHLO client.test", 0.001),
            Entry("client", "AUTH PLAIN ****", 0.002),
            Entry("server", "535 5.7.8 Authentication credentials invalid", 0.003),
        ],
    )
    chatty = Session(
        ("127.0.0.1", 5001), "client", ["NOOP"] * 60, [Entry("client", "NOOP", n / 1000) for n in range(60)]
    )
    text = describe([], [login, chatty])
    lines = text.splitlines()
    assert lines[:6] == [
        "0 message(s), 2 session(s)",
        "session #1: session from 127.0.0.1:5000: said QUIT after AUTH;"
        " last error reply: '535 5.7.8 Authentication credentials invalid' (to AUTH)",
        "    0.000 < 220 mx.test ESMTP",
        "    0.001 > EHLO client.test",
        "    0.002 > AUTH PLAIN ****",
        "    0.003 < 535 5.7.8 Authentication credentials invalid",
    ]
    assert lines[6] == "session #2: session from 127.0.0.1:5001: the client hung up after NOOP"
    assert lines[7 + MAX_TRANSCRIPT_LINES] == f"  ... {60 - MAX_TRANSCRIPT_LINES} more line(s)"
    many = describe([], [chatty] * 10)
    assert len(many.splitlines()) == MAX_SECTION_LINES + 1
    assert many.splitlines()[-1].endswith(f"more line(s) cut (smtpd_report_lines = {MAX_SECTION_LINES})")


def test_section_has_each_sessions_transcript_with_secrets_masked(strict: pytest.Pytester) -> None:
    strict.makepyfile(
        """
        import smtplib
        import pytest

        @pytest.mark.smtpd(auth={"alice": "s3cret-password"}, report="full")
        def test_fails(smtpd):
            with smtplib.SMTP(smtpd.host, smtpd.port, timeout=10) as client:
                client.login("alice", "s3cret-password")
                client.sendmail("app@example.com", ["bob@example.com"], b"Subject: hi\\r\\n\\r\\n" + b"x" * 500)
            assert False
        """
    )
    result = strict.runpytest_inprocess()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*- smtpd -*",
            "1 message(s), 1 session(s)",
            "message #1: MAIL FROM:<app@example.com> RCPT TO:<bob@example.com>",
            "  subject 'hi', * bytes, TLS none, AUTH alice",
            "session #1: session from 127.0.0.1:*: said QUIT after DATA",
            "*> AUTH *",
            "*< 235 *",
            "*> <* bytes of message data>",
        ]
    )
    output = result.stdout.str()
    section = output[output.index("- smtpd -") : output.index("short test summary")]
    secret = base64.b64encode(b"\0alice\0s3cret-password").decode()
    assert "s3cret" not in section and secret not in output


def test_sessions_cut_off_at_teardown_are_named_at_the_end(strict: pytest.Pytester) -> None:
    strict.makepyfile(
        """
        import socket

        held = []

        def test_leaves_a_session_open(smtpd):
            sock = socket.create_connection(smtpd.address, timeout=10)
            held.append(sock)
            assert sock.recv(1024).startswith(b"220")
            sock.sendall(b"EHLO lingering.test\\r\\n")
            assert sock.recv(1024).startswith(b"250")

        def test_tidy(smtpd):
            for sock in held:
                sock.close()
        """
    )
    result = strict.runpytest_inprocess("-o", "smtpd_teardown_grace=0.05")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        [
            "*- smtpd: sessions cut off at teardown -*",
            "test_sessions_cut_off_at_teardown_are_named_at_the_end.py::test_leaves_a_session_open:"
            " session from 127.0.0.1:*: stopped by teardown after EHLO (the server's own 421 closed it)",
        ]
    )
    assert "test_tidy:" not in result.stdout.str()


def test_ours_wins_whichever_plugin_was_registered_first(strict: pytest.Pytester) -> None:
    """Registered as a module with -p, our plugin comes before smtpdfix's
    entry point, whose ``smtpd`` would then win: ours is put last again."""
    strict.makepyfile(OURS)
    result = strict.runpytest_inprocess("-p", "no:pytest-smtpd", "-p", "pytest_smtpd.plugin")
    result.assert_outcomes(passed=1)


@pytest.mark.parametrize("definition", ["@pytest.fixture\ndef smtpd():", "@pytest.fixture(name='smtpd')\ndef mine():"])
def test_a_conftest_override_of_smtpd_still_wins(strict: pytest.Pytester, definition: str) -> None:
    strict.makeconftest(f"import pytest\n\n{definition}\n    return 'mine'\n")
    strict.makepyfile("def test_mine(smtpd):\n    assert smtpd == 'mine'\n")
    strict.runpytest_inprocess().assert_outcomes(passed=1)
    strict.runpytest_inprocess("-p", "no:pytest-smtpd", "-p", "pytest_smtpd.plugin").assert_outcomes(passed=1)


def test_the_entry_point_is_named_as_the_plugin_says() -> None:
    """``-p no:pytest-smtpd`` in the docs works only under this name (and
    ``pytest_smtpd`` would be blocked by smtpdfix's ``-p no:smtpd`` too)."""
    from importlib.metadata import entry_points

    from pytest_smtpd.plugin import PLUGIN_NAME

    ours = [ep for ep in entry_points(group="pytest11") if ep.value == "pytest_smtpd.plugin"]
    assert [ep.name for ep in ours] == [PLUGIN_NAME]
