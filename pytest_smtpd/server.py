"""``Server``: an SMTP server bound on the shared loop thread."""

from __future__ import annotations

import asyncio
import concurrent.futures
import errno
import functools
import inspect
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable, Mapping, Sequence
from types import TracebackType
from typing import Literal, TypeVar

from . import loopthread
from .auth import Authenticator, Credentials, check_against
from .connection import DEFAULT_COMMAND_SIZE_LIMIT, DEFAULT_DATA_SIZE_LIMIT, SessionConfig
from .listener import Listener
from .store import Message, MessageStore
from .tls import TestCA, test_ca
from .transport import CommandHandler, SessionProtocol, Verdict, accepted

__all__ = ["DEFAULT_TIMEOUT", "Server", "default_hostname"]

log = logging.getLogger("pytest_smtpd")

#: RFC 5321 4.5.3.2.7: a server should wait at least 5 minutes for a command.
DEFAULT_TIMEOUT = 300.0
#: AUTH mechanisms offered when ``auth`` is given.
DEFAULT_AUTH_MECHANISMS = ("PLAIN", "LOGIN", "CRAM-MD5", "XOAUTH2")
TLSMode = Literal["starttls", "implicit"]
#: Time stop() gives sessions to say goodbye before their sockets are dropped.
STOP_GRACE = 2.0


def _settle(closed: concurrent.futures.Future[None], task: asyncio.Task[None]) -> None:
    """Pass a finished task's outcome on to a future another thread waits for."""
    if task.cancelled():
        closed.cancel()
    elif (exc := task.exception()) is not None:
        closed.set_exception(exc)
    else:
        closed.set_result(None)


@functools.lru_cache(maxsize=1)
def default_hostname() -> str:
    """``socket.getfqdn()``, looked up once per process rather than once per
    connection as the stdlib ``smtpd`` did."""
    return socket.getfqdn()


MessageHandler = Callable[[Message], "Verdict | Awaitable[Verdict]"]
_S = TypeVar("_S", bound="Server")


