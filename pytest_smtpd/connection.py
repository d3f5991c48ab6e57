"""The SMTP server protocol as a state machine without I/O.

Feed it bytes with :meth:`ServerConnection.receive_data`, pull events with
:meth:`~ServerConnection.next_event` until it returns ``NEED_DATA``, and send
what :meth:`~ServerConnection.data_to_send` returns. The core answers
syntax, sequence and limit errors itself; the application sees only the
events it has to decide on.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sized
from dataclasses import dataclass, field
from typing import Protocol

from . import _channel, _commands, _dispatch, _extensions, _faulting, replies
from ._commands import SYNTAX as SYNTAX
from ._extensions import AUTH_LINE_LIMIT as AUTH_LINE_LIMIT
from ._parse import split_command
from ._readers import ChunkReader, DataReader, LineReader, LineTooLong
from .auth import MECHANISMS, Credentials, Mechanism
from .errors import LocalProtocolError
from .events import (
    NEED_DATA,
    ConnectionClosed,
    Envelope,
    Event,
    FaultFired,
    FaultRule,
    LineReceived,
    NeedData,
)
from .limits import (  # the options table's defaults too; importable from here, as before
    DEFAULT_COMMAND_SIZE_LIMIT as DEFAULT_COMMAND_SIZE_LIMIT,
)
from .limits import (
    DEFAULT_DATA_SIZE_LIMIT,
    DEFAULT_MAX_RECIPIENTS,
    DEFAULT_MAX_TRANSCRIPT_LINES,
)
from .recorder import Recorder, Tracer, Transcript, common_line
from .replies import Reply
from .state import COMMAND_STATES, State

__all__ = [
    "DEFAULT_DATA_SIZE_LIMIT",
    "DEFAULT_MAX_RECIPIENTS",
    "DEFAULT_MAX_TRANSCRIPT_LINES",
    "SERVER_VERSION",
    "FaultSource",
    "ServerConnection",
    "SessionConfig",
]

#: The stdlib ``smtpd`` greeting text, kept so ported tests see the same banner.
SERVER_VERSION = "Python SMTP proxy version 0.3"
#: Extra octets MAIL may use when an extension adds parameters: RFC 1870
#: section 7 (SIZE: 26), RFC 6531 3.4 (SMTPUTF8: 10), RFC 3461 (RET and
#: ENVID on MAIL; NOTIFY and a 500-octet ORCPT on RCPT).
SIZE_ALLOWANCE = 26
SMTPUTF8_ALLOWANCE = 10
DSN_MAIL_ALLOWANCE = 120
DSN_RCPT_ALLOWANCE = 560


#: What a hostname and a greeting may not contain: it would break the reply
#: line they are said in (a hostname is one word).
_UNSAYABLE = re.compile(r"[\x00-\x20\x7f]")
_UNSAYABLE_TEXT = re.compile(r"[\x00-\x1f\x7f]")


@functools.lru_cache(maxsize=64)
def _greeting(text: str) -> Reply:
    """The greeting reply of ``text``, its lines common lines of transcripts
    from now on; made once per text (a test suite makes a server per test,
    all with the same name)."""
    greeting = Reply(220, text)
    for _, line in greeting.transcript_lines():
        common_line(line)
    return greeting


@dataclass(frozen=True, slots=True)
class SessionConfig:
    """What a session offers and what it tolerates. Shared by every
    connection of a server, so it is checked once."""

    #: The name the server gives in its greeting and EHLO reply.
    hostname: str = "localhost"
    #: Largest message accepted, in octets after dot-unstuffing; 0 for no limit.
    data_size_limit: int = DEFAULT_DATA_SIZE_LIMIT
    #: Offer SMTPUTF8 (RFC 6531).
    enable_SMTPUTF8: bool = False
    #: The application wants ``str`` data, so 8BITMIME is not offered.
    decode_data: bool = False
    #: Accept the DSN parameters RET, ENVID, NOTIFY and ORCPT (RFC 3461).
    enable_DSN: bool = False
    #: Longest command line with its CRLF, before extension allowances.
    command_size_limit: int = DEFAULT_COMMAND_SIZE_LIMIT
    #: Text after ``220`` in the greeting; ``None`` for ``"<hostname> <version>"``.
    greeting: str | None = None
    #: Verbs whose handling the application takes over (see ``CommandReceived``).
    delegated_verbs: frozenset[str] = field(default_factory=frozenset)
    #: Extra EHLO keywords, e.g. from a subclass adding a command.
    extra_ehlo_keywords: tuple[str, ...] = ()
    #: Offer STARTTLS (RFC 3207); the transport does the handshake.
    starttls: bool = False
    #: Answer 530 to every command but NOOP, EHLO, STARTTLS and QUIT until
    #: TLS is active (RFC 3207 4).
    require_tls: bool = False
    #: SASL mechanisms offered by AUTH (RFC 4954), e.g. ``("PLAIN", "LOGIN")``.
    auth_mechanisms: tuple[str, ...] = ()
    #: Answer 530 to every command but AUTH, EHLO, HELO, NOOP, RSET, QUIT
    #: and STARTTLS until the client has logged in (RFC 4954 6).
    auth_required: bool = False
    #: Answer 538 to AUTH until TLS is active.
    auth_requires_tls: bool = False
    #: Speak LMTP (RFC 2033): LHLO instead of HELO/EHLO, and one reply per
    #: recipient after the message.
    lmtp: bool = False
    #: Recipients accepted per transaction; those over it get 452 (RFC 5321
    #: 4.5.3.1.8 asks for at least 100; Postfix allows 1000). 0: no limit.
    max_recipients: int = DEFAULT_MAX_RECIPIENTS
    #: Offer CHUNKING (RFC 3030): BDAT, and BINARYMIME where 8-bit data is taken.
    enable_CHUNKING: bool = False
    #: With ``enable_CHUNKING``, offer and take BINARYMIME too (where 8-bit
    #: data is taken). The proxies turn it off: they relay by DATA, which
    #: cannot carry binary data unchanged.
    binarymime: bool = True
    #: Offer ENHANCEDSTATUSCODES (RFC 2034): after EHLO/LHLO every 2xx, 4xx
    #: and 5xx reply carries an RFC 3463 code. None: on in LMTP mode, where
    #: RFC 2033 asks for it, off otherwise (stdlib ``smtpd`` replies).
    enable_ENHANCEDSTATUSCODES: bool | None = None
    #: Offer PIPELINING (RFC 2920). Pipelined commands are answered in order
    #: either way; the stdlib-compatible classes do not offer it, as the stdlib did not.
    pipelining: bool = True
    #: After this many messages in one connection, answer the next MAIL with
    #: ``421 4.7.0`` and close; 0 for no limit.
    max_messages_per_connection: int = 0
    #: Lines a session's transcript (and its list of verbs) keeps; past them,
    #: one last line says so and nothing more is recorded. 0: no limit.
    max_transcript_lines: int = DEFAULT_MAX_TRANSCRIPT_LINES
    _longest_line: int = field(init=False, repr=False, compare=False, default=0)
    _greeting_reply: Reply = field(init=False, repr=False, compare=False, default=replies.OK)

    def __post_init__(self) -> None:
        # Said in every greeting and EHLO reply: a CR or LF would break the
        # reply into lines of the client's making (or crash the greeting).
        # (Empty is allowed: the stdlib's tests make getfqdn() return "".)
        if _UNSAYABLE.search(self.hostname):
            raise ValueError(f"hostname must be a name without spaces or control characters, got {self.hostname!r}")
        if self.greeting is not None and _UNSAYABLE_TEXT.search(self.greeting):
            raise ValueError(f"greeting must be one line without control characters, got {self.greeting!r}")
        if self.decode_data and self.enable_SMTPUTF8:
            raise ValueError("decode_data and enable_SMTPUTF8 cannot be set to True at the same time")
        if self.max_recipients < 0:
            raise ValueError(f"max_recipients must be 0 (no limit) or positive, got {self.max_recipients}")
        if self.data_size_limit < 0:
            raise ValueError(f"data_size_limit must be 0 (no limit) or positive, got {self.data_size_limit}")
        if self.command_size_limit < DEFAULT_COMMAND_SIZE_LIMIT:
            raise ValueError(
                f"command_size_limit must be at least {DEFAULT_COMMAND_SIZE_LIMIT} (RFC 5321 4.5.3.1.4), "
                f"got {self.command_size_limit}"
            )
        unknown = [name for name in self.auth_mechanisms if name not in MECHANISMS]
        if unknown:
            raise ValueError(f"unknown AUTH mechanism(s) {unknown}; known: {sorted(MECHANISMS)}")
        if self.max_messages_per_connection < 0:
            raise ValueError(
                f"max_messages_per_connection must be 0 (no limit) or positive, got {self.max_messages_per_connection}"
            )
        if self.max_transcript_lines < 0:
            raise ValueError(f"max_transcript_lines must be 0 (no limit) or positive, got {self.max_transcript_lines}")
        if self.auth_required and not self.auth_mechanisms:
            raise ValueError("auth_required needs at least one AUTH mechanism")
        # Read on every partial line: computed once.
        longest = max(self.line_limit(verb, True) for verb in ("MAIL", "RCPT", "AUTH"))
        object.__setattr__(self, "_longest_line", longest)
        # Said to every connection: made once, and a common line of transcripts.
        object.__setattr__(self, "_greeting_reply", _greeting(self.greeting or f"{self.hostname} {SERVER_VERSION}"))

    def line_limit(self, verb: str, extended: bool) -> int:
        """The longest line allowed for ``verb``, CRLF included. Computed, not
        accumulated, so a second EHLO never raises it."""
        limit = self.command_size_limit
        if verb == "AUTH" and self.auth_mechanisms:
            return max(limit, AUTH_LINE_LIMIT)
        if not extended:
            return limit
        if verb == "MAIL":
            limit += SIZE_ALLOWANCE
            if self.enable_SMTPUTF8:
                limit += SMTPUTF8_ALLOWANCE
            if self.enable_DSN:
                limit += DSN_MAIL_ALLOWANCE
        elif verb == "RCPT" and self.enable_DSN:
            limit += DSN_RCPT_ALLOWANCE
        return limit

    @property
    def enhanced_status_codes(self) -> bool:
        """Whether ENHANCEDSTATUSCODES is offered (the option, or LMTP mode)."""
        if self.enable_ENHANCEDSTATUSCODES is None:
            return self.lmtp
        return self.enable_ENHANCEDSTATUSCODES

    @property
    def greeting_reply(self) -> Reply:
        """The ``220`` greeting every connection gets."""
        return self._greeting_reply

    @property
    def longest_line(self) -> int:
        """The longest line any command may have, CRLF included."""
        return self._longest_line


#: States in which the core waits for the application, and the call it awaits.
_ANSWER_AWAITED = {
    State.MESSAGE_PENDING: "answer_message",
    State.AUTH_PENDING: "answer_auth",
    State.TLS_PENDING: "tls_started",
}


class FaultSource(Protocol):
    """A server's fault rules (``pytest_smtpd.faults.Faults``), as the core
    asks them: ``decide()`` is called only while ``rules`` is not empty."""

    @property
    def rules(self) -> Sized: ...
    def decide(self, step: str, argument: str, session: int) -> FaultRule | None: ...


class ServerConnection:
    """One SMTP session, server side, without I/O: feed it the peer's bytes
    with :meth:`receive_data`, take events from :meth:`next_event` until it
    returns ``NEED_DATA``, answer the ones that wait for an answer
    (``MessageReceived``, ``AuthRequested``, ``CommandReceived``), and send
    what :meth:`data_to_send` returns. The greeting is queued at creation."""

    # Slots: a session holds only its fields (an instance dict of this
    # many keys would cost over 1 KiB per idle connection).
    __slots__ = (
        "_closed_reason",
        "_credentials",
        "_cut_after",
        "_cut_pending",
        "_data",
        "_data_too_big",
        "_deferred",
        "_delivered_at",
        "_envelope",
        "_eof",
        "_fault_reason",
        "_fault_work",
        "_fired",
        "_inbox",
        "_lines",
        "_mechanism",
        "_outbox",
        "_reader",
        "_returned",
        "_verb",
        "authenticated",
        "config",
        "delegated_verbs",
        "deliver_lines",
        "enhanced_status_codes",
        "extended",
        "faults",
        "helo",
        "last_line",
        "last_verb",
        "messages_received",
        "pipelined",
        "recorder",
        "session_number",
        "stalled",
        "state",
        "tls",
    )

    def __init__(
        self,
        config: SessionConfig | None = None,
        *,
        tls: bool = False,
        record: bool = False,
        faults: FaultSource | None = None,
        session_number: int = 1,
        peer: str = "",
        tracer: Tracer | None = None,
    ) -> None:
        """``tls``: encrypted from the first byte (implicit TLS). ``record``:
        keep ``transcript`` and ``commands``; ``tracer`` is given every line
        as it is recorded, kept or not. ``faults``: the rules asked at
        every step; ``session_number`` is this connection's number for their
        ``session=``; ``peer`` the client's ``host:port``, which a CONNECT
        rule's ``match=`` sees."""
        self.config = config or SessionConfig()
        #: The record of what was said (see ``recorder.py``), None when
        #: nothing is kept or traced. This is the one source of the protocol
        #: trace and the session transcripts.
        self.recorder: Recorder | None = None
        if record or tracer is not None:
            self.recorder = Recorder(self.config.max_transcript_lines, keep=record, tracer=tracer)
        #: The verb of the last command line, ``""`` before one.
        self.last_verb = ""
        #: Whether the client sent a command before the reply to the previous one.
        self.pipelined = False
        #: The fault rules asked at every step, and which connection to the
        #: server this is (counting from 1), for their ``session=``.
        self.faults = faults
        self.session_number = session_number
        #: Messages handed to the application in this session.
        self.messages_received = 0
        # Fault state, untouched in a session no fault decides.
        #: A stall fault fired: nothing more is read until abort() (what
        #: arrives is dropped).
        self.stalled = False
        #: A step a delay fault holds back: run by the next next_event().
        self._deferred: Callable[[], Event | None] | None = None
        #: A fault fired outside next_event() (at CONNECT), reported by it.
        self._fired: FaultFired | None = None
        #: Whether any of the three above may be set: the one test
        #: next_event() makes for faults in the common case.
        self._fault_work = False
        #: ``disconnect(after_bytes=N)`` on DATA: hang up after N octets of the
        #: message the DATA command under way starts (``_cut_pending``), or of
        #: the one being read (``_cut_after``).
        self._cut_pending: int | None = None
        self._cut_after: int | None = None
        #: Why the session closes if the reply fault being applied is a 421.
        self._fault_reason = ""
        self.state = State.CONNECTED
        #: Whether the session is encrypted (implicit TLS, or after STARTTLS).
        self.tls = tls
        #: The credentials accepted by AUTH, or None.
        self.authenticated: Credentials | None = None
        self._mechanism: Mechanism | None = None
        self._credentials: Credentials | None = None
        #: The transaction's envelope, made when first asked for (an idle
        #: session holds none).
        self._envelope: Envelope | None = None
        #: The name given in the last HELO/EHLO, ``""`` before one.
        self.helo = ""
        #: Whether the client greeted with EHLO.
        self.extended = False
        #: Whether replies carry RFC 3463 codes: ENHANCEDSTATUSCODES was
        #: offered in the reply to the last EHLO/LHLO (a HELO client, and
        #: every client before its EHLO, gets bare replies).
        self.enhanced_status_codes = False
        #: The verb of the command being answered, which picks a success
        #: reply's status code (2.1.0 for MAIL, 2.1.5 for RCPT).
        self._verb = ""
        #: The last command line received, decoded.
        self.last_line = ""
        #: Verbs handed to the application as ``CommandReceived``; per session,
        #: so that each session's command handler may take over its own.
        self.delegated_verbs = self.config.delegated_verbs
        #: Hand every command line to the application as ``LineReceived``
        #: first (the stdlib's ``found_terminator()``); it hands lines back
        #: with ``process_line()``.
        self.deliver_lines = False
        #: Lines handed back with process_line(), run before further input
        #: (None until there is one).
        self._returned: list[bytes] | None = None
        #: Where in the transcript a delivered line goes if the application
        #: keeps it (not handed back): masked, before the replies to it.
        self._delivered_at: int | None = None
        #: What was received and not yet framed; the framing readers take
        #: from its front (see ``_readers.py``): ``_lines`` in the command
        #: states, ``_reader`` for a message after DATA or a BDAT chunk.
        self._inbox = bytearray()
        self._lines = LineReader()
        self._reader: DataReader | ChunkReader | None = None
        #: Replies queued and not yet taken by data_to_send() (None: none).
        self._outbox: list[bytes] | None = None
        self._eof = False
        self._closed_reason = ""
        # BDAT (RFC 3030): the message so far over its chunks, and whether it
        # went past the size limit (the chunk being read is ``_reader``).
        self._data: bytearray | None = None
        self._data_too_big = False
        greeting = self.config.greeting_reply
        fault = _faulting.fault(self, "CONNECT", peer) if faults is not None and faults.rules else None
        if fault is None:
            self.reply(greeting)
        else:
            self._fired = _faulting.fire(
                self, "CONNECT", fault, lambda: self.reply(greeting), functools.partial(_faulting.refuse_greeting, self)
            )
            self._fault_work = True

    # -- the driving API ----------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Hand over bytes from the peer; ``b""`` means the peer closed."""
        if not data:
            self._eof = True
        elif self.state not in (State.CLOSED, State.TLS_PENDING) and not self.stalled:
            # Bytes that arrive between STARTTLS and the handshake are
            # plaintext injected into the coming TLS session: dropped. A
            # stalled session drops what comes too, so that a client that
            # sends on cannot make it hold more.
            self._inbox += data

    def next_event(self) -> Event | NeedData:
        """Process buffered input until something needs the application."""
        if self._fault_work:
            pending = _faulting.fault_step(self)
            if pending is not None:
                return pending
        waiting_for = _ANSWER_AWAITED.get(self.state)
        if waiting_for is not None:
            raise LocalProtocolError(f"{waiting_for}() must be called before next_event()")
        if self._delivered_at is not None:
            assert self.recorder is not None
            self.recorder.record_at(self._delivered_at, "client", "<a line the application read itself>")
            self._delivered_at = None
        while self.state is not State.CLOSED:
            if self.state is State.DATA or self.state is State.CHUNK:
                event = _commands.read_data(self) if self.state is State.DATA else _extensions.read_chunk(self)
                if event is NEED_DATA:
                    break
                if event is not None:
                    return event
                continue
            returned = bool(self._returned) and self.state in COMMAND_STATES
            # The next command line without its CRLF, LINE_TOO_LONG for one
            # dropped (longer than any command may be), None until one is whole.
            if returned and self._returned:
                line: bytes | LineTooLong | None = self._returned.pop(0)
            else:
                line = self._lines.read(self._inbox, self.config.longest_line)
            if line is None:
                break
            # A line longer than any command may be is answered below (500)
            # and never reaches the application.
            deliver = self.deliver_lines and not returned and self.state in COMMAND_STATES
            if deliver and isinstance(line, bytes) and len(line) + 2 <= self.config.longest_line:
                self._delivered_at = self.recorder.position() if self.recorder is not None else None
                return LineReceived(line)
            # In a SASL exchange a line is a response, not a command.
            event = _extensions.handle_auth_line(self, line) if self.state is State.AUTH else self._handle_line(line)
            if event is not None:
                return event
        if self.state is State.CLOSED:
            return ConnectionClosed(self._closed_reason)
        if self._eof:
            self._close("peer closed the connection")
            return ConnectionClosed(self._closed_reason)
        return NEED_DATA

    def data_to_send(self) -> bytes:
        """The replies queued since the last call, ready for the socket."""
        outbox, self._outbox = self._outbox, None
        out = b"".join(outbox) if outbox else b""
        return out

    def reply(self, reply: Reply) -> None:
        """Queue a reply, e.g. the answer to a delegated command. After an
        EHLO/LHLO that agreed on ENHANCEDSTATUSCODES, the reply gets its RFC
        3463 code (one the text already starts with is kept)."""
        if self.enhanced_status_codes:
            reply = replies.with_enhanced_code(reply, self._verb)
        self._queue(reply.to_bytes())
        if self.recorder is not None:
            self.recorder.lines(reply.transcript_lines())

    def _queue(self, data: bytes) -> None:
        outbox = self._outbox
        if outbox is None:
            self._outbox = [data]
        else:
            outbox.append(data)

    def push(self, line: str) -> None:
        """Queue a reply line as given (``"250 OK"``), as stdlib's ``push()``."""
        self._queue(line.encode("utf-8") + b"\r\n")
        if self.recorder is not None:
            self.recorder.line("server", line)

    @property
    def envelope(self) -> Envelope:
        """The envelope of the transaction in progress (an empty one outside a
        transaction)."""
        envelope = self._envelope
        if envelope is None:
            envelope = self._envelope = Envelope()
        return envelope

    @envelope.setter
    def envelope(self, envelope: Envelope) -> None:
        self._envelope = envelope

    @property
    def transcript(self) -> Transcript | None:
        """With ``record``: what was said, as ``(direction, line)`` pairs
        ("client" or "server"), message data as a size and SASL secrets
        masked, growing as the session goes on. Once
        ``config.max_transcript_lines`` are recorded the last one says so,
        and nothing more is kept (nor added to ``commands``)."""
        return self.recorder.transcript if self.recorder is not None else None

    @property
    def commands(self) -> list[str]:
        """The verbs of the command lines received, in order (with ``record``)."""
        return self.recorder.commands if self.recorder is not None else []

    def _record_client(self, line: str) -> None:
        if self.recorder is not None:
            self.recorder.line("client", line)

    def abort(self, reply: Reply = replies.SHUTTING_DOWN) -> None:
        """End the session with ``reply`` (a 421), e.g. at shutdown or timeout."""
        if self.state is not State.CLOSED:
            self._record_unfinished()  # in the transcript before the 421
            self.state = State.CLOSED
            self.reply(reply)
            self._close(reply.text)

    def close(self) -> None:
        """End the session once the queued replies are sent (``close_when_done``)."""
        if self.state is not State.CLOSED:
            self._close("closed by the application")

    def reset_transaction(self) -> None:
        """Forget the mail transaction but not the greeting (RSET)."""
        self._envelope = None
        self._data = None
        self.state = State.GREETED if self.helo else State.CONNECTED

    @property
    def _other_protocol_greetings(self) -> frozenset[str]:
        return _dispatch.SMTP_ONLY if self.config.lmtp else _dispatch.LMTP_ONLY

    # -- framing ------------------------------------------------------------

    def _record_unfinished(self) -> None:
        """A message cut off while being read shows in the transcript as its size."""
        reader = self._reader
        if self.state is State.DATA and isinstance(reader, DataReader):
            self._record_client(f"<{reader.octets + len(self._inbox)} bytes of message data, unfinished>")
        elif self.state is State.CHUNK and isinstance(reader, ChunkReader):
            read = reader.received + min(len(self._inbox), reader.left)
            self._record_client(f"<{read} of {reader.size} bytes of a chunk, unfinished>")

    def _close(self, reason: str) -> None:
        self._record_unfinished()
        self.state = State.CLOSED
        self._closed_reason = reason
        self._inbox.clear()
        self._data = None
        self._reader = None
        self._deferred = None
        self._fired = None
        self.stalled = False
        self._cut_pending = None
        self._cut_after = None

    # -- commands -----------------------------------------------------------

    def _handle_line(self, line: bytes | LineTooLong) -> Event | None:
        if self._inbox and not (isinstance(line, bytes) and line[:5].upper() == b"BDAT "):
            self.pipelined = True  # the next command came before this reply
        if isinstance(line, LineTooLong):
            self._record_client("<a line too long, dropped>")
            self.reply(replies.LINE_TOO_LONG)
            return None
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            self._record_client(line.decode("utf-8", "backslashreplace"))
            self.reply(replies.NOT_UTF8)
            return None
        verb, argument = split_command(text)
        self._verb = verb
        if len(line) + 2 > self.config.line_limit(verb, self.extended):
            self._record_client(f"<a {len(line) + 2}-octet line, too long>")
            self.reply(replies.LINE_TOO_LONG)
            return None
        self.last_verb = verb
        if self.recorder is not None:
            self.recorder.command(verb, text, argument)
        if not line:
            self.reply(replies.BAD_SYNTAX)
            return None
        self.last_line = text
        chunk = verb == "BDAT" and self.config.enable_CHUNKING
        faults = self.faults
        if faults is not None and faults.rules:
            fired = _dispatch.fault_command(self, verb, argument, chunk)
            if fired is not None:
                return fired
        if chunk:
            # Not one a command handler could frame: its octets follow at once.
            _extensions.smtp_bdat(self, argument)
            return None
        return _dispatch.dispatch(self, verb, argument)

    # The steps that are another module's job, bound as methods (the
    # module's function is the method: no call in between).
    handle_command = _dispatch.handle_command
    _gate_error = _dispatch.session_gate_error
    ehlo_keywords = _extensions.ehlo_keywords
    tls_started = _extensions.tls_started
    answer_auth = _extensions.answer_auth
    answer_message = _commands.answer_message
    process_line = _channel.process_line
    envelope_changed = _channel.envelope_changed

    @classmethod
    def builtin_verbs(cls) -> frozenset[str]:
        """The verbs the core answers itself."""
        return frozenset(_dispatch.HANDLERS)

    # Read-only views used by the seed-compatible SMTPChannel.
    @property
    def in_command_state(self) -> bool:
        """True while the next line is a command (not message data, a BDAT
        chunk or a SASL response)."""
        return self.state in COMMAND_STATES
