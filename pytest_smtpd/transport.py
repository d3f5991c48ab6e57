"""The asyncio side of a session: feeds the protocol core with what the socket
reads, writes what the core answers, and runs the application's callbacks."""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import socket
import ssl
import time
from collections.abc import Awaitable
from typing import Protocol, cast

from . import _handshake, _verdicts, replies
from ._handshake import TLS_HANDSHAKE_TIMEOUT as TLS_HANDSHAKE_TIMEOUT
from ._verdicts import Verdict as Verdict
from ._verdicts import accepted as accepted
from ._verdicts import to_reply as to_reply
from .auth import Credentials
from .connection import FaultSource, ServerConnection, SessionConfig
from .events import (
    NEED_DATA,
    AuthRequested,
    CommandReceived,
    ConnectionClosed,
    FaultFired,
    LineReceived,
    MessageReceived,
    StartTLS,
)
from .message import Message, TLSInfo
from .replies import Reply
from .sessions import EndedBy, Session
from .state import State

__all__ = ["CommandHandler", "SessionOwner", "SessionProtocol", "Verdict", "to_reply"]

log = logging.getLogger("pytest_smtpd")
#: The protocol trace (``python -m pytest_smtpd -d``): every line each way at
#: DEBUG, message contents as sizes, AUTH secrets masked. The core writes
#: it (see ServerConnection.transcript), as it does the session transcripts.
trace = logging.getLogger("pytest_smtpd.trace")

#: The context the idle timers run in: they read no context variable, and
#: a copy of the loop's context per connection would cost every idle one.
_TIMER_CONTEXT = contextvars.Context()
#: Seconds a closing session waits for its peer to read what is left to
#: send (its last reply, a 421) before it hangs up without it.
CLOSE_GRACE = 2.0


class CommandHandler(Protocol):
    """Handles the commands a server delegates (the seed's SMTPChannel)."""

    def handle_command(self, verb: str, argument: str | None) -> None: ...
    def handle_line(self, line: bytes) -> None: ...


class SessionOwner(Protocol):
    """What a session needs from the server that accepted it."""

    session_config: SessionConfig
    timeout: float | None

    @property
    def keep_sessions(self) -> bool:
        """Whether sessions keep a record (``Session``) with their transcript."""

    #: The context for STARTTLS, and whether sessions start encrypted.
    tls_context: ssl.SSLContext | None
    implicit_tls: bool

    @property
    def faults(self) -> FaultSource:
        """The fault rules the core asks at every step."""
        ...

    def next_session_number(self) -> int: ...
    def refusal(self) -> Reply | None: ...
    def session_started(self, session: SessionProtocol) -> CommandHandler | None: ...
    def session_ended(self, session: SessionProtocol) -> None: ...
    def handle_message(self, message: Message, session: SessionProtocol) -> Verdict | Awaitable[Verdict]: ...
    def authenticate(self, credentials: Credentials) -> bool | Awaitable[bool]: ...


