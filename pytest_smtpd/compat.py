"""The stdlib ``smtpd`` API on our server: ``SMTPServer``, ``SMTPChannel``,
``DebuggingServer`` and a stand-in for ``asyncore.loop()``.

Code written for ``smtpd`` ports by changing its imports::

    from pytest_smtpd import smtpd, asyncore

The differences from the stdlib are the RFC fixes listed in
docs/migration.rst; the servers run on the shared background loop thread.
"""

from __future__ import annotations

import dataclasses
import inspect
import io
import logging
import os
import re
import socket
import ssl
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping, Sequence
from types import TracebackType
from typing import Any, ClassVar, TextIO, TypeVar

from . import loopthread, replies
from .auth import Authenticator
from .connection import SERVER_VERSION
from .faults import Faults
from .message import Message
from .options import DEFAULTS, TLSMode
from .replies import Reply
from .server import Server, default_hostname
from .state import State
from .tls import TestCA
from .transport import CommandHandler, SessionProtocol, Verdict

__all__ = [
    "DATA_SIZE_DEFAULT",
    "DEBUGSTREAM",
    "DebuggingServer",
    "SMTPChannel",
    "SMTPServer",
    "close_all",
    "loop",
    "poll",
    "poll2",
    "socket_map",
]

log = logging.getLogger("pytest_smtpd")

__version__ = SERVER_VERSION
_S = TypeVar("_S", bound="SMTPServer")
#: The stdlib's own default, which its positional ``data_size_limit`` keeps
#: (``Server``'s is the same, see options.py).
DATA_SIZE_DEFAULT = 33554432
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


#: What SMTPServer.handle_accepted() is building a channel for, on the loop
#: thread: the session, and then the channel that claimed it.
_accepting = threading.local()

#: A stdlib-style reply line: code, then a space or a hyphen and text, or the code alone.
_REPLY_LINE = re.compile(r"([2-5][0-9][0-9])(?:([ -])([^\r\n\x00]*))?")


def _builtin(verb: str) -> Callable[[SMTPChannel, str | None], None]:
    def command(self: SMTPChannel, arg: str | None) -> None:
        core = self._session.core
        envelope, recipients = core.envelope, len(core.envelope.rcpt_tos)
        core.handle_command(verb, arg)
        self._answered = True
        # What the stdlib traced when MAIL or RCPT succeeded (its tests read it).
        if verb == "MAIL" and core.envelope is not envelope and core.state is State.MAIL:
            print("sender:", seed_address(core.envelope.mail_from or ""), file=_debugstream())
        elif verb == "RCPT" and len(core.envelope.rcpt_tos) > recipients:
            print("recips:", core.envelope.rcpt_tos, file=_debugstream())

    command.__name__ = command.__qualname__ = f"smtp_{verb}"
    command.__doc__ = f"The built-in {verb} handling; an override may call it with super()."
    return command


