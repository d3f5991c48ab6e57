"""SMTP AUTH through real sockets on loopback: smtplib, aiosmtplib and raw
lines, in plaintext, after STARTTLS and over implicit TLS (certificates
verified), every reply of RFC 4954, and no password in logs or reprs."""

from __future__ import annotations

import asyncio
import base64
import hmac
import logging
import smtplib
import ssl

import aiosmtplib
import pytest

from conftest import Wire, aiosmtplib_send
from pytest_smtpd import Server
from pytest_smtpd.auth import MECHANISMS, Credentials, Mechanism

TIMEOUT = 10.0
USERS = {"alice": "s3cret-Pa55"}
PASSWORD = USERS["alice"]
BODY = b"Subject: auth\r\n\r\nlogged in\r\n"


def b64(data: bytes | str) -> str:
    return base64.b64encode(data.encode("utf-8") if isinstance(data, str) else data).decode("ascii")


def greeted(server: Server, context: ssl.SSLContext | None = None) -> Wire:
    raw = Wire(server.address, context=context)
    assert raw.command("EHLO client.test") == 250
    return raw


def send_one(raw: Wire) -> None:
    assert raw.command("MAIL FROM:<a@example.com>") == 250
    assert raw.command("RCPT TO:<b@example.com>") == 250
    assert raw.command("DATA") == 354
    assert raw.command("Subject: raw\r\n\r\nbody\r\n.") == 250


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, bool]]:
    """Which mechanisms the clients start, and whether with an initial
    response (e.g. the username on the ``AUTH LOGIN`` line)."""
    calls: list[tuple[str, bool]] = []
    for mechanism in MECHANISMS.values():
        original = mechanism.start

        def start(self: Mechanism, initial: str | None, original: object = original) -> str | Credentials:
            calls.append((self.name, initial is not None))
            assert callable(original)
            result: str | Credentials = original(self, initial)
            return result

        monkeypatch.setattr(mechanism, "start", start)
    return calls


class Recorder:
    """An authenticator that checks against USERS and keeps what it saw."""

    def __init__(self, allowed_authzids: tuple[str, ...] = ("",)) -> None:
        self.seen: list[Credentials] = []
        self.allowed_authzids = allowed_authzids

    def __call__(self, credentials: Credentials) -> bool:
        self.seen.append(credentials)
        secret = USERS.get(credentials.username)
        return secret is not None and credentials.matches(secret) and credentials.authzid in self.allowed_authzids


# -- PLAIN ------------------------------------------------------------------


@pytest.mark.smtpd(auth=USERS)
def test_smtplib_plain_with_initial_response(smtpd: Server, started: list[tuple[str, bool]]) -> None:
    with smtplib.SMTP(smtpd.host, smtpd.port, timeout=TIMEOUT) as client:
        client.ehlo()
        client.user, client.password = "alice", PASSWORD
        assert client.auth("PLAIN", client.auth_plain) == (235, b"2.7.0 Authentication successful")
        client.sendmail("a@example.com", ["b@example.com"], BODY)
    assert started == [("PLAIN", True)]
    assert smtpd.messages[0].auth_identity == "alice"


@pytest.mark.smtpd(auth=USERS)
def test_smtplib_plain_without_initial_response(smtpd: Server, started: list[tuple[str, bool]]) -> None:
    with smtplib.SMTP(smtpd.host, smtpd.port, timeout=TIMEOUT) as client:
        client.ehlo()
        client.user, client.password = "alice", PASSWORD
        assert client.auth("PLAIN", client.auth_plain, initial_response_ok=False)[0] == 235
    assert started == [("PLAIN", False)]


@pytest.mark.smtpd(auth=USERS)
def test_raw_plain_both_ways(smtpd: Server) -> None:
    with greeted(smtpd) as raw:
        assert raw.exchange("AUTH PLAIN") == (334, "")
        assert raw.command(b64(f"\0alice\0{PASSWORD}")) == 235
    with greeted(smtpd) as raw:
        assert raw.command("AUTH PLAIN " + b64(f"\0alice\0{PASSWORD}")) == 235
        assert raw.exchange("AUTH PLAIN " + b64(f"\0alice\0{PASSWORD}")) == (503, "5.5.1 Error: already authenticated")


