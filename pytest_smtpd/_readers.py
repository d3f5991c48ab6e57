"""Framing: the readers that cut the client's byte stream into what the
session state says comes next — a command line (or a SASL response line),
a message after DATA up to its final dot, a BDAT chunk of a given size.

Each reader has one interface: ``read(inbox)`` takes what it needs from the
front of ``inbox`` (the bytes received and not yet used) and returns what it
framed, or None until it has enough. Memory stays bounded: a line longer
than any command may be is dropped as it arrives, and a message past the
size limit is read to its end without being kept. No I/O here, and no
decisions: what a line or a message means is the core's business.
"""

from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .replies import Reply
    from .state import State

__all__ = ["LINE_TOO_LONG", "ChunkReader", "DataReader", "LineReader", "LineTooLong"]

_DATA_END = b"\r\n.\r\n"
_LINE_START_DOT = b"\r\n."


class LineTooLong(Enum):
    """Sentinel type: a line longer than the limit was dropped."""

    LINE_TOO_LONG = "LINE_TOO_LONG"


LINE_TOO_LONG = LineTooLong.LINE_TOO_LONG


class LineReader:
    """Command lines and SASL response lines. Only CRLF ends a line: a bare
    CR or LF is part of the line (SMTP smuggling). The search for CRLF
    resumes where it stopped, so a line arriving byte by byte costs linear
    time."""

    __slots__ = ("_discarding", "_search_from")

    def __init__(self) -> None:
        self._search_from = 0
        self._discarding = False

    def read(self, inbox: bytearray, limit: int) -> bytes | LineTooLong | None:
        """The next line without its CRLF, ``LINE_TOO_LONG`` for one that
        was longer than ``limit`` (dropped as it came), or None until a
        line is complete."""
        end = inbox.find(b"\r\n", self._search_from)
        if end < 0:
            if len(inbox) > limit:
                self._discarding = True
                keep_cr = inbox.endswith(b"\r")
                inbox.clear()
                if keep_cr:
                    inbox += b"\r"
            self._search_from = max(len(inbox) - 1, 0)
            return None
        line = bytes(inbox[:end])
        del inbox[: end + 2]
        self._search_from = 0
        if self._discarding:
            self._discarding = False
            return LINE_TOO_LONG
        return line

    def reset(self) -> None:
        """Forget a search under way (the inbox was cleared)."""
        self._search_from = 0


class DataReader:
    """The message after DATA's 354, up to CRLF.CRLF, dot-unstuffed. Past
    ``limit`` octets (after unstuffing; 0: none) it is read on to its end
    and dropped, keeping only what may be the start of the terminator."""

    __slots__ = ("_data", "_dots", "_dots_from", "_search_from", "limit", "octets", "too_big")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        # After a virtual CRLF, so that the first line is a line start like
        # every other.
        self._data = bytearray(b"\r\n")
        self._search_from = 0
        self._dots = 0
        self._dots_from = 0
        #: Whether the message is past the limit (and is being dropped).
        self.too_big = False
        #: Octets received for this message (kept or not), terminator included
        #: once it has come.
        self.octets = 0

    @property
    def held(self) -> int:
        """Octets held now (bounded once the message is too big)."""
        return len(self._data)

    def feed(self, inbox: bytearray) -> None:
        """Take everything received so far (a terminator among it is found
        by ``read``, which hands back what follows it)."""
        self._data += inbox
        self.octets += len(inbox)
        inbox.clear()

    def end_seen(self) -> bool:
        """Whether the terminator is in what was fed."""
        return self._data.find(_DATA_END, self._search_from) >= 0

    def read(self, inbox: bytearray) -> bytes | None:
        """The message once its terminator came (what followed it is put
        back in ``inbox``), or None. A message that is ``too_big`` comes
        back empty."""
        self.feed(inbox)
        data = self._data
        end = data.find(_DATA_END, self._search_from)
        limit = self.limit
        if end < 0:
            self._search_from = max(len(data) - len(_DATA_END) + 1, 0)
            if limit and not self.too_big and len(data) - 2 > limit:
                # Stuffed dots do not count; count them only once the raw
                # size passes the limit, and only once per byte.
                self._dots += data.count(_LINE_START_DOT, self._dots_from)
                self._dots_from = max(len(data) - len(_LINE_START_DOT) + 1, 0)
                # A trailing "\r\n.\r" may be the start of the terminator: its
                # dot is already counted above, its CR must not be counted either,
                # or a message of exactly the limit arriving in pieces is refused.
                pending = 1 if data.endswith(_DATA_END[:-1]) else 0
                self.too_big = len(data) - 2 - self._dots - pending > limit
            if self.too_big:
                # Keep only what may be the start of CRLF.CRLF.
                del data[: -(len(_DATA_END) - 1)]
                self._search_from = 0
            return None
        inbox += data[end + len(_DATA_END) :]
        self.octets -= len(data) - end - len(_DATA_END)
        body_end = end + 2
        if data.find(_LINE_START_DOT, 0, body_end) < 0:
            message = bytes(data[2:body_end])
        else:
            message = bytes(data[:body_end]).replace(_LINE_START_DOT, b"\r\n")[2:]
        self._data = bytearray()
        if limit and len(message) > limit:
            self.too_big = True
        return b"" if self.too_big else message


class ChunkReader:
    """The octets of one BDAT chunk, taken as they are (no dot-stuffing, no
    lines), added to the message's ``data`` unless it is not to be kept.
    The message (all its chunks) is bounded by ``limit`` (0: none): past it
    nothing more is kept and ``too_big`` says so."""

    __slots__ = ("by_fault", "data", "last", "left", "limit", "refusal", "return_state", "size", "too_big")

    def __init__(self, size: int, last: bool, data: bytearray | None, limit: int, too_big: bool = False) -> None:
        #: The chunk's size, what is still to come of it, whether it is the last.
        self.size = self.left = size
        self.last = last
        #: The message so far (None: this chunk is refused, nothing is kept).
        self.data = data
        self.limit = limit
        #: Whether the message (with the chunks before) is past the limit.
        self.too_big = too_big
        #: Set by the core: the reply the chunk gets instead once read, if
        #: it is refused (and whether a fault refused it: the transaction
        #: ends then), and the state the session returns to.
        self.refusal: Reply | None = None
        self.by_fault = False
        self.return_state: State | None = None

    @property
    def received(self) -> int:
        """Octets of this chunk received so far."""
        return self.size - self.left

    def read(self, inbox: bytearray) -> bool:
        """Take what is there of the chunk; whether it is complete."""
        take = min(len(inbox), self.left)
        if take:
            data = self.data
            if data is not None and not self.too_big:
                data += inbox[:take]
                if self.limit and len(data) > self.limit:
                    self.too_big = True  # read on, keep nothing
                    data.clear()
            del inbox[:take]
            self.left -= take
        return not self.left