class SMTPChannel:
    """One client session, as the stdlib's ``SMTPChannel``.

    A subclass customises a command by defining ``smtp_<COMMAND>(self, arg)``
    (``arg`` is the text after the verb, or None) and answering with
    ``push()``; it may call the built-in handling with ``super()``. New
    commands are added the same way. It may also read lines itself, as with
    the stdlib's ``async_chat``: every command line goes through
    ``collect_incoming_data()`` and ``found_terminator()``, whose built-in
    versions hand it on to the command handling. The protocol core frames
    the lines (only CRLF ends one) and keeps the limits; the session state
    lives there, and the attributes below read and write it.

    Channels are made by ``SMTPServer.handle_accepted()`` for an accepted
    connection, never directly.
    """

    COMMAND = 0
    DATA = 1
    command_size_limit = 512

    #: The verbs this class handles itself; computed once per class.
    delegated_verbs: ClassVar[frozenset[str]] = frozenset()
    #: Whether the class reads lines itself (overrides ``found_terminator``
    #: or ``collect_incoming_data``), so it is shown the message data too.
    reads_lines: ClassVar[bool] = False

    _session: SessionProtocol
    #: A subclass's own state (not COMMAND or DATA), or None.
    _own_state: int | None
    #: Whether the command (or line) being handled has a complete reply.
    _answered: bool
    #: While a message is shown to found_terminator(): what it pushes.
    _pushed: list[str] | None
    #: found_terminator() let the message through to process_message.
    _message_taken: bool

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.delegated_verbs = _channel_verbs(cls)
        line_readers = ("found_terminator", "collect_incoming_data")
        cls.reads_lines = any(getattr(cls, name) is not getattr(SMTPChannel, name) for name in line_readers)

    def __new__(cls, *args: Any, **kwargs: Any) -> SMTPChannel:
        session: SessionProtocol | None = getattr(_accepting, "session", None)
        if session is None:
            raise TypeError(
                f"{cls.__name__} is made by SMTPServer.handle_accepted() for an accepted connection "
                "(one channel per connection), not directly"
            )
        channel = super().__new__(cls)
        channel._session = session
        channel._own_state = None
        channel._answered = False
        channel._pushed = None
        channel._message_taken = False
        _accepting.session = None
        _accepting.channel = channel
        core = session.core
        core.delegated_verbs = cls.delegated_verbs
        core.deliver_lines = True
        return channel

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
        self._emptystring: bytes | str = "" if decode_data else b""
        self._linesep: bytes | str = "\r\n" if decode_data else b"\r\n"
        self._newline: bytes | str = "\n" if decode_data else b"\n"
        self._dotsep: int | str = "." if decode_data else ord(".")
        core = self._session.core
        # The channel's own arguments rule its session, as in the stdlib
        # (a handle_accepted() override may pass other ones than the server's).
        config = core.config
        wanted = (data_size_limit or 0, enable_SMTPUTF8, decode_data)
        if (config.data_size_limit, config.enable_SMTPUTF8, config.decode_data) != wanted:
            core.config = dataclasses.replace(
                config, data_size_limit=wanted[0], enable_SMTPUTF8=enable_SMTPUTF8, decode_data=decode_data
            )
        self.fqdn = core.config.hostname
        self.num_bytes = 0
        #: The line being read, as ``collect_incoming_data()`` got it: ``str``
        #: with ``decode_data``, else ``bytes``. Empty between lines.
        self.received_lines: list[Any] = []
        #: The last message's data, as handed to process_message.
        self.received_data: bytes | str = "" if decode_data else b""
        print("Peer:", repr(self.peer), file=_debugstream())

    # The stdlib attributes, kept in the protocol core.
    @property
    def smtp_state(self) -> int:
        """``COMMAND``, ``DATA``, or a state of a subclass's own (say, in its
        AUTH dialogue), during which every line goes to ``found_terminator()``."""
        if self._own_state is not None:
            return self._own_state
        return self.DATA if self._session.core.state in (State.DATA, State.MESSAGE_PENDING) else self.COMMAND

    @smtp_state.setter
    def smtp_state(self, value: int) -> None:
        if value == self.COMMAND:
            self._own_state = None
        elif value == self.DATA:
            if self._session.core.state not in (State.DATA, State.MESSAGE_PENDING):
                raise ValueError("smtp_state = DATA: the built-in smtp_DATA() starts the message; call it with super()")
            self._own_state = None
        else:
            self._own_state = value

    @property
    def seen_greeting(self) -> str:
        """The name the client gave in HELO/EHLO, ``""`` before it. A
        subclass that answers HELO/EHLO itself sets it to greet the session."""
        return self._session.core.helo

    @seen_greeting.setter
    def seen_greeting(self, value: str) -> None:
        core = self._session.core
        core.helo = value or ""
        if core.state in (State.CONNECTED, State.GREETED):
            core.reset_transaction()  # CONNECTED or GREETED, as the greeting says

    @property
    def extended_smtp(self) -> bool:
        """True after EHLO (the ESMTP parameters of MAIL and RCPT are
        allowed); a subclass answering EHLO itself sets it."""
        return self._session.core.extended

    @extended_smtp.setter
    def extended_smtp(self, value: bool) -> None:
        self._session.core.extended = bool(value)

    @property
    def mailfrom(self) -> str | None:
        """The sender of the transaction in progress (``"<>"`` for the null
        sender, as in the stdlib), None outside one. A subclass that takes
        MAIL itself sets it to open the transaction; None ends it."""
        mail_from = self._session.core.envelope.mail_from
        return None if mail_from is None else seed_address(mail_from)

    @mailfrom.setter
    def mailfrom(self, value: str | None) -> None:
        core = self._session.core
        if value is None and core.state in (State.MAIL, State.RCPT):
            core.reset_transaction()
        else:
            core.envelope.mail_from = value if value is None else envelope_address(value)
            self._sync_state()

    @property
    def rcpttos(self) -> list[str]:
        """The recipients accepted so far in this transaction; a subclass
        may set it or append to it, as with the stdlib's."""
        return self._session.core.envelope.rcpt_tos

    @rcpttos.setter
    def rcpttos(self, value: list[str]) -> None:
        self._session.core.envelope.rcpt_tos = value
        self._sync_state()

    def _sync_state(self) -> None:
        """Bring the core's state in line with an envelope a subclass filled
        itself (``self.mailfrom = ...``, ``self.rcpttos.append(...)``), so
        that the built-in RCPT and DATA find them in sequence."""
        self._session.core.envelope_changed()

    @property
    def mail_options(self) -> list[str]:
        """The ESMTP parameters of MAIL FROM (``["SIZE=1000", "BODY=8BITMIME"]``)."""
        return self._session.core.envelope.mail_options

    @property
    def rcpt_options(self) -> list[str]:
        """The ESMTP parameters of the RCPT TO commands, all recipients together."""
        return self._session.core.envelope.rcpt_options

    @property
    def require_SMTPUTF8(self) -> bool:
        """True when MAIL FROM asked for SMTPUTF8 (RFC 6531)."""
        return self._session.core.envelope.smtputf8

    # The line interface of the stdlib's async_chat.
    def push(self, msg: str) -> None:
        """Send reply lines as given, e.g. ``"250 OK"`` or ``"250-a\\r\\n250 b"``."""
        if self._pushed is not None:
            # Answering a message: the lines become the verdict.
            self._pushed.append(msg)
        else:
            self._session.core.push(msg)
        # A last line "250-..." leaves the reply open.
        last = msg.rstrip("\r\n").rsplit("\r\n", 1)[-1]
        self._answered = not (len(last) > 3 and last[3] == "-")

    def close_when_done(self) -> None:
        """Close the connection once the replies pushed so far are sent."""
        self._session.core.close()

    def close(self) -> None:
        """Close the connection; replies already pushed are still sent
        (the stdlib dropped them)."""
        self._session.core.close()

    def set_terminator(self, term: bytes | str | int | None) -> None:
        """Accepted for CRLF (commands) and CRLF.CRLF (data), which the core
        already frames by; anything else cannot be honoured."""
        if term not in ("\r\n", b"\r\n", "\r\n.\r\n", b"\r\n.\r\n"):
            raise ValueError(f"the protocol core frames lines by CRLF only; cannot set the terminator to {term!r}")

    def get_terminator(self) -> bytes:
        """``CRLF`` for commands, ``CRLF.CRLF`` in ``DATA``: what the core frames by."""
        return b"\r\n.\r\n" if self.smtp_state == self.DATA else b"\r\n"

    def collect_incoming_data(self, data: bytes | str) -> None:
        """Called with each complete line (or message) before
        :meth:`found_terminator`; it keeps the data in ``received_lines``."""
        self.received_lines.append(data)

    def found_terminator(self) -> None:
        """The line in ``received_lines`` is complete: run it as a command
        (in ``DATA``: process the message)."""
        line = self._emptystring.join(self.received_lines)
        self.received_lines = []
        state = self.smtp_state
        if state == self.COMMAND:
            raw = line.encode("utf-8", "surrogateescape") if isinstance(line, str) else bytes(line)
            self._answered = True  # the core answers it
            self._session.core.process_line(raw)
        elif state == self.DATA:
            self._message_taken = True
        else:
            self.push("451 Internal confusion")

    def _take_message(self, data: bytes) -> Reply | None:
        """Show a class that reads lines itself the message, as the stdlib
        did: in ``received_lines``, as sent (dots stuffed) without the final
        CRLF, with ``smtp_state`` at ``DATA``. None if the built-in
        ``found_terminator()`` let it through to process_message; else the
        reply the class pushed instead."""
        body = data[:-2] if data.endswith(b"\r\n") else data
        stuffed = body.replace(b"\r\n.", b"\r\n..")
        if stuffed.startswith(b"."):
            stuffed = b"." + stuffed
        self.received_lines = []
        self._message_taken = False
        self._pushed = []
        try:
            self.collect_incoming_data(stuffed.decode("utf-8", "surrogateescape") if self._decode_data else stuffed)
            self.found_terminator()
        finally:
            pushed, self._pushed = self._pushed, None
            self.received_lines = []
        if self._message_taken:
            return None
        if not pushed:
            log.warning("%s.found_terminator() neither took the message nor answered it", type(self).__name__)
            return replies.PROCESSING_ERROR
        return stdlib_reply("\r\n".join(line.rstrip("\r\n") for line in pushed))

    def handle_line(self, line: bytes) -> None:
        """Called for each command line the core framed."""
        self._answered = False
        data: bytes | str = line.decode("utf-8", "surrogateescape") if self._decode_data else line

        def read() -> None:
            self.collect_incoming_data(data)
            self.found_terminator()

        self._guarded("a line", read)

    def handle_command(self, verb: str, argument: str | None) -> None:
        """Run ``smtp_<verb>(argument)`` for a verb this class handles
        itself (the transport calls it; a subclass need not)."""
        self._answered = False
        self._guarded(verb, lambda: getattr(self, f"smtp_{verb}")(argument))

    def _guarded(self, what: str, call: Callable[[], object]) -> None:
        """Run a subclass's code: an error is logged, and gives a 451 only if
        the command has no complete answer yet (never a second reply)."""
        self._sync_state()
        try:
            call()
        except Exception:
            log.exception("SMTPChannel failed on %s from %s", what, self.peer)
            if not self._answered:
                self.push(str(replies.PROCESSING_ERROR))
        self._sync_state()

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


