"""Delivery Status Notification requests (RFC 3461) as a test reads them:
the RET and ENVID of MAIL, and each recipient's NOTIFY and ORCPT, with
xtext decoded. Pure functions, used by the protocol core to check the
parameters and by ``Message.dsn`` to present them. No DSN is ever sent:
the server is the final destination."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["DSN", "DSNError", "DSNRecipient", "check_envid", "check_notify", "check_orcpt", "dsn_from", "xtext_decode"]

NOTIFY_VALUES = frozenset({"SUCCESS", "FAILURE", "DELAY"})
_XTEXT = re.compile(r"(?:[!-*,-<>-~]|\+[0-9A-F]{2})*\Z")


class DSNError(ValueError):
    """A DSN parameter that cannot be taken: ``code`` is 501 for bad syntax,
    555 for a value that is not defined."""

    def __init__(self, message: str, code: int = 501) -> None:
        super().__init__(message)
        self.code = code


def xtext_decode(text: str) -> str:
    """RFC 3461 4: ``+XX`` is the octet with that hex value."""
    if not _XTEXT.match(text):
        raise DSNError(f"not xtext: {text!r}")
    return re.sub(r"\+([0-9A-F]{2})", lambda m: chr(int(m.group(1), 16)), text)


def check_envid(value: str) -> None:
    """Raise :class:`DSNError` unless ``value`` is a valid ENVID (xtext, at
    most 100 characters: RFC 3461 4.4)."""
    if len(value) > 100:
        raise DSNError("ENVID is longer than 100 characters")
    xtext_decode(value)


def check_notify(value: str) -> None:
    """``NEVER``, or any of SUCCESS, FAILURE, DELAY separated by commas."""
    items = [item.upper() for item in value.split(",")]
    if items == ["NEVER"]:
        return
    if "NEVER" in items or len(set(items)) != len(items) or "" in items:
        raise DSNError("NOTIFY is NEVER, or SUCCESS, FAILURE and DELAY separated by commas")
    unknown = [item for item in items if item not in NOTIFY_VALUES]
    if unknown:
        raise DSNError(f"NOTIFY value {unknown[0]!r} is not defined", code=555)


def check_orcpt(value: str) -> None:
    """``addr-type;xtext``, e.g. ``rfc822;bob@example.com``."""
    kind, semicolon, address = value.partition(";")
    if not semicolon or not kind or not address:
        raise DSNError("ORCPT is addr-type;address, e.g. rfc822;bob@example.com")
    xtext_decode(address)


@dataclass(frozen=True, slots=True)
class DSNRecipient:
    """What one RCPT asked for."""

    address: str
    #: ``("SUCCESS", "FAILURE", "DELAY")``, ``("NEVER",)``, or None if not given.
    notify: tuple[str, ...] | None
    #: The original recipient, decoded, with its type: ``"rfc822;bob@example.com"``.
    orcpt: str | None


@dataclass(frozen=True, slots=True)
class DSN:
    """The DSN request of a message (RFC 3461)."""

    #: ``"FULL"``, ``"HDRS"`` or None.
    ret: str | None
    #: The envelope id, decoded, or None.
    envid: str | None
    recipients: tuple[DSNRecipient, ...]

    def recipient(self, address: str) -> DSNRecipient:
        """The request for ``address`` (KeyError if it was not a recipient)."""
        for recipient in self.recipients:
            if recipient.address == address:
                return recipient
        raise KeyError(address)


def _value(options: Sequence[str], keyword: str) -> str | None:
    prefix = keyword + "="
    return next((option[len(prefix) :] for option in options if option.upper().startswith(prefix)), None)


def dsn_from(mail_options: Sequence[str], rcpt_tos: Sequence[str], options_per_rcpt: Sequence[Sequence[str]]) -> DSN:
    """The request from the parameters the core accepted (checked already)."""
    recipients = []
    for address, options in zip(rcpt_tos, options_per_rcpt, strict=False):
        notify = _value(options, "NOTIFY")
        orcpt = _value(options, "ORCPT")
        if orcpt is not None:
            kind, _, original = orcpt.partition(";")
            orcpt = f"{kind};{xtext_decode(original)}"
        recipients.append(
            DSNRecipient(address, tuple(notify.upper().split(",")) if notify is not None else None, orcpt)
        )
    envid = _value(mail_options, "ENVID")
    return DSN(
        ret=_value(mail_options, "RET"),
        envid=xtext_decode(envid) if envid is not None else None,
        recipients=tuple(recipients),
    )
