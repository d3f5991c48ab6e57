"""Applying fault rules to a session: the one place where a rule that fired
decides a step (a reply instead of the step, a hang-up, a delay, a stall),
when its reply is queued and when the session closes. The rules themselves
and which one fires live in ``faults.py``; the core asks only while a
server has rules, so a server without them pays nothing here.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING

from .errors import LocalProtocolError
from .events import (
    NEED_DATA,
    ConnectionClosed,
    Event,
    FaultFired,
    FaultRule,
    NeedData,
)
from .replies import Reply
from .state import State

if TYPE_CHECKING:
    from .connection import ServerConnection


def fault_step(core: ServerConnection) -> Event | NeedData | None:
    """What a fault left to do: report one fired outside next_event(),
    run a delayed step, or stay silent after a stall. None: nothing."""
    if core._fired is not None:
        fired, core._fired = core._fired, None
        return fired
    if core._deferred is not None:
        run, core._deferred = core._deferred, None
        deferred = run()
        if deferred is not None:
            return deferred
    if core.stalled:
        if core._eof:
            core._close("peer closed the connection")
            return ConnectionClosed(core._closed_reason)
        return NEED_DATA
    core._fault_work = False
    return None


def fault_reply(core: ServerConnection, reply: Reply, count: int = 1) -> None:
    """The one place a reply fault's reply is queued (``count`` times:
    LMTP's one per recipient), when its step would have answered: at
    once, or for BDAT once the chunk is read. A 421 closes the session
    right after it (RFC 5321 3.8)."""
    for _ in range(count):
        core.reply(reply)
    if reply.code == 421:
        core._close(core._fault_reason)


def refuse_greeting(core: ServerConnection, reply: Reply) -> None:
    """A reply fault in place of the greeting. After a 554 (any 5xx) the
    session serves nothing: every command but QUIT gets a 503 (RFC 5321
    3.1)."""
    fault_reply(core, reply)
    if reply.code >= 500:
        core.state = State.REJECTED


def fault(core: ServerConnection, step: str, argument: str) -> FaultRule | None:
    assert core.faults is not None
    return core.faults.decide(step, argument, core.session_number)


def fire(
    core: ServerConnection,
    step: str,
    fault: FaultRule,
    run: Callable[[], Event | None],
    refuse: Callable[[Reply], None] | None = None,
) -> FaultFired:
    """Do what ``fault`` says instead of ``run`` (the step's normal
    handling): ``refuse`` queues a reply fault's reply (default: queue it
    once)."""
    core._fault_work = True
    action = fault.action
    if action == "reply":
        assert fault.response is not None
        core._fault_reason = f"fault: {fault.describe()}"
        (refuse or functools.partial(fault_reply, core))(fault.response)
    elif action == "disconnect":
        if fault.after_bytes is None:
            core._close(f"fault: {fault.describe()}")
        else:
            # DATA runs as usual (its 354, or its error); the message it
            # starts is cut off. A subclass handling DATA itself gets
            # its CommandReceived after this event.
            core._cut_pending = fault.after_bytes
            event = run()
            if event is not None:
                core._deferred = lambda: event
            elif core.state not in (State.DATA, State.CHUNK):
                core._cut_pending = None  # refused: no message to cut
    elif action == "delay":
        core._deferred = run
    elif action == "stall":
        core.stalled = True
    else:
        raise LocalProtocolError(f"unknown fault action {action!r}")
    return FaultFired(step, fault)