def _channel_verbs(cls: type) -> frozenset[str]:
    return frozenset(name[len("smtp_") :] for name in dir(cls) if name.startswith("smtp_") and name[5:].isupper())


SMTPChannel.delegated_verbs = _channel_verbs(SMTPChannel)


def _takes_options(method: Callable[..., Any]) -> bool:
    """Whether process_message accepts mail_options/rcpt_options: code written
    for Python 2 declares only four arguments, and still works here."""
    parameters = inspect.signature(method).parameters.values()
    names = {p.name for p in parameters}
    return any(p.kind is p.VAR_KEYWORD for p in parameters) or {"mail_options", "rcpt_options"} <= names


#: The null sender (``MAIL FROM:<>``) as the stdlib's ``smtpd`` gave it.
NULL_SENDER = "<>"


def seed_address(mail_from: str) -> str:
    """The reverse-path as the stdlib handed it over: ``"<>"`` for the null
    sender (``Message.mail_from`` has ``""``), so that ported code that
    checks ``mailfrom == "<>"`` (a bounce) still works."""
    return mail_from or NULL_SENDER


def envelope_address(mailfrom: str) -> str:
    """The reverse-path as the core and ``Message.mail_from`` have it:
    ``seed_address()`` undone."""
    return "" if mailfrom == NULL_SENDER else mailfrom


