"""SASL mechanisms for SMTP AUTH (RFC 4954) as pure challenge/response steps.

A mechanism object takes the client's responses (base64 text, already
stripped of CRLF) and answers with the next challenge or, once it has heard
enough, the ``Credentials`` for the application to check. Nothing here does
I/O or knows the user database.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

__all__ = [
    "MECHANISMS",
    "AuthError",
    "Authenticator",
    "Credentials",
    "Mechanism",
    "check_against",
    "decode_base64",
]


class AuthError(ValueError):
    """The client's response is unusable; ``code`` is the reply to give."""

    def __init__(self, message: str, code: int = 501) -> None:
        super().__init__(message)
        self.code = code


def decode_base64(text: str) -> bytes:
    """Strict base64 as RFC 4954 asks; ``=`` alone is an empty response."""
    if text == "=":
        return b""
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise AuthError("cannot decode response") from exc


def encode_base64(data: bytes) -> str:
    """``data`` as the base64 text of a ``334`` challenge."""
    return base64.b64encode(data).decode("ascii")


@dataclass(frozen=True)
class Credentials:
    """What the client offered. ``password`` never shows in ``repr``."""

    #: The SASL mechanism used: ``"PLAIN"``, ``"LOGIN"``, ``"CRAM-MD5"`` or ``"XOAUTH2"``.
    mechanism: str
    #: Who is logging in (the authentication identity).
    username: str
    #: For PLAIN and LOGIN: the password as sent.
    password: str | None = field(default=None, repr=False)
    #: The identity to act as (PLAIN's authzid); "" when not given.
    authzid: str = ""
    #: For CRAM-MD5: the challenge sent and the client's hex digest.
    challenge: bytes = field(default=b"", repr=False)
    digest: str = field(default="", repr=False)
    #: For XOAUTH2: the bearer token.
    token: str | None = field(default=None, repr=False)

    def matches(self, secret: str) -> bool:
        """Whether the client proved knowledge of ``secret`` (a password, or
        for XOAUTH2 the expected token)."""
        if self.mechanism == "CRAM-MD5":
            expected = hmac.new(secret.encode("utf-8"), self.challenge, "md5").hexdigest()
            return hmac.compare_digest(expected, self.digest.lower())
        offered = self.token if self.mechanism == "XOAUTH2" else self.password
        return offered is not None and hmac.compare_digest(offered.encode("utf-8"), secret.encode("utf-8"))


#: Decides whether credentials are good: ``True``/``False``.
#: Says whether the credentials are good; may be ``async``.
Authenticator = Callable[[Credentials], bool | Awaitable[bool]]


def check_against(users: Mapping[str, str]) -> Authenticator:
    """An authenticator for a ``{"user": "password"}`` dict (for XOAUTH2 the
    value is the expected token). A dict says nothing about who may act for
    whom, so an authorization identity other than the user's own is refused
    (RFC 4616 5); a callable authenticator can allow it."""

    def authenticate(credentials: Credentials) -> bool:
        if credentials.authzid not in ("", credentials.username):
            return False
        secret = users.get(credentials.username)
        return secret is not None and credentials.matches(secret)

    return authenticate


class Mechanism:
    """One SASL exchange. ``start()`` takes the initial response (or None)
    and each ``step()`` a further response; both return a challenge to send
    (``str``, base64) or the finished ``Credentials``."""

    name = ""

    def __init__(self, hostname: str) -> None:
        self.hostname = hostname

    def start(self, initial: str | None) -> str | Credentials:
        """Begin the exchange with the AUTH line's initial response (base64;
        ``=`` for an empty one, RFC 4954 4), or None when the client sent none.
        Returns the first challenge, or the credentials when the initial
        response was enough. Raises ``AuthError`` for a malformed one."""
        raise NotImplementedError

    def step(self, response: str) -> str | Credentials:
        """Take the client's answer (base64) to the last challenge; returns
        the next challenge or the credentials. Raises ``AuthError`` for a
        malformed answer."""
        raise NotImplementedError


def _text(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise AuthError("credentials are not UTF-8") from exc


class Plain(Mechanism):
    """RFC 4616: ``authzid NUL authcid NUL passwd``, with or without an
    initial response."""

    name = "PLAIN"

    def start(self, initial: str | None) -> str | Credentials:
        return "" if initial is None else self.step(initial)

    def step(self, response: str) -> str | Credentials:
        parts = decode_base64(response).split(b"\0")
        if len(parts) != 3 or not parts[1]:
            raise AuthError("PLAIN response must be authzid NUL username NUL password")
        authzid, username, password = (_text(part) for part in parts)
        return Credentials("PLAIN", username, password, authzid=authzid)


class Login(Mechanism):
    """The LOGIN mechanism (draft-murchison-sasl-login): username and
    password in turn; the username may come on the AUTH line itself."""

    name = "LOGIN"
    USERNAME = encode_base64(b"Username:")
    PASSWORD = encode_base64(b"Password:")

    def __init__(self, hostname: str) -> None:
        super().__init__(hostname)
        self.username: str | None = None

    def start(self, initial: str | None) -> str | Credentials:
        if initial is None:
            return self.USERNAME
        return self.step(initial)

    def step(self, response: str) -> str | Credentials:
        value = _text(decode_base64(response))
        if self.username is None:
            if not value:
                raise AuthError("LOGIN needs a username")
            self.username = value
            return self.PASSWORD
        return Credentials("LOGIN", self.username, value)


class CramMD5(Mechanism):
    """RFC 2195: the server sends a unique challenge, the client answers
    ``username hex(hmac-md5(password, challenge))``."""

    name = "CRAM-MD5"

    def __init__(self, hostname: str) -> None:
        super().__init__(hostname)
        unique = int.from_bytes(os.urandom(8), "big")
        self.challenge = f"<{unique}.{time.time_ns()}@{hostname}>".encode("ascii", "replace")

    def start(self, initial: str | None) -> str | Credentials:
        if initial is not None:
            raise AuthError("CRAM-MD5 takes no initial response")
        return encode_base64(self.challenge)

    def step(self, response: str) -> str | Credentials:
        username, _, digest = _text(decode_base64(response)).rpartition(" ")
        if not username or len(digest) != 32:
            raise AuthError("CRAM-MD5 response must be username SP digest")
        return Credentials("CRAM-MD5", username, challenge=self.challenge, digest=digest)


class XOAuth2(Mechanism):
    """Google's XOAUTH2: ``user=U ^A auth=Bearer T ^A ^A``."""

    name = "XOAUTH2"

    def start(self, initial: str | None) -> str | Credentials:
        return "" if initial is None else self.step(initial)

    def step(self, response: str) -> str | Credentials:
        fields = dict(part.split("=", 1) for part in _text(decode_base64(response)).split("\x01") if "=" in part)
        username, auth = fields.get("user", ""), fields.get("auth", "")
        scheme, _, token = auth.partition(" ")
        if not username or scheme.lower() != "bearer" or not token:
            raise AuthError("XOAUTH2 response must carry user= and auth=Bearer <token>")
        return Credentials("XOAUTH2", username, token=token)


MECHANISMS: dict[str, type[Mechanism]] = {m.name: m for m in (Plain, Login, CramMD5, XOAuth2)}
