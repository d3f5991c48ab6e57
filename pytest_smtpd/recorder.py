"""The record of what a session said: the protocol core reports each command
line, reply line, message size and SASL step here, and the recorder masks
secrets, keeps the lines compactly up to a limit, and passes every line on
to a tracer (the ``-d`` trace) whatever the limit.

No I/O: the tracer is a callable the transport gives.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Iterator, Sequence
from typing import overload

from .auth import MECHANISMS

__all__ = ["Recorder", "Tracer", "Transcript"]

#: Called with ``(direction, line)`` for every line, kept or not.
Tracer = Callable[[str, str], None]
#: max_transcript_lines=0: no limit.
_NO_LIMIT = 2**63
#: The offsets are 32-bit: a transcript stops there (4 GiB of text).
_TEXT_LIMIT = 2**32 - 1
_DIRECTIONS = ("client", "server")
#: The verbs a session's ``commands`` list shares, one string each.
_VERBS = {
    verb: verb
    for verb in (
        *("HELO", "EHLO", "LHLO", "MAIL", "RCPT", "DATA", "BDAT", "RSET", "NOOP"),
        *("QUIT", "VRFY", "EXPN", "HELP", "AUTH", "STARTTLS", ""),
    )
}


class Transcript(Sequence[tuple[str, str]]):
    """A session's lines as ``(direction, line)`` pairs, stored compactly:
    the text in one buffer, an offset and a direction byte per line; a pair
    is made when it is read. Appended to on the loop thread while tests read
    it: a reader sees a consistent prefix (the offset is stored last)."""

    __slots__ = ("_directions", "_ends", "_text")

    def __init__(self) -> None:
        self._text = bytearray()
        self._ends = array("I")
        self._directions = bytearray()

    def append(self, direction: str, line: str) -> None:
        """Add a line at the end."""
        self._text += line.encode("utf-8", "surrogatepass")
        self._directions.append(direction == "server")
        self._ends.append(len(self._text))

    def insert(self, index: int, direction: str, line: str) -> None:
        """Put a line in before line ``index`` (rare: a line an application
        read itself, recorded once it has kept it)."""
        encoded = line.encode("utf-8", "surrogatepass")
        start = self._ends[index - 1] if index else 0
        self._text[start:start] = encoded
        for later in range(index, len(self._ends)):
            self._ends[later] += len(encoded)
        self._ends.insert(index, start + len(encoded))
        self._directions.insert(index, direction == "server")

    @property
    def size(self) -> int:
        """Octets of text held."""
        return len(self._text)

    def __len__(self) -> int:
        return len(self._ends)

    def _line(self, index: int) -> tuple[str, str]:
        end = self._ends[index]
        start = self._ends[index - 1] if index else 0
        return _DIRECTIONS[self._directions[index]], self._text[start:end].decode("utf-8", "surrogatepass")

    @overload
    def __getitem__(self, index: int) -> tuple[str, str]: ...
    @overload
    def __getitem__(self, index: slice) -> list[tuple[str, str]]: ...
    def __getitem__(self, index: int | slice) -> tuple[str, str] | list[tuple[str, str]]:
        if isinstance(index, slice):
            return [self._line(i) for i in range(*index.indices(len(self._ends)))]
        if index < 0:
            index += len(self._ends)
        if not 0 <= index < len(self._ends):
            raise IndexError("transcript index out of range")
        return self._line(index)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        for index in range(len(self._ends)):
            yield self._line(index)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Sequence):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Transcript({list(self)!r})"


class Recorder:
    """What the core reports, as a session's record: ``transcript`` and
    ``commands`` (kept with ``keep``, up to ``limit`` lines, then one line
    saying so) and every line to ``tracer`` (with no limit)."""

    __slots__ = ("_keeping", "commands", "limit", "tracer", "transcript")

    def __init__(self, limit: int = 0, *, keep: bool = True, tracer: Tracer | None = None) -> None:
        #: Lines kept before the record stops (0: no limit).
        self.limit = limit or _NO_LIMIT
        #: The kept lines, or None without ``keep``.
        self.transcript: Transcript | None = Transcript() if keep else None
        #: The verbs of the command lines kept, in order.
        self.commands: list[str] = []
        self.tracer = tracer
        self._keeping = keep

    @property
    def active(self) -> bool:
        """Whether anything still listens: the record or the tracer."""
        return self._keeping or self.tracer is not None

    def line(self, direction: str, line: str) -> None:
        """Record one line as given."""
        if self.tracer is not None:
            self.tracer(direction, line)
        if self._keeping:
            self._keep(direction, line)

    def lines(self, lines: Sequence[tuple[str, str]]) -> None:
        """Record several lines (a multi-line reply)."""
        for direction, line in lines:
            self.line(direction, line)

    def _keep(self, direction: str, line: str) -> None:
        transcript = self.transcript
        assert transcript is not None
        if len(transcript) + 1 < self.limit and transcript.size + len(line) * 4 < _TEXT_LIMIT:
            transcript.append(direction, line)
            return
        transcript.append("server", f"<transcript limit of {self.limit} lines reached: the rest is not recorded>")
        self._keeping = False

    def position(self) -> int | None:
        """Where the next kept line goes (for ``insert``), None if none is kept."""
        return len(self.transcript) if self._keeping and self.transcript is not None else None

    def insert(self, index: int, direction: str, line: str) -> None:
        """Record a line in before line ``index`` of the transcript."""
        if self.tracer is not None:
            self.tracer(direction, line)
        if self._keeping and self.transcript is not None and len(self.transcript) + 1 < self.limit:
            self.transcript.insert(index, direction, line)

    def command(self, verb: str, text: str, argument: str | None) -> None:
        """A command line, decoded: kept with its verb, secrets masked. The
        mechanism of AUTH is shown, an initial response never is; nor is a
        word that is no mechanism (``AUTH <secret>``, or a secret after a
        tab, both refused)."""
        if verb == "AUTH" and argument:
            mechanism, _, initial = argument.partition(" ")
            shown = mechanism if mechanism.upper() in MECHANISMS else "****"
            text = f"{text[:4]} {shown}" + (" ****" if initial.strip(" ") else "")
        elif verb[:4] == "AUTH" and verb != "AUTH":
            # ``AUTH<tab>PLAIN <secret>``: not a command (500), but what
            # follows AUTH may still be a secret.
            verb, text = "AUTH", f"{text[:4]} ****"
        if self._keeping:
            self.commands.append(_VERBS.get(verb) or verb)
        self.line("client", text)

    def sasl_response(self, cancelled: bool) -> None:
        """A SASL response line: never shown (``*`` cancels the exchange)."""
        self.line("client", "*" if cancelled else "****")
