"""The one background event-loop thread that serves every server of the
process. The first server to start creates it; the last one to stop ends it,
so nothing is left running after the last ``stop()`` (the pytest plugin
keeps it for the test session with ``kept_running()``).

Each user holds a :class:`Lease`, released exactly once however often and
from whichever thread it is released, so that no race between two
``stop()`` calls can end the thread under another server. A fork starts a
new era: the child has no loop thread (threads do not survive a fork), and
leases from before the fork are void there.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Iterator

__all__ = [
    "Lease",
    "acquire_loop",
    "in_loop_thread",
    "is_kept_running",
    "join_ending_thread",
    "kept_running",
    "servers_running",
]

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_thread: threading.Thread | None = None
_leases: set[Lease] = set()
#: A loop thread ending because its last lease was released on that thread.
_ending: threading.Thread | None = None
_holds = 0
#: Counts forks: a lease taken before a fork is void in the child.
_era = 0


class Lease:
    """One user's hold on the loop thread; :meth:`release` lets go of it."""

    __slots__ = ("_era", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop, era: int) -> None:
        self.loop = loop
        self._era = era

    @property
    def valid(self) -> bool:
        """False once released, and in a forked child for a lease of its parent."""
        return self._era == _era and self in _leases

    def release(self) -> None:
        """Let go; the last lease stops the thread and closes the loop. A
        second release, or one in a forked child, does nothing."""
        global _loop, _thread, _ending
        with _lock:
            if self._era != _era or self not in _leases:
                return
            _leases.discard(self)
            if _leases:
                return
            loop, thread = _loop, _thread
            _loop = _thread = None
            assert loop is not None and thread is not None
            if threading.current_thread() is thread:
                # Released by a callback on the loop thread (a handler that
                # stopped the last server): the loop ends after this
                # callback, and the thread closes it as it ends.
                _ending = thread
                loop.stop()
                return
            loop.call_soon_threadsafe(loop.stop)
        # Outside the lock: a callback still running on the thread may start
        # a server (and so take the lock) before the loop sees the stop.
        thread.join()


def _run(loop: asyncio.AbstractEventLoop, ready: threading.Event) -> None:
    asyncio.set_event_loop(loop)
    loop.call_soon(ready.set)
    try:
        loop.run_forever()
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


def acquire_loop() -> Lease:
    """A lease on the running loop thread, which is started if needed."""
    global _loop, _thread
    with _lock:
        if _loop is None:
            loop = asyncio.new_event_loop()
            ready = threading.Event()
            thread = threading.Thread(target=_run, args=(loop, ready), name="pytest-smtpd-loop", daemon=True)
            thread.start()
            ready.wait()
            _loop, _thread = loop, thread
        lease = Lease(_loop, _era)
        _leases.add(lease)
        return lease


@contextlib.contextmanager
def kept_running() -> Iterator[None]:
    """Keep the loop thread alive inside the block even while no server runs,
    so that starting and stopping servers there is a bind and a close and
    nothing more. The pytest plugin holds it for the test session."""
    global _holds
    lease = acquire_loop()
    with _lock:
        _holds += 1
    try:
        yield
    finally:
        with _lock:
            if lease.valid:
                _holds -= 1
        lease.release()


def join_ending_thread(timeout: float | None = None) -> None:
    """Wait for a loop thread that is ending because its last server was
    stopped from inside it (e.g. by ``process_message``)."""
    thread = _ending
    if thread is not None and thread is not threading.current_thread():
        thread.join(timeout)


def is_kept_running() -> bool:
    """Whether ``kept_running()`` holds the loop thread (the plugin does,
    for the test session)."""
    return _holds > 0


def servers_running() -> int:
    """How many leases there are besides ``kept_running()``'s."""
    return len(_leases) - _holds


def in_loop_thread() -> bool:
    """Whether the caller runs on the loop thread (in a handler, say),
    where waiting for the loop would deadlock."""
    return _thread is not None and threading.current_thread() is _thread


def _after_fork_in_child() -> None:
    """The child of a fork has only the thread that forked: no loop thread,
    whatever the parent had. Start a new era, so that the child's first
    server starts a loop thread of its own and its parent's leases are void."""
    global _lock, _loop, _thread, _ending, _holds, _era
    _lock = threading.Lock()  # it may have been held by a thread that is gone
    _loop = _thread = _ending = None
    _leases.clear()
    _holds = 0
    _era += 1


os.register_at_fork(after_in_child=_after_fork_in_child)
