"""``Lifecycle`` on its own, without SMTP: the state moves only as the
transitions allow, a refused move changes nothing, each run has its own
generation, and a stop's close runs once however many stops are asked for."""

from __future__ import annotations

import asyncio
import concurrent.futures
import socket

import pytest

from conftest import TIMEOUT
from pytest_smtpd import loopthread
from pytest_smtpd.lifecycle import Close, Lifecycle, Run, State
from pytest_smtpd.listener import bind


def loopback() -> list[socket.socket]:
    return bind("127.0.0.1", 0, 5)


def nothing(run: Run) -> None:
    pass


def end_at_once(lifecycle: Lifecycle) -> Close:
    def close(run: Run, spare: asyncio.Task[object] | None) -> None:
        lifecycle.end_stop()

    return close


def test_a_start_holds_a_run_and_a_second_start_changes_nothing() -> None:
    lifecycle = Lifecycle()
    leases = loopthread.servers_running()
    run = lifecycle.start(loopback, nothing)
    try:
        assert (lifecycle.state, lifecycle.run, lifecycle.generation) == (State.RUNNING, run, 1)
        assert loopthread.servers_running() == leases + 1
        with pytest.raises(RuntimeError, match="Server is already running"):
            lifecycle.start(loopback, nothing)
        assert (lifecycle.state, lifecycle.run, lifecycle.generation) == (State.RUNNING, run, 1)
    finally:
        lifecycle.stop(end_at_once(lifecycle))
        for sock in run.sockets:
            sock.close()
    assert (lifecycle.state, lifecycle.run) == (State.STOPPED, None)
    assert loopthread.servers_running() == leases


def test_a_failed_bind_leaves_it_stopped_and_holding_nothing() -> None:
    lifecycle = Lifecycle()
    leases = loopthread.servers_running()

    def refused() -> list[socket.socket]:
        raise OSError("cannot listen on 127.0.0.1:1: no")

    with pytest.raises(OSError, match="cannot listen"):
        lifecycle.start(refused, nothing)
    assert (lifecycle.state, lifecycle.run, lifecycle.generation) == (State.STOPPED, None, 0)
    assert loopthread.servers_running() == leases
    # Stopping a stopped lifecycle does nothing and runs no close.
    assert lifecycle.request_stop(lambda run, spare: pytest.fail("closed a stopped run")) is None


def test_the_close_runs_once_for_two_stops_and_each_run_is_a_new_generation() -> None:
    lifecycle = Lifecycle()
    scheduled: list[int] = []
    closes: list[tuple[Run, bool]] = []

    def close(run: Run, spare: object) -> None:
        closes.append((run, loopthread.in_loop_thread() and spare is None))

    for generation in (1, 2):
        run = lifecycle.start(loopback, lambda run: scheduled.append(run.generation))
        assert run.generation == generation
        first = lifecycle.request_stop(close)
        assert first is not None and lifecycle.state is State.STOPPING
        # A second stop while the first is under way gets its future, no close of its own.
        assert lifecycle.request_stop(close) is first
        # On the loop thread a start cannot wait for the stop (which needs that thread).
        outcome: concurrent.futures.Future[None] = concurrent.futures.Future()
        run.lease.loop.call_soon_threadsafe(start_on_the_loop, lifecycle, outcome)
        with pytest.raises(RuntimeError, match="Server is stopping"):
            outcome.result(TIMEOUT)
        assert (lifecycle.state, lifecycle.run) == (State.STOPPING, run)
        run.lease.loop.call_soon_threadsafe(lifecycle.end_stop)
        assert first.result(TIMEOUT) is None
        assert (lifecycle.state, lifecycle.run) == (State.STOPPED, None)
        for sock in run.sockets:
            sock.close()
    assert scheduled == [1, 2]
    assert [(run.generation, on_loop) for run, on_loop in closes] == [(1, True), (2, True)]
    loopthread.join_ending_thread(TIMEOUT)


def start_on_the_loop(lifecycle: Lifecycle, outcome: concurrent.futures.Future[None]) -> None:
    try:
        lifecycle.start(loopback, nothing)
    except RuntimeError as exc:
        outcome.set_exception(exc)
    else:
        outcome.set_result(None)
