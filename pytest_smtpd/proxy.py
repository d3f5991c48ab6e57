"""``PureProxy``: an SMTP server that relays every message to an upstream
server, as the stdlib ``smtpd.PureProxy`` did, but without losing mail.

The stdlib class ignored the upstream's answer: a message the upstream
refused, or that could not be handed over at all, was still acknowledged
with ``250``. Here the client's end-of-DATA reply says what happened:

* every recipient accepted and the message taken: ``250 OK``;
* some recipients refused: ``250`` naming the refused ones (the message
  went to the others, so refusing it would make the client send it twice);
* the upstream refused the sender, every recipient or the message: its
  code and text (``421``, which means the upstream closed its side,
  becomes ``451``);
* the upstream could not be reached, timed out, failed STARTTLS or AUTH:
  ``451``, so the client keeps the message and tries again.
"""

from __future__ import annotations

import ipaddress
import re
import ssl
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiosmtplib

from . import compat
from .compat import SMTPServer
from .server import default_hostname

__all__ = ["DEFAULT_UPSTREAM_TIMEOUT", "DeliveryResult", "PureProxy", "add_x_peer", "is_loopback"]

#: Seconds the proxy waits for the upstream server at each step.
DEFAULT_UPSTREAM_TIMEOUT = 60.0

_LINE_ENDING = re.compile(rb"\r\n|\r|\n")


def is_loopback(host: str) -> bool:
    """Whether ``host`` names a loopback address: ``localhost``, an address
    in 127.0.0.0/8, or ``::1``. Other names are not looked up: they count as
    not loopback."""
    name = host.strip().rstrip(".").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name.strip("[]")).is_loopback
    except ValueError:
        return False


