"""One server's lifecycle: the state (stopped, starting, running, stopping),
changed under one lock only; what a run holds (its generation, its lease on
the loop thread, its listening sockets) until its stop is done; and the
order of a start and a stop around that state, from any thread.

It knows nothing of SMTP, sessions or listeners: ``Server`` gives it the
binding to do at a start and the close to run on the loop at a stop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import enum
import socket
import threading
from collections.abc import Callable

from . import loopthread

__all__ = ["Close", "Lifecycle", "Run", "State"]


class State(enum.Enum):
    """Where a server is in its lifecycle."""

    #: Not bound; start() may begin.
    STOPPED = "stopped"
    #: start() is binding and taking the loop thread; others wait.
    STARTING = "starting"
    #: Listening (the loop thread accepts soon after).
    RUNNING = "running"
    #: stop() is closing the listeners and sessions; others wait for it.
    STOPPING = "stopping"


@dataclasses.dataclass(frozen=True, slots=True)
class Run:
    """What one run of a server holds, from its start to the end of its stop."""

    #: Which run this is: a callback scheduled for one run does nothing in the next.
    generation: int
    #: The hold on the loop thread, released once, at the end of the stop.
    lease: loopthread.Lease
    #: The listening sockets (the loop thread owns them once handed over).
    sockets: tuple[socket.socket, ...]


#: What a stop runs on the loop thread: close the run (sparing the handler
#: task that asked for the stop, if any), then call ``Lifecycle.end_stop()``.
Close = Callable[[Run, "asyncio.Task[object] | None"], None]


class Lifecycle:
    """The state of one server and its current run, changed under one lock.
    Every public method checks the state first; waiting ones wait on the
    lock's condition, woken by every change."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._state = State.STOPPED
        #: Counts starts, so that nothing scheduled by one run touches the next.
        self._generation = 0
        self._run: Run | None = None
        #: Done when the stop under way has ended.
        self._stopped: concurrent.futures.Future[None] | None = None

    @property
    def state(self) -> State:
        """The state now (it may change as soon as it is read)."""
        return self._state

    @property
    def generation(self) -> int:
        """The generation of the latest run."""
        return self._generation

    @property
    def run(self) -> Run | None:
        """The current run, from its start to the end of its stop."""
        return self._run

    def start(self, bind: Callable[[], list[socket.socket]], schedule: Callable[[Run], None]) -> Run:
        """Begin a run: ``bind()`` its sockets (here, so that a bad address
        raises in the caller), take a lease on the loop thread, and go on
        running with ``schedule(run)`` called as in ``_started()``. Waits for
        a start or stop under way first; RuntimeError if running."""
        self._begin_start()
        try:
            sockets = bind()
            try:
                lease = loopthread.acquire_loop()
            except BaseException:
                for sock in sockets:
                    sock.close()
                raise
        except BaseException:
            self._start_failed()
            raise
        return self._started(lease, sockets, schedule)

    def stop(self, close: Close) -> None:
        """Stop, and return once stopped (``request_stop()``, then wait).
        On the loop thread it returns at once: the close runs after the
        callback that asked for it."""
        done = self.request_stop(close)
        if loopthread.in_loop_thread():
            return
        if done is not None:
            done.result()
        # Also after a stop from the loop thread: the loop thread it ended is gone.
        loopthread.join_ending_thread()

    def request_stop(self, close: Close) -> concurrent.futures.Future[None] | None:
        """Begin stopping, unless a stop is under way already: ``close`` is
        scheduled on the loop. The future of the stop under way, or None if
        the server is stopped."""
        done, run = self._begin_stop()
        if run is None:
            return done
        # A handler stopping its own server: its task is spared, so that its
        # client hears its verdict before the 421.
        spare = asyncio.current_task() if loopthread.in_loop_thread() else None
        # Runs after start()'s schedule: the loop runs callbacks in order.
        run.lease.loop.call_soon_threadsafe(close, run, spare)
        return done

    def _begin_start(self) -> None:
        """Move to starting: wait for a start or a stop under way to end
        first; RuntimeError if running (or if this would wait, on the loop
        thread, for a stop that needs that thread)."""
        with self._changed:
            while self._state in (State.STARTING, State.STOPPING):
                if self._state is State.STOPPING and loopthread.in_loop_thread():
                    raise RuntimeError("Server is stopping: start it again once its stop is done, not from a handler")
                self._changed.wait()
            if self._state is State.RUNNING:
                raise RuntimeError("Server is already running")
            self._state = State.STARTING

    def _start_failed(self) -> None:
        """The start begun failed before holding anything: back to stopped."""
        with self._changed:
            self._state = State.STOPPED
            self._changed.notify_all()

    def _started(self, lease: loopthread.Lease, sockets: list[socket.socket], schedule: Callable[[Run], None]) -> Run:
        """The start begun holds ``lease`` and ``sockets``: running, as a new
        run. ``schedule(run)`` is called with the lock held, so that what it
        puts on the loop runs before the close any stop() schedules."""
        with self._changed:
            self._generation += 1
            run = Run(self._generation, lease, tuple(sockets))
            self._run = run
            self._state = State.RUNNING
            self._changed.notify_all()
            schedule(run)
        return run

    def _begin_stop(self) -> tuple[concurrent.futures.Future[None] | None, Run | None]:
        """Move to stopping, waiting for a start under way first. Returns the
        future of the stop (None if the server is stopped) and, if this call
        began the stop, the run its caller must close (then ``end_stop()``);
        None if another stop is under way."""
        with self._changed:
            while self._state is State.STARTING:
                self._changed.wait()
            if self._state is State.STOPPED:
                return None, None
            if self._state is State.STOPPING:
                assert self._stopped is not None
                return self._stopped, None
            run = self._run
            assert run is not None
            if not run.lease.valid:
                # The loop thread this server ran on is gone (a forked child):
                # nothing is left to close on it.
                self._forget_run()
                return None, None
            self._state = State.STOPPING
            done: concurrent.futures.Future[None] = concurrent.futures.Future()
            self._stopped = done
            return done, run

    def end_stop(self) -> None:
        """The stop under way is done (its close calls this, on the loop thread): stopped,
        the loop let go of, and the stop's future done."""
        with self._changed:
            run, done = self._run, self._stopped
            self._forget_run()
        assert run is not None and done is not None
        # The last lease ends the loop thread (join_ending_thread waits).
        run.lease.release()
        done.set_result(None)

    def _forget_run(self) -> None:
        """With the lock held: back to stopped, nothing held."""
        self._run = None
        self._stopped = None
        self._state = State.STOPPED
        self._changed.notify_all()

    def after_fork_in_child(self) -> None:
        """In a forked child: stopped, with a new lock (the parent's may have
        been held by a thread that does not exist here); the run's lease is
        void here and is not released."""
        self._changed = threading.Condition()
        with self._changed:
            self._forget_run()
