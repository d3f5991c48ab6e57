"""Releasing a caught message: relaying it, as received, to a real SMTP
server (with STARTTLS when that server offers it), and telling what the
server answered."""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from typing import Any

import aiosmtplib

from ..message import Message

__all__ = ["Released", "release"]

#: Seconds the upstream server gets for each step.
RELEASE_TIMEOUT = 30.0


@dataclass
class Released:
    """What the upstream server said: ``code`` and ``message`` of its reply
    to the message (or of the refusal that ended the relay), the
    recipients it refused, and whether the connection used TLS."""

    ok: bool
    code: int | None
    message: str
    refused: dict[str, list[Any]] = field(default_factory=dict)
    tls: bool = False

    def as_json(self) -> dict[str, Any]:
        """The release endpoint's answer."""
        return {"ok": self.ok, "code": self.code, "message": self.message, "refused": self.refused, "tls": self.tls}


async def release(
    message: Message,
    to: list[str],
    host: str,
    port: int,
    *,
    tls_context: ssl.SSLContext | None = None,
    timeout: float = RELEASE_TIMEOUT,
) -> Released:
    """Relay ``message`` to ``to`` through ``host:port``: STARTTLS when the
    server offers it (certificates verified, against ``tls_context`` if
    given), the envelope sender as received."""
    client = aiosmtplib.SMTP(hostname=host, port=port, start_tls=None, tls_context=tls_context, timeout=timeout)
    try:
        await client.connect()
    except (aiosmtplib.SMTPException, OSError, ssl.SSLError) as exc:
        code = getattr(exc, "code", None)
        return Released(False, code if isinstance(code, int) else None, f"cannot connect to {host}:{port}: {exc}")
    try:
        tls = client.get_transport_info("ssl_object") is not None
        refused: dict[str, list[Any]] = {}
        try:
            await client.mail(message.mail_from)
            for rcpt in to:
                try:
                    await client.rcpt(rcpt)
                except aiosmtplib.SMTPRecipientRefused as exc:
                    refused[rcpt] = [exc.code, exc.message]
            if len(refused) == len(to):
                first = next(iter(refused.values()))
                return Released(False, first[0], first[1], refused, tls)
            reply = await client.data(message.data)
        except aiosmtplib.SMTPResponseException as exc:
            return Released(False, exc.code, exc.message, refused, tls)
        except (aiosmtplib.SMTPException, OSError) as exc:
            return Released(False, None, str(exc), refused, tls)
        return Released(True, reply.code, reply.message, refused, tls)
    finally:
        try:
            await client.quit()
        except (aiosmtplib.SMTPException, OSError):
            client.close()
