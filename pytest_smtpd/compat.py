"""The stdlib ``smtpd`` API on our server: ``SMTPServer``, ``SMTPChannel``,
``DebuggingServer`` and a stand-in for ``asyncore.loop()``.

Code written for ``smtpd`` ports by changing its imports::

    from pytest_smtpd import smtpd, asyncore

The differences from the stdlib are the RFC fixes listed in
docs/migration.rst; the servers run on the shared background loop thread.
"""

from __future__ import annotations

import inspect
import io
import ssl
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, ClassVar, TextIO, TypeVar

from . import loopthread
from .auth import Authenticator
from .connection import DEFAULT_DATA_SIZE_LIMIT, SERVER_VERSION
from .server import DEFAULT_AUTH_MECHANISMS, DEFAULT_TIMEOUT, Server, TLSMode
from .state import State
from .store import Message
from .tls import TestCA
from .transport import CommandHandler, SessionProtocol, Verdict

__all__ = ["DATA_SIZE_DEFAULT", "DEBUGSTREAM", "DebuggingServer", "SMTPChannel", "SMTPServer", "loop"]

__version__ = SERVER_VERSION
_S = TypeVar("_S", bound="SMTPServer")
DATA_SIZE_DEFAULT = DEFAULT_DATA_SIZE_LIMIT
COMMASPACE = ", "
NEWLINE = "\n"
EMPTYSTRING = ""


class _Devnull:
    def write(self, msg: str) -> int:
        return len(msg)

    def flush(self) -> None:
        pass


_DEVNULL = _Devnull()
#: Where the servers trace what they do; the command line's ``-d`` sets it
#: to ``sys.stderr``, as in the stdlib.
DEBUGSTREAM: Any = _DEVNULL


def _debugstream() -> Any:
    """DEBUGSTREAM wherever the caller set it: here (as the CLI does), or on
    the ``smtpd`` shim, as code ported from the stdlib does."""
    if DEBUGSTREAM is _DEVNULL:
        shim = sys.modules.get(f"{__package__}.smtpd")
        if shim is not None:
            return shim.DEBUGSTREAM
    return DEBUGSTREAM


def _builtin(verb: str) -> Callable[[SMTPChannel, str | None], None]:
    def command(self: SMTPChannel, arg: str | None) -> None:
        self._session.core.handle_command(verb, arg)

    command.__name__ = command.__qualname__ = f"smtp_{verb}"
    command.__doc__ = f"The built-in {verb} handling; an override may call it with super()."
    return command


