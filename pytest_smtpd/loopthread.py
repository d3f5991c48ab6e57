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
    "kept_running",
    "release_loop",
    "servers_running",
]

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_thread: threading.Thread | None = None
_users = 0
_holds = 0


def _run(loop: asyncio.AbstractEventLoop, ready: threading.Event) -> None:
    asyncio.set_event_loop(loop)
    loop.call_soon(ready.set)
    loop.run_forever()


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
    global _loop, _thread, _users
    with _lock:
        if _users <= 0 or _loop is None or _thread is None:
            raise RuntimeError("release_loop() without acquire_loop()")
        if threading.current_thread() is _thread:
            raise RuntimeError("a server cannot be stopped from inside its own event loop")
        _users -= 1
        if _users:
            return
        loop, thread = _loop, _thread
        _loop = _thread = None
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


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


def is_kept_running() -> bool:
    return _holds > 0


def servers_running() -> int:
    """How many users of the loop there are besides ``kept_running()``."""
    return _users - _holds


def in_loop_thread() -> bool:
    return _thread is not None and threading.current_thread() is _thread
