"""One server's side on the loop thread: its listeners, its live sessions,
and closing them all when it stops (a 421 to each, a bounded wait for them
and for the handler tasks the close cancelled).

``Server``'s lifecycle decides when; this does the work. Every method but
``after_fork_in_child`` runs on the loop thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable

from .listener import Listener
from .transport import SessionProtocol

__all__ = ["STOP_GRACE", "Serving"]

log = logging.getLogger("pytest_smtpd")

#: Time stop() gives sessions to say goodbye before their sockets are dropped.
STOP_GRACE = 2.0


class Serving:
    """The listeners and live sessions of one server, on the loop thread."""

    def __init__(self) -> None:
        self.listeners: list[Listener] = []
        #: The sessions not over yet (the transport reports both ends).
        self.live: set[SessionProtocol] = set()
        #: Whether the listeners accept: false from the moment a stop begins.
        self.accepting = False
        #: Handler tasks the stop under way cancelled, and the one it spares
        #: (a handler stopping its own server).
        self._cancelled: list[asyncio.Task[None]] = []
        self._spare: asyncio.Task[object] | None = None

    def listen(
        self,
        loop: asyncio.AbstractEventLoop,
        sockets: tuple[socket.socket, ...],
        protocol: Callable[[], SessionProtocol],
    ) -> None:
        """Accept connections on ``sockets``, each served by a new
        ``protocol()``; if that fails, close them all and raise."""
        self.accepting = True
        self.listeners = [Listener(loop, sock, protocol) for sock in sockets]
        try:
            for listener in self.listeners:
                listener.start()
        except Exception:
            for listener in self.listeners:
                listener.close()
            raise

    def admitted(self) -> int:
        """The live sessions that were given the greeting (not refused)."""
        return sum(1 for session in self.live if session.refused is None)

    def close(self, grace: float, spare: asyncio.Task[object] | None, then: Callable[[], None]) -> None:
        """Close the listeners, then the sessions (after ``grace``), and call
        ``then()`` once they are gone and the handlers they cancelled have
        ended. ``spare``'s handler is not cancelled (a handler stopping its
        own server)."""
        self._spare = spare
        self.accepting = False
        listeners, self.listeners = self.listeners, []
        for listener in listeners:
            listener.close()
        connecting = [task for listener in listeners for task in listener.connecting]
        if not grace:
            # At once, not in the task below: no command read meanwhile may
            # be answered as if the server were not stopping.
            self.abort_sessions()
        if not connecting and not self._cancelled and all(session.is_gone for session in self.live):
            then()
            return
        task = asyncio.get_running_loop().create_task(self._close_sessions(connecting, grace))
        task.add_done_callback(lambda _: then())

    async def _close_sessions(self, connecting: list[asyncio.Task[None]], grace: float) -> None:
        if grace:
            deadline = asyncio.get_running_loop().time() + grace
            if connecting:
                await asyncio.wait(connecting, timeout=grace)
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining > 0 and self.live:
                await asyncio.wait([s.closed for s in self.live], timeout=remaining)
            self.abort_sessions()
        if connecting:
            # Sessions accepted just before the close abort themselves as
            # they start (see Server.session_started).
            await asyncio.wait(connecting, timeout=STOP_GRACE)
        sessions = list(self.live)
        if sessions:
            _, pending = await asyncio.wait([s.closed for s in sessions], timeout=STOP_GRACE)
            if pending:
                # A peer that does not read its 421 must not hold up stop().
                for session in sessions:
                    if not session.is_gone and session.transport is not None:
                        session.transport.abort()
                await asyncio.wait(pending, timeout=STOP_GRACE)
        cancelled, self._cancelled = self._cancelled, []
        if cancelled:
            # Handlers cancelled mid-verdict may clean up (a rollback, say):
            # the loop must not close under them. Bounded like the sessions.
            await asyncio.wait(cancelled, timeout=STOP_GRACE)

    def abort_sessions(self) -> None:
        """Say 421 to every session and close it; note the handlers that
        were cancelled, which the close waits for."""
        for session in list(self.live):
            cancelled = session.abort(spare=self._spare)
            if cancelled is not None:
                self._cancelled.append(cancelled)

    def after_fork_in_child(self, listening: tuple[socket.socket, ...]) -> None:
        """In a forked child (no loop thread here): forget the listeners and
        sessions, and let go of the sockets inherited from the parent (the
        ``listening`` ones and the sessions'), or the child would hold the
        parent's port and clients' connections open. Each is pointed at
        /dev/null, so that no other file can take its number while its
        object lives."""
        inherited = [*listening, *(s.socket for s in self.live if s.socket is not None)]
        if inherited:
            devnull = os.open(os.devnull, os.O_RDWR)
            try:
                for sock in inherited:
                    with contextlib.suppress(OSError):
                        os.dup2(devnull, sock.fileno())
            finally:
                os.close(devnull)
        self.listeners = []
        self.live = set()
        self._cancelled = []
        self.accepting = False