class SMTPChannel:
    """One client session, as the stdlib's ``SMTPChannel``.

    A subclass customises a command by defining ``smtp_<COMMAND>(self, arg)``
    (``arg`` is the text after the verb, or None) and answering with
    ``push()``; it may call the built-in handling with ``super()``. New
    commands are added the same way. The state lives in the protocol core;
    the attributes below read and write it.
    """

    COMMAND = 0
    DATA = 1
    command_size_limit = 512

    #: The verbs this class handles itself; computed once per class.
    delegated_verbs: ClassVar[frozenset[str]] = frozenset()

    _session: SessionProtocol

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        verbs = set()
        for name in dir(cls):
            verb = name[len("smtp_") :]
            overridden = getattr(cls, name) is not getattr(SMTPChannel, name, None)
            if name.startswith("smtp_") and verb.isupper() and overridden:
                verbs.add(verb)
        cls.delegated_verbs = frozenset(verbs)

    def __init__(
        self,
        server: SMTPServer,
        conn: Any,
        addr: tuple[str, int],
        data_size_limit: int = DATA_SIZE_DEFAULT,
        map: object = None,
        enable_SMTPUTF8: bool = False,
        decode_data: bool = False,
    ) -> None:
        if enable_SMTPUTF8 and decode_data:
            raise ValueError("decode_data and enable_SMTPUTF8 cannot be set to True at the same time")
        self.smtp_server = server
        self.conn = conn
        self.addr = addr
        self.peer = addr
        self.data_size_limit = data_size_limit
        self.enable_SMTPUTF8 = enable_SMTPUTF8
        self._decode_data = decode_data
        self.fqdn = self._session.core.config.hostname
        #: Always empty between lines: the core frames lines itself.
        self.received_lines: list[bytes | str] = []
        #: The last message's data, as handed to process_message.
        self.received_data: bytes | str = "" if decode_data else b""

    # The stdlib attributes, kept in the protocol core.
    @property
    def smtp_state(self) -> int:
        return self.DATA if self._session.core.state is State.DATA else self.COMMAND

    @property
    def seen_greeting(self) -> str:
        return self._session.core.helo

    @seen_greeting.setter
    def seen_greeting(self, value: str) -> None:
        self._session.core.helo = value

    @property
    def extended_smtp(self) -> bool:
        return self._session.core.extended

    @property
    def mailfrom(self) -> str | None:
        return self._session.core.envelope.mail_from

    @property
    def rcpttos(self) -> list[str]:
        return self._session.core.envelope.rcpt_tos

    @property
    def mail_options(self) -> list[str]:
        return self._session.core.envelope.mail_options

    @property
    def rcpt_options(self) -> list[str]:
        return self._session.core.envelope.rcpt_options

    def push(self, msg: str) -> None:
        """Send one reply line, e.g. ``"250 OK"``."""
        self._session.core.push(msg)

    def close_when_done(self) -> None:
        self._session.core.close()

    def handle_command(self, verb: str, argument: str | None) -> None:
        getattr(self, f"smtp_{verb}")(argument)

    smtp_HELO = _builtin("HELO")
    smtp_EHLO = _builtin("EHLO")
    smtp_NOOP = _builtin("NOOP")
    smtp_QUIT = _builtin("QUIT")
    smtp_MAIL = _builtin("MAIL")
    smtp_RCPT = _builtin("RCPT")
    smtp_RSET = _builtin("RSET")
    smtp_DATA = _builtin("DATA")
    smtp_HELP = _builtin("HELP")
    smtp_VRFY = _builtin("VRFY")
    smtp_EXPN = _builtin("EXPN")


def _takes_options(method: Callable[..., Any]) -> bool:
    """Whether process_message accepts mail_options/rcpt_options: code written
    for Python 2 declares only four arguments, and still works here."""
    parameters = inspect.signature(method).parameters.values()
    names = {p.name for p in parameters}
    return any(p.kind is p.VAR_KEYWORD for p in parameters) or {"mail_options", "rcpt_options"} <= names


def seed_data(data: bytes, decode_data: bool) -> bytes | str:
    """The message as the stdlib handed it over: lines joined by ``\\n``,
    without the last line ending."""
    if data.endswith(b"\r\n"):
        data = data[:-2]
    data = data.replace(b"\r\n", b"\n")
    return data.decode("utf-8", errors="replace") if decode_data else data


_running: set[SMTPServer] = set()
_running_changed = threading.Condition()


class _Backend(Server):
    """The Server under an SMTPServer: it hands messages and sessions to it."""

    def __init__(self, front: SMTPServer, host: str, port: int, **options: Any) -> None:
        self.front = front
        super().__init__(host, port, keep_messages=False, **options)

    def handle_message(self, message: Message, session: SessionProtocol) -> Verdict | Awaitable[Verdict]:
        return self.front._process(message, session)

    def _delegated_verbs(self) -> frozenset[str]:
        return self.front.channel_class.delegated_verbs

    def _command_handler(self, session: SessionProtocol) -> CommandHandler | None:
        return self.front._make_channel(session)


