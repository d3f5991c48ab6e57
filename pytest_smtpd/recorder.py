"""The record of what a session said: the protocol core reports each command
line, reply line, message size and SASL step here, and the recorder masks
secrets, keeps the lines compactly up to a limit, and passes every line on
to a tracer (the ``-d`` trace) whatever the limit.

No I/O: the tracer is a callable the transport gives.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator, Sequence
from typing import overload

from . import replies
from ._parse import split_command
from .auth import MECHANISMS
from .replies import Reply

__all__ = ["Recorder", "Tracer", "Transcript"]

#: Called with ``(direction, line)`` for every line, kept or not.
Tracer = Callable[[str, str], None]
#: max_transcript_lines=0: no limit.
_NO_LIMIT = 2**63
#: The offsets are 32-bit: a transcript stops there (4 GiB of text).
_TEXT_LIMIT = 2**32 - 1
#: Per line: where its text ends, and its kind with its code (a common
#: line or a template, see below) in the upper six bits.
_META = struct.Struct("<IB")
_PACK_META = _META.pack
#: Per mark: the lines said so far, and when (seconds after the start, a
#: float32: ample for a log).
_MARK = struct.Struct("<If")
_SERVER, _COMMAND, _CLIENT = 0, 1, 2
_DIRECTIONS = ("server", "client", "client")
#: Lines said in nearly every session, stored as a code instead of their
#: text.
_COMMON_LINES = list(
    dict.fromkeys(
        [
            *(
                line
                for reply in vars(replies).values()
                if isinstance(reply, Reply) and reply.code in (250, 354, 221, 235, 220)
                for variant in (reply, replies.with_enhanced_code(reply))
                for _, line in variant.transcript_lines()
            ),
            *("DATA", "QUIT", "RSET", "NOOP", "STARTTLS", "250 2.0.0 OK", "250 2.1.0 OK", "250 2.1.5 OK", "****"),
            *("221 2.0.0 Bye", "HELP", "*"),
        ]
    )
)[:48]
_CODES = {line: code for code, line in enumerate(_COMMON_LINES, 1)}
#: Codes below the templates' that lines can be given as a server is made
#: (its greeting, said to every connection).
_LAST_COMMON_CODE = 60


def common_line(line: str) -> None:
    """Store ``line`` as a code from now on, while codes are left (a
    server's greeting, which every one of its connections says)."""
    if line not in _CODES and len(_COMMON_LINES) < _LAST_COMMON_CODE:
        _COMMON_LINES.append(line)  # before the code: a reader finds the line
        _CODES[line] = len(_COMMON_LINES)


#: Lines of a common shape, stored as a code and the part that varies.
_TEMPLATES = {
    61: ("MAIL FROM:<", ""),
    62: ("RCPT TO:<", ""),
    63: ("<", " bytes of message data>"),
}


#: The templates by the first character of their prefix (one each), with the lengths of both parts.
_TEMPLATES_BY_START = {
    prefix[0]: (code, prefix, suffix, len(prefix), len(suffix)) for code, (prefix, suffix) in _TEMPLATES.items()
}
if len(_TEMPLATES_BY_START) != len(_TEMPLATES):  # pragma: no cover - a template added with a taken first character
    raise ImportError("recorder: two templates start with the same character")


def _encode(line: str) -> tuple[int, str]:
    """A line as (code, the text to store)."""
    code = _CODES.get(line, 0)
    if code:
        return code, ""
    template = _TEMPLATES_BY_START.get(line[:1])
    if template is not None:
        code, prefix, suffix, before, after = template
        if len(line) >= before + after and line.startswith(prefix) and line.endswith(suffix):
            return code, line[before : len(line) - after]
    return 0, line


def _decode(code: int, text: str) -> str:
    if not code:
        return text
    template = _TEMPLATES.get(code)
    if template is None:
        return _COMMON_LINES[code - 1]
    return template[0] + text + template[1]


class Transcript(Sequence[tuple[str, str]]):
    """A session's lines as ``(direction, line)`` pairs, stored compactly:
    the text in one buffer, five octets of metadata per line in another (a
    common line such as ``250 OK`` is a code there and no text, a line of a
    common shape a code and what varies), and when lines were said as marks
    in a third; a pair is made when it is read. Appended to on the loop
    thread while tests read it: a reader sees a consistent prefix (the
    metadata is stored last)."""

    __slots__ = ("_marks", "_meta", "_text")

    def __init__(self) -> None:
        self._text = bytearray()
        self._meta = bytearray()
        self._marks = bytearray()

    def append(self, direction: str, line: str, command: bool = False) -> None:
        """Add a line at the end; ``command``: a client's command line."""
        kind = (_COMMAND if command else _CLIENT) if direction == "client" else _SERVER
        code = _CODES.get(line, 0)  # the common case first: a line stored as its code alone
        if code:
            self._meta += _PACK_META(len(self._text), kind | code << 2)
            return
        code, text = _encode(line)
        if text:
            self._text += text.encode("utf-8", "surrogatepass")
        self._meta += _PACK_META(len(self._text), kind | code << 2)

    def insert(self, index: int, direction: str, line: str) -> None:
        """Put a client line in before line ``index`` (rare: a line an
        application read itself, recorded once it has kept it)."""
        encoded = line.encode("utf-8", "surrogatepass")
        start = self._end(index - 1)
        self._text[start:start] = encoded
        for later in range(index, len(self)):
            end, kind = _META.unpack_from(self._meta, later * _META.size)
            _META.pack_into(self._meta, later * _META.size, end + len(encoded), kind)
        self._meta[index * _META.size : index * _META.size] = _META.pack(start + len(encoded), _CLIENT)
        marks = self._marks
        for mark in range(len(marks) // _MARK.size):
            count, seconds = _MARK.unpack_from(marks, mark * _MARK.size)
            if count > index:
                _MARK.pack_into(marks, mark * _MARK.size, count + 1, seconds)

    def _end(self, index: int) -> int:
        return _META.unpack_from(self._meta, index * _META.size)[0] if index >= 0 else 0

    def mark(self, seconds: float) -> tuple[int, int]:
        """Note that the lines so far were said by ``seconds``; the range of
        lines new since the last mark."""
        marks = self._marks
        done = _MARK.unpack_from(marks, len(marks) - _MARK.size)[0] if marks else 0
        count = len(self)
        if count > done:
            self._marks += _MARK.pack(count, seconds)
        return done, count

    @property
    def size(self) -> int:
        """Octets of text held."""
        return len(self._text)

    def __len__(self) -> int:
        return len(self._meta) // _META.size

    def entries(self, start: int = 0, stop: int | None = None) -> Iterator[tuple[str, str, float, bool]]:
        """Lines ``start`` to ``stop`` as ``(direction, line, seconds,
        is_command)``: each line has the time of the first mark covering it;
        one not yet marked gets the latest time known."""
        meta, text, marks = self._meta, self._text, self._marks
        count = len(meta) // _META.size if stop is None else min(stop, len(meta) // _META.size)
        mark_count = len(marks) // _MARK.size
        mark = 0
        covered, seconds = _MARK.unpack_from(marks, 0) if mark_count else (0, 0.0)
        begin = self._end(start - 1)
        for index in range(start, count):
            while index >= covered and mark + 1 < mark_count:
                mark += 1
                covered, seconds = _MARK.unpack_from(marks, mark * _MARK.size)
            end, kind = _META.unpack_from(meta, index * _META.size)
            line = _decode(kind >> 2, text[begin:end].decode("utf-8", "surrogatepass"))
            begin = end
            yield _DIRECTIONS[kind & 3], line, seconds, kind & 3 == _COMMAND

    def verbs(self) -> list[str]:
        """The verbs of the command lines, in order (``AUTH`` for a masked one)."""
        return [
            _VERBS.get(verb) or verb
            for _, line, _, command in self.entries()
            if command
            for verb in (split_command(line)[0],)
        ]

    @overload
    def __getitem__(self, index: int) -> tuple[str, str]: ...
    @overload
    def __getitem__(self, index: slice) -> list[tuple[str, str]]: ...
    def __getitem__(self, index: int | slice) -> tuple[str, str] | list[tuple[str, str]]:
        count = len(self)
        if isinstance(index, slice):
            start, stop, step = index.indices(count)
            if step == 1:
                return [(direction, line) for direction, line, _, _ in self.entries(start, stop)]
            return [self[i] for i in range(start, stop, step)]
        if index < 0:
            index += count
        if not 0 <= index < count:
            raise IndexError("transcript index out of range")
        for direction, line, _, _ in self.entries(index, index + 1):
            return direction, line
        raise IndexError(index)  # pragma: no cover - the range was checked

    def __iter__(self) -> Iterator[tuple[str, str]]:
        for direction, line, _, _ in self.entries():
            yield direction, line

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Sequence):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Transcript({list(self)!r})"


#: The verbs the command lists share, one string each.
_VERBS = {
    verb: verb
    for verb in (
        *("HELO", "EHLO", "LHLO", "MAIL", "RCPT", "DATA", "BDAT", "RSET", "NOOP"),
        *("QUIT", "VRFY", "EXPN", "HELP", "AUTH", "STARTTLS", ""),
    )
}


class Recorder(Transcript):
    """What the core reports, as a session's record: a transcript (itself:
    kept with ``keep``, up to ``limit`` lines, then one line saying so), and
    every line to ``tracer`` (with no limit)."""

    __slots__ = ("_keep_record", "_keeping", "_meta_limit", "limit", "tracer")

    def __init__(self, limit: int = 0, *, keep: bool = True, tracer: Tracer | None = None) -> None:
        super().__init__()
        #: Lines kept before the record stops (0: no limit).
        self.limit = limit or _NO_LIMIT
        #: The metadata's length once ``limit`` - 1 lines are kept (the last says so).
        self._meta_limit = (self.limit - 1) * _META.size
        self.tracer = tracer
        self._keep_record = keep
        self._keeping = keep

    @property
    def transcript(self) -> Transcript | None:
        """The kept lines (this recorder), or None without ``keep``."""
        return self if self._keep_record else None

    @property
    def active(self) -> bool:
        """Whether anything still listens: the record or the tracer."""
        return self._keeping or self.tracer is not None

    @property
    def commands(self) -> list[str]:
        """The verbs of the command lines kept, in order."""
        return self.verbs() if self._keep_record else []

    def line(self, direction: str, line: str, command: bool = False) -> None:
        """Record one line as given (``command``: a client's command line)."""
        if self.tracer is not None:
            self.tracer(direction, line)
        if self._keeping:
            self._keep(direction, line, command)

    def lines(self, lines: Sequence[tuple[str, str]]) -> None:
        """Record several lines (a multi-line reply)."""
        tracer = self.tracer
        for direction, line in lines:
            if tracer is not None:
                tracer(direction, line)
            if self._keeping:
                self._keep(direction, line, False)

    def _keep(self, direction: str, line: str, command: bool) -> None:
        # On every line of every session: lengths of the buffers, not len(self) and size.
        if len(self._meta) < self._meta_limit and len(self._text) + len(line) * 4 < _TEXT_LIMIT:
            self.append(direction, line, command)
            return
        self.append("server", f"<transcript limit of {self.limit} lines reached: the rest is not recorded>")
        self._keeping = False

    def position(self) -> int | None:
        """Where the next kept line goes (for ``record_at``), None if none is kept."""
        return len(self) if self._keeping else None

    def record_at(self, index: int, direction: str, line: str) -> None:
        """Record a line in before line ``index`` of the transcript."""
        if self.tracer is not None:
            self.tracer(direction, line)
        if self._keeping and len(self) + 1 < self.limit:
            self.insert(index, direction, line)

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
            text = f"{text[:4]} ****"
        self.line("client", text, command=True)

    def sasl_response(self, cancelled: bool) -> None:
        """A SASL response line: never shown (``*`` cancels the exchange)."""
        self.line("client", "*" if cancelled else "****")
