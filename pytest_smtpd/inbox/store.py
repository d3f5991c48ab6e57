"""Where the inbox keeps its messages and session transcripts: in memory
(``MemoryStore``) or in a SQLite file (``SQLiteStore``, the standard
library's sqlite3), both bounded to ``max_messages`` with the oldest dropped.

Both are safe to call from any thread (one lock each); the inbox calls the
slow parts (a commit, a search) off the loop thread. A message's raw bytes
are stored once; everything else about it is rebuilt from them."""

from __future__ import annotations

import email.utils
import itertools
import json
import re
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ..message import Message, TLSInfo

__all__ = ["DEFAULT_MAX_MESSAGES", "InboxStore", "MemoryStore", "SQLiteStore", "Stored", "summary_of"]

#: ``--max-messages``: how many messages are kept before the oldest go.
DEFAULT_MAX_MESSAGES = 10_000

#: A search: whether a stored message is wanted (see .query).
Predicate = Callable[["Stored"], bool]


def summary_of(message: Message) -> dict[str, Any]:
    """The list view of a message (the REST API's summary, less ``id``):
    read straight off the header section when it is of the plain kind most
    test mail is (``_plain_summary``), else with the message model's views,
    computed on a copy so that the stored message keeps no parsed tree. The
    header fields come from the header section alone; the body is parsed
    only for a multipart message, to count its attachments."""
    end = message.data.find(b"\r\n\r\n")
    head_bytes = message.data if end < 0 else message.data[: end + 4]
    fields = _plain_summary(head_bytes)
    if fields is None:
        fields = _viewed_summary(message, head_bytes)
    return {
        "mail_from": message.mail_from,
        "rcpt_tos": list(message.rcpt_tos),
        "from": fields["from"],
        "to": fields["to"],
        "subject": fields["subject"],
        "date": fields["date"],
        "size": len(message.data),
        "attachments": fields["attachments"],
        "tls": message.tls is not None,
    }


def _viewed_summary(message: Message, head_bytes: bytes) -> dict[str, Any]:
    """``from``, ``to``, ``subject``, ``date`` and ``attachments`` as the
    message model's views read them (any header section)."""
    head = copy_of(message, head_bytes)
    attachments = 0
    if head.email.get_content_maintype() == "multipart":
        attachments = len(copy_of(message).attachments)
    date = head.email["Date"]
    return {
        "from": head.from_,
        "to": head.to,
        "subject": head.subject,
        "date": None if date is None else str(date),
        "attachments": attachments,
    }


#: An address of the plain kind (dot-atoms, ASCII), as the parser gives its addr_spec.
_PLAIN_ADDRESS = (
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*"
)
#: One mailbox of an address list: the address alone, or after a display name of words.
_PLAIN_MAILBOX = re.compile(rf"[ \t]*(?:[A-Za-z0-9]+(?: [A-Za-z0-9]+)* <({_PLAIN_ADDRESS})>|({_PLAIN_ADDRESS}))[ \t]*")
#: A Date of RFC 5322's form (3.3), which the parser reads without a defect.
_PLAIN_DATE = re.compile(
    r"(?:(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), )?[0-3]?[0-9] (?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
    r" [0-9]{4} [0-2][0-9]:[0-5][0-9](?::[0-5][0-9])? [+-][0-9]{4}"
)
_PLAIN_TEXT = re.compile(r"[\x21-\x7e]+(?: [\x21-\x7e]+)*")