class SMTPServer:
    """An SMTP server that calls ``process_message`` for every message.

    As in the stdlib, constructing it binds ``localaddr`` and starts serving
    (here on the background loop thread); ``close()`` stops it. ``process_message``
    may return None (``250 OK``) or a reply line, and may be a coroutine.

    The keyword-only ``tls``, ``tls_context``, ``require_starttls``, ``auth``,
    ``auth_mechanisms``, ``auth_required`` and ``auth_requires_tls`` go
    unchanged to the ``Server`` underneath (see docs/tls-auth.rst); with
    ``tls`` and no ``tls_context``, ``ca``, ``ca_path`` and ``client_context()``
    give clients the test CA.
    """

    channel_class: type[SMTPChannel] = SMTPChannel
    _options_accepted: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._options_accepted = _takes_options(cls.process_message)

    def __init__(
        self,
        localaddr: tuple[str, int],
        remoteaddr: tuple[str, int] | None,
        data_size_limit: int = DATA_SIZE_DEFAULT,
        map: object = None,
        enable_SMTPUTF8: bool = False,
        decode_data: bool = False,
        *,
        hostname: str | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        tls: TLSMode | None = None,
        tls_context: ssl.SSLContext | None = None,
        require_starttls: bool = False,
        auth: Mapping[str, str] | Authenticator | None = None,
        auth_mechanisms: Sequence[str] = DEFAULT_AUTH_MECHANISMS,
        auth_required: bool = False,
        auth_requires_tls: bool = False,
    ) -> None:
        if enable_SMTPUTF8 and decode_data:
            raise ValueError("decode_data and enable_SMTPUTF8 cannot be set to True at the same time")
        self._localaddr = localaddr
        self._remoteaddr = remoteaddr
        self.data_size_limit = data_size_limit
        self.enable_SMTPUTF8 = enable_SMTPUTF8
        self._decode_data = decode_data
        self._server = _Backend(
            self,
            localaddr[0],
            localaddr[1],
            hostname=hostname,
            data_size_limit=data_size_limit or 0,
            enable_SMTPUTF8=enable_SMTPUTF8,
            decode_data=decode_data,
            # The stdlib's knob for the command line limit was this class attribute.
            command_size_limit=self.channel_class.command_size_limit,
            timeout=timeout,
            tls=tls,
            tls_context=tls_context,
            require_starttls=require_starttls,
            auth=auth,
            auth_mechanisms=auth_mechanisms,
            auth_required=auth_required,
            auth_requires_tls=auth_requires_tls,
        )
        self.start()

    @property
    def address(self) -> tuple[str, int]:
        """The bound address, with the real port after binding port 0."""
        return self._server.address

    @property
    def ca(self) -> TestCA | None:
        """The test CA behind the server certificate; None without ``tls`` or
        with a ``tls_context`` of your own."""
        return self._server.ca

    @property
    def ca_path(self) -> str:
        """The test CA as a PEM file, for clients (``--cacert``, ``cafile=``);
        RuntimeError without the test CA."""
        return self._server.ca_path

    def client_context(self) -> ssl.SSLContext:
        """A client SSL context that trusts this server, verification on;
        RuntimeError without the test CA."""
        return self._server.client_context()

    def start(self) -> None:
        self._server.start()
        with _running_changed:
            _running.add(self)
        print(
            f"{type(self).__name__} started at {time.ctime()}",
            f"\tLocal addr: {self.address}",
            f"\tRemote addr:{self._remoteaddr}",
            sep="\n",
            file=_debugstream(),
        )

    def close(self) -> None:
        """Stop serving: close the listener and every session. Called from
        ``process_message`` (on the loop thread) it returns at once and the
        close follows the reply; ``loop()`` returns once it is done."""
        if loopthread.in_loop_thread():
            self._server._stop_from_loop_thread(then=self._forget)
        else:
            self._server.stop()
            self._forget()

    def _forget(self) -> None:
        with _running_changed:
            _running.discard(self)
            _running_changed.notify_all()

    stop = close

    def __enter__(self: _S) -> _S:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _make_channel(self, session: SessionProtocol) -> SMTPChannel:
        print("Incoming connection from", repr(session.peer), file=_debugstream())
        channel = self.channel_class.__new__(self.channel_class)
        channel._session = session
        channel.__init__(  # type: ignore[misc]
            self,
            session.socket,
            session.peer,
            self.data_size_limit,
            None,
            self.enable_SMTPUTF8,
            self._decode_data,
        )
        return channel

    def _process(self, message: Message, session: SessionProtocol) -> Verdict | Awaitable[Verdict]:
        data = seed_data(message.data, self._decode_data)
        if isinstance(session.commands, SMTPChannel):
            session.commands.received_data = data
        kwargs: dict[str, Any] = {}
        if not self._decode_data and self._options_accepted:
            kwargs = {"mail_options": message.mail_options, "rcpt_options": message.rcpt_options}
        return self.process_message(message.peer, message.mail_from, message.rcpt_tos, data, **kwargs)

    def process_message(
        self, peer: tuple[str, int], mailfrom: str, rcpttos: list[str], data: bytes | str, **kwargs: Any
    ) -> str | Awaitable[str | None] | None:
        """Override to do something with each message. Return None for
        ``250 OK`` or a reply line such as ``"550 No such user"``."""
        raise NotImplementedError


