"""DKIM offline: the smtpd_dkim key, Message.verify_dkim() and
assert_sent(dkim_valid=True) on messages signed by dkimpy, by OpenDKIM's
opendkim-testmsg and by Exim's smtp transport, sent through a real socket; tampering found with its
reason; the clear error without the extra; no extra imported by the plugin."""

from __future__ import annotations

import shutil
import smtplib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from exim import Exim, exim_base
from peers import require_program

from pytest_smtpd.assertions import FixtureServer
from pytest_smtpd.dkim import DKIMKey, DKIMResult, make_key
from pytest_smtpd.message import Message
from pytest_smtpd.tls import test_ca

DATA = (
    b"Date: Mon, 07 Dec 2026 10:00:00 +0000\r\n"
    b"From: Alice <alice@example.test>\r\n"
    b"To: bob@example.test\r\n"
    b"Message-ID: <1@example.test>\r\n"
    b"Subject: Your receipt\r\n"
    b"\r\n"
    b"Thanks for your order.\r\n"
)


def send(server: FixtureServer, data: bytes) -> Message:
    with smtplib.SMTP(server.host, server.port, timeout=10) as client:
        client.sendmail("alice@example.test", ["bob@example.test"], data)
    return server.messages[-1]  # stored before the 250 that ended sendmail


def opendkim_sign(key: DKIMKey, data: bytes, tmp_path: Path) -> bytes:
    """``data`` signed by OpenDKIM (Debian's opendkim-tools), not by dkimpy."""
    program = require_program("opendkim-testmsg", "opendkim-tools")
    key_file = tmp_path / "dkim.pem"
    key_file.write_bytes(key.private_key_pem)
    done = subprocess.run(
        [program, "-d", key.domain, "-s", key.selector, "-k", str(key_file), "-C"],
        input=data,
        capture_output=True,
        timeout=30,
        check=True,
    )
    assert done.stdout.startswith(b"DKIM-Signature:"), done
    return done.stdout


def test_the_fixture_key(smtpd_dkim: DKIMKey) -> None:
    assert smtpd_dkim.domain == "example.test"
    assert smtpd_dkim.selector == "test"
    assert smtpd_dkim.private_key_pem.startswith(b"-----BEGIN RSA PRIVATE KEY-----\n")
    assert smtpd_dkim.public_key_dns.startswith("v=DKIM1; k=rsa; p=MII")
    assert smtpd_dkim.records == {"test._domainkey.example.test": smtpd_dkim.public_key_dns}
    assert "PRIVATE" not in repr(smtpd_dkim)


def test_dkimpy_signed_message_is_valid(smtpd: FixtureServer, smtpd_dkim: DKIMKey) -> None:
    message = send(smtpd, smtpd_dkim.sign(DATA))
    assert message.verify_dkim() == DKIMResult(True, "example.test", "test", "valid")
    assert smtpd.assert_sent(dkim_valid=True) == [message]
    smtpd.assert_not_sent(dkim_valid=False)


def test_opendkim_signed_message_is_valid(smtpd: FixtureServer, smtpd_dkim: DKIMKey, tmp_path: Path) -> None:
    signed = opendkim_sign(smtpd_dkim, DATA, tmp_path)
    assert b"dkimpy" not in signed
    message = send(smtpd, signed)
    result = message.verify_dkim()
    assert result.valid, result.reason
    assert (result.domain, result.selector) == ("example.test", "test")
    smtpd.assert_sent(dkim_valid=True, subject="Your receipt")


@pytest.fixture
def exim(smtpd: FixtureServer) -> Iterator[Exim]:
    """A real Exim relaying to ``smtpd`` (see tests/exim.py)."""
    base = exim_base()
    try:
        instance = Exim(base, smtpd.port, test_ca().ca_path)
        instance.configure()
        yield instance
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_exim_signed_message_is_valid(exim: Exim, smtpd: FixtureServer, smtpd_dkim: DKIMKey) -> None:
    exim.dkim_key_file.write_bytes(smtpd_dkim.private_key_pem)
    exim.dkim_key_file.chmod(0o644)  # read by Exim's own user
    message_id = exim.send(DATA.replace(b"bob@example.test", b"bob@dkim.test"), "alice@example.test", ["bob@dkim.test"])
    (message,) = smtpd.messages.wait_for(count=1, timeout=30)
    assert message.data.startswith(b"DKIM-Signature:"), (message_id, exim.log())
    result = message.verify_dkim()
    assert result == DKIMResult(True, "example.test", "test", "valid")


