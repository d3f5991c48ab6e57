"""The asyncio side of a session: feeds the protocol core with what the socket
reads, writes what the core answers, and runs the application's callbacks."""

from __future__ import annotations

import asyncio
import inspect
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Protocol, Union, cast

from . import replies
from .connection import ServerConnection, SessionConfig
from .events import NEED_DATA, CommandReceived, ConnectionClosed, MessageReceived
from .replies import Reply
from .store import Message

__all__ = ["SessionProtocol", "SessionOwner", "Verdict", "CommandHandler"]

log = logging.getLogger("pytest_smtpd")

Verdict = Union[Reply, str, None]
MessageHandler = Callable[[Message], Union[Verdict, Awaitable[Verdict]]]


class CommandHandler(Protocol):
    """Handles the commands a server delegates (the seed's SMTPChannel)."""

    def handle_command(self, verb: str, argument: str | None) -> None: ...


class SessionOwner(Protocol):
    """What a session needs from the server that accepted it."""

    session_config: SessionConfig
    timeout: float | None

    def session_started(self, session: SessionProtocol) -> CommandHandler | None: ...
    def session_ended(self, session: SessionProtocol) -> None: ...
    def handle_message(self, message: Message, session: SessionProtocol) -> Verdict | Awaitable[Verdict]: ...


def to_reply(verdict: Verdict) -> Reply | None:
    """A message handler's answer as a reply: None is ``250 OK``, a string
    like ``"550 No such user"`` is parsed."""
    if verdict is None or isinstance(verdict, Reply):
        return verdict
    if isinstance(verdict, str):
        return Reply.parse(verdict)
    raise TypeError(f"a message handler must return None, a str or a Reply, not {type(verdict).__name__}")


class SessionProtocol(asyncio.Protocol):
    """One client connection."""

    def __init__(self, owner: SessionOwner) -> None:
        self.owner = owner
        self.core = ServerConnection(owner.session_config)
        self.peer: tuple[str, int] = ("", 0)
        self.transport: asyncio.Transport | None = None
        self.socket: socket.socket | None = None
        #: The application's handler of delegated commands (the seed's SMTPChannel).
        self.commands: CommandHandler | None = None
        self._verdict_task: asyncio.Task[None] | None = None
        self._last_activity = 0.0
        self._timer: asyncio.TimerHandle | None = None
        #: Done when the connection is gone; set up in connection_made().
        self.closed: asyncio.Future[None]

    # -- asyncio callbacks ---------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.closed = asyncio.get_running_loop().create_future()
        peer = transport.get_extra_info("peername")
        self.peer = (str(peer[0]), int(peer[1])) if peer else ("", 0)
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
        self._touch()
        if self.owner.timeout:
            self._timer = asyncio.get_running_loop().call_later(self.owner.timeout, self._check_idle)
        self._process()

    def data_received(self, data: bytes) -> None:
        self._last_activity = time.monotonic()
        self.core.receive_data(data)
        self._process()

    def eof_received(self) -> bool:
        self.core.receive_data(b"")
        self._process()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._verdict_task is not None:
            self._verdict_task.cancel()
        self.owner.session_ended(self)
        if not self.closed.done():
            self.closed.set_result(None)

    # -- driving the core ----------------------------------------------------

    def abort(self, reply: Reply = replies.SHUTTING_DOWN) -> None:
        """Say ``reply`` (a 421) and close, e.g. when the server stops. A
        message handler still deciding is cancelled: its answer could no
        longer be sent, and waiting for it would hold up the close."""
        if self._verdict_task is not None:
            self._verdict_task.cancel()
            self._verdict_task = None
        self.core.abort(reply)
        self._process()

    def _touch(self) -> None:
        self._last_activity = time.monotonic()

    def _check_idle(self) -> None:
        timeout = self.owner.timeout
        assert timeout
        idle = time.monotonic() - self._last_activity
        if idle >= timeout and self._verdict_task is None:
            log.info("closing idle session from %s after %.0fs", self.peer, idle)
            self.abort(replies.IDLE_TIMEOUT)
        else:
            self._timer = asyncio.get_running_loop().call_later(max(timeout - idle, 0.01), self._check_idle)

    def _process(self) -> None:
        """Run the core until it needs more bytes, then write the replies."""
        transport = self.transport
        if transport is None or self._verdict_task is not None:
            return
        core = self.core
        while True:
            event = core.next_event()
            if event is NEED_DATA:
                break
            if isinstance(event, CommandReceived):
                assert self.commands is not None, "a delegated verb needs a command handler"
                try:
                    self.commands.handle_command(event.verb, event.argument)
                except Exception:
                    log.exception("command handler failed for %s from %s", event.verb, self.peer)
                    core.reply(replies.PROCESSING_ERROR)
            elif isinstance(event, MessageReceived):
                message = self._message(event)
                try:
                    verdict = self.owner.handle_message(message, self)
                except Exception:
                    log.exception("message handler failed for a message from %s", self.peer)
                    core.answer_message(replies.PROCESSING_ERROR)
                    continue
                if inspect.isawaitable(verdict):
                    transport.pause_reading()
                    self._verdict_task = asyncio.ensure_future(self._await_verdict(verdict))
                    break
                self._answer(verdict)
            elif isinstance(event, ConnectionClosed):
                self._flush()
                transport.close()
                return
        self._flush()

    def _answer(self, verdict: Verdict) -> None:
        try:
            reply = to_reply(verdict)
        except (TypeError, ValueError):
            log.exception("message handler gave a verdict that is not an SMTP reply: %r", verdict)
            reply = replies.PROCESSING_ERROR
        self.core.answer_message(reply)

    async def _await_verdict(self, pending: Awaitable[Verdict]) -> None:
        try:
            verdict = await pending
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("message handler failed for a message from %s", self.peer)
            verdict = replies.PROCESSING_ERROR
        self._verdict_task = None
        self._answer(verdict)
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()
            self._process()

    def _message(self, event: MessageReceived) -> Message:
        envelope = event.envelope
        return Message(
            peer=self.peer,
            mail_from=envelope.mail_from or "",
            rcpt_tos=list(envelope.rcpt_tos),
            data=event.data,
            mail_options=list(envelope.mail_options),
            rcpt_options=list(envelope.rcpt_options),
            helo=event.helo,
        )

    def _flush(self) -> None:
        out = self.core.data_to_send()
        if out and self.transport is not None and not self.transport.is_closing():
            self.transport.write(out)