def seed_data(data: bytes, decode_data: bool) -> bytes | str:
    """The message as the stdlib handed it over: lines joined by ``\\n``,
    without the last line ending."""
    if data.endswith(b"\r\n"):
        data = data[:-2]
    data = data.replace(b"\r\n", b"\n")
    return data.decode("utf-8", errors="replace") if decode_data else data


class _VerbatimReply(Reply):
    """Reply lines sent exactly as given (``"550"`` stays ``550``, without a
    trailing space), once checked to be well-formed reply lines."""

    verbatim: bytes

    def __init__(self, lines: list[str]) -> None:
        super().__init__(int(lines[-1][:3]), "\n".join(line[4:] for line in lines))
        # Reply is a frozen dataclass: its __setattr__ refuses.
        object.__setattr__(self, "verbatim", "".join(f"{line}\r\n" for line in lines).encode("utf-8"))

    def to_bytes(self) -> bytes:
        return self.verbatim


def stdlib_reply(status: object) -> Reply | None:
    """``process_message``'s return value as the stdlib sent it: any false
    value is ``250 OK``; a string is sent as it is (one reply line, or
    several joined by CRLF), provided it is made of reply lines, so that it
    cannot smuggle a line that is not one (ValueError otherwise)."""
    if not status:
        return None
    if isinstance(status, Reply):
        return status
    if not isinstance(status, str):
        raise TypeError(f"process_message must return None or a reply line, not {type(status).__name__}")
    text = status[:-2] if status.endswith("\r\n") else status
    lines = text.replace("\r\n", "\n").split("\n")
    matches = [_REPLY_LINE.fullmatch(line) for line in lines]
    if all(matches):
        codes = {m.group(1) for m in matches if m}
        hyphens = [m.group(2) == "-" for m in matches if m]
        if len(codes) == 1 and all(hyphens[:-1]) and not hyphens[-1]:
            return _VerbatimReply(lines)
    # "550 first\nsecond": one reply of several lines. Raises for what is
    # not a reply, or holds a CR or NUL.
    return Reply.parse(text)


