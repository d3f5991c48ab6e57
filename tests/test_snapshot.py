"""Email snapshots (syrupy): the email_snapshot fixture run inside pytester
on mail sent through a real socket: two sends at different times compare
equal, a changed word fails with a diff naming its part, --snapshot-update
updates, ignore_headers; and normalise() on signed, relayed mail."""

from __future__ import annotations

import smtplib
import subprocess
import sys
from pathlib import Path

import pytest
from pytester_helpers import INI

from pytest_smtpd.assertions import FixtureServer
from pytest_smtpd.dkim import DKIMKey
from pytest_smtpd.snapshot import normalise

TEMPLATE_TEST = """
import os
import smtplib
import subprocess
import sys
from email.message import EmailMessage
from email.utils import make_msgid


def send_receipt(smtpd):
    msg = EmailMessage()
    msg["From"] = "Shop <shop@example.test>"
    msg["To"] = "bob@example.test"
    msg["Subject"] = "Your receipt"
    msg["Date"] = os.environ["SEND_DATE"]
    msg["Message-ID"] = make_msgid(domain="example.test")
    msg["X-Request-Id"] = os.environ["REQUEST_ID"]
    msg.set_content("Grüße, Bob: 4 items.\\n", cte="base64")
    msg.add_alternative("<p>Thanks for your " + os.environ["WORD"] + ".</p>\\n", subtype="html")
    with smtplib.SMTP(smtpd.host, smtpd.port) as client:
        client.send_message(msg)


def test_receipt(smtpd, email_snapshot):
    send_receipt(smtpd)
    (message,) = smtpd.messages
    assert message == email_snapshot(ignore_headers=["X-Request-Id"])
"""


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    pytester.makeini(INI)
    pytester.makepyfile(test_mail=TEMPLATE_TEST)
    monkeypatch.setenv("SEND_DATE", "Mon, 07 Dec 2026 10:00:00 +0000")
    monkeypatch.setenv("REQUEST_ID", "req-1")
    monkeypatch.setenv("WORD", "order")
    return pytester


def snapshot_file(project: pytest.Pytester) -> Path:
    return project.path / "__snapshots__" / "test_mail" / "test_receipt.eml"


def test_a_new_snapshot_is_a_readable_eml(project: pytest.Pytester) -> None:
    project.runpytest_inprocess("--snapshot-update").assert_outcomes(passed=1)
    text = snapshot_file(project).read_text(encoding="utf-8")
    assert text.startswith("From: Shop <shop@example.test>\nTo: bob@example.test\nSubject: Your receipt\n")
    assert "Date: <date>\nMessage-ID: <message-id>\nX-Request-Id: <ignored>\n" in text
    assert 'Content-Type: multipart/alternative; boundary="boundary-1"\n\n--boundary-1\n' in text
    assert "Content-Transfer-Encoding: 8bit\n\nGrüße, Bob: 4 items.\n--boundary-1\n" in text  # not base64
    assert "<p>Thanks for your order.</p>\n--boundary-1--\n" in text


def test_two_sends_at_different_times_compare_equal(project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    project.runpytest_inprocess("--snapshot-update").assert_outcomes(passed=1)
    monkeypatch.setenv("SEND_DATE", "Tue, 08 Dec 2026 11:30:00 +0100")
    monkeypatch.setenv("REQUEST_ID", "req-2")
    # A new Message-ID and new random boundaries too.
    project.runpytest_inprocess().assert_outcomes(passed=1)


def test_a_changed_word_fails_with_a_diff_naming_the_part(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    project.runpytest_inprocess("--snapshot-update").assert_outcomes(passed=1)
    monkeypatch.setenv("WORD", "purchase")
    result = project.runpytest_inprocess("--color=no")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*part 2 (text/html):",
            "*-<p>Thanks for your order.</p>",
            "*+<p>Thanks for your purchase.</p>",
        ]
    )
    assert "part 1 (text/plain)" not in result.stdout.str()
    assert "headers:" not in result.stdout.str()
    # --snapshot-update takes the new word; then the test passes.
    project.runpytest_inprocess("--snapshot-update").assert_outcomes(passed=1)
    assert "<p>Thanks for your purchase.</p>" in snapshot_file(project).read_text(encoding="utf-8")
    project.runpytest_inprocess().assert_outcomes(passed=1)


def test_a_header_left_unignored_fails_in_the_headers(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    project.runpytest_inprocess("--snapshot-update").assert_outcomes(passed=1)
    path = project.path / "test_mail.py"
    path.write_text(path.read_text().replace('email_snapshot(ignore_headers=["X-Request-Id"])', "email_snapshot"))
    project.runpytest_inprocess("--snapshot-update").assert_outcomes(passed=1)
    monkeypatch.setenv("REQUEST_ID", "req-2")
    result = project.runpytest_inprocess("--color=no")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*headers:", "*-X-Request-Id: req-1", "*+X-Request-Id: req-2"])


def test_a_missing_snapshot_fails(project: pytest.Pytester) -> None:
    result = project.runpytest_inprocess()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*Snapshot 'test_receipt' does not exist!*"])


def test_normalise_signed_relayed_mail(smtpd: FixtureServer, smtpd_dkim: DKIMKey) -> None:
    data = (
        b"Received: from a.test by b.test; Mon, 07 Dec 2026 10:00:00 +0000\r\n"
        b"From: shop@example.test\r\nTo: bob@example.test\r\nSubject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n"
        b"Date: Mon, 07 Dec 2026 10:00:00 +0000\r\n\r\nHello\r\n"
    )
    with smtplib.SMTP(smtpd.host, smtpd.port) as client:
        client.sendmail("shop@example.test", ["bob@example.test"], smtpd_dkim.sign(data))
    text = normalise(smtpd.messages[0])
    first = text.split("\n", 1)[0]
    assert first.startswith("DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/simple; d=example.test;")
    assert "b=<b>" in first and "bh=<bh>" in first and "t=<t>" in first
    assert "\nReceived: <received>\n" in text
    assert "\nSubject: Grüße\n" in text
    assert text.endswith("\n\nHello\n")
    assert normalise(smtpd.messages[0].data) == normalise(smtpd.messages[0].email) == text
    with pytest.raises(TypeError, match="an email snapshot compares"):
        normalise("text")


def test_without_syrupy_a_clear_error() -> None:
    code = (
        "import sys; sys.modules['syrupy'] = None\n"
        "try:\n"
        "    import pytest_smtpd.snapshot\n"
        "except ModuleNotFoundError as exc:\n"
        "    print(exc)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    expected = "email snapshots need syrupy, the optional extra: pip install 'pytest-smtpd[snapshot]'"
    assert done.stdout.strip() == expected, done


def test_the_docs_example(project: pytest.Pytester) -> None:
    """docs/checks.rst's snapshot example (a fragment there: its first run
    needs --snapshot-update), run as written: created, then compared."""
    from test_doc_examples import ROOT, blocks_of

    (block,) = [b for b in blocks_of(ROOT / "docs" / "checks.rst") if b.name == "test_snapshot_example.py"]
    project.makepyfile(test_snapshot_example=block.code)
    project.runpytest_inprocess("--snapshot-update", "test_snapshot_example.py").assert_outcomes(passed=1)
    assert (project.path / "__snapshots__" / "test_snapshot_example").is_dir()
    project.runpytest_inprocess("test_snapshot_example.py").assert_outcomes(passed=1)
