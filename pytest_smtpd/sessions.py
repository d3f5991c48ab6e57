"""What happened in each connection: ``Session`` records with their
transcripts, and the thread-safe list a server keeps them in.

A session's record is written on the loop thread as the session goes on and
read by tests in their own thread; lists only grow while the session is
open, so a reader sees a consistent prefix."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal, NamedTuple

from ._sequence import LockedList
from .recorder import Transcript

if TYPE_CHECKING:
    from .message import Message, TLSInfo

__all__ = ["EndedBy", "Session", "SessionStore", "TranscriptEntry"]

Direction = Literal["client", "server"]
#: How a session ended: the client's QUIT, the client hanging up, the idle
#: timeout, a fault rule, or the server stopping.
EndedBy = Literal["quit", "client", "timeout", "fault", "stop"]


class TranscriptEntry(NamedTuple):
    """One line of a session: a command line or a reply line, message data
    as a size (``<N bytes of message data>``), SASL secrets as ``****``."""

    #: ``"client"`` for what the client sent, ``"server"`` for a reply.
    direction: Direction
    line: str
    #: Seconds since the session started.
    time: float

    def __str__(self) -> str:
        return f"{'C' if self.direction == 'client' else 'S'}: {self.line}"


class Session:
    """One connection to a server, from accept to close, whether or not it
    delivered a message."""

    __slots__ = (
        "_commands",
        "_faults_fired",
        "_lines",
        "_messages",
        "auth_identity",
        "ended_at",
        "ended_by",
        "helo",
        "peer",
        "pipelined",
        "started_at",
        "test",
        "tls",
    )

    def __init__(
        self, peer: tuple[str, int], started_at: float, lines: Sequence[tuple[str, str]] | None = None
    ) -> None:
        #: The client's ``(host, port)``.
        self.peer = peer
        #: The name given in the last HELO/EHLO/LHLO, ``""`` if none.
        self.helo = ""
        #: How the session was encrypted, or None.
        self.tls: TLSInfo | None = None
        #: Who logged in with AUTH, or None.
        self.auth_identity: str | None = None
        #: ``time.time()`` at accept, and at close (None while open).
        self.started_at = started_at
        self.ended_at: float | None = None
        #: None while open, then how it ended (see ``EndedBy``).
        self.ended_by: EndedBy | None = None
        #: Set by assigning ``commands``; None: the verbs are read off the transcript.
        self._commands: list[str] | None = None
        # The lines as the protocol core records them, compactly, with the
        # time each was said (see recorder.Transcript). The entries are made
        # from them only when asked for, so that recording costs a session
        # next to nothing; so are the lists below, made when first used.
        if lines is None or isinstance(lines, Transcript):
            self._lines = Transcript() if lines is None else lines
        else:
            self._lines = Transcript()
            for direction, line in lines:
                self._lines.append(direction, line)
        self._messages: list[Message] | None = None
        self._faults_fired: list[str] | None = None
        #: Whether the client sent a command before the previous reply.
        self.pipelined = False
        #: Under pytest, the node id of the test running when the session
        #: began (None outside pytest, or between tests).
        self.test: str | None = None

    @property
    def commands(self) -> list[str]:
        """The verbs of the command lines, in order, e.g.
        ``["EHLO", "STARTTLS", "EHLO", "AUTH", "MAIL", "RCPT", "DATA", "QUIT"]``
        (bounded like the transcript)."""
        return self._lines.verbs() if self._commands is None else self._commands

    @commands.setter
    def commands(self, commands: list[str]) -> None:
        self._commands = commands

    @property
    def messages(self) -> list[Message]:
        """The messages accepted in this session."""
        if self._messages is None:
            self._messages = []
        return self._messages

    @messages.setter
    def messages(self, messages: list[Message]) -> None:
        self._messages = messages

    @property
    def faults_fired(self) -> list[str]:
        """A description of each fault rule that decided a step here (at most
        ``max_transcript_lines``, the last saying so)."""
        if self._faults_fired is None:
            self._faults_fired = []
        return self._faults_fired

    @faults_fired.setter
    def faults_fired(self, faults_fired: list[str]) -> None:
        self._faults_fired = faults_fired

    @property
    def is_open(self) -> bool:
        """True until the session has ended (``ended_by`` is None)."""
        return self.ended_by is None

    @property
    def transcript(self) -> list[TranscriptEntry]:
        """Every line each way, in order (a new list each time)."""
        return [
            TranscriptEntry(direction, line, seconds)  # type: ignore[arg-type]
            for direction, line, seconds, _ in self._lines.entries()
        ]

    def _mark(self, seconds: float) -> tuple[int, int]:
        """Note that the lines recorded so far were said by ``seconds``; the
        range of lines new since the last mark."""
        return self._lines.mark(seconds)

    def _fault_fired(self, description: str, limit: int) -> None:
        """Note a fault that fired, up to ``limit`` entries (the transcript's
        limit; 0: none), the last saying so: a session of endless faults
        must not make the record grow for ever."""
        fired = self.faults_fired
        if not limit or len(fired) < limit - 1:
            fired.append(description)
        elif len(fired) == limit - 1:
            fired.append(f"<limit of {limit} faults fired reached: the rest is not recorded>")

    def last_error(self) -> str | None:
        """The last 4xx or 5xx reply line the client got, or None."""
        for entry in reversed(self.transcript):
            if entry.direction == "server" and entry.line[:1] in ("4", "5"):
                return entry.line
        return None

    def format_transcript(self, limit: int | None = None) -> str:
        """The transcript as ``C:``/``S:`` lines; with ``limit``, the first
        and last lines around a count of those left out."""
        lines = [str(entry) for entry in self.transcript]
        if limit is not None and len(lines) > limit:
            head = limit // 2
            tail = limit - head - 1
            lines = [*lines[:head], f"... {len(lines) - head - tail} lines ...", *lines[len(lines) - tail :]]
        return "\n".join(lines)

    def __repr__(self) -> str:
        state = "open" if self.ended_by is None else f"ended by {self.ended_by}"
        return (
            f"<Session from {self.peer[0]}:{self.peer[1]} helo={self.helo!r}, {state}, "
            f"commands={self.commands!r}, {len(self.messages)} message(s)>"
        )


class SessionStore(LockedList[Session]):
    """The sessions a server served, oldest first; safe to read from any
    thread while the server appends."""

    def append(self, session: Session) -> None:
        """Record a new session (the server does, as it accepts one)."""
        super().append(session)

    def clear(self) -> list[Session]:
        """Forget the sessions so far (and return them)."""
        return super().clear()

    def __repr__(self) -> str:
        return f"SessionStore({list(self)!r})"