def test_plain_with_authzid() -> None:
    recorder = Recorder(allowed_authzids=("", "boss"))
    with Server(auth=recorder) as server, greeted(server) as raw:
        assert raw.command("AUTH PLAIN " + b64(f"boss\0alice\0{PASSWORD}")) == 235
        send_one(raw)
        # Twin: an identity the authenticator does not allow is refused.
        with greeted(server) as other:
            assert other.command("AUTH PLAIN " + b64(f"root\0alice\0{PASSWORD}")) == 535
    assert [(c.authzid, c.username) for c in recorder.seen] == [("boss", "alice"), ("root", "alice")]
    (message,) = server.messages
    assert message.auth_identity == "boss"


@pytest.mark.smtpd(auth=USERS)
def test_dict_authenticator_allows_no_other_authzid(smtpd: Server) -> None:
    # A {user: password} dict cannot say alice may act as boss: refused.
    with greeted(smtpd) as raw:
        assert raw.command("AUTH PLAIN " + b64(f"boss\0alice\0{PASSWORD}")) == 535
        # Twin: alice acting as herself is fine.
        assert raw.command("AUTH PLAIN " + b64(f"alice\0alice\0{PASSWORD}")) == 235
        send_one(raw)
    assert smtpd.messages[0].auth_identity == "alice"


# -- LOGIN ------------------------------------------------------------------


@pytest.mark.smtpd(auth=USERS)
@pytest.mark.parametrize("initial_response_ok", [True, False])
def test_smtplib_login_mechanism(smtpd: Server, started: list[tuple[str, bool]], initial_response_ok: bool) -> None:
    with smtplib.SMTP(smtpd.host, smtpd.port, timeout=TIMEOUT) as client:
        client.ehlo()
        client.user, client.password = "alice", PASSWORD
        code, _ = client.auth("LOGIN", client.auth_login, initial_response_ok=initial_response_ok)
        assert code == 235
        client.sendmail("a@example.com", ["b@example.com"], BODY)
    # With an initial response smtplib sends ``AUTH LOGIN <b64 user>``.
    assert started == [("LOGIN", initial_response_ok)]
    assert smtpd.messages[0].auth_identity == "alice"


@pytest.mark.smtpd(auth=USERS)
def test_aiosmtplib_auth_login_sends_the_username_on_the_auth_line(
    smtpd: Server, started: list[tuple[str, bool]]
) -> None:
    async def login() -> int:
        async with aiosmtplib.SMTP(hostname=smtpd.host, port=smtpd.port, start_tls=False, timeout=TIMEOUT) as client:
            await client.ehlo()  # auth_login(), unlike login(), does not greet first
            response = await client.auth_login("alice", PASSWORD)
            await client.sendmail("a@example.com", ["b@example.com"], BODY)
            return response.code

    assert asyncio.run(login()) == 235
    assert started == [("LOGIN", True)]
    assert smtpd.messages[0].auth_identity == "alice"


@pytest.mark.smtpd(auth=USERS)
def test_raw_login_both_ways(smtpd: Server) -> None:
    username_prompt, password_prompt = b64("Username:"), b64("Password:")
    with greeted(smtpd) as raw:
        assert raw.exchange("AUTH LOGIN") == (334, username_prompt)
        assert raw.exchange(b64("alice")) == (334, password_prompt)
        assert raw.command(b64(PASSWORD)) == 235
    with greeted(smtpd) as raw:
        assert raw.exchange("AUTH LOGIN " + b64("alice")) == (334, password_prompt)
        assert raw.exchange(b64("not " + PASSWORD)) == (535, "5.7.8 Authentication credentials invalid")


# -- CRAM-MD5 ---------------------------------------------------------------


@pytest.mark.smtpd(auth=USERS)
def test_smtplib_login_prefers_cram_md5(smtpd: Server, started: list[tuple[str, bool]]) -> None:
    with smtplib.SMTP(smtpd.host, smtpd.port, timeout=TIMEOUT) as client:
        assert client.login("alice", PASSWORD)[0] == 235
        client.sendmail("a@example.com", ["b@example.com"], BODY)
    assert started == [("CRAM-MD5", False)]
    assert smtpd.messages[0].auth_identity == "alice"


