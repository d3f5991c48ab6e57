"""What the SMTP and LMTP commands do (HELO, EHLO, LHLO, MAIL, RCPT, DATA,
RSET, NOOP, QUIT, HELP, VRFY, EXPN) and what becomes of a message read after
DATA: functions of the session they run in (``ServerConnection``), which
calls them from its table of verbs once the state table has let the
command through.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from . import _faulting, replies
from ._parse import ParseError, parse_params, parse_path, strip_keyword
from ._readers import DataReader
from .dsn import DSNError, check_envid, check_notify, check_orcpt
from .errors import LocalProtocolError
from .events import (
    NEED_DATA,
    ConnectionClosed,
    Envelope,
    Event,
    MessageReceived,
    NeedData,
)
from .replies import Reply
from .state import State

if TYPE_CHECKING:
    from collections.abc import Callable

    from .connection import ServerConnection


#: Command syntax, shown by HELP and in 501 replies.
SYNTAX: dict[str, str] = {
    "EHLO": "EHLO hostname",
    "LHLO": "LHLO hostname",
    "HELO": "HELO hostname",
    "MAIL": "MAIL FROM:<address>",
    "RCPT": "RCPT TO:<address>",
    "DATA": "DATA",
    "RSET": "RSET",
    "NOOP": "NOOP",
    "QUIT": "QUIT",
    "VRFY": "VRFY <address>",
}
PARAMS_SUFFIX = " [SP <mail-parameters>]"


def syntax_error(core: ServerConnection, verb: str) -> Reply:
    text = SYNTAX[verb]
    if core.extended and verb in ("MAIL", "RCPT"):
        text += PARAMS_SUFFIX
    return Reply(501, f"Syntax: {text}")


def greet(core: ServerConnection, verb: str, argument: str | None) -> bool:
    if not argument or any(char < " " or char == "\x7f" for char in argument):
        core.reply(syntax_error(core, verb))
        return False
    # A second HELO/EHLO is legal and resets the transaction (RFC 5321 4.1.4).
    core.enhanced_status_codes = False
    core.helo = argument
    core.extended = verb in ("EHLO", "LHLO")
    core.reset_transaction()
    return True


def smtp_helo(core: ServerConnection, argument: str | None) -> None:
    if greet(core, "HELO", argument):
        core.reply(Reply(250, core.config.hostname))


def smtp_ehlo(core: ServerConnection, argument: str | None) -> None:
    if greet(core, "EHLO", argument):
        # The EHLO reply itself carries no code (RFC 2034 3): agreed after it.
        core.reply(Reply(250, "\n".join([core.config.hostname, *core.ehlo_keywords()])))
        core.enhanced_status_codes = core.config.enhanced_status_codes


def smtp_lhlo(core: ServerConnection, argument: str | None) -> None:
    if greet(core, "LHLO", argument):
        core.reply(Reply(250, "\n".join([core.config.hostname, *core.ehlo_keywords()])))
        core.enhanced_status_codes = core.config.enhanced_status_codes


def smtp_noop(core: ServerConnection, argument: str | None) -> None:
    # RFC 5321 4.1.1.9: a NOOP argument is allowed and ignored.
    core.reply(replies.OK)


def smtp_quit(core: ServerConnection, argument: str | None) -> Event:
    core.reply(replies.BYE)
    core._close("QUIT")
    return ConnectionClosed("QUIT")


def smtp_rset(core: ServerConnection, argument: str | None) -> None:
    if argument:
        core.reply(syntax_error(core, "RSET"))
        return
    core.reset_transaction()
    core.reply(replies.OK)


def path_argument(
    core: ServerConnection, verb: str, keyword: str, argument: str | None
) -> tuple[str, list[tuple[str, str | None]]] | Reply:
    """The address and parameters of MAIL/RCPT, or the reply refusing them."""
    rest = strip_keyword(keyword, argument) if argument else None
    if rest is None:
        return syntax_error(core, verb)
    try:
        address, params_text = parse_path(rest)
        params = parse_params(params_text)
    except ParseError as exc:
        return Reply(exc.code, f"Error: {exc}")
    if params and not core.extended:
        return syntax_error(core, verb)
    if len({key for key, _ in params}) != len(params):
        return Reply(501, "Error: duplicate parameter")
    return address, params


def dsn_option(core: ServerConnection, key: str, value: str, check: Callable[[str], None], options: list[str]) -> bool:
    """Whether the DSN parameter ``key=value`` (RFC 3461) passes ``check``:
    then it joins ``options``; otherwise the reply is the check's error."""
    try:
        check(value)
    except DSNError as exc:
        core.reply(Reply(exc.code, f"Error: {exc}"))
        return False
    options.append(f"{key}={value}")
    return True


