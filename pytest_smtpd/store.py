"""The thread-safe list of received messages, and the waits on it."""

from __future__ import annotations

import asyncio
import contextlib
import math
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
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
        #: The messages reads handed out (indexing, iteration, ``last``,
        #: ``filter``, the waits), by id: strict mode's "looked at". The
        #: message is kept with its id, so that a message a read marks after
        #: a ``clear()`` took it cannot be freed and its address (its id)
        #: given to a later message, which would then count as looked at.
        self._seen: dict[int, Message] = {}

    def _mark(self, messages: Iterable[Message]) -> None:
        """Note ``messages`` as looked at; the caller holds the lock."""
        self._seen.update((id(message), message) for message in messages)

    def _looked_at(self, messages: list[Message]) -> list[Message]:
        """Note ``messages`` (read from a snapshot) as looked at by the test;
        returns them."""
        with self._changed:
            self._mark(messages)
        return messages

    def not_looked_at(self) -> list[Message]:
        """The messages no read has returned so far (no indexing, iteration,
        ``last``, ``filter``, ``wait_for``, ``assert_sent``; ``len``,
        :meth:`snapshot` and this method do not count): what strict mode
        fails a test for."""
        with self._changed:
            seen = self._seen
            return [message for message in self._items if seen.get(id(message)) is not message]

    def snapshot(self) -> list[Message]:
        """The messages now, as a new list, not counted as looked at (strict
        mode): a copy for code that reports on the messages rather than
        checks them, as the failure report and the teardown lint read it. A
        test that only takes a snapshot still fails strict mode."""
        return super().snapshot()

    def _appended(self) -> None:
        with self._changed:
            waiters = list(self._async_waiters)
        for waiter in waiters:
            waiter.wake()

    def clear(self) -> list[Message]:
        """Forget the messages so far, and return them (taken at once: a
        message arriving meanwhile is either returned or kept)."""
        with self._changed:  # reentrant: "looked at" is forgotten in the same step
            self._seen = {}
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
        __tracebackhide__ = True  # messages[0] of none: the test's line, not this one
        with self._changed:
            found = self._items[index]
            self._mark(found if isinstance(found, list) else [found])
            return found

    def __iter__(self) -> Iterator[Message]:
        with self._changed:
            snapshot = list(self._items)
            self._mark(snapshot)
        return iter(snapshot)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, MessageStore):
            return list(self) == list(other)
        if isinstance(other, list):
            return list(self) == other
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"MessageStore({self.snapshot()!r})"

    @property
    def last(self) -> Message:
        """The message received last; ``IndexError`` if none has arrived."""
        __tracebackhide__ = True
        with self._changed:
            if not self._items:
                raise IndexError("no message has arrived yet")
            self._mark(self._items[-1:])
            return self._items[-1]

    def filter(self, **criteria: Criterion | dict[str, Criterion]) -> list[Message]:
        """The messages matching every criterion, as ``assert_sent`` takes them
        (``to=``, ``subject=``, ``header={...}``...)."""
        __tracebackhide__ = True
        from .matching import matcher

        matches = matcher(criteria)
        return self._looked_at([message for message in self.snapshot() if matches(message)])

    def wait_for(
        self,
        count: int = 1,
        timeout: float = 5.0,
        where: Callable[[Message], bool] | None = None,
    ) -> list[Message]:
        """Block until ``count`` messages (matching ``where``, if given) have
        arrived, and return them. For mail sent by another thread or process.

        Raises ``TimeoutError`` saying what did arrive. Called on a thread
        whose event loop is running (an async test), it raises at once: it
        would block that loop, and whatever it runs, for the whole wait."""
        __tracebackhide__ = True
        _check_wait(count, timeout)
        if timeout > 0 and loopthread.in_loop_thread():
            raise RuntimeError(
                "wait_for cannot wait on the servers' loop thread (from a handler): no mail could arrive while it waits"
            )
        if timeout > 0:
            refuse_blocking_in_event_loop("messages.wait_for()")

        return self._cut(count, timeout, where, self._waited(count, timeout, where))

    def _waited(self, count: int, timeout: float, where: Callable[[Message], bool] | None) -> list[Message]:
        """Block until ``count`` messages match ``where`` or ``timeout`` has
        passed; all those matching then. ``where`` runs on a snapshot,
        outside the lock, so that appending never waits for it."""
        __tracebackhide__ = True
        deadline = time.monotonic() + timeout
        while True:
            with self._changed:
                changes = self._changes
                received = list(self._items)
            got = [m for m in received if where is None or where(m)]
            remaining = deadline - time.monotonic()
            if len(got) >= count or remaining <= 0:
                return got
            with self._changed:
                if self._changes == changes:
                    self._changed.wait(remaining)  # woken by an append or a clear

    def _cut(
        self, count: int, timeout: float, where: Callable[[Message], bool] | None, got: list[Message]
    ) -> list[Message]:
        """The first ``count`` of ``got``; too few: ``TimeoutError`` saying what did arrive."""
        __tracebackhide__ = True
        if len(got) < count:
            raise TimeoutError(_timeout_text(count, timeout, where is not None, len(got), self.snapshot()))
        return self._looked_at(got[:count])

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
        __tracebackhide__ = True
        _check_wait(count, timeout)
        return self._cut(count, timeout, where, await self._waited_async(count, timeout, where))

    async def _waited_async(self, count: int, timeout: float, where: Callable[[Message], bool] | None) -> list[Message]:
        """``_waited`` on the running event loop."""
        __tracebackhide__ = True
        waiter = _async_wait()
        deadline = waiter.now() + timeout
        with self._changed:
            self._async_waiters.append(waiter)
        try:
            while True:
                waiter.arm()
                with self._changed:
                    received = list(self._items)
                got = [m for m in received if where is None or where(m)]
                remaining = deadline - waiter.now()
                if len(got) >= count or remaining <= 0:
                    return got
                await waiter.woken(remaining)
        finally:
            with self._changed:
                self._async_waiters.remove(waiter)


