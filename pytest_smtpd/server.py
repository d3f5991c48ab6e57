"""``Server``: an SMTP server bound on the shared loop thread."""

from __future__ import annotations

import asyncio
import functools
import inspect
import itertools
import logging
import os
import socket
import ssl
import threading
import weakref
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import TypeVar

from . import replies
from .auth import Authenticator, Credentials, check_against
from .connection import SessionConfig
from .faults import Fault, Faults
from .lifecycle import Close, Lifecycle, Run, State
from .listener import bind
from .message import Message
from .options import DEFAULT_AUTH_MECHANISMS as DEFAULT_AUTH_MECHANISMS
from .options import DEFAULT_TIMEOUT as DEFAULT_TIMEOUT
from .options import DEFAULTS, check
from .options import TLSMode as TLSMode
from .replies import Reply
from .serving import STOP_GRACE as STOP_GRACE
from .serving import Serving
from .sessions import SessionStore
from .store import MessageStore
from .tls import Certificate, TestCA, parse_tls_versions, test_ca
from .transport import CommandHandler, SessionProtocol, Verdict, accepted, to_reply

__all__ = ["DEFAULT_TIMEOUT", "Server", "default_hostname"]

log = logging.getLogger("pytest_smtpd")

#: Every server, so that a forked child can reset them (see _after_fork_in_child).
_all_servers: weakref.WeakSet[Server] = weakref.WeakSet()


def _reset_servers_after_fork() -> None:
    for server in list(_all_servers):
        server._after_fork_in_child()


os.register_at_fork(after_in_child=_reset_servers_after_fork)


@functools.lru_cache(maxsize=1)
def default_hostname() -> str:
    """``socket.getfqdn()``, looked up once per process rather than once per
    connection as the stdlib ``smtpd`` did."""
    return socket.getfqdn()


MessageHandler = Callable[[Message], "Verdict | Awaitable[Verdict]"]
_S = TypeVar("_S", bound="Server")


#: Public attributes of a server that are its state, not its configuration:
#: reset() leaves them to the test switch and the stores' clear().
_NOT_CONFIGURATION = ("current_test", "messages", "sessions")


