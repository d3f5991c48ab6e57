"""``Inbox``: the dev inbox's state on the loop thread. It taps servers (each
accepted message is stored, committed before its 250 is sent, and each
session's transcript kept), tells subscribers (the UI's event stream) what
changed, and wakes the API's waits. The store does the keeping."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import datetime
import inspect
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ..message import Message
from ..transport import Verdict, accepted, to_reply
from .store import InboxStore, MemoryStore, Predicate, Stored

if TYPE_CHECKING:
    from ..server import Server
    from ..sessions import Session
    from ..transport import SessionProtocol

__all__ = ["Inbox", "session_view"]

#: Events a slow subscriber may fall behind by before it is dropped.
SUBSCRIBER_BACKLOG = 1000


def _iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc).isoformat(timespec="milliseconds")


def session_view(session_id: int, record: Session, test: str | None, message_ids: list[int]) -> dict[str, Any]:
    """A session as the REST API shows it, transcript included."""
    tls = record.tls
    return {
        "id": session_id,
        "peer": list(record.peer),
        "helo": record.helo,
        "started_at": _iso(record.started_at),
        "ended_at": _iso(record.ended_at),
        "ended_by": record.ended_by,
        "tls": None if tls is None else {"version": tls.version, "cipher": tls.cipher, "mode": tls.mode},
        "auth_identity": record.auth_identity,
        "commands": list(record.commands),
        "messages": list(message_ids),
        "test": test,
        "transcript": [
            {"direction": entry.direction, "line": entry.line, "time": round(entry.time, 6)}
            for entry in record.transcript
        ],
    }


class _Live:
    """A session seen by this process: its record and what the inbox adds."""

    __slots__ = ("message_ids", "record", "test")

    def __init__(self, record: Session, test: str | None) -> None:
        self.record = record
        self.test = test
        self.message_ids: list[int] = []


class Inbox:
    """The messages and sessions of the servers it is attached to.

    Every method but ``attach`` runs on the loop thread (the servers' and the
    web server's). ``test`` given to ``attach``, called with a message or a
    session record, names the test it belongs to (the pytest plugin's node id)."""

    def __init__(self, store: InboxStore | None = None) -> None:
        self.store = store if store is not None else MemoryStore()
        #: Sessions by inbox id, oldest first, as many as ``max_messages``.
        self._live: OrderedDict[int, _Live] = OrderedDict()
        self._ids_of_records: dict[int, int] = {}
        self._next_session = self.store.next_session_id()
        self._subscribers: set[asyncio.Queue[dict[str, Any] | None]] = set()
        self._waiters: list[tuple[Predicate | None, asyncio.Future[Stored]]] = []
        #: Test outcomes by node id (the pytest plugin reports them).
        self.tests: dict[str, str] = {}
        #: Writes to a file store, one at a time and in order, off the loop.
        self._writer = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="pytest-smtpd-inbox")
        self._synchronous = isinstance(self.store, MemoryStore)

    # -- tapping servers -------------------------------------------------------

    def attach(self, server: Any, test: Callable[[object], str | None] | None = None) -> None:
        """Keep what ``server`` (a ``Server`` or a stdlib-style ``SMTPServer``)
        accepts from now on: each message it answers 250 is stored before the
        250 goes out, each session's transcript is kept."""
        backend: Server = getattr(server, "_server", server)
        backend.record_sessions = True
        handle_message, started, ended = backend.handle_message, backend.session_started, backend.session_ended
        tag = test or (lambda record: None)

        def on_message(message: Message, session: SessionProtocol) -> Verdict | Awaitable[Verdict]:
            verdict = handle_message(message, session)
            if inspect.isawaitable(verdict):
                return self._keep_after(message, verdict, tag(message))
            if not accepted(to_reply(verdict)):
                return verdict
            if self._synchronous:
                self._stored(*self.store.add(message, tag(message), self._session_id(message)))
                return verdict
            return self._keep(message, verdict, tag(message))

        def on_started(session: SessionProtocol) -> Any:
            handler = started(session)
            if session.record is not None:
                self._new_session(session.record, tag(session.record))
            return handler

        def on_ended(session: SessionProtocol) -> None:
            ended(session)
            record = session.record
            if record is not None and id(record) in self._ids_of_records:
                self._session_changed(self._ids_of_records[id(record)])

        backend.handle_message = on_message  # type: ignore[method-assign]
        backend.session_started = on_started  # type: ignore[method-assign]
        backend.session_ended = on_ended  # type: ignore[method-assign]

    async def _keep_after(self, message: Message, pending: Awaitable[Verdict], test: str | None) -> Verdict:
        verdict = await pending
        if not accepted(to_reply(verdict)):
            return verdict
        return await self._keep(message, verdict, test)

    async def _keep(self, message: Message, verdict: Verdict, test: str | None) -> Verdict:
        """Commit, then answer: the client hears 250 only for what is kept."""
        session_id = self._session_id(message)
        added = await asyncio.get_running_loop().run_in_executor(
            self._writer, self.store.add, message, test, session_id
        )
        self._stored(*added)
        if session_id is not None:
            self._session_changed(session_id)
        return verdict

    def _session_id(self, message: Message) -> int | None:
        return None if message.session is None else self._ids_of_records.get(id(message.session))

    def _new_session(self, record: Session, test: str | None) -> None:
        session_id = self._next_session
        self._next_session += 1
        self._live[session_id] = _Live(record, test)
        self._ids_of_records[id(record)] = session_id
        while len(self._live) > self.store.max_messages:
            _, gone = self._live.popitem(last=False)
            self._ids_of_records.pop(id(gone.record), None)

    def _session_changed(self, session_id: int) -> None:
        """A file store keeps the session's transcript as it stands (in order with the messages)."""
        live = self._live.get(session_id)
        if live is None or self._synchronous:
            return
        view = session_view(session_id, live.record, live.test, live.message_ids)
        with contextlib.suppress(RuntimeError):  # a session ending after close(): not kept
            self._writer.submit(self.store.save_session, view)

    def _stored(self, entry: Stored, dropped: list[int]) -> None:
        if entry.session_id is not None and entry.session_id in self._live:
            self._live[entry.session_id].message_ids.append(entry.id)
        if dropped:
            self._publish({"type": "deleted", "ids": dropped})
        self._publish({"type": "message", "id": entry.id, "entry": entry})
        for waiter in list(self._waiters):
            where, future = waiter
            if not future.done() and (where is None or where(entry)):
                future.set_result(entry)

    # -- events -------------------------------------------------------------------

    def subscribe(self) -> asyncio.Queue[dict[str, Any] | None]:
        """A queue of the events from now on (None: the subscriber fell behind, or the inbox closed)."""
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(SUBSCRIBER_BACKLOG + 1)
        self._subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[dict[str, Any] | None]) -> None:
        """Stop the events for this queue."""
        self._subscribers.discard(queue)

    @property
    def subscribers(self) -> int:
        """How many event streams are open."""
        return len(self._subscribers)

    def _publish(self, event: dict[str, Any]) -> None:
        for queue in list(self._subscribers):
            if queue.qsize() >= SUBSCRIBER_BACKLOG:
                self._subscribers.discard(queue)
                queue.put_nowait(None)
            else:
                queue.put_nowait(event)

    def test_finished(self, nodeid: str, outcome: str) -> None:
        """Note a test's outcome (``passed``, ``failed``, ``skipped``) for the UI."""
        self.tests[nodeid] = outcome
        self._publish({"type": "test", "test": nodeid, "outcome": outcome})

    # -- reading and deleting -------------------------------------------------------

    async def _off_loop(self, call: Callable[..., Any], *args: Any) -> Any:
        if self._synchronous:
            return await asyncio.get_running_loop().run_in_executor(None, call, *args)
        return await asyncio.get_running_loop().run_in_executor(self._writer, call, *args)

    async def page(self, where: Predicate | None, limit: int, offset: int) -> tuple[int, list[dict[str, Any]]]:
        """How many match, and one page of their summaries, newest first."""
        if where is None and self._synchronous:
            total, found = self.store.page(None, limit, offset)
        else:
            total, found = await self._off_loop(self.store.page, where, limit, offset)
        summaries = []
        for entry in found:
            summary = entry.summarised()
            summary["outcome"] = self.tests.get(entry.test) if entry.test else None
            summaries.append(summary)
        return total, summaries

    async def get(self, message_id: int) -> Stored | None:
        """One stored message, or None."""
        if self._synchronous:
            return self.store.get(message_id)
        found: Stored | None = await self._off_loop(self.store.get, message_id)
        return found

    async def delete(self, message_id: int) -> bool:
        """Delete one message; False if there was none."""
        deleted: bool = await self._off_loop(self.store.delete, message_id)
        if deleted:
            self._publish({"type": "deleted", "ids": [message_id]})
        return deleted

    async def clear(self) -> int:
        """Delete every message; how many there were."""
        ids: list[int] = await self._off_loop(self.store.clear)
        self._publish({"type": "cleared", "ids": ids})
        return len(ids)

    async def wait(self, where: Predicate | None, timeout: float) -> Stored | None:
        """The newest message matching ``where`` already here, or the first
        to arrive within ``timeout`` seconds; None if none did."""
        future: asyncio.Future[Stored] = asyncio.get_running_loop().create_future()
        # Registered before the look, so that one arriving meanwhile is not missed.
        waiter = (where, future)
        self._waiters.append(waiter)
        try:
            found: Stored | None = await self._off_loop(self.store.newest, where)
            if found is not None:
                return found
            with contextlib.suppress(asyncio.TimeoutError):
                return await asyncio.wait_for(asyncio.shield(future), timeout)
            return None
        finally:
            self._waiters.remove(waiter)

    async def session(self, session_id: int) -> dict[str, Any] | None:
        """A session with its transcript, or None."""
        live = self._live.get(session_id)
        if live is not None:
            return session_view(session_id, live.record, live.test, live.message_ids)
        found: dict[str, Any] | None = await self._off_loop(self.store.session, session_id)
        return found

    async def sessions(self) -> list[dict[str, Any]]:
        """Every session kept, oldest first, without transcripts."""
        saved = {view["id"]: view for view in await self._off_loop(self.store.sessions)}
        for session_id, live in self._live.items():
            saved[session_id] = session_view(session_id, live.record, live.test, live.message_ids)
        views = [saved[key] for key in sorted(saved)]
        for view in views:
            view.pop("transcript", None)
        return views

    def close_streams(self) -> None:
        """End the event streams (on the loop thread)."""
        for queue in list(self._subscribers):
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(None)
        self._subscribers.clear()

    def close(self) -> None:
        """Finish the writes under way and let go of the store."""
        self._writer.shutdown(wait=True)
        self.store.close()
