"""DKIM, offline: test keys to sign with (``DKIMKey``, made with
``cryptography``) and verifying a received message's signatures against
them with dkimpy, no DNS look-up. dkimpy is the optional extra
``pytest-smtpd[dkim]``, imported on first verify or sign."""

from __future__ import annotations

import base64
import importlib
import logging
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Union

__all__ = ["DKIMKey", "DKIMResult", "KeysArg", "forget_key", "make_key", "verify"]

#: What ``verify_dkim(keys=...)`` takes: a key, several, or ``{"selector._domainkey.domain": txt}``.
KeysArg = Union["DKIMKey", Iterable["DKIMKey"], Mapping[str, str], None]

INSTALL_HINT = "DKIM needs dkimpy, the optional extra: pip install 'pytest-smtpd[dkim]'"


def _dkimpy() -> ModuleType:
    try:
        return importlib.import_module("dkim")
    except ImportError as exc:
        raise ModuleNotFoundError(INSTALL_HINT, name="dkim") from exc


@dataclass(frozen=True)
class DKIMKey:
    """A DKIM test key pair: sign with ``private_key_pem``; the record
    ``public_key_dns`` is what DNS would publish at ``dns_name``."""

    domain: str
    selector: str
    #: The RSA private key, PKCS#1 PEM (``-----BEGIN RSA PRIVATE KEY-----``).
    private_key_pem: bytes = field(repr=False)
    #: The TXT record text, ``v=DKIM1; k=rsa; p=...``.
    public_key_dns: str = field(repr=False)

    @property
    def dns_name(self) -> str:
        """Where DNS would publish the key: ``selector._domainkey.domain``."""
        return f"{self.selector}._domainkey.{self.domain}"

    @property
    def records(self) -> dict[str, str]:
        """``{dns_name: public_key_dns}``, as ``verify_dkim(keys=...)`` takes."""
        return {self.dns_name: self.public_key_dns}

    def sign(self, data: bytes, headers: Iterable[str] = ("From", "To", "Subject", "Date", "Message-ID")) -> bytes:
        """``data`` with a ``DKIM-Signature`` header on top, signed with this
        key by dkimpy (relaxed/simple), covering ``headers``."""
        signature = _dkimpy().sign(
            data,
            self.selector.encode(),
            self.domain.encode(),
            self.private_key_pem,
            include_headers=[name.encode() for name in headers],
        )
        return bytes(signature) + data


@dataclass(frozen=True, slots=True)
class DKIMResult:
    """The outcome of verifying a message's DKIM signature."""

    valid: bool
    #: The signature's ``d=`` and ``s=``, or None without a signature.
    domain: str | None
    selector: str | None
    #: Why it is not valid (``"body hash mismatch ..."``), or ``"valid"``.
    reason: str

    def __bool__(self) -> bool:
        return self.valid


#: The keys ``make_key`` made and not forgotten: ``verify_dkim()``'s default.
_KEYS: dict[str, DKIMKey] = {}
_KEYS_LOCK = threading.Lock()


def make_key(domain: str = "example.test", selector: str = "test", bits: int = 2048) -> DKIMKey:
    """A fresh RSA key (``cryptography``), known to ``verify_dkim()`` until
    ``forget_key``."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    private = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )
    der = private.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    key = DKIMKey(domain, selector, pem, f"v=DKIM1; k=rsa; p={base64.b64encode(der).decode('ascii')}")
    with _KEYS_LOCK:
        _KEYS[key.dns_name.lower()] = key
    return key


def forget_key(key: DKIMKey) -> None:
    """``verify_dkim()`` no longer knows ``key`` (the fixture's teardown)."""
    with _KEYS_LOCK:
        if _KEYS.get(key.dns_name.lower()) is key:
            del _KEYS[key.dns_name.lower()]


def _records(keys: KeysArg) -> dict[str, str]:
    if keys is None:
        with _KEYS_LOCK:
            return {name: key.public_key_dns for name, key in _KEYS.items()}
    if isinstance(keys, DKIMKey):
        return {keys.dns_name.lower(): keys.public_key_dns}
    if isinstance(keys, Mapping):
        return {str(name).lower().rstrip("."): str(txt) for name, txt in keys.items()}
    return {key.dns_name.lower(): key.public_key_dns for key in keys}


class _Reasons(logging.Handler):
    """Keeps what dkimpy logs as an error: its reason for some failures."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


_TAG = re.compile(rb"(?:^|;)\s*([a-z]+)\s*=\s*([^;]*)", re.IGNORECASE)


def _tags(header_value: bytes) -> dict[str, str]:
    unfolded = re.sub(rb"\s+", b" ", header_value)
    return {
        name.decode("ascii", "replace").lower(): value.decode("ascii", "replace").strip()
        for name, value in _TAG.findall(unfolded)
    }


def _signature_headers(data: bytes) -> list[bytes]:
    """The values of the DKIM-Signature fields in the header section, unfolded."""
    head = re.split(rb"\r?\n\r?\n", data, maxsplit=1)[0]
    fields = re.split(rb"\r?\n(?![ \t])", head)
    return [f.split(b":", 1)[1] for f in fields if f.split(b":", 1)[0].strip().lower() == b"dkim-signature"]


def _verify_one(dkim: Any, data: bytes, index: int, records: Mapping[str, str]) -> tuple[bool, str]:
    asked: list[str] = []

    def dnsfunc(name: bytes, timeout: float = 5) -> bytes:
        wanted = name.decode("ascii", "replace").lower().rstrip(".")
        asked.append(wanted)
        return records.get(wanted, "").encode("ascii")

    reasons = _Reasons()
    logger = logging.Logger("pytest_smtpd.dkim")
    logger.addHandler(reasons)
    try:
        verifier = dkim.DKIM(data, logger=logger)
        ok = bool(verifier.verify(idx=index, dnsfunc=dnsfunc))
    except dkim.DKIMException as exc:
        return False, str(exc)
    if ok:
        return True, "valid"
    if asked and asked[-1] not in records:
        known = ", ".join(sorted(records)) or "none"
        return False, f"no key for {asked[-1]!r} (keys given: {known})"
    if reasons.messages:
        return False, reasons.messages[-1]
    return False, "signature mismatch: a signed header was changed, or another key signed"


def verify(data: bytes, keys: KeysArg = None) -> DKIMResult:
    """Verify the DKIM signatures of ``data`` against ``keys`` (by default
    the keys ``make_key`` made): valid if one is; else the first's reason."""
    dkim = _dkimpy()
    records = _records(keys)
    signatures = _signature_headers(data)
    if not signatures:
        return DKIMResult(False, None, None, "no DKIM-Signature header")
    first: DKIMResult | None = None
    for index, header in enumerate(signatures):
        tags = _tags(header)
        ok, reason = _verify_one(dkim, data, index, records)
        result = DKIMResult(ok, tags.get("d"), tags.get("s"), reason)
        if ok:
            return result
        first = first or result
    assert first is not None
    return first