def to_wire(data: bytes | str) -> bytes:
    """Message data as it goes on the wire: bytes, every line ending CRLF,
    the last line ended. Accepts both the ``process_message`` form (lines
    joined by ``\\n``, no final line ending) and data already in CRLF form."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    if not raw:
        return b""
    raw = _LINE_ENDING.sub(b"\r\n", raw)
    return raw if raw.endswith(b"\r\n") else raw + b"\r\n"


def add_x_peer(data: bytes, peer_host: str) -> bytes:
    """Insert ``X-Peer: <peer_host>`` after the last header of a message in
    CRLF form, as the stdlib proxy did."""
    header = f"X-Peer: {peer_host}\r\n".encode()
    if data.startswith(b"\r\n"):
        return header + data
    end = data.find(b"\r\n\r\n")
    if end >= 0:
        return data[: end + 2] + header + data[end + 2 :]
    # Headers only, no body.
    if data and not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data + header


def _clean(text: str) -> str:
    """Upstream reply text made safe to repeat in a reply of ours."""
    return text.replace("\r", "").replace("\0", "").strip()


def _one_line(text: str) -> str:
    return " ".join(_clean(text).split("\n"))


@dataclass
class DeliveryResult:
    """What happened to one message handed to the upstream server."""

    #: The end-of-DATA reply for our client: None for ``250 OK``.
    reply: str | None
    #: The recipients the upstream took the message for.
    delivered: list[str] = field(default_factory=list)
    #: The recipients it did not take it for, with the upstream's code and
    #: text (the stdlib's ``_deliver`` shape). The code is -1 when there was
    #: no upstream reply (unreachable, timeout, TLS failure).
    refused: dict[str, tuple[int, str]] = field(default_factory=dict)


class _Refused(Exception):
    """Ends a delivery attempt early with the reply to give the client."""

    def __init__(self, reply: str) -> None:
        super().__init__(reply)
        self.reply = reply


def _upstream_refusal(code: int, text: str, context: str = "") -> str:
    """Our reply repeating an upstream refusal. A 421 means the upstream
    closed the connection, not that the message is bad; our client's
    session goes on, so it becomes 451."""
    text = _clean(text)
    if code == 421 or not 400 <= code <= 599:
        return f"451 4.4.2 Upstream {context}failed: {code} {_one_line(text)}"
    return f"{code} {text}" if text else str(code)


class PureProxy(SMTPServer):
    """Relays every message to ``remoteaddr``, keeping the envelope (the
    sender and every recipient) and adding an ``X-Peer`` header.

    ``localaddr`` must be a loopback address (``localhost``, 127.0.0.0/8,
    ``::1``) unless ``allow_open_relay=True``: a proxy reachable from other
    hosts relays anyone's mail.

    Upstream options (keyword-only):

    ``upstream_starttls``
        Upgrade the upstream connection with STARTTLS; if the upstream does
        not offer it, or the handshake fails, the message gets ``451``.
    ``upstream_tls_context``
        The ``ssl.SSLContext`` for STARTTLS; by default one that verifies
        the upstream certificate against the system's CAs.
    ``upstream_auth``
        ``(username, password)`` to log in with (AUTH). Without STARTTLS
        the password crosses the network in clear.
    ``upstream_timeout``
        Seconds to wait for the upstream at each step (default 60).

    With ``enable_SMTPUTF8=True`` (which the stdlib refused) a message sent
    with SMTPUTF8 is relayed with SMTPUTF8 when the upstream offers it.
    When it does not, the client's reply to the end of DATA (the proxy
    connects upstream only then) is permanent: a non-ASCII address gets
    ``553 5.6.7``, UTF-8 headers ``550 5.6.7``; a message with ASCII
    headers is relayed without the parameter, since nothing in it needs it
    (an 8-bit body with ``BODY=8BITMIME``, as below). Likewise ``BODY=8BITMIME``
    is passed on when the upstream offers 8BITMIME; otherwise 8-bit data
    gets ``554 5.6.3`` (the proxy does not convert to 7 bit).

    With ``enable_CHUNKING`` the proxy takes BDAT but does not offer
    BINARYMIME: it relays with DATA, which cannot carry binary data
    unchanged, so a client is not invited to send any.

    ``process_message`` returns a coroutine, which the server runs; a
    subclass that overrides it must return what ``super().process_message()``
    returns.
    """

    _binarymime = False

    def __init__(
        self,
        localaddr: tuple[str, int],
        remoteaddr: tuple[str, int] | None,
        *args: Any,
        allow_open_relay: bool = False,
        upstream_starttls: bool = False,
        upstream_tls_context: ssl.SSLContext | None = None,
        upstream_auth: tuple[str, str] | None = None,
        upstream_timeout: float = DEFAULT_UPSTREAM_TIMEOUT,
        **kwargs: Any,
    ) -> None:
        if remoteaddr is None:
            raise ValueError(f"{type(self).__name__} needs remoteaddr, the (host, port) of the upstream server")
        if not allow_open_relay and not is_loopback(localaddr[0]):
            raise ValueError(
                f"{type(self).__name__} would listen on {localaddr[0]!r}, which is not a loopback address: "
                "other hosts could relay mail through it (an open relay). Listen on localhost, 127.0.0.1 or ::1, "
                "or pass allow_open_relay=True if the network is protected otherwise."
            )
        if upstream_timeout <= 0:
            raise ValueError(f"upstream_timeout must be positive, got {upstream_timeout}")
        self.allow_open_relay = allow_open_relay
        self.upstream_starttls = upstream_starttls
        self.upstream_tls_context = upstream_tls_context
        self.upstream_auth = upstream_auth
        self.upstream_timeout = upstream_timeout
        super().__init__(localaddr, remoteaddr, *args, **kwargs)

    @property
    def remoteaddr(self) -> tuple[str, int]:
        """The upstream server's ``(host, port)``."""
        assert self._remoteaddr is not None
        return self._remoteaddr

    def process_message(
        self, peer: tuple[str, int], mailfrom: str, rcpttos: list[str], data: bytes | str, **kwargs: Any
    ) -> Awaitable[str | None]:
        """Relay the message upstream with ``X-Peer`` added. Returns a
        coroutine the server awaits, resolving to the reply for the client
        (None: ``250 OK``); an override must return what
        ``super().process_message(...)`` returns."""
        message = add_x_peer(to_wire(data), peer[0])
        mail_options = list(kwargs.get("mail_options") or [])
        return self._relay(mailfrom, list(rcpttos), message, mail_options)

    async def _relay(self, mailfrom: str, rcpttos: list[str], message: bytes, mail_options: list[str]) -> str | None:
        result = await self.deliver(mailfrom, rcpttos, message, mail_options=mail_options)
        if result.refused:
            print("we got some refusals:", result.refused, file=compat._debugstream())
        return result.reply

    async def deliver(
        self, mailfrom: str, rcpttos: Sequence[str], data: bytes, *, mail_options: Sequence[str] = ()
    ) -> DeliveryResult:
        """Hand one message to the upstream server and say what became of it.

        ``data`` is the message in CRLF form, sent as is (no ``X-Peer`` is
        added here). ``mail_options`` are the client's MAIL parameters; only
        ``SMTPUTF8`` and ``BODY=8BITMIME`` are passed on, and ``SIZE`` is
        computed afresh. Runs on the server's event loop; never raises for
        an upstream problem, which ends up in ``reply`` instead. The null
        sender may be given as ``""`` or, as ``process_message`` has it,
        ``"<>"``.
        """
        mailfrom = compat.envelope_address(mailfrom)
        rcpttos = list(rcpttos)
        host, port = self.remoteaddr
        client = aiosmtplib.SMTP(
            hostname=host,
            port=port,
            timeout=self.upstream_timeout,
            start_tls=False,
            local_hostname=default_hostname(),
        )
        print(f"relaying a message from {mailfrom!r} to {rcpttos!r} via {host}:{port}", file=compat._debugstream())
        try:
            return await self._transaction(client, mailfrom, rcpttos, data, [o.upper() for o in mail_options])
        except _Refused as refusal:
            return DeliveryResult(refusal.reply, refused=dict.fromkeys(rcpttos, _code_and_text(refusal.reply)))
        except aiosmtplib.SMTPResponseException as exc:
            reply = _upstream_refusal(exc.code, exc.message)
            return DeliveryResult(reply, refused=dict.fromkeys(rcpttos, (exc.code, exc.message)))
        except (OSError, ssl.SSLError, aiosmtplib.SMTPException) as exc:
            # Unreachable, timed out, disconnected, TLS failed: the message
            # went nowhere, so the client must keep it.
            reason = str(exc) or type(exc).__name__
            reply = f"451 4.4.1 Cannot relay to {host}:{port}: {_one_line(reason)}"
            return DeliveryResult(reply, refused=dict.fromkeys(rcpttos, (-1, reason)))
        finally:
            if client.is_connected:
                client.close()

    async def _transaction(
        self, client: aiosmtplib.SMTP, mailfrom: str, rcpttos: list[str], data: bytes, options: list[str]
    ) -> DeliveryResult:
        await client.connect()
        await self._greet(client)
        mail_options, encoding = self._mail_options(client, mailfrom, rcpttos, data, options)
        try:
            await client.mail(mailfrom, options=mail_options, encoding=encoding)
        except aiosmtplib.SMTPSenderRefused as exc:
            raise _Refused(_upstream_refusal(exc.code, exc.message, "MAIL ")) from exc
        except ValueError as exc:  # aiosmtplib will not put it on a command line
            raise _Refused(f"553 5.1.7 Cannot relay this sender: {_one_line(str(exc))}") from exc
        delivered: list[str] = []
        refused: dict[str, tuple[int, str]] = {}
        for recipient in rcpttos:
            try:
                await client.rcpt(recipient, encoding=encoding)
            except aiosmtplib.SMTPRecipientRefused as exc:
                if exc.code == 421:
                    raise
                refused[recipient] = (exc.code, _clean(exc.message))
            except ValueError as exc:
                refused[recipient] = (553, f"5.1.3 Cannot relay this recipient: {_one_line(str(exc))}")
            else:
                delivered.append(recipient)
        if not delivered:
            await _quit(client)
            return DeliveryResult(summarize(delivered, refused), refused=refused)
        try:
            await client.data(data)
        except aiosmtplib.SMTPDataError as exc:
            raise _Refused(_upstream_refusal(exc.code, exc.message, "DATA ")) from exc
        await _quit(client)
        return DeliveryResult(summarize(delivered, refused), delivered=delivered, refused=refused)

    async def _greet(self, client: aiosmtplib.SMTP) -> None:
        """EHLO (HELO if refused), then STARTTLS and AUTH as configured."""
        try:
            await client.ehlo()
        except aiosmtplib.SMTPHeloError:
            await client.helo()
        if self.upstream_starttls:
            if not client.supports_extension("starttls"):
                raise _Refused(f"451 4.7.0 Upstream {self.remoteaddr[0]}:{self.remoteaddr[1]} does not offer STARTTLS")
            if self.upstream_tls_context is None:
                await client.starttls()
            else:
                await client.starttls(tls_context=self.upstream_tls_context)
            await client.ehlo()
        if self.upstream_auth is not None:
            username, password = self.upstream_auth
            try:
                await client.login(username, password)
            except aiosmtplib.SMTPException as exc:
                # Our credentials, not the client's message: a temporary failure.
                raise _Refused(f"451 4.7.0 Upstream authentication failed: {_one_line(str(exc))}") from exc

    def _mail_options(
        self, client: aiosmtplib.SMTP, mailfrom: str, rcpttos: list[str], data: bytes, options: list[str]
    ) -> tuple[list[str], str]:
        """The MAIL parameters to send upstream and the address encoding."""
        mail_options: list[str] = []
        encoding = "ascii"
        # An SMTPUTF8 message relayed without it: its 8-bit body (which
        # SMTPUTF8 allows, RFC 6531 3.1) then needs BODY=8BITMIME.
        downgraded = False
        if "SMTPUTF8" in options:
            if client.supports_extension("smtputf8"):
                mail_options.append("SMTPUTF8")
                encoding = "utf-8"
            elif not all(address.isascii() for address in [mailfrom, *rcpttos]):
                raise _Refused("553 5.6.7 Upstream does not offer SMTPUTF8, needed for a non-ASCII address")
            elif not _header_section(data).isascii():
                raise _Refused("550 5.6.7 Upstream does not offer SMTPUTF8, needed for this message's UTF-8 headers")
            else:
                downgraded = True
        if "BODY=8BITMIME" in options or (downgraded and not data.isascii()):
            if client.supports_extension("8bitmime"):
                mail_options.append("BODY=8BITMIME")
            elif not data.isascii():
                raise _Refused("554 5.6.3 Upstream does not offer 8BITMIME; converting to 7 bit is not supported")
        if client.supports_extension("size"):
            mail_options.insert(0, f"SIZE={len(data)}")
        return mail_options, encoding