def smtp_mail(core: ServerConnection, argument: str | None) -> None:
    limit = core.config.max_messages_per_connection
    if limit and core.messages_received >= limit:
        core.reply(replies.TOO_MANY_MESSAGES)
        core._close("limit: max_messages_per_connection")
        return
    parsed = path_argument(core, "MAIL", "FROM:", argument)
    if isinstance(parsed, Reply):
        core.reply(parsed)
        return
    address, params = parsed
    config = core.config
    options: list[str] = []
    smtputf8 = False
    for key, value in params:
        if key == "BODY" and not config.decode_data:
            binary = config.enable_CHUNKING and config.binarymime
            bodies = ("7BIT", "8BITMIME", "BINARYMIME") if binary else ("7BIT", "8BITMIME")
            if value is None or value.upper() not in bodies:
                core.reply(replies.BAD_BODY_CHUNKING if binary else replies.BAD_BODY)
                return
            options.append(f"BODY={value.upper()}")
        elif key == "SMTPUTF8" and config.enable_SMTPUTF8:
            if value is not None:
                core.reply(replies.SMTPUTF8_NO_ARGS)
                return
            smtputf8 = True
            options.append("SMTPUTF8")
        elif key == "SIZE":
            if value is None or not (value.isascii() and value.isdigit()) or len(value) > 20:
                core.reply(syntax_error(core, "MAIL"))
                return
            if config.data_size_limit and int(value) > config.data_size_limit:
                core.reply(replies.MESSAGE_TOO_BIG)
                return
            options.append(f"SIZE={value}")
        elif key == "RET" and config.enable_DSN and value and value.upper() in ("FULL", "HDRS"):
            options.append(f"RET={value.upper()}")
        elif key == "ENVID" and config.enable_DSN and value:
            if not dsn_option(core, key, value, check_envid, options):
                return
        else:
            core.reply(replies.MAIL_PARAMS_UNKNOWN)
            return
    if not address.isascii() and not smtputf8:
        core.reply(replies.NEEDS_SMTPUTF8)
        return
    # Interned: a test run sees the same few addresses again and again,
    # and every held message keeps them (one string each, not one per message).
    core.envelope = Envelope(mail_from=sys.intern(address), mail_options=options, smtputf8=smtputf8)
    core.state = State.MAIL
    core.reply(replies.OK)


def smtp_rcpt(core: ServerConnection, argument: str | None) -> None:
    parsed = path_argument(core, "RCPT", "TO:", argument)
    if isinstance(parsed, Reply):
        core.reply(parsed)
        return
    address, params = parsed
    if not address:
        core.reply(syntax_error(core, "RCPT"))
        return
    options: list[str] = []
    for key, value in params:
        if key == "NOTIFY" and core.config.enable_DSN and value:
            # check_notify reads the keywords in upper case too.
            if not dsn_option(core, key, value.upper(), check_notify, options):
                return
        elif key == "ORCPT" and core.config.enable_DSN and value:
            if not dsn_option(core, key, value, check_orcpt, options):
                return
        else:
            core.reply(replies.RCPT_PARAMS_UNKNOWN)
            return
    if not address.isascii() and not core.envelope.smtputf8:
        core.reply(replies.NEEDS_SMTPUTF8)
        return
    if core.config.max_recipients and len(core.envelope.rcpt_tos) >= core.config.max_recipients:
        core.reply(replies.TOO_MANY_RECIPIENTS)
        return
    core.envelope.rcpt_tos.append(sys.intern(address))
    core.envelope.rcpt_options.extend(options)
    core.envelope.options_per_rcpt.append(options)
    core.state = State.RCPT
    core.reply(replies.OK)


def smtp_data(core: ServerConnection, argument: str | None) -> None:
    if argument:
        core.reply(syntax_error(core, "DATA"))
        return
    if "BODY=BINARYMIME" in core.envelope.mail_options:
        core.reply(replies.BINARYMIME_NEEDS_BDAT)  # RFC 3030 3
        return
    core._reader = DataReader(core.config.data_size_limit)
    core._cut_after, core._cut_pending = core._cut_pending, None
    core.state = State.DATA
    core.reply(replies.START_DATA)