@pytest.mark.smtpd(auth=USERS)
def test_smtplib_wrong_password_tries_every_mechanism_and_is_not_hung(
    smtpd: Server, started: list[tuple[str, bool]]
) -> None:
    with smtplib.SMTP(smtpd.host, smtpd.port, timeout=TIMEOUT) as client:
        with pytest.raises(smtplib.SMTPAuthenticationError) as failed:
            client.login("alice", "wrong")
        assert (failed.value.smtp_code, failed.value.smtp_error) == (535, b"5.7.8 Authentication credentials invalid")
        assert [name for name, _ in started] == ["CRAM-MD5", "PLAIN", "LOGIN"]
        # The session goes on: the client can try again.
        assert client.noop() == (250, b"OK")
        assert client.login("alice", PASSWORD)[0] == 235


@pytest.mark.smtpd(auth=USERS)
def test_aiosmtplib_login_prefers_cram_md5(smtpd: Server, started: list[tuple[str, bool]]) -> None:
    async def login() -> int:
        async with aiosmtplib.SMTP(hostname=smtpd.host, port=smtpd.port, start_tls=False, timeout=TIMEOUT) as client:
            return (await client.login("alice", PASSWORD)).code

    assert asyncio.run(login()) == 235
    assert started == [("CRAM-MD5", False)]


@pytest.mark.smtpd(auth=USERS)
def test_raw_cram_md5(smtpd: Server) -> None:
    with greeted(smtpd) as raw:
        code, challenge = raw.exchange("AUTH CRAM-MD5")
        assert code == 334
        decoded = base64.b64decode(challenge)
        assert decoded.startswith(b"<") and decoded.endswith(b">")
        digest = hmac.new(PASSWORD.encode(), decoded, "md5").hexdigest()
        assert raw.command(b64(f"alice {digest}")) == 235
    with greeted(smtpd) as raw:
        # Twin: the digest of another password, or of another challenge, fails.
        code, challenge = raw.exchange("AUTH CRAM-MD5")
        other = hmac.new(PASSWORD.encode(), base64.b64decode(challenge) + b"x", "md5").hexdigest()
        assert raw.command(b64(f"alice {other}")) == 535
        assert raw.exchange("AUTH CRAM-MD5 " + b64("alice")) == (501, "5.5.2 Error: CRAM-MD5 takes no initial response")


# -- XOAUTH2 ----------------------------------------------------------------


TOKENS = {"alice": "ya29.token"}


def xoauth2(user: str, token: str) -> str:
    return b64(f"user={user}\x01auth=Bearer {token}\x01\x01")


@pytest.mark.smtpd(auth=TOKENS)
def test_raw_xoauth2(smtpd: Server) -> None:
    with greeted(smtpd) as raw:
        assert raw.command("AUTH XOAUTH2 " + xoauth2("alice", "ya29.token")) == 235
        send_one(raw)
    with greeted(smtpd) as raw:
        assert raw.command("AUTH XOAUTH2 " + xoauth2("alice", "ya29.other")) == 535
        assert raw.command("AUTH XOAUTH2 " + b64("user=alice\x01\x01")) == 501
    assert smtpd.messages[0].auth_identity == "alice"


@pytest.mark.smtpd(auth=TOKENS)
def test_aiosmtplib_xoauth2(smtpd: Server) -> None:
    async def login(token: str) -> int:
        async with aiosmtplib.SMTP(hostname=smtpd.host, port=smtpd.port, start_tls=False, timeout=TIMEOUT) as client:
            try:
                return (await client.auth_xoauth2("alice", token)).code
            except aiosmtplib.SMTPAuthenticationError as exc:
                return exc.code

    assert asyncio.run(login("ya29.token")) == 235
    assert asyncio.run(login("ya29.other")) == 535


# -- where the credentials come from ----------------------------------------


def test_callable_authenticator_sees_the_credentials() -> None:
    recorder = Recorder()
    with Server(auth=recorder) as server, smtplib.SMTP(server.host, server.port, timeout=TIMEOUT) as client:
        client.ehlo()
        client.user, client.password = "alice", PASSWORD
        assert client.auth("PLAIN", client.auth_plain)[0] == 235
    (credentials,) = recorder.seen
    assert (credentials.mechanism, credentials.username, credentials.password) == ("PLAIN", "alice", PASSWORD)


def test_callable_authenticator_saying_no_is_535() -> None:
    with Server(auth=lambda credentials: False) as server, greeted(server) as raw:
        assert raw.command("AUTH PLAIN " + b64(f"\0alice\0{PASSWORD}")) == 535
        assert raw.command("MAIL FROM:<a@example.com>") == 250  # auth not required


