"""TLS faults: ``tls_certificate=`` gives a certificate a verifying client
must refuse, each for its own reason, and ``tls_versions=`` offers only
some TLS versions. Checked with smtplib (STARTTLS and implicit TLS) and
aiosmtplib, each trusting the server's test CA through ``client_context()``;
the "valid" certificate is the control that shows the check can pass."""

from __future__ import annotations

import asyncio
import smtplib
import ssl

import aiosmtplib
import pytest
from peers import TIMEOUT

from pytest_smtpd import Server
from pytest_smtpd.server import TLSMode
from pytest_smtpd.tls import CERTIFICATES, Certificate, parse_tls_versions

MESSAGE = b"Subject: tls faults\r\n\r\nhello\r\n"

#: OpenSSL's X509_V_ERR_* codes, as ssl.SSLCertVerificationError.verify_code.
EXPECTED = {
    "expired": (10, "certificate has expired"),
    "wrong-host": (64, "IP address mismatch"),
    "untrusted": (20, "unable to get local issuer certificate"),
    "self-signed": (18, "self-signed certificate"),
}
BAD_CERTIFICATES: list[Certificate] = [name for name in CERTIFICATES if name != "valid"]


def smtplib_send(server: Server, mode: TLSMode, context: ssl.SSLContext) -> None:
    if mode == "implicit":
        with smtplib.SMTP_SSL(*server.address, context=context, timeout=TIMEOUT) as client:
            client.sendmail("a@example.com", ["b@example.com"], MESSAGE)
        return
    with smtplib.SMTP(*server.address, timeout=TIMEOUT) as client:
        client.starttls(context=context)
        client.sendmail("a@example.com", ["b@example.com"], MESSAGE)


@pytest.mark.parametrize("mode", ["starttls", "implicit"])
def test_the_valid_certificate_is_accepted(mode: TLSMode) -> None:
    with Server(tls=mode, tls_certificate="valid") as server:
        smtplib_send(server, mode, server.client_context())
        (message,) = server.messages
        assert message.tls is not None


@pytest.mark.parametrize("mode", ["starttls", "implicit"])
@pytest.mark.parametrize("certificate", BAD_CERTIFICATES)
def test_smtplib_refuses_each_bad_certificate(certificate: Certificate, mode: TLSMode) -> None:
    code, reason = EXPECTED[certificate]
    with Server(tls=mode, tls_certificate=certificate) as server:
        with pytest.raises(ssl.SSLCertVerificationError) as error:
            smtplib_send(server, mode, server.client_context())
        assert error.value.verify_code == code
        assert reason in error.value.verify_message
        assert len(server.messages) == 0


def test_the_wrong_host_certificate_fails_by_name_too() -> None:
    """Reached as localhost, the mismatch is a hostname one."""
    with (
        Server(host="localhost", tls="starttls", tls_certificate="wrong-host") as server,
        smtplib.SMTP("localhost", server.port, timeout=TIMEOUT) as client,
        pytest.raises(ssl.SSLCertVerificationError) as error,
    ):
        client.starttls(context=server.client_context())
    assert error.value.verify_code == 62
    assert "Hostname mismatch" in error.value.verify_message


@pytest.mark.parametrize("certificate", BAD_CERTIFICATES)
def test_aiosmtplib_refuses_each_bad_certificate(certificate: Certificate) -> None:
    code, _ = EXPECTED[certificate]
    with Server(tls="implicit", tls_certificate=certificate) as server:
        with pytest.raises(aiosmtplib.SMTPConnectError) as error:
            asyncio.run(
                aiosmtplib.send(
                    MESSAGE,
                    sender="a@example.com",
                    recipients=["b@example.com"],
                    hostname=server.host,
                    port=server.port,
                    use_tls=True,
                    tls_context=server.client_context(),
                    timeout=TIMEOUT,
                )
            )
        # aiosmtplib wraps the ssl error, which it keeps as the cause.
        cause = error.value.__cause__
        assert isinstance(cause, ssl.SSLCertVerificationError)
        assert cause.verify_code == code


def test_tls_versions_offers_only_tls_1_2() -> None:
    with Server(tls="starttls", tls_versions="TLSv1.2") as server:
        smtplib_send(server, "starttls", server.client_context())
        (message,) = server.messages
        assert message.tls is not None and message.tls.version == "TLSv1.2"
        demanding = server.client_context()
        demanding.minimum_version = ssl.TLSVersion.TLSv1_3
        with pytest.raises(ssl.SSLError) as error:
            smtplib_send(server, "starttls", demanding)
        # asyncio's TLS drops the connection without a protocol_version
        # alert, so the client sees an EOF in the handshake (SSLEOFError).
        assert not isinstance(error.value, ssl.SSLCertVerificationError)
        assert (server.messages[-1:], len(server.messages)) == ([message], 1)


def test_tls_versions_offers_only_tls_1_3() -> None:
    with Server(tls="implicit", tls_versions=["TLSv1.3"]) as server:
        old = server.client_context()
        old.maximum_version = ssl.TLSVersion.TLSv1_2
        with pytest.raises(ssl.SSLError):
            smtplib_send(server, "implicit", old)
        smtplib_send(server, "implicit", server.client_context())
        assert [m.tls.version for m in server.messages if m.tls] == ["TLSv1.3"]


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("TLSv1.2", [ssl.TLSVersion.TLSv1_2]),
        ("1.3", [ssl.TLSVersion.TLSv1_3]),
        (["TLS1.2", "tlsv1_3"], [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3]),
        (ssl.TLSVersion.TLSv1_2, [ssl.TLSVersion.TLSv1_2]),
    ],
)
def test_tls_versions_are_read_in_the_usual_spellings(
    given: str | ssl.TLSVersion | list[str], expected: list[ssl.TLSVersion]
) -> None:
    assert parse_tls_versions(given) == expected


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"tls_certificate": "expired"}, "need tls='starttls' or 'implicit'"),
        ({"tls_versions": "TLSv1.2"}, "need tls='starttls' or 'implicit'"),
        ({"tls": "starttls", "tls_certificate": "forged"}, "unknown tls_certificate 'forged'"),
        ({"tls": "starttls", "tls_versions": "SSLv3"}, "unknown TLS version 'SSLv3'"),
        ({"tls": "starttls", "tls_versions": []}, "at least one TLS version"),
        (
            {"tls": "starttls", "tls_context": ssl.create_default_context(), "tls_certificate": "expired"},
            "not to a tls_context of your own",
        ),
    ],
)
def test_bad_tls_fault_options_are_clear_errors(options: dict[str, object], error: str) -> None:
    with pytest.raises(ValueError, match=error.replace("(", r"\(").replace(")", r"\)")):
        Server(**options)  # type: ignore[arg-type]
