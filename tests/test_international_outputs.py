"""Every output that writes an internationalized message (issue 18): the
``--smtpd-save-dir`` files, the failure report section, the trace, the
``DebuggingServer`` print-out and the command line; and a failure while
saving or reporting is a warning, never the end of the pytest run."""

from __future__ import annotations

import io
import logging
import mailbox
import smtplib
import time
from pathlib import Path

import pytest
from peers import Spawned
from pytester_helpers import strict_ini

from conftest import TIMEOUT
from pytest_smtpd import DebuggingServer, Message, Server
from pytest_smtpd.report import mbox_entry, save_artifacts

SENDER = "josé@例え.jp"
DATA = (
    "From: José <josé@例え.jp>\r\nTo: jürgen@bücher.de\r\nSubject: Grüße aus 東京\r\n\r\n"
    "From here, a line an mbox reader would take for a new message.\r\nÄrger.\r\n"
).encode()

TESTS = f"""
import smtplib
import pytest

DATA = {DATA!r}

@pytest.mark.smtpd(enable_SMTPUTF8=True)
def test_fails(smtpd):
    with smtplib.SMTP(smtpd.host, smtpd.port, timeout=10) as client:
        client.sendmail({SENDER!r}, ["jürgen@bücher.de"], DATA, mail_options=["SMTPUTF8"])
    smtpd.assert_sent(to="jörg@bücher.de")

def test_runs_after_it(smtpd):
    assert smtpd.messages == []
"""


