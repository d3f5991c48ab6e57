"""Received messages and the thread-safe list that holds them."""

from __future__ import annotations

import email
import email.policy
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from typing import TYPE_CHECKING, overload

if TYPE_CHECKING:
    from .sessions import Session

__all__ = ["Message", "MessageStore", "TLSInfo"]

Peer = tuple[str, int]


@dataclass(frozen=True, slots=True)
class TLSInfo:
    """How a session was encrypted."""

    #: The protocol, e.g. ``"TLSv1.3"``.
    version: str
    #: The cipher suite name.
    cipher: str
    #: ``"starttls"`` or ``"implicit"``.
    mode: str


class Message:
    """One message as the server accepted it: the envelope, the bytes, and a
    parsed view built only when first asked for, so that holding thousands
    of messages stays cheap."""

    __slots__ = (
        "_email",
        "auth_identity",
        "data",
        "helo",
        "mail_from",
        "mail_options",
        "peer",
        "rcpt_options",
        "rcpt_tos",
        "received_at",
        "session",
        "tls",
    )

    def __init__(
        self,
        *,
        peer: Peer,
        mail_from: str,
        rcpt_tos: list[str],
        data: bytes,
        mail_options: list[str] | None = None,
        rcpt_options: list[str] | None = None,
        helo: str = "",
        received_at: float | None = None,
        tls: TLSInfo | None = None,
        auth_identity: str | None = None,
        session: Session | None = None,
    ) -> None:
        #: The client's address, ``(host, port)``.
        self.peer = peer
        #: The envelope sender; ``""`` for the null sender ``<>``.
        self.mail_from = mail_from
        #: The envelope recipients, in the order given.
        self.rcpt_tos = rcpt_tos
        #: The message as received, dot-unstuffed, CRLF line endings kept.
        self.data = data
        self.mail_options = mail_options if mail_options is not None else []
        self.rcpt_options = rcpt_options if rcpt_options is not None else []
        #: The name the client gave in HELO/EHLO.
        self.helo = helo
        self.received_at = time.time() if received_at is None else received_at
        #: How the session was encrypted, or None for plaintext.
        self.tls = tls
        #: The identity the client logged in as with AUTH, or None.
        self.auth_identity = auth_identity
        #: The session that delivered it (its transcript, its other messages).
        self.session = session
        self._email: EmailMessage | None = None

    # The stdlib ``smtpd`` names for the envelope.
    @property
    def mailfrom(self) -> str:
        return self.mail_from

    @property
    def rcpttos(self) -> list[str]:
        return self.rcpt_tos

    @property
    def email(self) -> EmailMessage:
        """The message parsed with ``email.policy.default``."""
        if self._email is None:
            parsed = email.message_from_bytes(self.data, policy=email.policy.default)
            assert isinstance(parsed, EmailMessage)
            self._email = parsed
        return self._email

    @property
    def subject(self) -> str | None:
        value = self.email["Subject"]
        return None if value is None else str(value)

    def write_eml(self, path: str | os.PathLike[str]) -> None:
        """Save the message as an ``.eml`` file."""
        with open(path, "wb") as file:
            file.write(self.data)

    def __repr__(self) -> str:
        return (
            f"<Message from {self.mail_from!r} to {self.rcpt_tos!r}, {len(self.data)} bytes, subject {self.subject!r}>"
        )


class MessageStore(Sequence[Message]):
    """The messages a server accepted, in order. The server thread appends
    while the test reads; every read sees a consistent snapshot."""

    def __init__(self) -> None:
        self._messages: list[Message] = []
        self._changed = threading.Condition()

    def append(self, message: Message) -> None:
        with self._changed:
            self._messages.append(message)
            self._changed.notify_all()

    def clear(self) -> None:
        with self._changed:
            self._messages.clear()

    def _after_fork_in_child(self) -> None:
        """A forked child has no thread that could hold the lock: a new one."""
        self._changed = threading.Condition()

    @overload
    def __getitem__(self, index: int) -> Message: ...
    @overload
    def __getitem__(self, index: slice) -> list[Message]: ...
    def __getitem__(self, index: int | slice) -> Message | list[Message]:
        with self._changed:
            return self._messages[index]

    def __len__(self) -> int:
        with self._changed:
            return len(self._messages)

    def __iter__(self) -> Iterator[Message]:
        with self._changed:
            snapshot = list(self._messages)
        return iter(snapshot)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, MessageStore):
            return list(self) == list(other)
        if isinstance(other, list):
            return list(self) == other
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"MessageStore({list(self)!r})"

    def wait_for(
        self,
        count: int = 1,
        timeout: float = 5.0,
        where: Callable[[Message], bool] | None = None,
    ) -> list[Message]:
        """Block until ``count`` messages (matching ``where``, if given) have
        arrived, and return them. For mail sent by another thread or process.

        Raises ``TimeoutError`` saying what did arrive."""

        def matching() -> list[Message]:
            return [m for m in self._messages if where is None or where(m)]

        with self._changed:
            found = self._changed.wait_for(lambda: len(matching()) >= count, timeout)
            if found:
                return matching()[:count]
            got = matching()
            raise TimeoutError(
                f"waited {timeout}s for {count} message(s)"
                f"{' matching the condition' if where else ''}, got {len(got)}"
                f" (of {len(self._messages)} received: {self._messages!r})"
            )