def test_tampered_body_is_invalid(smtpd: FixtureServer, smtpd_dkim: DKIMKey) -> None:
    signed = smtpd_dkim.sign(DATA)
    message = send(smtpd, signed.replace(b"Thanks for your order.", b"Thanks for your order!"))
    result = message.verify_dkim()
    assert not result.valid
    assert result.reason.startswith("body hash mismatch")
    with pytest.raises(AssertionError) as raised:
        smtpd.assert_sent(dkim_valid=True)
    assert "FAIL dkim_valid: expected True, got False (body hash mismatch" in str(raised.value)


def test_tampered_header_is_invalid(smtpd: FixtureServer, smtpd_dkim: DKIMKey, tmp_path: Path) -> None:
    for signed in (smtpd_dkim.sign(DATA), opendkim_sign(smtpd_dkim, DATA, tmp_path)):
        send(smtpd, signed.replace(b"Subject: Your receipt", b"Subject: Your refund"))
    for message in smtpd.messages:
        result = message.verify_dkim()
        assert not result.valid
        assert result.reason == "signature mismatch: a signed header was changed, or another key signed"


def test_another_key(smtpd: FixtureServer, smtpd_dkim: DKIMKey) -> None:
    other = make_key("other.test", "s1", bits=1024)
    message = send(smtpd, other.sign(DATA))
    assert message.verify_dkim(keys=smtpd_dkim).reason == (
        "no key for 's1._domainkey.other.test' (keys given: test._domainkey.example.test)"
    )
    assert message.verify_dkim(keys=other.records).valid
    assert message.verify_dkim(keys=[smtpd_dkim, other]).valid
    assert message.verify_dkim().valid  # make_key's keys are known until forgotten


def test_a_record_for_another_key_is_a_mismatch(smtpd: FixtureServer, smtpd_dkim: DKIMKey) -> None:
    other = make_key(bits=1024)
    message = send(smtpd, other.sign(DATA))
    result = message.verify_dkim(keys={"TEST._domainkey.example.test.": smtpd_dkim.public_key_dns})
    assert not result.valid
    assert "another key signed" in result.reason


def test_unsigned(smtpd: FixtureServer) -> None:
    message = send(smtpd, DATA)
    assert message.verify_dkim(keys={}) == DKIMResult(False, None, None, "no DKIM-Signature header")
    assert not message.verify_dkim(keys={})


def test_dkim_valid_takes_a_bool(smtpd: FixtureServer) -> None:
    with pytest.raises(TypeError, match="dkim_valid= takes True or False"):
        smtpd.assert_sent(dkim_valid="yes")


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)


def test_without_dkimpy_a_clear_error() -> None:
    done = run_python(
        "import sys; sys.modules['dkim'] = None\n"
        "from pytest_smtpd.message import Message\n"
        "m = Message(peer=('127.0.0.1', 1), mail_from='a@x.test', rcpt_tos=['b@x.test'],"
        " data=b'From: a@x.test\\r\\n\\r\\n')\n"
        "try:\n"
        "    m.verify_dkim()\n"
        "except ModuleNotFoundError as exc:\n"
        "    print(exc)\n"
    )
    assert done.stdout.strip() == "DKIM needs dkimpy, the optional extra: pip install 'pytest-smtpd[dkim]'", done


def test_the_plugin_imports_no_extra() -> None:
    done = run_python(
        "import sys\n"
        "import pytest_smtpd.plugin, pytest_smtpd.checks_plugin\n"
        "names = ('dkim', 'syrupy', 'selenium', 'pytest_html', 'cryptography',"
        " 'pytest_smtpd.lint', 'pytest_smtpd.dkim', 'pytest_smtpd.snapshot', 'pytest_smtpd.preview')\n"
        "print(sorted(n for n in names if n in sys.modules))\n"
    )
    assert done.stdout.strip() == "[]", done