class SessionProtocol(asyncio.Protocol):
    """One client connection."""

    # Slots: an idle connection holds only its fields.
    __slots__ = (
        "_abort_after",
        "_busy",
        "_close_deadline",
        "_closed",
        "_closing",
        "_drained",
        "_ended_by",
        "_gone",
        "_handshaking",
        "_hanging_up",
        "_last_activity",
        "_raw_transport",
        "_timer",
        "_tls_early",
        "_tls_transport_py310",
        "_writing_paused",
        "commands",
        "core",
        "owner",
        "peer",
        "record",
        "refused",
        "socket",
        "tls",
        "transport",
    )

    def __init__(self, owner: SessionOwner) -> None:
        self.owner = owner
        #: The protocol core; made in ``connection_made()``.
        self.core: ServerConnection
        #: The reply that refuses this connection in place of the greeting
        #: (``max_connections``), decided as it is made; None when admitted.
        self.refused: Reply | None = None
        #: What this session did, when the core records (the owner's
        #: ``keep_sessions``, or the trace logger at DEBUG).
        self.record: Session | None = None
        #: Why the server is ending the session (None: the client ends it).
        self._ended_by: EndedBy | None = None
        self.peer: tuple[str, int] = ("", 0)
        self.transport: asyncio.Transport | None = None
        self.socket: socket.socket | None = None
        #: The application's handler of delegated commands (the seed's SMTPChannel).
        self.commands: CommandHandler | None = None
        #: How the session is encrypted, if it is.
        self.tls: TLSInfo | None = None
        #: A verdict or a TLS handshake under way: the core waits for it.
        self._busy: asyncio.Task[None] | None = None
        #: Whether ``_busy`` is a TLS handshake.
        self._handshaking = False
        #: The 421 to say once the handler under way has answered (it
        #: stopped its own server).
        self._abort_after: Reply | None = None
        #: abort() cut a TLS handshake off: its failure is no news.
        self._hanging_up = False
        #: During a handshake: what the client sent in TLS right after it,
        #: delivered before ``_start_tls`` resumes (see there).
        self._tls_early: bytearray | None = None
        self._tls_transport_py310: asyncio.BaseTransport | None = None
        self._last_activity = 0.0
        self._timer: asyncio.TimerHandle | None = None
        #: The transport's buffer is full: the peer does not read what it is
        #: sent, so nothing more is read from it until it does.
        self._writing_paused = False
        #: Set up while a STARTTLS handshake waits for the paused writes to
        #: drain; done once they have (or the connection is gone).
        self._drained: asyncio.Future[None] | None = None
        #: Under TLS: the TCP transport beneath ``transport``.
        self._raw_transport: asyncio.Transport | None = None
        #: ``_close()`` has run: the session is closing.
        self._closing = False
        #: Hangs up on a closing session whose peer does not drain it.
        self._close_deadline: asyncio.TimerHandle | None = None
        #: Done when the connection is gone; set up in connection_made().
        #: Done when the connection is gone (made when first asked for:
        #: an idle session holds no future).
        self._closed: asyncio.Future[None] | None = None
        #: connection_lost() has run.
        self._gone = False

    @property
    def closed(self) -> asyncio.Future[None]:
        """A future done when the connection is gone (on the loop thread)."""
        if self._closed is None:
            self._closed = asyncio.get_running_loop().create_future()
            if self._gone:
                self._closed.set_result(None)
        return self._closed

    @property
    def is_gone(self) -> bool:
        """Whether the connection is gone."""
        return self._gone

    # -- asyncio callbacks ---------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        owner = self.owner
        # Refused first: a refused connection's core asks no fault rule (its
        # greeting is not said), so it uses up no CONNECT fault's count.
        self.refused = owner.refusal()
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        if not peer:
            self.peer = ("", 0)
        elif len(peer) == 2 and type(peer[0]) is str and type(peer[1]) is int:
            self.peer = peer  # the transport's own tuple (IPv4): no copy
        else:
            self.peer = (str(peer[0]), int(peer[1]))
        self.core = ServerConnection(
            owner.session_config,
            tls=owner.implicit_tls,
            record=owner.keep_sessions,
            faults=None if self.refused else owner.faults,
            session_number=owner.next_session_number(),
            peer=f"{self.peer[0]}:{self.peer[1]}",
            tracer=self._trace if trace.isEnabledFor(logging.DEBUG) else None,
        )
        if self.core.transcript is not None:
            self.record = Session(self.peer, time.time(), self.core.transcript)
        self.socket = transport.get_extra_info("socket")
        if self.socket is not None and self.socket.family in (socket.AF_INET, socket.AF_INET6):
            self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            self.commands = self.owner.session_started(self)
        except Exception:
            # E.g. a failing SMTPChannel constructor: refuse the session with
            # a 421 in place of the greeting rather than leave the client hanging.
            log.exception("could not start a session for %s", self.peer)
            self.core.data_to_send()
            self.abort()
            return
        if self.refused is not None:
            # max_connections: the 421 takes the greeting's place (with
            # implicit TLS, after the handshake, as the greeting would).
            log.info("refusing a session from %s: %s", self.peer, self.refused)
            self.core.data_to_send()
            self.core.abort(self.refused)
            self._ended_by = "fault"
        self._touch()
        if self.owner.timeout:
            self._timer = asyncio.get_running_loop().call_later(
                self.owner.timeout, self._check_idle, context=_TIMER_CONTEXT
            )
        if self.owner.implicit_tls:
            # Implicit TLS (RFC 8314): the handshake comes first, the greeting
            # after it. Done here rather than by the listener, so that a failed
            # handshake is logged and stop() can end one that is under way.
            _handshake.start_handshake(self, self.transport, "implicit")
            return
        self._process()

    def data_received(self, data: bytes) -> None:
        if self.core.stalled:
            # A stall fault: what comes is dropped and does not count as
            # activity (the idle timeout ends the session), but reading goes
            # on, so that a client giving up is seen at once.
            return
        self._last_activity = time.monotonic()
        if self._tls_early is not None:
            self._tls_early += data
            return
        self.core.receive_data(data)
        self._process()

    def eof_received(self) -> bool:
        self.core.receive_data(b"")
        self._process()
        return False

    def pause_writing(self) -> None:
        """The peer does not read its replies: stop reading its commands, so
        that what is buffered for it stays bounded (by asyncio's high-water
        mark and one read's replies) however much it sends."""
        self._writing_paused = True
        if self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self._writing_paused = False
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)
        if self._busy is None and self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)
        if self._close_deadline is not None:
            self._close_deadline.cancel()
        # Python 3.10's TLS transport is not marked closed when the peer hangs
        # up, and warns "unclosed transport" when collected: close it (a
        # no-op on a closed transport).
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()
        if self._timer is not None:
            self._timer.cancel()
        if self._busy is not None and not self._handshaking:
            # A handshake is left to end by itself (it does, at the latest on
            # its timeout), so that the TLS transport it made gets closed.
            self._busy.cancel()
        self._record_end()
        self.owner.session_ended(self)
        self._gone = True
        if self._closed is not None and not self._closed.done():
            self._closed.set_result(None)

    def _record_end(self) -> None:
        """Note in the record, once, how and when the session ended."""
        record = self.record
        if record is not None and record.ended_by is None:
            self._take_transcript(record)
            record.ended_by = self._ended_by or ("quit" if self.core.last_verb == "QUIT" else "client")
            record.ended_at = time.time()

    # -- driving the core ----------------------------------------------------

    def abort(
        self,
        reply: Reply = replies.SHUTTING_DOWN,
        ended_by: EndedBy = "stop",
        *,
        spare: asyncio.Task[object] | None = None,
    ) -> asyncio.Task[None] | None:
        """Say ``reply`` (a 421) and close, e.g. when the server stops. A
        message handler still deciding is cancelled, and its task returned
        (the server waits for it to end): its answer could no longer be
        sent, and waiting for it would hold up the close. The handler whose
        task is ``spare`` (the one stopping its own server) is not: its
        client hears its verdict, then ``reply``. A TLS handshake under way
        is cut off without a word."""
        if self._ended_by is None and self.core.state is not State.CLOSED:
            self._ended_by = ended_by
        if self._handshaking:
            # Nothing can be said in the middle of a TLS handshake: hang up.
            # The handshake then fails at once; left to end by itself rather
            # than cancelled, it closes whatever TLS transport it made, and
            # ends the session (stop() waits for that).
            self._hanging_up = True
            if self.transport is not None:
                self.transport.abort()
            return None
        if spare is not None and self._busy is spare:
            self._abort_after = reply
            return None
        busy, self._busy = self._busy, None
        if busy is not None:
            busy.cancel()
        self.core.abort(reply)
        self._process()
        return busy

    def _touch(self) -> None:
        self._last_activity = time.monotonic()

    def _check_idle(self) -> None:
        timeout = self.owner.timeout
        assert timeout
        idle = time.monotonic() - self._last_activity
        if self._busy is not None:
            # Waiting for a handler, a delay fault or a handshake is not the
            # client's silence: look again a whole timeout later (the session
            # is touched when the wait ends), not in a tight loop.
            wait = timeout
        elif idle >= timeout:
            log.info("closing idle session from %s after %.0fs", self.peer, idle)
            self.abort(replies.IDLE_TIMEOUT, "timeout")
            return
        else:
            wait = timeout - idle
        self._timer = asyncio.get_running_loop().call_later(wait, self._check_idle, context=_TIMER_CONTEXT)

    def _process(self) -> None:
        """Run the core until it needs more bytes, then write the replies."""
        transport = self.transport
        if transport is None or self._busy is not None:
            return
        core = self.core
        while True:
            event = core.next_event()
            if event is NEED_DATA:
                break
            if isinstance(event, LineReceived):
                assert self.commands is not None, "delivered lines need a command handler"
                try:
                    self.commands.handle_line(event.line)
                except Exception:
                    log.exception("command handler failed for a line from %s", self.peer)
                    core.reply(replies.PROCESSING_ERROR)
            elif isinstance(event, CommandReceived):
                assert self.commands is not None, "a delegated verb needs a command handler"
                try:
                    self.commands.handle_command(event.verb, event.argument)
                except Exception:
                    log.exception("command handler failed for %s from %s", event.verb, self.peer)
                    core.reply(replies.PROCESSING_ERROR)
            elif isinstance(event, MessageReceived):
                message = _verdicts.message(self, event)
                try:
                    verdict = self.owner.handle_message(message, self)
                except Exception:
                    log.exception("message handler failed for a message from %s", self.peer)
                    core.answer_message(replies.PROCESSING_ERROR)
                    continue
                if inspect.isawaitable(verdict):
                    transport.pause_reading()
                    self._busy = asyncio.ensure_future(_verdicts.await_verdict(self, verdict))
                    break
                _verdicts.answer(self, verdict)
            elif isinstance(event, AuthRequested):
                decision = _verdicts.authenticate(self, event.credentials)
                if decision is not None:
                    transport.pause_reading()
                    self._busy = asyncio.ensure_future(_verdicts.await_auth(self, event.credentials, decision))
                    break
            elif isinstance(event, StartTLS):
                self._flush()
                _handshake.start_handshake(self, transport, "starttls")
                return
            elif isinstance(event, FaultFired):
                if self.record is not None:
                    self.record._fault_fired(event.fault.describe(), self.core.config.max_transcript_lines)
                log.info("fault for %s: %s", self.peer, event.fault.describe())
                if event.fault.action == "delay":
                    self._flush()
                    transport.pause_reading()
                    self._busy = asyncio.ensure_future(_verdicts.delay(self, event.fault.seconds))
                    return
                if event.fault.action == "stall":
                    # No reply from now on: the idle timeout, stop() or the
                    # client hanging up ends the session.
                    self._flush()
                    return
            elif isinstance(event, ConnectionClosed):
                if self._ended_by is None and event.reason.startswith(("fault:", "limit:")):
                    self._ended_by = "fault"
                # Before the last reply goes out: a client that has read it
                # (its 221, say) finds the session ended, not still open.
                self._record_end()
                self._flush()
                self._close(transport)
                return
        self._flush()

    def _close(self, transport: asyncio.Transport) -> None:
        """Close once what is left to send is sent, or after CLOSE_GRACE if the
        peer does not read it: a session that is over holds no memory.

        Once only: under TLS, ``close()`` reads what the TLS layer still
        holds, and a client's close_notify that came with its QUIT re-enters
        here through ``eof_received()`` before the TLS layer has written its
        own close_notify; hanging up then would never send it."""
        if self._closing:
            return
        self._closing = True
        transport.close()
        raw = self._raw_transport
        if raw is not None and not raw.is_closing() and raw.get_write_buffer_size() == 0:
            # TLS: close() has handed the last reply and the close_notify to
            # the kernel. Waiting for the client's close_notify, which an idle
            # client never sends, would hold stop() up for its whole grace
            # (RFC 8446 6.1 does not ask a closing side to wait for it).
            raw.abort()
            return
        if self._close_deadline is None and not self._gone:
            self._close_deadline = asyncio.get_running_loop().call_later(CLOSE_GRACE, transport.abort)

    def _flush(self) -> None:
        if self.record is not None:
            self._take_transcript(self.record)
        out = self.core.data_to_send()
        if out and self.transport is not None and not self.transport.is_closing():
            self.transport.write(out)

    def _trace(self, direction: str, line: str) -> None:
        """The ``-d`` trace of every line, kept in the record or not."""
        trace.debug("%s %s %s", self.peer, ">" if direction == "client" else "<", line)

    def _take_transcript(self, record: Session) -> None:
        """Time what the core recorded since the last call (it records into
        the session's own transcript), and bring the record up to date."""
        # Seconds since the record's start (the wall clock it was stamped with).
        done, count = record._mark(time.time() - record.started_at)
        if done == count:
            return
        core = self.core
        record.helo = core.helo
        record.pipelined = core.pipelined
        if core.authenticated is not None:
            record.auth_identity = core.authenticated.authzid or core.authenticated.username