async def _stdlib_reply_after(pending: Awaitable[object]) -> Reply | None:
    return stdlib_reply(await pending)


#: What the stdlib's ``asyncore.socket_map`` held that matters here: the open
#: servers, by the file descriptor of their listening socket.
socket_map: dict[int, Any] = {}
_running: set[SMTPServer] = set()
_running_changed = threading.Condition()
_ORIGINAL_GETFQDN = socket.getfqdn


def _forget_servers_after_fork() -> None:
    """In a fork child the servers do not run (server.py resets them):
    unlist them, so that ``loop()`` and a polling loop end there, and take a
    fresh lock in case another thread of the parent held this one."""
    global _running_changed
    _running_changed = threading.Condition()
    for server in list(_running):
        if server._fileno is not None and server._map.get(server._fileno) is server:
            del server._map[server._fileno]
        server._fileno = None
    _running.clear()


os.register_at_fork(after_in_child=_forget_servers_after_fork)


def _hostname() -> str:
    """The server's name, as the stdlib's ``socket.getfqdn()``: looked up
    once per process, unless a test has patched ``socket.getfqdn``."""
    return default_hostname() if socket.getfqdn is _ORIGINAL_GETFQDN else socket.getfqdn()


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
    may return None (``250 OK``) or reply lines, and may be a coroutine.

    The keyword-only ``hostname``, ``timeout``, ``tls``, ``tls_context``,
    ``require_starttls``, ``auth``, ``auth_mechanisms``, ``auth_required``,
    ``auth_requires_tls``, ``enable_DSN``, ``enable_CHUNKING`` and
    ``enable_ENHANCEDSTATUSCODES`` go unchanged to the ``Server`` underneath,
    with its defaults (see docs/tls-auth.rst and the README's Extensions
    table); the positional ones keep the stdlib's defaults. With
    ``tls`` and no ``tls_context``, ``ca``, ``ca_path`` and ``client_context()``
    give clients the test CA.
    """

    channel_class: type[SMTPChannel] = SMTPChannel
    _options_accepted: ClassVar[bool] = True
    #: Whether ``enable_CHUNKING`` also offers BINARYMIME (not in the proxies).
    _binarymime: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._options_accepted = _takes_options(cls.process_message)

    def __init__(
        self,
        localaddr: tuple[str, int],
        remoteaddr: tuple[str, int] | None,
        data_size_limit: int = DATA_SIZE_DEFAULT,
        map: MutableMapping[int, Any] | None = None,
        enable_SMTPUTF8: bool = False,
        decode_data: bool = False,
        *,
        hostname: str | None = DEFAULTS.hostname,
        timeout: float | None = DEFAULTS.timeout,
        tls: TLSMode | None = DEFAULTS.tls,
        tls_context: ssl.SSLContext | None = DEFAULTS.tls_context,
        require_starttls: bool = DEFAULTS.require_starttls,
        auth: Mapping[str, str] | Authenticator | None = DEFAULTS.auth,
        auth_mechanisms: Sequence[str] = DEFAULTS.auth_mechanisms,
        auth_required: bool = DEFAULTS.auth_required,
        auth_requires_tls: bool = DEFAULTS.auth_requires_tls,
        enable_DSN: bool = DEFAULTS.enable_DSN,
        enable_CHUNKING: bool = DEFAULTS.enable_CHUNKING,
        enable_ENHANCEDSTATUSCODES: bool | None = DEFAULTS.enable_ENHANCEDSTATUSCODES,
    ) -> None:
        if enable_SMTPUTF8 and decode_data:
            raise ValueError("decode_data and enable_SMTPUTF8 cannot be set to True at the same time")
        self._localaddr = localaddr
        self._remoteaddr = remoteaddr
        self.data_size_limit = data_size_limit
        self.enable_SMTPUTF8 = enable_SMTPUTF8
        self._decode_data = decode_data
        #: Where this server is listed while it is open: ``map``, else ``socket_map``.
        self._map: MutableMapping[int, Any] = socket_map if map is None else map
        self._fileno: int | None = None
        self._socket: socket.socket
        self._server = _Backend(
            self,
            localaddr[0],
            localaddr[1],
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
            enable_DSN=enable_DSN,
            enable_CHUNKING=enable_CHUNKING,
            enable_ENHANCEDSTATUSCODES=enable_ENHANCEDSTATUSCODES,
        )
        # The stdlib's EHLO offered no PIPELINING (pipelined commands are
        # answered in order all the same), and its name could be empty.
        self._server.session_config = dataclasses.replace(
            self._server.session_config,
            hostname=_hostname() if hostname is None else hostname,
            pipelining=False,
            binarymime=self._binarymime,
        )
        self.start()

    @property
    def address(self) -> tuple[str, int]:
        """The bound address, with the real port after binding port 0."""
        return self._server.address

    @property
    def addr(self) -> tuple[str, int]:
        """The address bound, as the stdlib's ``dispatcher.addr`` (but with
        the real port after binding port 0)."""
        return self._server.address

    @property
    def socket(self) -> socket.socket:
        """The listening socket, for ``getsockname()`` and the like; the
        server's loop thread accepts on it. Closed once the server is."""
        return self._socket

    @property
    def accepting(self) -> bool:
        """True while the server listens, as the stdlib's ``dispatcher.accepting``."""
        return self._server.is_running()

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

    @property
    def faults(self) -> Faults:
        """The fault rules of the server underneath (see ``Server.faults``)."""
        return self._server.faults

    def start(self) -> None:
        """Listen again after :meth:`close` (the constructor already
        starts the server), and print the stdlib's start-up banner."""
        self._server.start()
        self._socket = self._server.sockets[0]
        fileno = self._socket.fileno()
        with _running_changed:
            self._fileno = fileno
            self._map[fileno] = self
            _running.add(self)
            _running_changed.notify_all()
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
            if self._fileno is not None and self._map.get(self._fileno) is self:
                del self._map[self._fileno]
            self._fileno = None
            _running.discard(self)
            _running_changed.notify_all()

    stop = close

    def __enter__(self: _S) -> _S:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def handle_accepted(self, conn: Any, addr: tuple[str, int]) -> None:
        """Make the channel for a new connection, as the stdlib did; an
        override may build it itself (say, with extra arguments)."""
        print(f"Incoming connection from {addr!r}", file=_debugstream())
        self.channel_class(self, conn, addr, self.data_size_limit, self._map, self.enable_SMTPUTF8, self._decode_data)

    def _make_channel(self, session: SessionProtocol) -> SMTPChannel:
        _accepting.session = session
        _accepting.channel = None
        try:
            self.handle_accepted(session.socket, session.peer)
            channel: SMTPChannel | None = _accepting.channel
        finally:
            _accepting.session = _accepting.channel = None
        if channel is None:
            raise RuntimeError(f"{type(self).__name__}.handle_accepted() made no channel for {session.peer}")
        return channel

    def _process(self, message: Message, session: SessionProtocol) -> Verdict | Awaitable[Verdict]:
        channel = session.commands
        assert isinstance(channel, SMTPChannel), "an SMTPServer session has a channel"
        decode_data = channel._decode_data
        data = seed_data(message.data, decode_data)
        channel.received_data = data
        if channel.reads_lines:
            answer = channel._take_message(message.data)
            if answer is not None:
                return answer
        kwargs: dict[str, Any] = {}
        if not decode_data and self._options_accepted:
            kwargs = {"mail_options": message.mail_options, "rcpt_options": message.rcpt_options}
        status = self.process_message(message.peer, seed_address(message.mail_from), message.rcpt_tos, data, **kwargs)
        if inspect.isawaitable(status):
            return _stdlib_reply_after(status)
        return stdlib_reply(status)

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
        if lines[-1] == "":
            lines.pop()  # the line ending of the last line, not an empty line
        if "" in lines:
            # X-Peer goes where the headers end, as in the stdlib; a message
            # without that blank line gets none.
            header_end = lines.index("")
            lines[header_end:header_end] = [f"X-Peer: {peer[0]}", *envelope]
        else:
            lines += envelope
        for line in lines:
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