def _header_section(data: bytes) -> bytes:
    """The header lines of a message in CRLF form (all of it without a body)."""
    end = data.find(b"\r\n\r\n")
    return data if end < 0 else data[: end + 2]


def _code_and_text(reply: str) -> tuple[int, str]:
    code, _, text = reply.partition(" ")
    return int(code), text


def summarize(delivered: Sequence[str], refused: dict[str, tuple[int, str]]) -> str | None:
    """The end-of-DATA reply for our client once every recipient's fate is
    known: None (``250 OK``) when all got it, a ``250`` naming the refused
    ones when some did, the refusal itself when none did."""
    if not refused:
        return None
    if not delivered:
        return _all_refused(refused)
    listed = "; ".join(f"<{rcpt}> ({code} {_one_line(text)})" for rcpt, (code, text) in refused.items())
    total = len(delivered) + len(refused)
    return f"250 2.0.0 OK, delivered to {len(delivered)} of {total} recipients; refused upstream: {listed}"


def _all_refused(refused: dict[str, tuple[int, str]]) -> str:
    """The reply when the upstream refused every recipient: a temporary
    refusal wins (the client will try again), else the first one."""
    temporary = [(rcpt, code, text) for rcpt, (code, text) in refused.items() if 400 <= code < 500]
    permanent = [(rcpt, code, text) for rcpt, (code, text) in refused.items() if not 400 <= code < 500]
    _, code, text = (temporary or permanent)[0]
    if len(refused) == 1:
        return _upstream_refusal(code, text, "RCPT ")
    listed = "; ".join(f"<{rcpt}> ({c} {_one_line(t)})" for rcpt, (c, t) in refused.items())
    if code == 421 or not 400 <= code <= 599:  # a 421 would tell our client we hang up
        code = 451
    return f"{code} Every recipient was refused upstream: {listed}"


async def _quit(client: aiosmtplib.SMTP) -> None:
    """Say goodbye; the message's fate is already known, so a failing QUIT
    changes nothing."""
    try:
        await client.quit()
    except (OSError, aiosmtplib.SMTPException):
        client.close()