def test_async_authenticator_is_awaited() -> None:
    """An ``async`` authenticator's answer counts, not its coroutine (which
    is truthy): a wrong password is 535, and pipelined commands wait."""
    decided = []

    async def check(credentials: Credentials) -> bool:
        await asyncio.sleep(0)  # a real lookup would wait on I/O here
        decided.append(credentials.username)
        return credentials.password == PASSWORD

    with Server(auth=check, auth_required=True) as server, greeted(server) as raw:
        raw.send(("AUTH PLAIN " + b64("\0mallory\0wrong") + "\r\nMAIL FROM:<m@example.com>\r\n").encode())
        assert raw.reply()[0] == 535
        assert raw.reply()[0] == 530  # answered after the 535: still not logged in
        assert raw.command("AUTH PLAIN " + b64(f"\0alice\0{PASSWORD}")) == 235
        send_one(raw)
    assert decided == ["mallory", "alice"]
    [message] = server.messages
    assert message.auth_identity == "alice"


def test_async_authenticator_raising_is_454() -> None:
    async def broken(credentials: Credentials) -> bool:
        raise RuntimeError("user database is down")

    with Server(auth=broken) as server, greeted(server) as raw:
        assert raw.command("AUTH PLAIN " + b64(f"\0alice\0{PASSWORD}")) == 454
        assert raw.command("NOOP") == 250


def test_dict_authenticator_is_a_copy() -> None:
    users = dict(USERS)
    with Server(auth=users) as server:
        users["alice"] = "changed"
        with greeted(server) as raw:
            assert raw.command("AUTH PLAIN " + b64(f"\0alice\0{PASSWORD}")) == 235


@pytest.mark.smtpd(auth=USERS, auth_mechanisms=("PLAIN",))
def test_only_the_configured_mechanisms(smtpd: Server) -> None:
    with greeted(smtpd) as raw:
        assert "AUTH PLAIN" in raw.exchange("EHLO client.test")[1].splitlines()
        assert raw.exchange("AUTH LOGIN") == (504, "5.5.4 Unrecognized authentication type")
        assert raw.command("AUTH PLAIN " + b64(f"\0alice\0{PASSWORD}")) == 235


# -- auth_required, auth_requires_tls -----------------------------------------


@pytest.mark.smtpd(auth=USERS, auth_required=True)
@pytest.mark.parametrize("command", ["MAIL FROM:<a@example.com>", "RCPT TO:<b@example.com>", "DATA"])
def test_auth_required_is_530_until_authenticated(smtpd: Server, command: str) -> None:
    with greeted(smtpd) as raw:
        assert raw.exchange(command) == (530, "5.7.0 Authentication required")
        assert raw.command("NOOP") == 250
        assert raw.command("AUTH PLAIN " + b64(f"\0alice\0{PASSWORD}")) == 235
        send_one(raw)  # twin: the same commands go through once logged in
    assert smtpd.messages[0].auth_identity == "alice"


@pytest.mark.smtpd(auth=USERS, auth_required=True)
def test_auth_required_refuses_smtplib_without_login(smtpd: Server) -> None:
    with smtplib.SMTP(smtpd.host, smtpd.port, timeout=TIMEOUT) as client:
        with pytest.raises(smtplib.SMTPSenderRefused) as refused:
            client.sendmail("a@example.com", ["b@example.com"], BODY)
        assert refused.value.smtp_code == 530
        client.login("alice", PASSWORD)
        assert client.sendmail("a@example.com", ["b@example.com"], BODY) == {}


@pytest.mark.smtpd(tls="starttls", auth=USERS, auth_requires_tls=True)
def test_auth_requires_tls_is_538_before_starttls(smtpd: Server) -> None:
    with smtplib.SMTP(smtpd.host, smtpd.port, timeout=TIMEOUT) as client:
        client.ehlo()
        with pytest.raises(smtplib.SMTPAuthenticationError) as refused:
            client.login("alice", PASSWORD)
        assert refused.value.smtp_code == 538
        client.starttls(context=smtpd.client_context())
        assert client.login("alice", PASSWORD)[0] == 235
        client.sendmail("a@example.com", ["b@example.com"], BODY)
    (message,) = smtpd.messages
    assert message.auth_identity == "alice"
    assert message.tls is not None and message.tls.mode == "starttls"


