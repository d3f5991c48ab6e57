"""Events the protocol core hands to the code driving it.

The core answers framing and syntax itself; it emits an event only where
the application has something to decide or to learn.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol

from .auth import Credentials
from .replies import Reply

__all__ = [
    "NEED_DATA",
    "AuthRequested",
    "CommandReceived",
    "ConnectionClosed",
    "Envelope",
    "Event",
    "FaultFired",
    "FaultRule",
    "LineReceived",
    "MessageReceived",
    "NeedData",
    "StartTLS",
]


class NeedData(Enum):
    """Sentinel type: the core needs more bytes before it has another event."""

    NEED_DATA = "NEED_DATA"


NEED_DATA = NeedData.NEED_DATA


@dataclass(slots=True)
class Envelope:
    """The SMTP envelope of the transaction in progress."""

    #: The reverse-path given in MAIL FROM; ``""`` for the null sender.
    mail_from: str | None = None
    #: Forward-paths accepted by RCPT TO, in order.
    rcpt_tos: list[str] = field(default_factory=list)
    #: Parameters of MAIL FROM, keyword upper-cased: ``["SIZE=10", "BODY=8BITMIME"]``.
    mail_options: list[str] = field(default_factory=list)
    #: Parameters of every accepted RCPT TO, in order.
    rcpt_options: list[str] = field(default_factory=list)
    #: The parameters of each accepted RCPT TO, one list per recipient
    #: (``rcpt_options`` has them all in one list, as the stdlib gave them).
    options_per_rcpt: list[list[str]] = field(default_factory=list, compare=False)
    #: Whether MAIL FROM carried the SMTPUTF8 parameter.
    smtputf8: bool = False


@dataclass(frozen=True, slots=True)
class LineReceived:
    """A command line, framed by the core (CRLF only, within the line limit),
    for an application that reads lines itself (``ServerConnection.deliver_lines``).

    The application answers it itself, or hands it back with
    ``ServerConnection.process_line()`` for the usual handling.
    """

    line: bytes


@dataclass(frozen=True, slots=True)
class CommandReceived:
    """A command whose handling the application has taken over.

    The application answers with ``ServerConnection.reply()`` or hands it
    back to the built-in handling with ``ServerConnection.handle_command()``.
    """

    verb: str
    argument: str | None


@dataclass(frozen=True, slots=True)
class MessageReceived:
    """A complete message. The core waits for ``answer_message()`` before it
    reads anything further."""

    envelope: Envelope
    #: The message as received, dot-unstuffed, with its CRLF line endings.
    data: bytes
    #: The name the client gave in HELO/EHLO.
    helo: str
    #: Who logged in with AUTH (the authorization identity if one was given).
    auth_identity: str | None = None
    #: How it came: ``"DATA"``, or ``"BDAT"`` (CHUNKING, RFC 3030).
    transfer: str = "DATA"


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    """The session is over: QUIT was answered, the peer hung up, or the core
    gave up with a 421. Send what ``data_to_send()`` holds, then close."""

    reason: str


@dataclass(frozen=True, slots=True)
class StartTLS:
    """STARTTLS was accepted and ``220`` queued: send it, do the TLS handshake,
    then call ``tls_started()``. Plaintext the client pipelined after STARTTLS
    has been discarded (RFC 3207 4.2)."""


@dataclass(frozen=True, slots=True)
class AuthRequested:
    """The client finished a SASL exchange. Check the credentials and call
    ``answer_auth()`` before asking for the next event."""

    credentials: Credentials


class FaultRule(Protocol):
    """What the core needs of a fault rule (``pytest_smtpd.faults.Fault``,
    which lives outside the core because its rule list takes a lock)."""

    @property
    def step(self) -> str: ...
    #: ``"reply"``, ``"disconnect"``, ``"delay"`` or ``"stall"``.
    @property
    def action(self) -> str: ...
    @property
    def response(self) -> Reply | None: ...
    @property
    def after_bytes(self) -> int | None: ...
    @property
    def seconds(self) -> float: ...
    def describe(self) -> str: ...


@dataclass(frozen=True, slots=True)
class FaultFired:
    """A fault rule decided a step. A reply fault's reply is queued already
    (and a 421 has closed the session), a disconnect has closed it. For a
    delay, wait ``fault.seconds`` before asking for the next event, which
    then runs the step; after a stall the core reads nothing more (it
    answers ``NEED_DATA``) until ``abort()``."""

    step: str
    fault: FaultRule


Event = LineReceived | CommandReceived | MessageReceived | ConnectionClosed | StartTLS | AuthRequested | FaultFired