class Server:
    """An SMTP server for tests and local development.

    ``start()`` binds the listening socket on the process's one event-loop
    thread and returns at once; ``stop()`` closes it and every session.
    Accepted messages go to ``messages`` (unless ``keep_messages`` is false)
    and to ``handler``, whose return value is the reply (None: ``250 OK``).
    """

    def __init__(
        self,
        host: str = DEFAULTS.host,
        port: int = DEFAULTS.port,
        *,
        handler: MessageHandler | None = DEFAULTS.handler,
        hostname: str | None = DEFAULTS.hostname,
        data_size_limit: int = DEFAULTS.data_size_limit,
        enable_SMTPUTF8: bool = DEFAULTS.enable_SMTPUTF8,
        decode_data: bool = DEFAULTS.decode_data,
        enable_DSN: bool = DEFAULTS.enable_DSN,
        command_size_limit: int = DEFAULTS.command_size_limit,
        timeout: float | None = DEFAULTS.timeout,
        keep_messages: bool = DEFAULTS.keep_messages,
        backlog: int = DEFAULTS.backlog,
        tls: TLSMode | None = DEFAULTS.tls,
        tls_context: ssl.SSLContext | None = DEFAULTS.tls_context,
        require_starttls: bool = DEFAULTS.require_starttls,
        auth: Mapping[str, str] | Authenticator | None = DEFAULTS.auth,
        auth_mechanisms: Sequence[str] = DEFAULTS.auth_mechanisms,
        auth_required: bool = DEFAULTS.auth_required,
        auth_requires_tls: bool = DEFAULTS.auth_requires_tls,
        lmtp: bool = DEFAULTS.lmtp,
        max_recipients: int = DEFAULTS.max_recipients,
        enable_CHUNKING: bool = DEFAULTS.enable_CHUNKING,
        enable_ENHANCEDSTATUSCODES: bool | None = DEFAULTS.enable_ENHANCEDSTATUSCODES,
        faults: Iterable[Fault | str] = DEFAULTS.faults,
        tls_certificate: Certificate = DEFAULTS.tls_certificate,
        tls_versions: str | ssl.TLSVersion | Sequence[str | ssl.TLSVersion] | None = DEFAULTS.tls_versions,
        max_messages_per_connection: int = DEFAULTS.max_messages_per_connection,
        max_connections: int = DEFAULTS.max_connections,
        max_transcript_lines: int = DEFAULTS.max_transcript_lines,
    ) -> None:
        """Check the options and make the server; nothing is bound until
        ``start()`` (or ``with``). A wrong value or combination raises
        ``ValueError`` here, before anything is bound.

        :param host: the address to listen on: ``"127.0.0.1"``, ``"::1"``
            for IPv6.
        :param port: the port; ``0`` picks a free one, read back as
            ``server.port`` once started.
        :param handler: ``handler(message)`` decides each accepted message:
            None (``250 OK``), a reply line such as ``"550 No such user"``,
            or a ``Reply``; in LMTP mode also a list with one of those per
            recipient. May be ``async``. It runs on the shared loop thread,
            so a synchronous one should be quick. An exception gives the
            client ``451`` and is logged; so does a verdict that is not a
            2xx, 4xx or 5xx reply (a 3xx would leave the client waiting),
            and the message is not kept.
        :param hostname: the name in the greeting and the EHLO reply;
            default ``socket.getfqdn()``, looked up once per process. A name
            with a space or a control character (CR, LF...) raises ValueError.
        :param data_size_limit: the largest message in octets, after
            dot-unstuffing and counting its final CRLF, offered with SIZE;
            a larger one is read to its end, discarded and answered ``552``.
            ``0``: no limit.
        :param enable_SMTPUTF8: offer SMTPUTF8 (RFC 6531).
        :param decode_data: as the stdlib's: do not offer 8BITMIME.
        :param enable_DSN: accept the DSN parameters RET, ENVID, NOTIFY and
            ORCPT (RFC 3461).
        :param command_size_limit: the longest command line, CRLF included
            (RFC 5321 4.5.3.1.4: at least 512); a longer one gets ``500``.
        :param timeout: seconds of client silence (and the longest TLS
            handshake) before ``421`` and a hang-up (RFC 5321 4.5.3.2.7);
            None: no limit.
        :param keep_messages: record accepted messages in ``messages``;
            false for a server that only passes them to ``handler``.
        :param backlog: the listen backlog.
        :param tls: ``"starttls"`` (offer STARTTLS, RFC 3207) or
            ``"implicit"`` (TLS from the first byte, SMTPS); None: no TLS.
        :param tls_context: a server ``ssl.SSLContext`` of your own; by
            default a certificate for localhost, 127.0.0.1 and ::1 from the
            process's test CA (``ca``, ``ca_path``, ``client_context()``).
            Needs ``tls``.
        :param require_starttls: ``530`` to every command but NOOP, EHLO,
            STARTTLS and QUIT until STARTTLS (RFC 3207 4). Needs ``tls``.
        :param auth: offer AUTH (RFC 4954) and accept these logins: a
            ``{"user": "password"}`` dict (for XOAUTH2 the value is the
            token), or a callable taking ``Credentials`` and returning True
            or False, which may be ``async``.
        :param auth_mechanisms: which of ``"PLAIN"``, ``"LOGIN"``,
            ``"CRAM-MD5"`` and ``"XOAUTH2"`` to offer, in that order.
        :param auth_required: ``530`` to every command but AUTH, EHLO,
            HELO, NOOP, RSET, QUIT and STARTTLS until a successful AUTH.
            Needs ``auth``.
        :param auth_requires_tls: ``538`` to AUTH until TLS is active (off
            by default, so that plaintext tests can log in). Needs ``tls``.
        :param lmtp: speak LMTP (RFC 2033) instead: LHLO, and one reply
            per recipient after the data.
        :param max_recipients: recipients per transaction; each one over it
            gets ``452 4.5.3`` (RFC 5321 4.5.3.1.8). ``0``: no limit.
        :param enable_CHUNKING: offer CHUNKING (RFC 3030: BDAT), and
            BINARYMIME where 8-bit data is taken.
        :param enable_ENHANCEDSTATUSCODES: offer ENHANCEDSTATUSCODES (RFC
            2034): after EHLO/LHLO every 2xx, 4xx and 5xx reply carries its RFC
            3463 code. None (the default): on in LMTP mode, off otherwise.
        :param faults: fault rules to start with (``Fault`` objects or the
            command line's ``"STEP=WHAT"`` strings); see ``faults``.
        :param tls_certificate: with ``tls`` and the test CA:
            ``"expired"``, ``"wrong-host"``, ``"untrusted"`` or
            ``"self-signed"``, a certificate a verifying client must refuse;
            default ``"valid"``.
        :param tls_versions: with ``tls`` and the test CA: offer only these
            TLS versions, e.g. ``"TLSv1.2"`` or ``["TLSv1.2", "TLSv1.3"]``.
        :param max_messages_per_connection: after this many messages in one
            connection the next MAIL gets ``421 4.7.0`` and a hang-up.
            ``0``: no limit.
        :param max_connections: concurrent sessions beyond this get
            ``421 4.7.0`` instead of the greeting. ``0``: no limit.
        :param max_transcript_lines: lines a session's transcript keeps
            (then one line says the rest is not recorded). ``0``: no limit.
        """
        check(
            tls=tls,
            tls_context=tls_context,
            require_starttls=require_starttls,
            auth_requires_tls=auth_requires_tls,
            tls_certificate=tls_certificate,
            tls_versions=tls_versions,
            auth=auth,
            auth_required=auth_required,
            max_connections=max_connections,
            timeout=timeout,
        )
        versions = parse_tls_versions(tls_versions) if tls_versions is not None else None
        self.host = host
        #: ``"starttls"``, ``"implicit"`` or None.
        self.tls = tls
        #: The test CA behind the server certificate, when no tls_context was given.
        self.ca: TestCA | None = None
        if tls is not None and tls_context is None:
            self.ca = test_ca()
            tls_context = self.ca.server_context(tls_certificate, versions)
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
            delegated_verbs=self._delegated_verbs(),
            starttls=tls == "starttls",
            require_tls=require_starttls,
            auth_mechanisms=tuple(name.upper() for name in auth_mechanisms) if auth is not None else (),
            auth_required=auth_required,
            auth_requires_tls=auth_requires_tls,
            lmtp=lmtp,
            max_recipients=max_recipients,
            enable_CHUNKING=enable_CHUNKING,
            enable_ENHANCEDSTATUSCODES=enable_ENHANCEDSTATUSCODES,
            max_messages_per_connection=max_messages_per_connection,
            max_transcript_lines=max_transcript_lines,
        )
        self.timeout = timeout
        self.handler = handler
        self.keep_messages = keep_messages
        self.backlog = backlog
        #: The accepted messages, oldest first (a thread-safe sequence).
        self.messages = MessageStore()
        #: Every session (connection), oldest first, with its transcript;
        #: kept, like the messages, unless ``keep_messages`` is false.
        self.sessions = SessionStore()
        #: Record each session's transcript even with ``keep_messages`` false
        #: (see ``keep_sessions``).
        self.record_sessions = False
        self._faults = Faults(faults)
        #: The rules given as ``faults=``: clear() puts them back.
        self._configured_faults = [rule.fault for rule in self._faults.rules]
        #: Concurrent sessions beyond this many get ``421 4.7.0`` at the
        #: greeting; 0 for no limit.
        self.max_connections = max_connections
        self._session_numbers = itertools.count(1)
        self._requested_port = port
        #: The port of the latest run (kept after it, for a restart to rebind).
        self._port: int | None = None
        self._lifecycle = Lifecycle()
        #: The loop-thread side: listeners and live sessions.
        self._serving = Serving()
        #: The node id of the test using this server now (the pytest plugin
        #: sets it): each new session's ``test``. A message whose session
        #: began under another test goes to ``_late`` instead of ``messages``.
        self.current_test: str | None = None
        self._late: list[Message] = []
        #: Held to switch tests (``attribute()``) and to keep a message.
        self._attribution = threading.Lock()
        #: The attributes as made, for reset() (a copy of them all, sorted
        #: out when reset() needs them: a server is made for every test).
        self._as_made = dict(vars(self))
        _all_servers.add(self)

    # -- lifecycle -----------------------------------------------------------

    @property
    def port(self) -> int:
        """The bound port (read back after binding port 0)."""
        return self._port if self._port is not None else self._requested_port

    @property
    def address(self) -> tuple[str, int]:
        """``(host, port)``, as ``smtplib.SMTP(*server.address)`` takes it."""
        return (self.host, self.port)

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        """The listening sockets while the server runs, for reading their
        address (the stdlib's ``SMTPServer.socket``); the loop thread owns them."""
        run = self._lifecycle.run
        return run.sockets if run is not None else ()

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
        """Whether the server is started and not stopping."""
        return self._lifecycle.state is State.RUNNING

    def start(self) -> None:
        """Bind and listen, here and now (so a bad address raises at once),
        then hand the sockets to the loop thread without waiting for it: the
        kernel queues connections until the loop accepts them.

        RuntimeError if the server is running. While it is stopping (say, a
        handler stopped it), start() waits for the stop to end first."""
        self._lifecycle.start(self._bind, self._schedule_listen)
        log.debug("SMTP server listening on %s:%s", self.host, self._port)

    def _bind(self) -> list[socket.socket]:
        """The listening sockets; a port-0 server started again binds the
        port it had before if it can (see ``listener.bind``)."""
        previous = self._port if self._requested_port == 0 else None
        # The warning names start()'s caller: _bind, Lifecycle.start, start, it.
        return bind(self.host, self._requested_port, self.backlog, previous=previous, stacklevel=4)

    def _schedule_listen(self, run: Run) -> None:
        """With the lifecycle's lock held, as a run begins: put its listening
        on the loop (before any stop's close, which is scheduled later)."""
        # For a fault's session=: connections count from 1 since start.
        self._session_numbers = itertools.count(1)
        self._port = run.sockets[0].getsockname()[1]
        run.lease.loop.call_soon_threadsafe(self._listen, run)

    def _listen(self, run: Run) -> None:
        """On the loop thread: accept connections on the run's sockets."""
        if run.generation != self._lifecycle.generation:  # pragma: no cover - a stop always follows its start
            return
        try:
            self._serving.listen(asyncio.get_running_loop(), run.sockets, functools.partial(SessionProtocol, self))
        except Exception:
            log.exception("cannot serve on %s:%s", self.host, self._port)

    def stop(self, grace: float = 0.0) -> None:
        """Stop accepting at once, close every session (each gets a 421), and
        return once they are closed. With ``grace``, sessions still open get
        up to that many seconds to end by themselves first (say, a worker
        thread's QUIT in flight). An async handler still deciding is
        cancelled, and stop() waits for it to end (its ``finally:`` clauses,
        say), up to 2 seconds. Stopping a stopped server does nothing; a
        second thread's stop() waits for the first one's.

        Called from the loop thread (a handler, sync or async, stopping its
        own server), it returns at once: the close follows once the handler
        has answered, so its client hears its answer, then 421."""
        self._lifecycle.stop(self._close(grace))

    def _stop_from_loop_thread(self, then: Callable[[], None] = lambda: None) -> None:
        """stop() from a handler, with ``then()`` called once the stop is done."""
        done = self._lifecycle.request_stop(self._close(0.0))
        if done is None:
            then()
        else:
            done.add_done_callback(lambda _: then())

    def _close(self, grace: float) -> Close:
        """The close a stop runs on the loop thread: the listeners, then the
        sessions (after ``grace``), then the end of the stop."""
        if grace < 0:
            raise ValueError(f"grace must be 0 or more seconds, got {grace}")

        def close(run: Run, spare: asyncio.Task[object] | None) -> None:
            assert run.generation == self._lifecycle.generation, "a server restarts only once stopped"
            self._serving.close(grace, spare, then=self._lifecycle.end_stop)

        return close

    def _after_fork_in_child(self) -> None:
        """In a forked child: this server's loop thread does not exist here.
        Stopped, without touching the parent's loop; the sockets inherited
        from the parent are let go of (see ``Serving.after_fork_in_child``)."""
        self._attribution = threading.Lock()
        self.messages._after_fork_in_child()
        self._faults._after_fork_in_child()
        self.sessions._after_fork_in_child()
        run = self._lifecycle.run
        self._serving.after_fork_in_child(run.sockets if run is not None else ())
        self._lifecycle.after_fork_in_child()

    def __enter__(self: _S) -> _S:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def clear(self) -> list[Message]:
        """Forget the messages and sessions so far; remove the fault rules
        added since the server was made, leaving those given as ``faults=``
        (their counts start again); count connections from 1 again (for a
        fault's ``session=``). Returns the messages it forgot."""
        forgotten = self.messages.clear()
        self.sessions.clear()
        self._faults.reset(self._configured_faults)
        self._session_numbers = itertools.count(1)
        return forgotten

    def reset(self) -> list[Message]:
        """``clear()``, and every public attribute a test may have changed
        (``handler``, ``timeout``, ``max_connections``, ``keep_messages``,
        ``session_config``...) back to what the server was made with. It
        does not start or stop the server. Returns the messages it forgot."""
        for name, value in self._as_made.items():
            if name[0] != "_" and name not in _NOT_CONFIGURATION:
                setattr(self, name, value)
        return self.clear()

    def attribute(self, test: str | None) -> list[Message]:
        """Make ``test`` (a node id, None between tests) the one whose
        sessions begin from now on, and return the messages that arrived
        before the switch or in a session begun under another test: messages
        kept so far are cleared. From then on, a message whose session began
        under another test is kept aside, not in ``messages``, until the
        next call returns it (the pytest plugin warns about them)."""
        with self._attribution:
            self.current_test = test
            late, self._late = self._late, []
            return late + self.clear()

    @property
    def faults(self) -> Faults:
        """The fault rules, in order: the first that matches a step decides
        it. Add with ``faults.reply()``, ``.disconnect()``, ``.delay()``,
        ``.stall()``; assigning a list replaces them all."""
        return self._faults

    @faults.setter
    def faults(self, faults: Iterable[Fault | str]) -> None:
        self._faults.reset(faults)

    @property
    def keep_sessions(self) -> bool:
        """Whether sessions keep a record with their transcript: with
        ``keep_messages`` (and then go to ``sessions``), or when
        ``record_sessions`` is set (the dev inbox sets it, for a server that
        keeps no messages itself)."""
        return self.keep_messages or self.record_sessions

    def __repr__(self) -> str:
        state = self._lifecycle.state.value
        return f"<{type(self).__name__} {self.host}:{self.port} {state}, {len(self.messages)} message(s)>"

    # -- SessionOwner --------------------------------------------------------

    def next_session_number(self) -> int:
        """Which connection to this server a new one is, counting from 1."""
        return next(self._session_numbers)

    def refusal(self) -> Reply | None:
        """The reply that refuses a new connection in place of the greeting:
        ``421`` beyond ``max_connections`` sessions (those refused and still
        closing do not count), else None."""
        if not (self.max_connections and self._serving.accepting):
            return None
        return replies.TOO_MANY_CONNECTIONS if self._serving.admitted() >= self.max_connections else None

    def session_started(self, session: SessionProtocol) -> CommandHandler | None:
        """A connection was accepted (called by the transport, on the loop
        thread): record it; one that ``refusal()`` refused gets no handler."""
        self._serving.live.add(session)
        if session.record is not None:
            session.record.test = self.current_test
        if session.record is not None and self.keep_messages:
            self.sessions.append(session.record)
        if session.refused is not None:
            return None
        if not self._serving.accepting:
            # Accepted just before stop() closed the listener: this one goes
            # too (stop() waits for it, see Serving.close).
            asyncio.get_running_loop().call_soon(session.abort)
        return self._command_handler(session)

    # -- hooks for the stdlib-compatible layer ---------------------------------

    def _delegated_verbs(self) -> frozenset[str]:
        """Verbs whose handling a ``CommandHandler`` takes over (none here)."""
        return frozenset()

    def _command_handler(self, session: SessionProtocol) -> CommandHandler | None:
        """The handler of the delegated verbs for a new session (none here)."""
        return None

    def session_ended(self, session: SessionProtocol) -> None:
        """A session is over (called by the transport, on the loop thread)."""
        self._serving.live.discard(session)

    def handle_message(self, message: Message, session: SessionProtocol) -> Verdict | Awaitable[Verdict]:
        """Ask the handler for its verdict; keep the message if it is accepted."""
        if self.handler is None:
            self._keep(message, None)
            return None
        verdict = self.handler(message)
        if inspect.isawaitable(verdict):
            return self._keep_after(message, verdict)
        return self._keep(message, verdict)

    async def _keep_after(self, message: Message, pending: Awaitable[Verdict]) -> Verdict:
        return self._keep(message, await pending)

    def _keep(self, message: Message, verdict: Verdict) -> Verdict:
        """Keep the message if the verdict accepts it; the verdict as a
        reply, parsed once (one that is no reply, or a 3xx, raises: the
        client gets 451 and the message is not kept)."""
        reply = to_reply(verdict)
        if self.keep_messages and accepted(reply):
            if message.session is not None:
                message.session.messages.append(message)
            with self._attribution:
                if message.session is not None and message.session.test != self.current_test:
                    self._late.append(message)
                else:
                    self.messages.append(message)
        return reply

    def authenticate(self, credentials: Credentials) -> bool | Awaitable[bool]:
        """Check AUTH credentials with the ``auth``/``authenticator`` option."""
        assert self._authenticator is not None, "AUTH offered without an authenticator"
        return self._authenticator(credentials)
