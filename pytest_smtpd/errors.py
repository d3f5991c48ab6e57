"""Exceptions raised by the protocol core.

The core answers most bad input with an SMTP reply and keeps the session
usable (RFC 5321 section 3.8), so these exceptions are rare: they mark a
misuse of the core by the code driving it, or a peer so broken that the only
answer left is ``421`` and a closed connection.
"""

from __future__ import annotations

from .replies import Reply

__all__ = ["LocalProtocolError", "ProtocolError", "RemoteProtocolError"]


class ProtocolError(Exception):
    """Base class of the core's errors."""


class LocalProtocolError(ProtocolError):
    """The application drove the core wrongly, e.g. asked for the next event
    while a message still waits for its reply."""


class RemoteProtocolError(ProtocolError):
    """The peer broke the protocol beyond repair; ``reply`` is what to send
    before closing the connection."""

    def __init__(self, message: str, reply: Reply) -> None:
        super().__init__(message)
        self.reply = reply