class DebuggingServer(SMTPServer):
    """Prints every message to ``stream`` (standard output by default) and
    discards it. ``show_envelope`` adds ``X-MailFrom`` and ``X-RcptTo``."""

    def __init__(self, *args: Any, stream: TextIO | None = None, show_envelope: bool = False, **kwargs: Any) -> None:
        self.stream = stream
        self.show_envelope = show_envelope
        super().__init__(*args, **kwargs)

    def _print_message_content(
        self, peer: tuple[str, int], data: bytes | str, out: TextIO, envelope: list[str]
    ) -> None:
        text = data if isinstance(data, str) else data.decode("utf-8", errors="backslashreplace")
        lines = text.split("\n")
        header_end = lines.index("") if "" in lines else len(lines)
        extra = [f"X-Peer: {peer[0]}", *envelope]
        for line in [*lines[:header_end], *extra, *lines[header_end:]]:
            print(line, file=out)

    def process_message(
        self, peer: tuple[str, int], mailfrom: str, rcpttos: list[str], data: bytes | str, **kwargs: Any
    ) -> None:
        stream = self.stream or sys.stdout
        # Built first and written at once: no other output lands inside it,
        # and a stream that cannot encode some character gets an escape for
        # it rather than an error that would lose the message (451).
        out = io.StringIO()
        print("---------- MESSAGE FOLLOWS ----------", file=out)
        if kwargs.get("mail_options"):
            print(f"mail options: {kwargs['mail_options']}", file=out)
        if kwargs.get("rcpt_options"):
            print(f"rcpt options: {kwargs['rcpt_options']}\n", file=out)
        envelope = [f"X-MailFrom: {mailfrom}", f"X-RcptTo: {COMMASPACE.join(rcpttos)}"] if self.show_envelope else []
        self._print_message_content(peer, data, out, envelope)
        print("------------ END MESSAGE ------------", file=out)
        text = out.getvalue()
        encoding = getattr(stream, "encoding", None)
        if encoding:
            try:
                text.encode(encoding)
            except UnicodeEncodeError:
                text = text.encode(encoding, "backslashreplace").decode(encoding, "replace")
            except LookupError:
                pass  # an encoding Python does not know: let the stream cope
        stream.write(text)
        stream.flush()


def loop(timeout: float = 30.0, use_poll: bool = False, map: object = None, count: int | None = None) -> None:
    """Stand-in for ``asyncore.loop()``: the servers already run on the
    background thread, so this blocks until every SMTPServer is closed (or,
    with ``count``, for at most ``count * timeout`` seconds). Ctrl-C closes
    them all and raises KeyboardInterrupt, as the stdlib loop did."""
    deadline = None if count is None else time.monotonic() + count * timeout
    try:
        with _running_changed:
            while _running:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return
                # Wake up now and then so that Ctrl-C is seen on every platform.
                _running_changed.wait(0.5 if remaining is None else min(remaining, 0.5))
        loopthread.join_ending_thread(timeout=10)
    except KeyboardInterrupt:
        for server in list(_running):
            server.close()
        raise