class Server:
    """An SMTP server for tests and local development.

    ``start()`` binds the listening socket on the process's one event-loop
    thread and returns at once; ``stop()`` closes it and every session.
    Accepted messages go to ``messages`` (unless ``keep_messages`` is false)
    and to ``handler``, whose return value is the reply (None: ``250 OK``).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        handler: MessageHandler | None = None,
        hostname: str | None = None,
        data_size_limit: int = DEFAULT_DATA_SIZE_LIMIT,
        enable_SMTPUTF8: bool = False,
        decode_data: bool = False,
        enable_DSN: bool = False,
        command_size_limit: int = DEFAULT_COMMAND_SIZE_LIMIT,
        timeout: float | None = DEFAULT_TIMEOUT,
        keep_messages: bool = True,
        backlog: int = 128,
        tls: TLSMode | None = None,
        tls_context: ssl.SSLContext | None = None,
        require_starttls: bool = False,
        auth: Mapping[str, str] | Authenticator | None = None,
        auth_mechanisms: Sequence[str] = DEFAULT_AUTH_MECHANISMS,
        auth_required: bool = False,
        auth_requires_tls: bool = False,
        lmtp: bool = False,
        _delegated_verbs: frozenset[str] = frozenset(),
        _command_handler_factory: Callable[[SessionProtocol], CommandHandler] | None = None,
    ) -> None:
        self.host = host
        if tls not in (None, "starttls", "implicit"):
            raise ValueError(f"tls must be None, 'starttls' or 'implicit', got {tls!r}")
        if tls is None and (tls_context is not None or require_starttls or auth_requires_tls):
            raise ValueError("tls_context, require_starttls and auth_requires_tls need tls='starttls' or 'implicit'")
        if auth is None and auth_required:
            raise ValueError("auth_required needs auth: a {user: password} dict or an authenticator callable")
        #: ``"starttls"``, ``"implicit"`` or None.
        self.tls = tls
        #: The test CA behind the server certificate, when no tls_context was given.
        self.ca: TestCA | None = None
        if tls is not None and tls_context is None:
            self.ca = test_ca()
            tls_context = self.ca.server_context()
        self.tls_context = tls_context
        self.implicit_tls = tls == "implicit"
        self._authenticator: Authenticator | None = None
        if auth is not None:
            self._authenticator = auth if callable(auth) else check_against(dict(auth))
        self.session_config = SessionConfig(
            hostname=hostname or default_hostname(),
            data_size_limit=data_size_limit,
            enable_SMTPUTF8=enable_SMTPUTF8,
            decode_data=decode_data,
            enable_DSN=enable_DSN,
            command_size_limit=command_size_limit,
            delegated_verbs=_delegated_verbs,
            starttls=tls == "starttls",
            require_tls=require_starttls,
            auth_mechanisms=tuple(name.upper() for name in auth_mechanisms) if auth is not None else (),
            auth_required=auth_required,
            auth_requires_tls=auth_requires_tls,
            lmtp=lmtp,
        )
        if timeout is not None and timeout <= 0:
            raise ValueError(f"timeout must be positive or None, got {timeout}")
        self.timeout = timeout
        self.handler = handler
        self.keep_messages = keep_messages
        self.backlog = backlog
        self.messages = MessageStore()
        self._requested_port = port
        self._command_handler_factory = _command_handler_factory
        self._loop: asyncio.AbstractEventLoop | None = None
        #: Set up on the loop thread by the callback start() schedules.
        self._listeners: list[Listener] = []
        self._sessions: set[SessionProtocol] = set()
        self._closing = False
        self._port: int | None = None

    # -- lifecycle -----------------------------------------------------------

    @property
    def port(self) -> int:
        """The bound port (read back after binding port 0)."""
        return self._port if self._port is not None else self._requested_port

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    # -- TLS for clients -----------------------------------------------------

    def _test_ca(self) -> TestCA:
        if self.ca is None:
            raise RuntimeError(
                "this server has no test CA: start it with tls='starttls' or 'implicit' and no tls_context"
            )
        return self.ca

    @property
    def ca_path(self) -> str:
        """The CA certificate as a PEM file, for ``--cacert``, ``SSL_CERT_FILE``..."""
        return self._test_ca().ca_path

    def client_context(self) -> ssl.SSLContext:
        """A client SSL context that trusts this server, verification on."""
        return self._test_ca().client_context()

    @property
    def client_env(self) -> dict[str, str]:
        """Environment variables that make a client subprocess trust this server."""
        return self._test_ca().client_env()

    def is_running(self) -> bool:
        return self._loop is not None

    def start(self) -> None:
        """Bind and listen, here and now (so a bad address raises at once),
        then hand the sockets to the loop thread without waiting for it: the
        kernel queues connections until the loop accepts them."""
        if self._loop is not None:
            raise RuntimeError("Server is already running")
        sockets = self._bind()
        try:
            loop = loopthread.acquire_loop()
        except BaseException:
            for sock in sockets:
                sock.close()
            raise
        self._loop = loop
        self._closing = False
        self._port = sockets[0].getsockname()[1]
        loop.call_soon_threadsafe(self._listen, loop, sockets)
        log.debug("SMTP server listening on %s:%s", self.host, self._port)

    def _bind(self) -> list[socket.socket]:
        """A listening socket for each address ``host`` resolves to, all on
        one port (with port 0, the one the first socket got)."""
        where = f"{self.host}:{self._requested_port}"
        try:
            infos = socket.getaddrinfo(
                self.host or None, self._requested_port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )
        except socket.gaierror as exc:
            raise OSError(exc.errno, f"cannot listen on {where}: {exc.strerror}") from exc
        port = self._requested_port
        sockets: list[socket.socket] = []
        try:
            for family, kind, proto, _, sockaddr in dict.fromkeys(infos):
                sock = socket.socket(family, kind, proto)
                sockets.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.bind((sockaddr[0], port, *sockaddr[2:]))
                port = sock.getsockname()[1]
                sock.listen(self.backlog)
                sock.setblocking(False)
        except OSError as exc:
            for sock in sockets:
                sock.close()
            reason = "the address is already in use" if exc.errno == errno.EADDRINUSE else exc.strerror
            raise OSError(exc.errno, f"cannot listen on {where}: {reason}") from exc
        return sockets

    def _listen(self, loop: asyncio.AbstractEventLoop, sockets: list[socket.socket]) -> None:
        """On the loop thread: accept connections on ``sockets``."""
        self._listeners = [Listener(loop, sock, lambda: SessionProtocol(self)) for sock in sockets]
        try:
            for listener in self._listeners:
                listener.start()
        except Exception:
            log.exception("cannot serve on %s:%s", self.host, self._port)
            for listener in self._listeners:
                listener.close()

    def stop(self) -> None:
        """Close the listener and every session (each gets a 421), and return
        once they are closed. Stopping a stopped server does nothing.

        One round trip to the loop thread: with no session open (the common
        case at the end of a test) the loop closes the listener in a plain
        callback and answers at once."""
        loop = self._loop
        if loop is None:
            return
        if loopthread.in_loop_thread():
            self._stop_from_loop_thread()
            return
        closed: concurrent.futures.Future[None] = concurrent.futures.Future()
        try:
            # Runs after start()'s _listen: the loop runs callbacks in order.
            loop.call_soon_threadsafe(self._begin_close, closed)
            closed.result()
        finally:
            self._loop = None
            loopthread.release_loop()

    def _stop_from_loop_thread(self, then: Callable[[], None] = lambda: None) -> None:
        """stop() called by a handler, on the loop thread, which cannot wait
        for itself: the close starts once the handler has returned (its
        client hears its answer, then 421); ``then()`` runs when it is done."""
        loop, self._loop = self._loop, None
        if loop is None:
            then()
            return
        closed: concurrent.futures.Future[None] = concurrent.futures.Future()
        # Others keep the loop running (the pytest plugin does): let go now.
        # The last user lets go once the close is done, ending the thread.
        released = loopthread.release_unless_last()

        def release(_: concurrent.futures.Future[None]) -> None:
            if not released:
                loopthread.release_loop()
            then()

        closed.add_done_callback(release)
        loop.call_soon(self._begin_close, closed)

    def _begin_close(self, closed: concurrent.futures.Future[None]) -> None:
        """On the loop thread: close the listeners, abort the sessions, and
        resolve ``closed`` once they are gone."""
        try:
            self._closing = True
            listeners, self._listeners = self._listeners, []
            for listener in listeners:
                listener.close()
            connecting = [task for listener in listeners for task in listener.connecting]
            sessions = list(self._sessions)
            for session in sessions:
                session.abort()
            if not connecting and all(session.closed.done() for session in sessions):
                closed.set_result(None)
                return
        except BaseException as exc:
            closed.set_exception(exc)
            raise
        task = asyncio.get_running_loop().create_task(self._finish_close(connecting))
        task.add_done_callback(functools.partial(_settle, closed))

    async def _finish_close(self, connecting: list[asyncio.Task[None]]) -> None:
        if connecting:
            # Sessions accepted just before the close: they abort themselves
            # as they start (see session_started).
            await asyncio.wait(connecting, timeout=STOP_GRACE)
        sessions = list(self._sessions)
        if not sessions:
            return
        _, pending = await asyncio.wait([s.closed for s in sessions], timeout=STOP_GRACE)
        if pending:
            # A peer that does not read its 421 must not hold up stop().
            for session in sessions:
                if not session.closed.done() and session.transport is not None:
                    session.transport.abort()
            await asyncio.wait(pending, timeout=STOP_GRACE)

    def __enter__(self: _S) -> _S:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def clear(self) -> None:
        """Forget the messages received so far."""
        self.messages.clear()

    def __repr__(self) -> str:
        state = "running" if self.is_running() else "stopped"
        return f"<{type(self).__name__} {self.host}:{self.port} {state}, {len(self.messages)} message(s)>"

    # -- SessionOwner --------------------------------------------------------

    def session_started(self, session: SessionProtocol) -> CommandHandler | None:
        self._sessions.add(session)
        if self._closing:
            # Accepted just before stop() closed the listener: this one goes
            # too (stop() waits for it, see _finish_close).
            asyncio.get_running_loop().call_soon(session.abort)
        if self._command_handler_factory is None:
            return None
        return self._command_handler_factory(session)

    def session_ended(self, session: SessionProtocol) -> None:
        self._sessions.discard(session)

    def handle_message(self, message: Message, session: SessionProtocol) -> Verdict | Awaitable[Verdict]:
        """Ask the handler for its verdict; keep the message if it is accepted."""
        if self.handler is None:
            self._keep(message, None)
            return None
        verdict = self.handler(message)
        if inspect.isawaitable(verdict):
            return self._keep_after(message, verdict)
        self._keep(message, verdict)
        return verdict

    async def _keep_after(self, message: Message, pending: Awaitable[Verdict]) -> Verdict:
        verdict = await pending
        self._keep(message, verdict)
        return verdict

    def _keep(self, message: Message, verdict: Verdict) -> None:
        if self.keep_messages and accepted(verdict):
            self.messages.append(message)

    def authenticate(self, credentials: Credentials) -> bool | Awaitable[bool]:
        assert self._authenticator is not None, "AUTH offered without an authenticator"
        return self._authenticator(credentials)
