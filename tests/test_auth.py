"""The SASL mechanisms on their own, without sockets."""

from __future__ import annotations

import base64
import hmac

import pytest

from pytest_smtpd.auth import MECHANISMS, AuthError, Credentials, check_against, decode_base64


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def start(name: str, initial: str | None = None) -> str | Credentials:
    return MECHANISMS[name]("mx.test").start(initial)


def test_plain_with_initial_response() -> None:
    credentials = start("PLAIN", b64(b"\0alice\0s3cret"))
    assert credentials == Credentials("PLAIN", "alice", "s3cret")


def test_plain_without_initial_response_sends_empty_challenge() -> None:
    mechanism = MECHANISMS["PLAIN"]("mx.test")
    assert mechanism.start(None) == ""
    credentials = mechanism.step(b64(b"boss\0alice\0s3cret"))
    assert isinstance(credentials, Credentials)
    assert (credentials.authzid, credentials.username, credentials.password) == ("boss", "alice", "s3cret")


@pytest.mark.parametrize("payload", [b"alice\0s3cret", b"\0\0s3cret", b"a\0b\0c\0d"])
def test_plain_malformed_is_refused(payload: bytes) -> None:
    with pytest.raises(AuthError):
        start("PLAIN", b64(payload))


def test_login_asks_username_then_password() -> None:
    mechanism = MECHANISMS["LOGIN"]("mx.test")
    assert base64.b64decode(str(mechanism.start(None))) == b"Username:"
    assert base64.b64decode(str(mechanism.step(b64(b"alice")))) == b"Password:"
    assert mechanism.step(b64(b"s3cret")) == Credentials("LOGIN", "alice", "s3cret")


def test_login_with_username_on_the_auth_line() -> None:
    mechanism = MECHANISMS["LOGIN"]("mx.test")
    assert base64.b64decode(str(mechanism.start(b64(b"alice")))) == b"Password:"
    assert mechanism.step(b64(b"s3cret")) == Credentials("LOGIN", "alice", "s3cret")


def test_cram_md5_round_trip() -> None:
    mechanism = MECHANISMS["CRAM-MD5"]("mx.test")
    challenge = base64.b64decode(str(mechanism.start(None)))
    assert challenge.startswith(b"<") and challenge.endswith(b"@mx.test>")
    digest = hmac.new(b"s3cret", challenge, "md5").hexdigest()
    credentials = mechanism.step(b64(b"alice " + digest.encode()))
    assert isinstance(credentials, Credentials)
    assert credentials.matches("s3cret")
    assert not credentials.matches("wrong")


def test_cram_md5_challenges_are_unique() -> None:
    assert start("CRAM-MD5") != start("CRAM-MD5")


def test_xoauth2() -> None:
    credentials = start("XOAUTH2", b64(b"user=alice\x01auth=Bearer tok3n\x01\x01"))
    assert isinstance(credentials, Credentials)
    assert credentials.username == "alice"
    assert credentials.matches("tok3n")
    assert not credentials.matches("other")


def test_bad_base64_is_501() -> None:
    with pytest.raises(AuthError) as info:
        start("PLAIN", "not base64!")
    assert info.value.code == 501


def test_equals_sign_is_an_empty_response() -> None:
    assert decode_base64("=") == b""


def test_password_is_not_in_repr() -> None:
    credentials = Credentials("PLAIN", "alice", "s3cret")
    assert "s3cret" not in repr(credentials)
    assert "alice" in repr(credentials)


def test_check_against_a_dict() -> None:
    check = check_against({"alice": "s3cret"})
    assert check(Credentials("PLAIN", "alice", "s3cret"))
    assert not check(Credentials("PLAIN", "alice", "wrong"))
    assert not check(Credentials("PLAIN", "mallory", "s3cret"))
