"""The thread-safe list of received messages, and the waits on it."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, overload

from . import loopthread
from ._sequence import LockedList
from .message import Attachment, Message, TLSInfo

if TYPE_CHECKING:
    from .matching import Criterion

# Attachment, Message and TLSInfo live in .message; they stay importable from here.
__all__ = ["Attachment", "Message", "MessageStore", "TLSInfo"]


class MessageStore(LockedList[Message]):
    """The messages a server accepted, in order. The server thread appends
    while the test reads; every read sees a consistent snapshot."""

    def __init__(self) -> None:
        super().__init__()
        #: Coroutines in ``wait_for_async``: each one's thread-safe wake-up.
        self._async_waiters: list[_AsyncWait] = []
        #: ids of the messages reads handed out (indexing, iteration,
        #: ``last``, ``filter``, the waits): strict mode's "looked at".
        self._seen: set[int] = set()

    def _snapshot(self) -> list[Message]:
        """The messages now, without counting them as looked at."""
        with self._changed:
            return list(self._messages)

    def _looked_at(self, messages: list[Message]) -> list[Message]:
        """Note ``messages`` as looked at by the test; returns them."""
        with self._changed:
            self._seen.update(map(id, messages))
        return messages

    def not_looked_at(self) -> list[Message]:
        """The messages no read has returned so far (no indexing, iteration,
        ``last``, ``filter``, ``wait_for``, ``assert_sent``): what strict
        mode fails a test for."""
        with self._changed:
            return [message for message in self._messages if id(message) not in self._seen]

    @property
    def _messages(self) -> list[Message]:
        """The list itself (read under ``_changed``)."""
        return self._items

    def append(self, message: Message) -> None:
        """Record an accepted message and wake whoever waits for one."""
        super().append(message)

    def _appended(self) -> None:
        with self._changed:
            waiters = list(self._async_waiters)
        for waiter in waiters:
            waiter.wake()

    def clear(self) -> list[Message]:
        """Forget the messages so far, and return them (taken at once: a
        message arriving meanwhile is either returned or kept)."""
        with self._changed:
            self._seen = set()
        return super().clear()

    def _after_fork_in_child(self) -> None:
        """A forked child has no thread that could hold the lock, nor the
        parent's event loops that were waiting: a new lock, no waiters."""
        super()._after_fork_in_child()
        self._async_waiters = []

    @overload
    def __getitem__(self, index: int) -> Message: ...
    @overload
    def __getitem__(self, index: slice) -> list[Message]: ...
    def __getitem__(self, index: int | slice) -> Message | list[Message]:
        with self._changed:
            found = self._items[index]
            self._seen.update(map(id, found if isinstance(found, list) else [found]))
            return found

    def __len__(self) -> int:
        with self._changed:
            return len(self._items)

    def __iter__(self) -> Iterator[Message]:
        with self._changed:
            snapshot = list(self._items)
            self._seen.update(map(id, snapshot))
        return iter(snapshot)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, MessageStore):
            return list(self) == list(other)
        if isinstance(other, list):
            return list(self) == other
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"MessageStore({self._snapshot()!r})"

    @property
    def last(self) -> Message:
        """The message received last; ``IndexError`` if none has arrived."""
        with self._changed:
            if not self._messages:
                raise IndexError("no message has arrived yet")
            self._seen.add(id(self._messages[-1]))
            return self._messages[-1]

    def filter(self, **criteria: Criterion | dict[str, Criterion]) -> list[Message]:
        """The messages matching every criterion, as ``assert_sent`` takes them
        (``to=``, ``subject=``, ``header={...}``...)."""
        from .matching import matcher

        matches = matcher(criteria)
        return self._looked_at([message for message in self._snapshot() if matches(message)])

    def wait_for(
        self,
        count: int = 1,
        timeout: float = 5.0,
        where: Callable[[Message], bool] | None = None,
    ) -> list[Message]:
        """Block until ``count`` messages (matching ``where``, if given) have
        arrived, and return them. For mail sent by another thread or process.

        Raises ``TimeoutError`` saying what did arrive."""

        if timeout > 0 and loopthread.in_loop_thread():
            raise RuntimeError(
                "wait_for cannot wait on the servers' loop thread (from a handler): no mail could arrive while it waits"
            )

        deadline = time.monotonic() + timeout
        while True:
            with self._changed:
                changes = self._changes
            remaining = deadline - time.monotonic()
            found = self._found(count, timeout, where, remaining)
            if found is not None:
                return found
            with self._changed:
                if self._changes == changes:
                    self._changed.wait(remaining)  # woken by an append or a clear

    def _found(
        self, count: int, timeout: float, where: Callable[[Message], bool] | None, remaining: float
    ) -> list[Message] | None:
        """One look for the waits: the first ``count`` messages matching
        ``where``, or None to wait on for ``remaining`` seconds; past the
        deadline, ``TimeoutError`` saying what did arrive. ``where`` runs on
        a snapshot, outside the lock, so that appending never waits for it."""
        with self._changed:
            received = list(self._messages)
        got = [m for m in received if where is None or where(m)]
        if len(got) >= count:
            return self._looked_at(got[:count])
        if remaining <= 0:
            raise TimeoutError(
                f"waited {timeout}s for {count} message(s)"
                f"{' matching the condition' if where else ''}, got {len(got)}"
                f" (of {len(received)} received: {received!r})"
            )
        return None

    async def wait_for_async(
        self,
        count: int = 1,
        timeout: float = 5.0,
        where: Callable[[Message], bool] | None = None,
    ) -> list[Message]:
        """``wait_for`` for async tests: waits on the running event loop
        (pytest-asyncio; anyio with its asyncio or trio backend; trio)
        without blocking it, woken by the thread that appends; the server's
        loop thread is not involved.

        Raises ``TimeoutError`` saying what did arrive."""
        waiter = _async_wait()
        deadline = waiter.now() + timeout
        with self._changed:
            self._async_waiters.append(waiter)
        try:
            while True:
                waiter.arm()
                remaining = deadline - waiter.now()
                found = self._found(count, timeout, where, remaining)
                if found is not None:
                    return found
                await waiter.woken(remaining)
        finally:
            with self._changed:
                self._async_waiters.remove(waiter)


