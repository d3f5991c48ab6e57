"""One server's lifecycle: the state (stopped, starting, running, stopping),
changed under one lock only, and what a run holds (its generation, its lease
on the loop thread, its listening sockets) until its stop is done.

It knows nothing of SMTP, sessions or listeners: ``Server`` asks it whether
a start or a stop may go ahead and tells it when one has ended.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import enum
import socket
import threading
from collections.abc import Callable

from . import loopthread

__all__ = ["Lifecycle", "Run", "State"]


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

    def begin_start(self) -> None:
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

    def start_failed(self) -> None:
        """The start begun failed before holding anything: back to stopped."""
        with self._changed:
            self._state = State.STOPPED
            self._changed.notify_all()

    def started(self, lease: loopthread.Lease, sockets: list[socket.socket], schedule: Callable[[Run], None]) -> Run:
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

    def begin_stop(self) -> tuple[concurrent.futures.Future[None] | None, Run | None]:
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
        """The stop under way is done (called on the loop thread): stopped,
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