def _plain_summary(head: bytes) -> dict[str, Any] | None:
    """``from``, ``to``, ``subject``, ``date`` and ``attachments`` of a
    header section that needs no MIME decoding (ASCII, no encoded words, one
    line per field, plain addresses and dates, not multipart): what the
    message model's views give for it, at a fraction of their cost (the
    inbox summarises every message it shows live). None for any other, which
    the views then read (tests/test_inbox_summary.py compares the two)."""
    if not head.isascii() or b"=?" in head or head.startswith(b"From "):
        return None
    text = head.decode("ascii")
    values: dict[str, list[str]] = {}
    for line in text.split("\r\n"):
        if not line:
            continue
        name, colon, value = line.partition(":")
        if not colon or not name or line[0] in " \t" or "\n" in line or "\r" in line:
            return None  # a folded field, or not a field: the parser's job
        values.setdefault(name.lower(), []).append(value.lstrip(" \t"))  # as the parser reads it
    content_type = values.get("content-type")
    if content_type and content_type[0].lower().startswith("multipart/"):
        return None
    addresses: dict[str, list[str]] = {}
    for name in ("from", "to"):
        found: list[str] = []
        for value in values.get(name, ()):
            for mailbox in value.split(","):
                match = _PLAIN_MAILBOX.fullmatch(mailbox)
                if match is None:
                    return None
                found.append(match.group(1) or match.group(2))
        addresses[name] = found
    subject = values.get("subject")
    if subject is not None and subject[0] and not _PLAIN_TEXT.fullmatch(subject[0]):
        return None
    date = values.get("date")
    when = None
    if date is not None:
        if not _PLAIN_DATE.fullmatch(date[0]):
            return None
        try:
            # The parser gives a date back in its own form (the weekday computed).
            when = email.utils.format_datetime(email.utils.parsedate_to_datetime(date[0]))
        except ValueError:  # 31 Feb, or hour 25: the parser's defects, the views' job
            return None
    return {
        "from": addresses["from"][0] if addresses["from"] else None,
        "to": addresses["to"],
        "subject": None if subject is None else subject[0],
        "date": when,
        "attachments": 0,
    }


def copy_of(message: Message, data: bytes | None = None) -> Message:
    """A fresh ``Message`` with the same envelope and bytes (or ``data``) and no cached views."""
    return Message(
        peer=message.peer,
        mail_from=message.mail_from,
        rcpt_tos=list(message.rcpt_tos),
        data=message.data if data is None else data,
        mail_options=list(message.mail_options),
        rcpt_options=list(message.rcpt_options),
        helo=message.helo,
        received_at=message.received_at,
        tls=message.tls,
        auth_identity=message.auth_identity,
        transfer=message.transfer,
        options_per_rcpt=[list(options) for options in message.options_per_rcpt],
    )


class Stored:
    """One stored message with what the inbox adds: its id, the test that
    sent it (a pytest node id, or None) and its session's inbox id. The
    message itself may be read from the file only when asked for."""

    __slots__ = ("_load", "_message", "id", "received_at", "session_id", "summary", "test")

    def __init__(
        self,
        id: int,
        message: Message | Callable[[], Message],
        test: str | None,
        session_id: int | None,
        summary: dict[str, Any] | None = None,
        received_at: float | None = None,
    ) -> None:
        self.id = id
        self.test = test
        self.session_id = session_id
        #: The summary, computed on first use.
        self.summary = summary
        if isinstance(message, Message):
            self._message: Message | None = message
            self._load: Callable[[], Message] | None = None
            self.received_at = message.received_at
        else:
            assert received_at is not None, "a message read later needs its time now"
            self._message, self._load, self.received_at = None, message, received_at

    @property
    def message(self) -> Message:
        """The stored message (read from the store on first use)."""
        if self._message is None:
            assert self._load is not None
            self._message = self._load()
        return self._message

    def summarised_time(self) -> str:
        """``received_at`` as the API gives it (ISO 8601, UTC)."""
        return _iso(self.received_at)

    def summarised(self) -> dict[str, Any]:
        """The REST API's summary of this message."""
        if self.summary is None:
            self.summary = summary_of(self.message)
        return {
            "id": self.id,
            **self.summary,
            "received_at": _iso(self.received_at),
            "test": self.test,
            "session": self.session_id,
        }


def _iso(timestamp: float) -> str:
    import datetime

    return datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc).isoformat(timespec="milliseconds")


class InboxStore:
    """What both stores offer. ``add`` returns the new message's id and the
    ids of the messages it pushed out."""

    max_messages: int

    def add(self, message: Message, test: str | None, session_id: int | None) -> tuple[Stored, list[int]]:
        """Keep a message (committed when this returns); drop the oldest past ``max_messages``."""
        raise NotImplementedError

    def get(self, message_id: int) -> Stored | None:
        """The message with this id, or None."""
        raise NotImplementedError

    def page(self, where: Predicate | None, limit: int, offset: int) -> tuple[int, list[Stored]]:
        """How many match, and ``limit`` of them from ``offset``, newest first."""
        raise NotImplementedError

    def newest(self, where: Predicate | None) -> Stored | None:
        """The newest message matching ``where``, or None."""
        return next(_matching(self._newest_first(), where), None)

    def _newest_first(self) -> Iterator[Stored]:
        raise NotImplementedError

    def delete(self, message_id: int) -> bool:
        """Forget one message; False if there was none with that id."""
        raise NotImplementedError

    def clear(self) -> list[int]:
        """Forget every message; their ids."""
        raise NotImplementedError

    def __len__(self) -> int:
        raise NotImplementedError

    def save_session(self, session: dict[str, Any]) -> None:
        """Keep a session's record (a dict as the API shows it), replacing an earlier one."""

    def session(self, session_id: int) -> dict[str, Any] | None:
        """A saved session record, or None."""
        return None

    def sessions(self) -> list[dict[str, Any]]:
        """The saved session records, oldest first."""
        return []

    def next_session_id(self) -> int:
        """The first session id not used yet (after a restart too)."""
        return 1

    def close(self) -> None:
        """Let go of the file, if any."""


