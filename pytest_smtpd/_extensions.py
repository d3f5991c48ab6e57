"""The extensions a session offers (the EHLO keywords) and the commands of
those that change how it reads: BDAT (CHUNKING, RFC 3030), STARTTLS (RFC
3207) and AUTH with its SASL exchange (RFC 4954), with the application's
answers that end STARTTLS and AUTH; functions of the session they run in
(``ServerConnection``), which binds the public ones as its methods.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from . import _commands, _faulting, replies
from ._readers import ChunkReader, LineTooLong
from .auth import MECHANISMS, AuthError, Credentials, Mechanism
from .errors import LocalProtocolError
from .events import (
    NEED_DATA,
    AuthRequested,
    ConnectionClosed,
    Event,
    NeedData,
    StartTLS,
)
from .replies import Reply
from .state import State, sequence_error

if TYPE_CHECKING:
    from .connection import ServerConnection

#: RFC 4954 4: an AUTH command or response line may be 12288 octets long.
AUTH_LINE_LIMIT = 12288


def ehlo_keywords(core: ServerConnection) -> list[str]:
    """The extensions the EHLO (or LHLO) reply offers now, as configured
    and as the session stands (no STARTTLS once in TLS, say)."""
    config = core.config
    keywords = []
    if config.data_size_limit:
        keywords.append(f"SIZE {config.data_size_limit}")
    if not config.decode_data:
        keywords.append("8BITMIME")
    if config.enable_SMTPUTF8:
        keywords.append("SMTPUTF8")
    if config.enable_DSN:
        keywords.append("DSN")
    if config.enhanced_status_codes:
        keywords.append("ENHANCEDSTATUSCODES")
    if config.enable_CHUNKING:
        keywords.append("CHUNKING")
        if not config.decode_data and config.binarymime:
            keywords.append("BINARYMIME")
    if config.starttls and not core.tls:
        keywords.append("STARTTLS")
    if config.auth_mechanisms:
        keywords.append("AUTH " + " ".join(config.auth_mechanisms))
    if config.pipelining:
        keywords.append("PIPELINING")
    keywords += [*config.extra_ehlo_keywords, "HELP"]
    return keywords


def smtp_bdat(core: ServerConnection, argument: str | None) -> None:
    """Start reading a chunk. Its octets follow the command whatever the
    answer, so a refusal (503, 530, or the 552 of a message that got too
    big) is given after them; only a size that cannot be read is
    answered at once (501), and what follows is read as commands."""
    size_text, _, last_text = (argument or "").partition(" ")
    last_text = last_text.strip(" ")
    if not (size_text.isascii() and size_text.isdigit() and len(size_text) <= 20) or last_text.upper() not in (
        "",
        "LAST",
    ):
        core.reply(Reply(501, "Syntax: BDAT chunk-size [LAST]"))
        return
    size = int(size_text)
    if len(core._inbox) > size:
        core.pipelined = True
    refusal = core._gate_error("BDAT") or sequence_error("BDAT", core.state)
    if refusal is None and core.state is State.RCPT:
        core._data = bytearray()  # the first chunk of the message
        core._data_too_big = False
    reader = ChunkReader(
        size, bool(last_text), core._data if refusal is None else None, core.config.data_size_limit, core._data_too_big
    )
    reader.refusal, reader.return_state = refusal, core.state
    core._reader = reader
    core._cut_after, core._cut_pending = core._cut_pending, None
    core.state = State.CHUNK


def refuse_chunk(core: ServerConnection, argument: str | None, reply: Reply) -> None:
    """A fault's reply to BDAT: the chunk is read and dropped, then
    ``reply`` is given and the transaction cleared (RFC 3030 2: the
    client sends no further chunk of a refused message)."""
    smtp_bdat(core, argument)
    if core.state is State.CHUNK:
        assert isinstance(core._reader, ChunkReader)
        core._reader.refusal = reply
        core._reader.by_fault = True


def read_chunk(core: ServerConnection) -> Event | NeedData | None:
    """Take the chunk's octets as they are (no dot-stuffing, no lines);
    once it is whole, answer it, or hand over the message after LAST."""
    reader = core._reader
    assert isinstance(reader, ChunkReader)
    complete = reader.read(core._inbox)
    core._data_too_big = reader.too_big
    if core._cut_after is not None and (reader.received >= core._cut_after or complete):
        # disconnect(after_bytes=N): N octets of this chunk, or all of a shorter one.
        cut_after = core._cut_after
        core._close(f"fault: disconnect after {cut_after} bytes of the chunk")
        return ConnectionClosed(core._closed_reason)
    if not complete:
        return NEED_DATA
    core._reader = None
    core._record_client(f"<{reader.size} bytes of message data>")
    if reader.refusal is not None:
        assert reader.return_state is not None
        core.state = reader.return_state
        if reader.by_fault:
            core.reset_transaction()
            _faulting.fault_reply(core, reader.refusal)
        else:
            core.reply(reader.refusal)
        return None
    if core._data_too_big:
        _commands.refuse_message(core, replies.TOO_MUCH_DATA)
        return None
    if not reader.last:
        core.state = State.BDAT
        core.reply(Reply(250, f"{reader.size} octets received"))
        return None
    return _commands.message_complete(core, bytes(core._data or b""), "BDAT")


def smtp_starttls(core: ServerConnection, argument: str | None) -> Event | None:
    if not core.config.starttls:
        core.reply(replies.NOT_OFFERED)
        return None
    if core.tls:
        core.reply(replies.TLS_ALREADY_ACTIVE)
        return None
    if argument:
        core.reply(Reply(501, "Syntax: STARTTLS"))
        return None
    core.reply(replies.READY_FOR_TLS)
    # Whatever the client pipelined after STARTTLS was sent in plaintext
    # and must not run inside the TLS session (RFC 3207 4.2, CVE-2011-0411).
    core._inbox.clear()
    core._lines.reset()
    core.helo = ""
    core.extended = False
    core.enhanced_status_codes = False
    core.authenticated = None
    core._envelope = None
    core.state = State.TLS_PENDING
    return StartTLS()


def tls_started(core: ServerConnection) -> None:
    """The TLS handshake after STARTTLS succeeded: the client starts over
    with EHLO, and nothing learnt before counts (RFC 3207 4.2)."""
    if core.state is not State.TLS_PENDING:
        raise LocalProtocolError(f"no STARTTLS is in progress (state {core.state.name})")
    core.tls = True
    core.state = State.CONNECTED


def smtp_auth(core: ServerConnection, argument: str | None) -> Event | None:
    config = core.config
    if not config.auth_mechanisms:
        core.reply(replies.NOT_OFFERED)
        return None
    if not core.extended:
        # AUTH is an extension: a client that said HELO has not seen it.
        core.reply(replies.SEND_EHLO_FIRST)
        return None
    if core.authenticated is not None:
        core.reply(replies.AUTH_TWICE)
        return None
    if not argument:
        core.reply(Reply(501, "Syntax: AUTH mechanism [initial-response]"))
        return None
    name, _, initial = argument.partition(" ")
    name = name.upper()
    if name not in config.auth_mechanisms:
        core.reply(replies.AUTH_UNKNOWN_MECHANISM)
        return None
    if config.auth_requires_tls and not core.tls:
        core.reply(replies.AUTH_NEEDS_TLS)
        return None
    core._mechanism = MECHANISMS[name](config.hostname)
    return sasl_step(core, lambda mechanism: mechanism.start(initial.strip(" ") or None))


def handle_auth_line(core: ServerConnection, line: bytes | LineTooLong) -> Event | None:
    if core.recorder is not None:
        core.recorder.sasl_response(line == b"*")
    if isinstance(line, LineTooLong) or len(line) + 2 > AUTH_LINE_LIMIT:
        end_sasl(core)
        core.reply(replies.LINE_TOO_LONG)
        return None
    response = line.decode("ascii", errors="replace")
    if response == "*":
        end_sasl(core)
        core.reply(replies.AUTH_CANCELLED)
        return None
    return sasl_step(core, lambda mechanism: mechanism.step(response))


def sasl_step(core: ServerConnection, step: Callable[[Mechanism], str | Credentials]) -> Event | None:
    """Run one step of the exchange: a 334 challenge, the credentials for
    the application, or a 501 that ends the exchange."""
    assert core._mechanism is not None
    try:
        outcome = step(core._mechanism)
    except AuthError as exc:
        end_sasl(core)
        core.reply(Reply(exc.code, f"5.5.2 Error: {exc}"))
        return None
    if isinstance(outcome, str):
        core.state = State.AUTH
        core.reply(Reply(334, outcome))
        return None
    end_sasl(core)
    core._credentials = outcome
    core.state = State.AUTH_PENDING
    return AuthRequested(outcome)


def end_sasl(core: ServerConnection) -> None:
    core._mechanism = None
    core.state = State.GREETED


def answer_auth(core: ServerConnection, accepted: bool, reply: Reply | None = None) -> None:
    """Give the verdict on the last ``AuthRequested``: ``235`` or ``535``
    (or ``reply``, e.g. a ``454`` when the check itself failed)."""
    if core.state is not State.AUTH_PENDING or core._credentials is None:
        raise LocalProtocolError(f"no credentials wait for an answer (state {core.state.name})")
    if accepted:
        core.authenticated = core._credentials
    core._credentials = None
    core.state = State.GREETED
    core.reply(reply or (replies.AUTH_OK if accepted else replies.AUTH_FAILED))
