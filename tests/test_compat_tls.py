"""TLS and AUTH through the stdlib-style ``SMTPServer``: its keyword-only
options reach the ``Server`` underneath unchanged, and ``ca``, ``ca_path``
and ``client_context()`` give smtplib the test CA, verification on."""

from __future__ import annotations

import base64
import inspect
import io
import smtplib
import ssl
from typing import Any

import pytest
import trustme
from peers import TIMEOUT

from pytest_smtpd import DebuggingServer, SMTPChannel, SMTPServer, tls

LOCAL = ("127.0.0.1", 0)
USERS = {"alice": "s3cret"}
FROM = "alice@example.com"
TO = "bob@example.com"
BODY = b"Subject: over TLS\r\n\r\nHi Bob.\r\n"
#: AUTH PLAIN's initial response for alice / s3cret.
PLAIN_ALICE = "PLAIN " + base64.b64encode(b"\0alice\0s3cret").decode("ascii")
TLS_OPTIONS = [
    "tls",
    "tls_context",
    "require_starttls",
    "auth",
    "auth_mechanisms",
    "auth_required",
    "auth_requires_tls",
]

Call = tuple[tuple[str, int], str, list[str], "bytes | str"]


class Recorder(SMTPServer):
    """Records every message it is given."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.calls: list[Call] = []
        super().__init__(*args, **kwargs)

    def process_message(
        self, peer: tuple[str, int], mailfrom: str, rcpttos: list[str], data: bytes | str, **kwargs: Any
    ) -> None:
        self.calls.append((peer, mailfrom, rcpttos, data))


def test_the_options_are_keyword_only_after_the_stdlib_signature() -> None:
    parameters = inspect.signature(SMTPServer.__init__).parameters
    stdlib = ["self", "localaddr", "remoteaddr", "data_size_limit", "map", "enable_SMTPUTF8", "decode_data"]
    assert list(parameters)[: len(stdlib)] == stdlib
    for name in TLS_OPTIONS:
        assert parameters[name].kind is inspect.Parameter.KEYWORD_ONLY, name


def test_starttls_and_auth_with_smtplib_verification_on() -> None:
    with Recorder(LOCAL, None, tls="starttls", auth=USERS, require_starttls=True, auth_required=True) as server:
        assert server.ca is not None
        assert server.ca_path == server.ca.ca_path
        with smtplib.SMTP(*server.address, timeout=TIMEOUT) as client:
            client.ehlo("client.test")
            assert client.has_extn("starttls")
            assert client.mail(FROM)[0] == 530  # require_starttls reached the server
            context = server.client_context()
            assert context.verify_mode is ssl.CERT_REQUIRED and context.check_hostname
            assert client.starttls(context=context)[0] == 220
            assert client.mail(FROM)[0] == 530  # auth_required: not logged in yet
            with pytest.raises(smtplib.SMTPAuthenticationError) as refused:
                client.login("alice", "wrong")
            assert refused.value.smtp_code == 535
            assert client.login("alice", "s3cret")[0] == 235
            assert client.sendmail(FROM, [TO], BODY) == {}
    [(peer, mailfrom, rcpttos, data)] = server.calls
    assert (peer[0], mailfrom, rcpttos, data) == ("127.0.0.1", FROM, [TO], b"Subject: over TLS\n\nHi Bob.")


def test_a_client_that_does_not_trust_the_test_ca_is_refused() -> None:
    # Twin of the test above: the handshake there succeeds because of the CA.
    untrusting = ssl.create_default_context(cadata=trustme.CA().cert_pem.bytes().decode("ascii"))
    with (
        Recorder(LOCAL, None, tls="starttls") as server,
        smtplib.SMTP(*server.address, timeout=TIMEOUT) as client,
        pytest.raises(ssl.SSLCertVerificationError),
    ):
        client.starttls(context=untrusting)
    assert server.calls == []


def test_implicit_tls_with_the_chosen_mechanisms() -> None:
    options: dict[str, Any] = {"auth_mechanisms": ["PLAIN"], "auth_requires_tls": True}
    with (
        Recorder(LOCAL, None, tls="implicit", auth=USERS, **options) as server,
        smtplib.SMTP_SSL(*server.address, timeout=TIMEOUT, context=server.client_context()) as client,
    ):
        client.ehlo("client.test")
        assert client.esmtp_features["auth"].split() == ["PLAIN"]
        assert client.login("alice", "s3cret")[0] == 235
        assert client.sendmail(FROM, [TO], BODY) == {}
    assert len(server.calls) == 1


def test_auth_requires_tls_reaches_the_server() -> None:
    with (
        Recorder(LOCAL, None, tls="starttls", auth=USERS, auth_requires_tls=True) as server,
        smtplib.SMTP(*server.address, timeout=TIMEOUT) as client,
    ):
        client.ehlo("client.test")
        assert client.docmd("AUTH", PLAIN_ALICE)[0] == 538
        client.starttls(context=server.client_context())
        client.ehlo("client.test")
        assert client.docmd("AUTH", PLAIN_ALICE)[0] == 235


def test_an_authenticator_callable_is_passed_unchanged() -> None:
    seen: list[str] = []

    def authenticate(credentials: Any) -> bool:
        seen.append(credentials.username)
        return bool(credentials.matches("pa55"))

    with Recorder(LOCAL, None, auth=authenticate) as server, smtplib.SMTP(*server.address, timeout=TIMEOUT) as client:
        assert client.login("carol", "pa55")[0] == 235
    assert seen == ["carol"]


def test_own_tls_context_is_used_and_there_is_no_test_ca() -> None:
    own_ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    own_ca.issue_cert(*tls.SERVER_NAMES).configure_cert(context)
    trusting = ssl.create_default_context()
    own_ca.configure_trust(trusting)
    with Recorder(LOCAL, None, tls="starttls", tls_context=context) as server:
        assert server.ca is None
        with pytest.raises(RuntimeError, match="no test CA"):
            server.ca_path  # noqa: B018
        with pytest.raises(RuntimeError, match="no test CA"):
            server.client_context()
        with smtplib.SMTP(*server.address, timeout=TIMEOUT) as client:
            assert client.starttls(context=trusting)[0] == 220
            assert client.sendmail(FROM, [TO], BODY) == {}
    assert len(server.calls) == 1


def test_without_tls_there_is_no_test_ca() -> None:
    with Recorder(LOCAL, None) as server:
        assert server.ca is None
        with pytest.raises(RuntimeError, match="no test CA"):
            server.client_context()


def test_debugging_server_takes_the_options_too() -> None:
    stream = io.StringIO()
    with (
        DebuggingServer(LOCAL, None, stream=stream, tls="starttls", auth=USERS, auth_required=True) as server,
        smtplib.SMTP(*server.address, timeout=TIMEOUT) as client,
    ):
        client.starttls(context=server.client_context())
        client.login("alice", "s3cret")
        assert client.sendmail(FROM, [TO], BODY) == {}
    assert "Subject: over TLS\nX-Peer: 127.0.0.1\n\nHi Bob.\n" in stream.getvalue()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"require_starttls": True}, "need tls="),
        ({"auth_requires_tls": True}, "need tls="),
        ({"auth_required": True}, "auth_required needs auth"),
        ({"tls": "smtps"}, "tls must be None, 'starttls' or 'implicit'"),
    ],
)
def test_wrong_combinations_raise_before_binding(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Recorder(LOCAL, None, **options)


class _ChannelWithOwnCommands(SMTPChannel):
    """A subclass command and an override of a built-in one."""

    def smtp_XPING(self, arg: str | None) -> None:
        self.push("250 pong")

    def smtp_VRFY(self, arg: str | None) -> None:
        self.push("252 overridden")


class _OwnCommandsServer(Recorder):
    channel_class = _ChannelWithOwnCommands


def test_a_subclass_command_gets_the_530s_like_a_built_in_one() -> None:
    # require_starttls and auth_required would mean little if a channel
    # subclass's own smtp_<VERB> (or its override of a built-in) got past them.
    gates: dict[str, Any] = {"require_starttls": True, "auth_required": True}
    with (
        _OwnCommandsServer(LOCAL, None, tls="starttls", auth=USERS, **gates) as server,
        smtplib.SMTP(*server.address, timeout=TIMEOUT) as client,
    ):
        client.ehlo("client.test")
        assert client.docmd("XPING") == (530, b"5.7.0 Must issue a STARTTLS command first")
        assert client.docmd("VRFY", "bob")[0] == 530
        client.starttls(context=server.client_context())
        client.ehlo("client.test")
        assert client.docmd("XPING")[0] == 530  # not logged in yet
        assert client.docmd("VRFY", "bob")[0] == 530
        client.login("alice", "s3cret")
        assert client.docmd("XPING") == (250, b"pong")
        assert client.docmd("VRFY", "bob") == (252, b"overridden")


def test_a_subclass_command_is_answered_when_no_gate_is_set() -> None:
    with _OwnCommandsServer(LOCAL, None) as server, smtplib.SMTP(*server.address, timeout=TIMEOUT) as client:
        assert client.docmd("XPING") == (250, b"pong")