def _matching(entries: Iterator[Stored], where: Predicate | None) -> Iterator[Stored]:
    for entry in entries:
        if where is None or where(entry):
            yield entry


class MemoryStore(InboxStore):
    """The messages in memory, oldest first."""

    def __init__(self, max_messages: int = DEFAULT_MAX_MESSAGES) -> None:
        if max_messages < 1:
            raise ValueError(f"max_messages must be at least 1, got {max_messages}")
        self.max_messages = max_messages
        self._entries: OrderedDict[int, Stored] = OrderedDict()
        self._next = 1
        self._lock = threading.Lock()

    def add(self, message: Message, test: str | None, session_id: int | None) -> tuple[Stored, list[int]]:
        with self._lock:
            entry = Stored(self._next, message, test, session_id)
            self._next += 1
            self._entries[entry.id] = entry
            dropped = []
            while len(self._entries) > self.max_messages:
                dropped.append(self._entries.popitem(last=False)[0])
        return entry, dropped

    def get(self, message_id: int) -> Stored | None:
        with self._lock:
            return self._entries.get(message_id)

    def page(self, where: Predicate | None, limit: int, offset: int) -> tuple[int, list[Stored]]:
        with self._lock:
            if where is None:
                newest_first = reversed(self._entries.values())
                return len(self._entries), list(itertools.islice(newest_first, offset, offset + limit))
            snapshot = list(reversed(self._entries.values()))
        matched = list(_matching(iter(snapshot), where))
        return len(matched), matched[offset : offset + limit]

    def _newest_first(self) -> Iterator[Stored]:
        with self._lock:
            snapshot = list(self._entries.values())
        return reversed(snapshot)

    def delete(self, message_id: int) -> bool:
        with self._lock:
            return self._entries.pop(message_id, None) is not None

    def clear(self) -> list[int]:
        with self._lock:
            ids = list(self._entries)
            self._entries.clear()
        return ids

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    received_at REAL NOT NULL,
    envelope TEXT NOT NULL,
    summary TEXT NOT NULL,
    test TEXT,
    session_id INTEGER,
    data BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
    id INTEGER PRIMARY KEY,
    record TEXT NOT NULL
);
"""


def _envelope(message: Message) -> str:
    tls = message.tls
    return json.dumps(
        {
            "peer": list(message.peer),
            "mail_from": message.mail_from,
            "rcpt_tos": message.rcpt_tos,
            "mail_options": message.mail_options,
            "rcpt_options": message.rcpt_options,
            "options_per_rcpt": message.options_per_rcpt,
            "helo": message.helo,
            "tls": None if tls is None else [tls.version, tls.cipher, tls.mode],
            "auth_identity": message.auth_identity,
            "transfer": message.transfer,
        }
    )


def _message(received_at: float, envelope: str, data: bytes) -> Message:
    fields = json.loads(envelope)
    tls = fields["tls"]
    return Message(
        peer=(fields["peer"][0], fields["peer"][1]),
        mail_from=fields["mail_from"],
        rcpt_tos=fields["rcpt_tos"],
        data=bytes(data),
        mail_options=fields["mail_options"],
        rcpt_options=fields["rcpt_options"],
        options_per_rcpt=fields["options_per_rcpt"],
        helo=fields["helo"],
        received_at=received_at,
        tls=None if tls is None else TLSInfo(*tls),
        auth_identity=fields["auth_identity"],
        transfer=fields["transfer"],
    )


class SQLiteStore(InboxStore):
    """The messages in a SQLite file that outlives the process. Each ``add``
    is its own transaction, committed (WAL, ``synchronous=FULL``) before it
    returns, so that a message answered 250 survives a crash."""

    def __init__(self, path: str | Path, max_messages: int = DEFAULT_MAX_MESSAGES) -> None:
        if max_messages < 1:
            raise ValueError(f"max_messages must be at least 1, got {max_messages}")
        self.max_messages = max_messages
        self.path = Path(path)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            self._count: int = self._db.execute("SELECT COUNT(*) FROM messages").fetchone()[0]
        except sqlite3.DatabaseError:
            self._db.close()
            raise

    def _row(self, row: tuple[Any, ...]) -> Stored:
        message_id, received_at, envelope, summary, test, session_id, data = row
        return Stored(message_id, _message(received_at, envelope, data), test, session_id, json.loads(summary))

    def add(self, message: Message, test: str | None, session_id: int | None) -> tuple[Stored, list[int]]:
        summary = summary_of(message)
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                cursor = db.execute(
                    "INSERT INTO messages (received_at, envelope, summary, test, session_id, data)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (message.received_at, _envelope(message), json.dumps(summary), test, session_id, message.data),
                )
                message_id = cursor.lastrowid
                assert message_id is not None
                count = self._count + 1
                dropped: list[int] = []
                if count > self.max_messages:
                    dropped = [
                        row[0]
                        for row in db.execute(
                            "SELECT id FROM messages ORDER BY id LIMIT ?", (count - self.max_messages,)
                        )
                    ]
                    db.executemany("DELETE FROM messages WHERE id = ?", [(one,) for one in dropped])
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            self._count = count - len(dropped)
        return Stored(message_id, message, test, session_id, summary), dropped

    def get(self, message_id: int) -> Stored | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM messages WHERE id = ?", (message_id,)).fetchone()
        return None if row is None else self._row(row)

    def _loader(self, message_id: int) -> Callable[[], Message]:
        def load() -> Message:
            found = self.get(message_id)
            if found is None:
                raise LookupError(f"message {message_id} was deleted")
            return found.message

        return load

    def page(self, where: Predicate | None, limit: int, offset: int) -> tuple[int, list[Stored]]:
        if where is None:
            # The summaries only: each message is read if asked for.
            with self._lock:
                rows = self._db.execute(
                    "SELECT id, received_at, summary, test, session_id FROM messages ORDER BY id DESC LIMIT ? OFFSET ?",
                    (limit, offset),
                ).fetchall()
                total = self._count
            return total, [
                Stored(row[0], self._loader(row[0]), row[3], row[4], json.loads(row[2]), row[1]) for row in rows
            ]
        with self._lock:
            rows = self._db.execute("SELECT * FROM messages ORDER BY id DESC").fetchall()
        matched = list(_matching((self._row(row) for row in rows), where))
        return len(matched), matched[offset : offset + limit]

    def _newest_first(self) -> Iterator[Stored]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM messages ORDER BY id DESC").fetchall()
        return (self._row(row) for row in rows)

    def delete(self, message_id: int) -> bool:
        with self._lock:
            deleted = self._db.execute("DELETE FROM messages WHERE id = ?", (message_id,)).rowcount > 0
            self._count -= deleted
        return deleted

    def clear(self) -> list[int]:
        with self._lock:
            ids = [row[0] for row in self._db.execute("SELECT id FROM messages")]
            self._db.execute("DELETE FROM messages")
            self._count = 0
        return ids

    def __len__(self) -> int:
        with self._lock:
            return int(self._count)

    def save_session(self, session: dict[str, Any]) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO sessions (id, record) VALUES (?, ?)", (session["id"], json.dumps(session))
            )
            # As many sessions kept as messages: the oldest go.
            self._db.execute("DELETE FROM sessions WHERE id <= ?", (session["id"] - self.max_messages,))

    def session(self, session_id: int) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT record FROM sessions WHERE id = ?", (session_id,)).fetchone()
        return None if row is None else dict(json.loads(row[0]))

    def sessions(self) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute("SELECT record FROM sessions ORDER BY id").fetchall()
        return [json.loads(row[0]) for row in rows]

    def next_session_id(self) -> int:
        with self._lock:
            (highest,) = self._db.execute("SELECT MAX(id) FROM sessions").fetchone()
        return 1 if highest is None else int(highest) + 1

    def close(self) -> None:
        with self._lock:
            self._db.close()
