"""The one background event-loop thread that serves every server of the
process. The first server to start creates it; the last one to stop ends it,
so nothing is left running after the last ``stop()`` (the pytest plugin
keeps it for the test session with ``kept_running()``)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator

__all__ = [
    "acquire_loop",
    "in_loop_thread",
    "is_kept_running",
    "join_ending_thread",
    "kept_running",
    "release_loop",
    "release_unless_last",
    "servers_running",
]

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_thread: threading.Thread | None = None
_users = 0
#: A loop thread ending because its last server was stopped from inside it.
_ending: threading.Thread | None = None
_holds = 0


def _run(loop: asyncio.AbstractEventLoop, ready: threading.Event) -> None:
    asyncio.set_event_loop(loop)
    loop.call_soon(ready.set)
    try:
        loop.run_forever()
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


def acquire_loop() -> asyncio.AbstractEventLoop:
    """The running loop thread's loop, started if needed. Pair with release_loop()."""
    global _loop, _thread, _users
    with _lock:
        if _loop is None:
            loop = asyncio.new_event_loop()
            ready = threading.Event()
            thread = threading.Thread(target=_run, args=(loop, ready), name="pytest-smtpd-loop", daemon=True)
            thread.start()
            ready.wait()
            _loop, _thread = loop, thread
        _users += 1
        return _loop


def release_loop() -> None:
    """Drop one user; the last one stops the thread and closes the loop."""
    global _loop, _thread, _users, _ending
    with _lock:
        if _users <= 0 or _loop is None or _thread is None:
            raise RuntimeError("release_loop() without acquire_loop()")
        _users -= 1
        if _users:
            return
        loop, thread = _loop, _thread
        _loop = _thread = None
        if threading.current_thread() is thread:
            # The last server stopped by a handler on this thread: the loop
            # ends after this callback, and the thread closes it as it ends.
            _ending = thread
            loop.stop()
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join()


def release_unless_last() -> bool:
    """Drop one user if it is not the last one (so the loop keeps running)."""
    global _users
    with _lock:
        if _users > 1:
            _users -= 1
            return True
        return False


@contextlib.contextmanager
def kept_running() -> Iterator[None]:
    """Keep the loop thread alive inside the block even while no server runs,
    so that starting and stopping servers there is a bind and a close and
    nothing more. The pytest plugin holds it for the test session."""
    global _holds
    acquire_loop()
    _holds += 1
    try:
        yield
    finally:
        _holds -= 1
        release_loop()


def join_ending_thread(timeout: float | None = None) -> None:
    """Wait for a loop thread that is ending because its last server was
    stopped from inside it (e.g. by ``process_message``)."""
    thread = _ending
    if thread is not None and thread is not threading.current_thread():
        thread.join(timeout)


def is_kept_running() -> bool:
    return _holds > 0


def servers_running() -> int:
    """How many users of the loop there are besides ``kept_running()``."""
    return _users - _holds


def in_loop_thread() -> bool:
    return _thread is not None and threading.current_thread() is _thread