@pytest.mark.smtpd(tls="starttls", auth=USERS, auth_requires_tls=True)
def test_auth_requires_tls_raw(smtpd: Server) -> None:
    with greeted(smtpd) as raw:
        expected = (538, "5.7.11 Encryption required for requested authentication mechanism")
        assert raw.exchange("AUTH PLAIN " + b64(f"\0alice\0{PASSWORD}")) == expected
        raw.start_tls(smtpd.client_context())
        assert raw.command("EHLO client.test") == 250
        assert raw.command("AUTH PLAIN " + b64(f"\0alice\0{PASSWORD}")) == 235


@pytest.mark.smtpd(tls="starttls", auth=USERS)
def test_starttls_forgets_a_plaintext_login(smtpd: Server) -> None:
    with greeted(smtpd) as raw:
        assert raw.command("AUTH PLAIN " + b64(f"\0alice\0{PASSWORD}")) == 235
        raw.start_tls(smtpd.client_context())
        assert raw.command("EHLO client.test") == 250
        send_one(raw)
    assert smtpd.messages[0].auth_identity is None


@pytest.mark.smtpd(tls="implicit", auth=USERS, auth_requires_tls=True)
def test_auth_over_implicit_tls(smtpd: Server) -> None:
    with smtplib.SMTP_SSL(smtpd.host, smtpd.port, timeout=TIMEOUT, context=smtpd.client_context()) as client:
        assert client.login("alice", PASSWORD)[0] == 235
        client.sendmail("a@example.com", ["b@example.com"], BODY)
    (message,) = smtpd.messages
    assert message.auth_identity == "alice"
    assert message.tls is not None and message.tls.mode == "implicit"


@pytest.mark.smtpd(tls="starttls", auth=USERS, auth_requires_tls=True)
def test_aiosmtplib_auth_after_starttls(smtpd: Server) -> None:
    aiosmtplib_send(
        smtpd.address, BODY, start_tls=True, tls_context=smtpd.client_context(), username="alice", password=PASSWORD
    )
    (message,) = smtpd.messages
    assert message.auth_identity == "alice"
    assert message.tls is not None and message.tls.mode == "starttls"


@pytest.mark.smtpd(tls="starttls", auth=USERS)
@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_aiosmtplib_wrong_password_is_535(smtpd: Server, mechanism: str) -> None:
    async def login() -> None:
        async with aiosmtplib.SMTP(
            hostname=smtpd.host, port=smtpd.port, start_tls=True, tls_context=smtpd.client_context(), timeout=TIMEOUT
        ) as client:
            await client.ehlo()  # auth_plain()/auth_login() do not greet first
            if mechanism == "PLAIN":
                await client.auth_plain("alice", "wrong")
            else:
                await client.auth_login("alice", "wrong")

    with pytest.raises(aiosmtplib.SMTPAuthenticationError) as refused:
        asyncio.run(login())
    assert (refused.value.code, refused.value.message) == (535, "5.7.8 Authentication credentials invalid")
    assert smtpd.messages == []


@pytest.mark.smtpd(tls="starttls", auth=USERS, auth_requires_tls=True)
def test_aiosmtplib_auth_before_tls_is_538(smtpd: Server) -> None:
    async def login() -> None:
        async with aiosmtplib.SMTP(hostname=smtpd.host, port=smtpd.port, start_tls=False, timeout=TIMEOUT) as client:
            await client.ehlo()
            await client.auth_plain("alice", PASSWORD)

    with pytest.raises(aiosmtplib.SMTPAuthenticationError) as refused:
        asyncio.run(login())
    assert refused.value.code == 538
    assert smtpd.messages == []


# -- the error replies ------------------------------------------------------


