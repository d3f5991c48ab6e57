"""``pytest --smtpd-web PORT``: the dev inbox over every test's server
during a test run (pytester subprocess runs), messages tagged with their
test's node id and failing tests marked; and nothing of aiohttp imported
without the option."""

from __future__ import annotations

import json

import pytest
from peers import free_port

pytest.importorskip("aiohttp")

INNER = """
import json, smtplib, urllib.request
import pytest

def send(smtpd, subject):
    with smtplib.SMTP(smtpd.host, smtpd.port, timeout=10) as client:
        client.sendmail("app@example.com", ["bob@example.com"], f"Subject: {subject}\\r\\n\\r\\nbody\\r\\n".encode())

def test_passes(smtpd):
    send(smtpd, "from the passing test")

def test_fails(smtpd):
    send(smtpd, "from the failing test")
    assert False, "on purpose"

def test_zz_reads_the_inbox(request, smtpd):
    run = request.config.pluginmanager.get_plugin("pytest-smtpd-inbox")
    base = run.web.url.rstrip("/")
    def get(path):
        with urllib.request.urlopen(base + path, timeout=10) as response:
            return json.loads(response.read())
    found = {
        "url": run.web.url,
        "messages": get("/api/messages")["messages"],
        "failing": get("/api/messages?test=test_fails")["messages"],
        "tests": get("/api/tests"),
        "sessions": get("/api/sessions")["sessions"],
    }
    with open("inbox.json", "w") as out:
        json.dump(found, out)
"""


@pytest.mark.parametrize("scope", ["function", "session"])
def test_the_inbox_sees_every_tests_mail_tagged_with_its_node_id(pytester: pytest.Pytester, scope: str) -> None:
    pytester.makepyfile(test_mail=INNER)
    pytester.makeini(f"[pytest]\nsmtpd_scope = {scope}\n")
    port = free_port()
    result = pytester.runpytest_subprocess("--smtpd-web", f"127.0.0.1:{port}", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines([f"smtpd inbox: http://127.0.0.1:{port}/"])
    found = json.loads((pytester.path / "inbox.json").read_text())
    by_subject = {m["subject"]: m for m in found["messages"]}
    assert by_subject["from the passing test"]["test"] == "test_mail.py::test_passes"
    assert by_subject["from the failing test"]["test"] == "test_mail.py::test_fails"
    assert by_subject["from the failing test"]["outcome"] == "failed"
    assert by_subject["from the passing test"]["outcome"] == "passed"
    assert [m["subject"] for m in found["failing"]] == ["from the failing test"]
    assert found["tests"] == {"test_mail.py::test_passes": "passed", "test_mail.py::test_fails": "failed"}
    assert {s["test"] for s in found["sessions"]} == {"test_mail.py::test_passes", "test_mail.py::test_fails"}


def test_without_the_option_nothing_of_aiohttp_is_imported(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import sys

        def test_mail(smtpd):
            assert smtpd.port
            loaded = [name for name in sys.modules if name.split(".")[0] in ("aiohttp", "multidict", "yarl")]
            assert loaded == []
            assert "pytest_smtpd.inbox.pytest_plugin" in sys.modules
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


@pytest.mark.parametrize(
    ("value", "message"), [("web", "expected ?HOST:?PORT"), ("192.0.2.1:8080", "loopback addresses only")]
)
def test_a_bad_smtpd_web_is_a_usage_error(pytester: pytest.Pytester, value: str, message: str) -> None:
    pytester.makepyfile("def test_nothing(): pass")
    result = pytester.runpytest_subprocess("--smtpd-web", value)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*{message}*"])