def _check_wait(count: int, timeout: float) -> None:
    __tracebackhide__ = True
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise ValueError(f"count must be a whole number, 0 or more, got {count!r}")
    if not (isinstance(timeout, int | float) and math.isfinite(timeout) and timeout >= 0):
        raise ValueError(f"timeout must be a finite number of seconds, 0 or more, got {timeout!r}")


#: A timeout's message names this many of the messages at each end.
NAMED_AT_EACH_END = 3


def _timeout_text(count: int, timeout: float, condition: bool, got: int, received: Sequence[Message]) -> str:
    """What a wait that timed out says: the first and last few messages that
    did arrive, and how many (20,000 messages make a short line, quickly)."""
    if len(received) <= 2 * NAMED_AT_EACH_END + 1:
        named = ", ".join(repr(message) for message in received)
    else:
        left_out = len(received) - 2 * NAMED_AT_EACH_END
        named = ", ".join(
            [
                *(repr(message) for message in received[:NAMED_AT_EACH_END]),
                f"... {left_out} more ...",
                *(repr(message) for message in received[-NAMED_AT_EACH_END:]),
            ]
        )
    matching = " matching the condition" if condition else ""
    return f"waited {timeout}s for {count} message(s){matching}, got {got} (of {len(received)} received: [{named}])"


def refuse_blocking_in_event_loop(what: str) -> None:
    """A ``RuntimeError`` if this thread runs an event loop (an async test):
    a blocking wait there stops the loop, and so the app that would send
    the mail, until it times out."""
    __tracebackhide__ = True
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        trio = sys.modules.get("trio")
        if trio is None:
            return
        try:
            trio.lowlevel.current_trio_token()
        except RuntimeError:
            return
    raise RuntimeError(
        f"{what} would block this thread's running event loop (an async test) for the whole wait:"
        " use `await smtpd.assert_sent_async(...)` or `await smtpd.messages.wait_for_async(...)`"
    )


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
    __tracebackhide__ = True
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