def loop(
    timeout: float = 30.0, use_poll: bool = False, map: MutableMapping[int, Any] | None = None, count: int | None = None
) -> None:
    """Stand-in for ``asyncore.loop()``: the servers already run on the
    background thread, so this blocks until every SMTPServer is closed (with
    ``map``, every one listed there), or with ``count``, for at most ``count *
    timeout`` seconds. Ctrl-C closes them all and raises KeyboardInterrupt,
    as the stdlib loop did."""
    if loopthread.in_loop_thread():
        raise RuntimeError("asyncore.loop() waits for the servers to close and cannot run on their loop thread")
    deadline = None if count is None else time.monotonic() + count * timeout
    watched: Any = _running if map is None else map
    try:
        with _running_changed:
            while watched:
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


def poll(timeout: float = 0.0, map: MutableMapping[int, Any] | None = None) -> None:
    """Stand-in for ``asyncore.poll()``: the servers serve on the background
    thread, so one pass of a polling loop of one's own (``while
    asyncore.socket_map: asyncore.poll(0.01)``) has nothing to do but wait,
    as ``select()`` did: for ``timeout`` seconds, or until a server in
    ``map`` (default ``socket_map``) opens or closes. Returns at once when
    ``map`` is empty."""
    watched = socket_map if map is None else map
    if timeout <= 0 or loopthread.in_loop_thread():
        return  # on the loop thread (in a handler), waiting would hold up every server
    with _running_changed:
        if watched:
            _running_changed.wait(timeout)


#: ``asyncore.poll2()`` and ``poll3()`` took the same arguments as ``poll()``.
poll2 = poll3 = poll


def close_all(map: MutableMapping[int, Any] | None = None, ignore_all: bool = False) -> None:
    """Close every server in ``map`` (default ``socket_map``), and empty it.
    An error closing one is raised unless ``ignore_all``, as in the stdlib."""
    watched = socket_map if map is None else map
    for entry in list(watched.values()):
        try:
            entry.close()
        except Exception:
            if not ignore_all:
                raise
    watched.clear()