@pytest.mark.smtpd(auth=USERS)
def test_error_replies(smtpd: Server) -> None:
    with Wire(smtpd.address) as raw:
        assert raw.exchange("AUTH PLAIN") == (503, "Error: send EHLO first")
        assert raw.command("EHLO client.test") == 250
        assert raw.exchange("AUTH") == (501, "Syntax: AUTH mechanism [initial-response]")
        assert raw.exchange("AUTH GSSAPI") == (504, "5.5.4 Unrecognized authentication type")
        assert raw.exchange("AUTH PLAIN !!not-base64!!") == (501, "5.5.2 Error: cannot decode response")
        assert raw.exchange("AUTH PLAIN") == (334, "")
        assert raw.exchange("%%%") == (501, "5.5.2 Error: cannot decode response")
        assert raw.exchange("AUTH LOGIN") == (334, b64("Username:"))
        assert raw.exchange("*") == (501, "5.0.0 Authentication cancelled")
        assert raw.exchange("AUTH PLAIN " + b64(f"\0alice\0{PASSWORD}x")) == (
            535,
            "5.7.8 Authentication credentials invalid",
        )
        assert raw.command("MAIL FROM:<a@example.com>") == 250
        assert raw.exchange("AUTH PLAIN " + b64(f"\0alice\0{PASSWORD}")) == (
            503,
            "Error: not permitted during a mail transaction",
        )
        assert raw.command("RSET") == 250
        # Twin: after all that, the right credentials still work, once.
        assert raw.exchange("AUTH PLAIN " + b64(f"\0alice\0{PASSWORD}")) == (235, "2.7.0 Authentication successful")
        assert raw.exchange("AUTH LOGIN") == (503, "5.5.1 Error: already authenticated")
        assert raw.exchange("NOOP") == (250, "OK")


def test_auth_not_offered_without_authenticator(server: Server) -> None:
    with greeted(server) as raw:
        assert not any(line.startswith("AUTH") for line in raw.exchange("EHLO client.test")[1].splitlines())
        assert raw.exchange("AUTH PLAIN") == (502, "Error: command not implemented")


def test_authenticator_raising_is_454_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    def broken(credentials: Credentials) -> bool:
        raise RuntimeError("user database is down")

    caplog.set_level(logging.DEBUG, logger="pytest_smtpd")
    with Server(auth=broken) as server, greeted(server) as raw:
        assert raw.exchange("AUTH PLAIN " + b64(f"\0alice\0{PASSWORD}")) == (
            454,
            "4.7.0 Temporary authentication failure",
        )
        assert raw.command("NOOP") == 250
    (record,) = [r for r in caplog.records if r.name == "pytest_smtpd" and r.levelno == logging.ERROR]
    assert "authenticator failed" in record.getMessage() and "'alice'" in record.getMessage()
    assert record.exc_info is not None and isinstance(record.exc_info[1], RuntimeError)
    assert PASSWORD not in caplog.text


# -- no password in logs or reprs -------------------------------------------


def test_passwords_never_show_in_logs_or_reprs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)  # everything, asyncio included
    recorder = Recorder()
    wrong = "wr0ng-Pa55"
    secrets = [PASSWORD, wrong, b64(f"\0alice\0{PASSWORD}"), b64(f"\0alice\0{wrong}"), b64(PASSWORD), b64(wrong)]
    with Server(tls="starttls", auth=recorder) as server:
        with smtplib.SMTP(server.host, server.port, timeout=TIMEOUT) as client:
            client.starttls(context=server.client_context())
            client.ehlo()
            client.user, client.password = "alice", wrong
            for mechanism, method in (("PLAIN", client.auth_plain), ("LOGIN", client.auth_login)):
                with pytest.raises(smtplib.SMTPAuthenticationError):
                    client.auth(mechanism, method)
            with pytest.raises(smtplib.SMTPAuthenticationError):
                client.login("alice", wrong)  # CRAM-MD5, then PLAIN, then LOGIN
            client.login("alice", PASSWORD)
            client.sendmail("a@example.com", ["b@example.com"], BODY)
        reprs = [repr(server), repr(server.messages), *(repr(c) for c in recorder.seen)]
        reprs += [str(c) for c in recorder.seen]
    # Twin: the secrets did reach the server, so their absence below means something.
    assert {c.password for c in recorder.seen if c.mechanism != "CRAM-MD5"} == {wrong}
    assert recorder.seen[-1].mechanism == "CRAM-MD5" and recorder.seen[-1].matches(PASSWORD)
    assert any("AUTH" in r.getMessage() and "failed" in r.getMessage() for r in caplog.records)
    for secret in secrets:
        assert secret not in caplog.text
        for text in reprs:
            assert secret not in text
    for credentials in recorder.seen:
        assert credentials.digest not in repr(credentials) or not credentials.digest


def test_xoauth2_token_never_shows_in_reprs() -> None:
    credentials = Credentials("XOAUTH2", "alice", token="ya29.secret-token")
    assert "ya29" not in repr(credentials)
    assert credentials.matches("ya29.secret-token")