def read_data(core: ServerConnection) -> Event | NeedData | None:
    """Collect the message up to CRLF.CRLF (see ``DataReader``)."""
    reader = core._reader
    assert isinstance(reader, DataReader)
    if core._cut_after is not None:
        reader.feed(core._inbox)
        if reader.octets >= core._cut_after or reader.end_seen():
            # disconnect(after_bytes=N): N octets received (kept or not:
            # past the size limit none are), or all of a shorter message.
            # The message is dropped, never handed over.
            core._close(f"fault: disconnect after {core._cut_after} bytes of the message")
            return ConnectionClosed(core._closed_reason)
    message = reader.read(core._inbox)
    if message is None:
        return NEED_DATA
    core._reader = None
    core._record_client(f"<{reader.octets} bytes of message data>")
    if reader.too_big:
        refuse_message(core, replies.TOO_MUCH_DATA)
        return None
    return message_complete(core, message, "DATA")


def message_complete(core: ServerConnection, message: bytes, transfer: str) -> Event | None:
    """A whole message, after the final dot or ``BDAT ... LAST``: the
    MESSAGE step, which a fault may decide, else the event."""
    core._data = None
    identity = None
    if core.authenticated is not None:
        identity = core.authenticated.authzid or core.authenticated.username
    event = MessageReceived(
        envelope=core.envelope, data=message, helo=core.helo, auth_identity=identity, transfer=transfer
    )
    # The message is whole: whatever a fault makes of it, it is no longer
    # being read (an abort must not count it as cut off).
    core.state = State.MESSAGE_PENDING
    faults = core.faults
    if faults is not None and faults.rules:
        fault = _faulting.fault(core, "MESSAGE", message.decode("utf-8", "replace"))
        if fault is not None:
            return _faulting.fire(
                core, "MESSAGE", fault, lambda: deliver(core, event), functools.partial(refuse_message, core)
            )
    core.messages_received += 1
    return event


def deliver(core: ServerConnection, event: MessageReceived) -> Event:
    """Hand the message over after a delay fault."""
    core.state = State.MESSAGE_PENDING
    core.messages_received += 1
    return event


def replies_per_message(core: ServerConnection) -> int:
    """How many replies a message's verdict takes: LMTP gives one per
    recipient, in RCPT order (RFC 2033 4.2), SMTP one. The only place
    this rule is written."""
    return len(core.envelope.rcpt_tos) if core.config.lmtp else 1


def answer_message(core: ServerConnection, reply: Reply | Sequence[Reply] | None = None) -> None:
    """Give the verdict on the last ``MessageReceived`` (None: ``250 OK``).

    In LMTP mode a sequence gives one reply per recipient, in RCPT order;
    a single reply is repeated for each."""
    if core.state is not State.MESSAGE_PENDING:
        raise LocalProtocolError(f"no message waits for an answer (state {core.state.name})")
    count = replies_per_message(core)
    if isinstance(reply, Sequence):
        if not core.config.lmtp:
            raise LocalProtocolError("one reply per recipient is for LMTP sessions only")
        if len(reply) != count:
            raise LocalProtocolError(f"{len(reply)} replies for {count} recipients")
        verdicts = list(reply)
    else:
        verdicts = [reply or replies.OK] * count
    for verdict in verdicts:
        core.reply(verdict)
    core.reset_transaction()


def refuse_message(core: ServerConnection, reply: Reply) -> None:
    """Refuse the message (too big, or a reply fault after the dot): it
    is not handed over, and the transaction ends."""
    count = replies_per_message(core)
    core.reset_transaction()
    _faulting.fault_reply(core, reply, count)


def smtp_help(core: ServerConnection, argument: str | None) -> None:
    commands = supported_commands(core)
    supported = "Supported commands: " + " ".join(commands)
    if not argument:
        core.reply(Reply(214, supported))
        return
    verb = argument.upper()
    if verb not in commands:
        core.reply(Reply(501, supported))
        return
    text = SYNTAX[verb] + (PARAMS_SUFFIX if core.extended and verb in ("MAIL", "RCPT") else "")
    core.reply(Reply(214, f"Syntax: {text}"))


def smtp_vrfy(core: ServerConnection, argument: str | None) -> None:
    if not argument:
        core.reply(syntax_error(core, "VRFY"))
        return
    core.reply(replies.VRFY_REPLY)


def smtp_expn(core: ServerConnection, argument: str | None) -> None:
    core.reply(replies.EXPN_REPLY)


def supported_commands(core: ServerConnection) -> list[str]:
    return [verb for verb in SYNTAX if verb not in core._other_protocol_greetings]
