"""Listening sockets: bound on the caller's thread (``bind``, so that a bad
address raises there), then accepting on the loop thread (``Listener``: the
socket watched with ``add_reader``, each accepted connection given to a new
session).

``loop.create_server`` does the same, but it is a coroutine that takes loop
iterations of its own to start, so starting and stopping a server cost several
wake-ups of the loop thread. Here both are plain callbacks: a test's server
costs one wake-up to start listening and one round trip to stop."""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import warnings
from collections.abc import Callable

__all__ = ["ACCEPT_BATCH", "ACCEPT_RETRY_DELAY", "Listener", "bind"]

log = logging.getLogger("pytest_smtpd")

#: Connections accepted per readiness event, so that a flood on one listener
#: cannot starve the loop's other work.
ACCEPT_BATCH = 100
#: Out of file descriptors or memory: seconds before accepting again.
ACCEPT_RETRY_DELAY = 0.5
#: accept() errors that say the process is out of a resource, not that one
#: connection went wrong.
_OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


def bind(
    host: str, port: int, backlog: int, *, previous: int | None = None, stacklevel: int = 1
) -> list[socket.socket]:
    """A listening, non-blocking socket for each address ``host`` resolves
    to, all on ``port`` (with 0, the one the first socket got). OSError
    names the address and why.

    With port 0 and the ``previous`` port of a server started again, that
    port, so that clients find the server where it went down; if it is taken
    now, a free one, with a ``RuntimeWarning`` (``stacklevel`` as
    ``warnings.warn`` takes it, counted from the caller: 1 is the call)."""
    if previous and port == 0:
        try:
            return _bind(host, previous, backlog)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
        warnings.warn(
            f"{host}:{previous}, this server's port before it stopped, is in use now:"
            " it listens on a new free port (read server.port)",
            RuntimeWarning,
            stacklevel=stacklevel + 1,
        )
    return _bind(host, port, backlog)


def _bind(host: str, port: int, backlog: int) -> list[socket.socket]:
    where = f"{host}:{port}"
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise OSError(exc.errno, f"cannot listen on {where}: {exc.strerror}") from exc
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
            sock.listen(backlog)
            sock.setblocking(False)
    except OSError as exc:
        for sock in sockets:
            sock.close()
        reason = "the address is already in use" if exc.errno == errno.EADDRINUSE else exc.strerror
        raise OSError(exc.errno, f"cannot listen on {where}: {reason}") from exc
    return sockets


class Listener:
    """A bound, listening, non-blocking socket served on ``loop``. Every
    method runs on the loop thread."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: socket.socket,
        protocol_factory: Callable[[], asyncio.Protocol],
    ) -> None:
        self._loop = loop
        self._sock = sock
        self._fd = sock.fileno()
        self._protocol_factory = protocol_factory
        self._retry: asyncio.TimerHandle | None = None
        self._closed = False
        #: Connections accepted whose session is not set up yet.
        self.connecting: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        """Begin accepting (on the loop thread)."""
        self._loop.add_reader(self._fd, self._accept)

    def close(self) -> None:
        """Stop accepting and close the listening socket (connections
        already accepted go on; their sessions are the server's to close)."""
        if self._closed:
            return
        self._closed = True
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        self._loop.remove_reader(self._fd)  # before close: the number may be reused at once
        self._sock.close()

    def _accept(self) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                conn, _ = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in _OUT_OF_RESOURCES:
                    log.error(
                        "cannot accept connections on %s: %s; trying again in %s s",
                        self._sock.getsockname(),
                        exc.strerror,
                        ACCEPT_RETRY_DELAY,
                    )
                    self._loop.remove_reader(self._fd)
                    self._retry = self._loop.call_later(ACCEPT_RETRY_DELAY, self._resume)
                    return
                continue  # e.g. ECONNABORTED: that peer gave up while queued
            conn.setblocking(False)
            task = self._loop.create_task(self._connect(conn))
            self.connecting.add(task)
            task.add_done_callback(self.connecting.discard)

    def _resume(self) -> None:
        self._retry = None
        if not self._closed:
            self.start()

    async def _connect(self, conn: socket.socket) -> None:
        try:
            await self._loop.connect_accepted_socket(self._protocol_factory, conn)
        except Exception:
            log.exception("cannot set up a session for a connection from %s", _peer(conn))
            conn.close()
        except BaseException:
            conn.close()
            raise


def _peer(conn: socket.socket) -> object:
    try:
        return conn.getpeername()
    except OSError:
        return "(disconnected)"
