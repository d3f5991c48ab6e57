"""The command line's start-up of the inbox (``--web`` and the flags with
it): the store, the tap on each server, the web server. The flags
themselves are parsed by ``pytest_smtpd.cli``."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from .hub import Inbox
from .store import InboxStore, MemoryStore, SQLiteStore
from .web import WebInbox

__all__ = ["start"]


def start(
    servers: Sequence[Any],
    web: tuple[str, int],
    *,
    store: str | None = None,
    max_messages: int,
    token: str | None = None,
    allow_remote: bool = False,
    release_to: tuple[str, int] | None = None,
) -> WebInbox:
    """Serve the inbox over ``servers`` (stdlib-style ``SMTPServer``\\ s);
    ``OSError`` or ``ValueError`` saying why it cannot."""
    kept: InboxStore
    if store is None:
        kept = MemoryStore(max_messages)
    else:
        try:
            kept = SQLiteStore(store, max_messages)
        except sqlite3.Error as exc:
            raise ValueError(f"--store {store!r}: cannot use it as a SQLite file: {exc}") from exc
    inbox = Inbox(kept)
    host, port = web
    # "localhost" could bind 127.0.0.1 and ::1 on two different free ports.
    bind = "127.0.0.1" if host == "localhost" else host
    site = WebInbox(inbox, bind, port, token=token, allow_remote=allow_remote, release_to=release_to)
    for server in servers:
        inbox.attach(server)
    try:
        return site.start()
    except BaseException:
        inbox.close()
        raise