def test_a_failing_test_with_a_utf8_sender_is_saved_and_the_run_goes_on(strict: pytest.Pytester) -> None:
    """The regression test for the INTERNALERROR of ``mailbox`` refusing a
    non-ASCII ``From_`` line: the run ended (exit 3) at the first such failure."""
    strict.makepyfile(test_mail=TESTS)
    result = strict.runpytest_inprocess("--smtpd-save-dir", "saved", "-o", "smtpd_report=full")
    result.assert_outcomes(passed=1, failed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()
    # The near miss and the report section show the addresses as written.
    out = result.stdout.str()
    assert "FAIL to: 'jörg@bücher.de' not in ['jürgen@bücher.de']" in out
    assert "message #1: MAIL FROM:<josé@例え.jp> RCPT TO:<jürgen@bücher.de>\n  subject 'Grüße aus 東京', " in out
    # smtplib's case varies by version: "mail FROM:" before 3.13, "mail from:" since.
    assert f"> mail from:<{SENDER}> size={len(DATA)} smtputf8" in out.lower()
    assert "\\udc" not in result.stdout.str()
    saved = strict.path / "saved"
    assert (saved / "test_mail.py__test_fails-1.eml").read_bytes() == DATA
    box = mailbox.mbox(saved / "test_mail.py__test_fails.mbox")
    try:
        [entry] = list(box)
        # An ASCII From_ line (mbox readers take nothing else), the A-label domain.
        assert entry.get_from().startswith("jos\\x{E9}@xn--r8jz45g.jp ")
        assert b"\n\n>From here, a line" in entry.as_bytes()
        assert "Subject: Grüße aus 東京\n".encode() in entry.as_bytes()
    finally:
        box.close()


BROKEN_SAVE = """
import pathlib
import smtplib

def test_fails(smtpd):
    # Where the save dir should go, a file appears while the run goes on.
    pathlib.Path("not-a-dir").write_text("a file where the directory should be")
    with smtplib.SMTP(smtpd.host, smtpd.port, timeout=10) as client:
        client.sendmail("a@example.com", ["b@example.com"], b"Subject: one\\r\\n\\r\\nbody\\r\\n")
    assert False, "fails on purpose"

def test_runs_after_it(smtpd):
    pass
"""


def test_a_save_dir_that_cannot_be_written_is_a_warning_naming_the_test(strict: pytest.Pytester) -> None:
    strict.makepyfile(test_mail=BROKEN_SAVE)
    # Not -W error here: the warning should be shown as a warning.
    strict.makeini(strict_ini(warnings="default"))
    result = strict.runpytest_inprocess("--smtpd-save-dir", "not-a-dir")
    result.assert_outcomes(passed=1, failed=1, warnings=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        [
            "*SMTPDReportWarning: test_mail.py::test_fails: saving its messages to *not-a-dir failed:"
            " FileExistsError: *",
        ]
    )


def test_under_w_error_the_trouble_is_a_report_section_not_an_internal_error(strict: pytest.Pytester) -> None:
    """With warnings as errors the warning would be raised inside pytest's
    hook (INTERNALERROR): it goes into the test's report instead."""
    strict.makepyfile(test_mail=BROKEN_SAVE)
    result = strict.runpytest_inprocess("--smtpd-save-dir", "not-a-dir")
    result.assert_outcomes(passed=1, failed=1)
    assert "INTERNALERROR" not in result.stdout.str()
    result.stdout.fnmatch_lines(["*- smtpd warning -*", "test_mail.py::test_fails: saving its messages to * failed: *"])


def test_a_report_section_that_cannot_be_built_is_a_warning(strict: pytest.Pytester) -> None:
    strict.makeini(strict_ini(warnings="default"))
    strict.makeconftest(
        "import pytest\n"
        "import pytest_smtpd.report\n"
        "def broken(*args, **kwargs):\n"
        "    raise RuntimeError('cannot describe')\n"
        "@pytest.fixture(autouse=True)\n"
        "def broken_report(monkeypatch):\n"
        "    monkeypatch.setattr(pytest_smtpd.report, 'section', broken)\n"
    )
    strict.makepyfile(test_mail=BROKEN_SAVE)
    result = strict.runpytest_inprocess()
    result.assert_outcomes(passed=1, failed=1, warnings=1)
    result.stdout.fnmatch_lines(
        ["*test_mail.py::test_fails: building the smtpd report section failed: RuntimeError: cannot describe"]
    )


def message(mail_from: str, data: bytes) -> Message:
    return Message(peer=("127.0.0.1", 1), mail_from=mail_from, rcpt_tos=["b@example.com"], data=data, received_at=0)


def test_mbox_entries_keep_the_data_and_an_ascii_from_line(tmp_path: Path) -> None:
    entries = [
        message(SENDER, DATA),
        message("", b"Subject: bounce\r\n\r\n>From quoted once\r\n"),
        message('"two words"@例え.jp', b"Subject: x\r\n\r\nno final line ending"),
    ]
    written = save_artifacts(entries, tmp_path, "t.py::test")
    assert [path.name for path in written] == [
        "t.py__test-1.eml",
        "t.py__test-2.eml",
        "t.py__test-3.eml",
        "t.py__test.mbox",
    ]
    assert [path.read_bytes() for path in written[:3]] == [entry.data for entry in entries]
    stamp = time.asctime(time.gmtime(0))
    assert (
        mbox_entry(entries[1])
        == f"From MAILER-DAEMON {stamp}\n".encode() + b"Subject: bounce\n\n>>From quoted once\n\n"
    )
    assert mbox_entry(entries[2]).startswith(f'From "two_words"@xn--r8jz45g.jp {stamp}\n'.encode())
    assert mbox_entry(entries[2]).endswith(b"\n\nno final line ending\n\n")
    box = mailbox.mbox(written[-1])
    try:
        subjects = ["Subject: Grüße aus 東京\n".encode(), b"Subject: bounce\n", b"Subject: x\n"]
        assert [subject in entry.as_bytes() for entry, subject in zip(box, subjects, strict=True)] == [True] * 3
    finally:
        box.close()


def test_the_trace_shows_utf8_commands_as_text(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="pytest_smtpd.trace")
    with Server(enable_SMTPUTF8=True) as server, smtplib.SMTP(server.host, server.port, timeout=TIMEOUT) as client:
        client.sendmail(SENDER, ["jürgen@bücher.de"], DATA, mail_options=["SMTPUTF8"])
    text = caplog.text.lower()  # smtplib's case varies by version
    assert f"> mail from:<{SENDER}> size={len(DATA)} smtputf8" in text
    assert "> rcpt to:<jürgen@bücher.de>" in text


def test_debugging_server_prints_utf8_mail_readably_and_never_fails_on_a_narrow_stream() -> None:
    wide = io.StringIO()
    narrow = io.TextIOWrapper(io.BytesIO(), encoding="ascii")
    for stream in (wide, narrow):
        server = DebuggingServer(("127.0.0.1", 0), None, enable_SMTPUTF8=True, stream=stream, show_envelope=True)
        try:
            with smtplib.SMTP(*server.address, timeout=TIMEOUT) as client:
                client.sendmail(SENDER, ["jürgen@bücher.de"], DATA, mail_options=["SMTPUTF8"])
        finally:
            server.close()
    assert (
        "Subject: Grüße aus 東京\nX-Peer: 127.0.0.1\nX-MailFrom: josé@例え.jp\nX-RcptTo: jürgen@bücher.de\n\n"
        "From here, a line an mbox reader would take for a new message.\nÄrger.\n"
    ) in wide.getvalue()
    narrow.seek(0)
    printed = narrow.buffer.getvalue().decode("ascii")
    assert "Subject: Gr\\xfc\\xdfe aus \\u6771\\u4eac\nX-Peer: 127.0.0.1\nX-MailFrom: jos\\xe9@" in printed


@pytest.mark.parametrize("encoding", ["utf-8", "ascii"])
def test_the_command_line_prints_utf8_mail(encoding: str) -> None:
    import os
    import signal

    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        pytest.skip("SIGINT is ignored in this process (a background job?), so the server would ignore Ctrl-C")
    env = {**os.environ, "PYTHONIOENCODING": encoding}
    with Spawned.python("-m", "pytest_smtpd", "-n", "-u", "--show-envelope", "127.0.0.1:0", env=env) as process:
        port = int(process.expect(r"listening on 127\.0\.0\.1:(\d+)[,;]", stream="stderr").group(1))
        with smtplib.SMTP("127.0.0.1", port, timeout=TIMEOUT) as client:
            client.sendmail(SENDER, ["jürgen@bücher.de"], DATA, mail_options=["SMTPUTF8"])
        process.expect("^------------ END MESSAGE ------------$")
        assert process.interrupt() == 0, process.report()
    printed = process.output()
    assert "Traceback" not in process.output("stderr")
    if encoding == "utf-8":
        assert "Subject: Grüße aus 東京\nX-Peer: 127.0.0.1\nX-MailFrom: josé@例え.jp\n" in printed
    else:
        assert "Subject: Gr\\xfc\\xdfe aus \\u6771\\u4eac\nX-Peer: 127.0.0.1\nX-MailFrom: jos\\xe9@" in printed