class _AsyncWait:
    """One coroutine waiting in ``wait_for_async``, on its own event loop:
    ``wake()`` may be called from any thread."""

    def now(self) -> float:
        raise NotImplementedError

    def arm(self) -> None:
        """Start a round: a ``wake()`` from now on ends the next ``woken()``."""
        raise NotImplementedError

    async def woken(self, timeout: float) -> None:
        """Return at a ``wake()`` since ``arm()``, or after ``timeout`` seconds."""
        raise NotImplementedError

    def wake(self) -> None:
        raise NotImplementedError


class _AsyncioWait(_AsyncWait):
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._arrived = asyncio.Event()

    def now(self) -> float:
        return self._loop.time()

    def arm(self) -> None:
        self._arrived.clear()

    async def woken(self, timeout: float) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._arrived.wait(), timeout)

    def wake(self) -> None:
        # A loop that has closed took its waiter with it.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._arrived.set)


class _TrioWait(_AsyncWait):
    """trio is not a dependency: this uses the module the running test
    already imported."""

    def __init__(self, trio: Any, token: Any) -> None:
        self._trio = trio
        self._token = token
        self._arrived = trio.Event()

    def now(self) -> float:
        return float(self._trio.current_time())

    def arm(self) -> None:
        # A trio Event cannot be cleared: a new one per round.
        self._arrived = self._trio.Event()

    async def woken(self, timeout: float) -> None:
        with self._trio.move_on_after(timeout):
            await self._arrived.wait()

    def wake(self) -> None:
        # Reads _arrived on trio's thread, so it sets the current round's.
        # A run that has finished (trio.RunFinishedError) took its waiter with it.
        with contextlib.suppress(RuntimeError):
            self._token.run_sync_soon(lambda: self._arrived.set())


def _async_wait() -> _AsyncWait:
    """A waiter for the event loop the caller runs on: asyncio's or trio's."""
    try:
        return _AsyncioWait(asyncio.get_running_loop())
    except RuntimeError:
        pass
    trio = sys.modules.get("trio")
    if trio is not None:
        try:
            return _TrioWait(trio, trio.lowlevel.current_trio_token())
        except RuntimeError:
            pass
    raise RuntimeError(
        "wait_for_async needs a running event loop: asyncio (pytest-asyncio, anyio's asyncio backend) or trio"
    )
