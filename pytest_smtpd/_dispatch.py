"""Which handling a command gets once its line is read: the table of the
verbs the core answers itself, the 530s of ``require_tls`` and
``auth_required``, the sequence table (``state.py``), or the application
for a delegated verb (``CommandReceived``), or what a fault rule makes of
it (``_faulting.py``). Functions of the session
(``ServerConnection``), which binds the public ones as its methods.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from . import _commands, _extensions, _faulting, replies
from .events import CommandReceived, Event, FaultFired
from .replies import Reply
from .state import State, gate_error, sequence_error

if TYPE_CHECKING:
    from .connection import ServerConnection

_Handler = Callable[["ServerConnection", "str | None"], "Event | None"]

#: The verbs the core answers itself, and the function of the session that does.
HANDLERS: dict[str, _Handler] = {
    "HELO": _commands.smtp_helo,
    "EHLO": _commands.smtp_ehlo,
    "LHLO": _commands.smtp_lhlo,
    "NOOP": _commands.smtp_noop,
    "QUIT": _commands.smtp_quit,
    "MAIL": _commands.smtp_mail,
    "RCPT": _commands.smtp_rcpt,
    "RSET": _commands.smtp_rset,
    "DATA": _commands.smtp_data,
    "HELP": _commands.smtp_help,
    "VRFY": _commands.smtp_vrfy,
    "EXPN": _commands.smtp_expn,
    "STARTTLS": _extensions.smtp_starttls,
    "AUTH": _extensions.smtp_auth,
}

#: Greetings that belong to one protocol: an LMTP session knows only LHLO.
LMTP_ONLY = frozenset({"LHLO"})
SMTP_ONLY = frozenset({"HELO", "EHLO"})


def dispatch(core: ServerConnection, verb: str, argument: str | None) -> Event | None:
    """Run a command read from the client (or held back by a fault): the
    built-in handling, or a ``CommandReceived`` for a delegated verb."""
    if core.state is State.REJECTED and verb != "QUIT":
        # Refused at the greeting: no command, built-in, delegated or
        # unknown, is served (RFC 5321 3.1).
        core.reply(replies.NO_SERVICE)
        return None
    if verb not in core.delegated_verbs:
        return core.handle_command(verb, argument)
    # A subclass's own command (or its override of a built-in one) owns
    # its sequencing, but not the 530s: require_starttls and
    # auth_required must not have a way around them.
    error = core._gate_error(verb)
    if error is not None:
        core.reply(error)
        return None
    return CommandReceived(verb, argument)


def handle_command(core: ServerConnection, verb: str, argument: str | None) -> Event | None:
    """Run the built-in handling of a command."""
    handler = HANDLERS.get(verb)
    if handler is None or verb in core._other_protocol_greetings:
        core.reply(replies.unknown_command(verb))
        return None
    # The 530s come first: RFC 3207 4 and RFC 4954 6 give them to every
    # gated command, so RCPT and DATA get one too, not a 503 for the MAIL
    # that could not be given.
    error = core._gate_error(verb) or sequence_error(verb, core.state)
    if error is not None:
        core.reply(error)
        return None
    return handler(core, argument)


def session_gate_error(core: ServerConnection, verb: str) -> Reply | None:
    """The 530 ``verb`` gets in this session, if any (see ``gate_error``)."""
    return gate_error(
        verb,
        tls_missing=core.config.require_tls and not core.tls,
        auth_missing=core.config.auth_required and core.authenticated is None,
    )


def fault_command(core: ServerConnection, verb: str, argument: str | None, chunk: bool) -> FaultFired | None:
    """The command's step when the server has fault rules: what a rule that
    fires makes of it (see ``_faulting.fire``), or None when none does."""
    core._cut_pending = None  # a delegated DATA that started no message
    fault = _faulting.fault(core, verb, argument or "")
    if fault is None:
        return None
    if chunk:
        # Its chunk follows whatever the answer: a refusal is given once
        # the chunk is read, like the core's own.
        return _faulting.fire(
            core,
            verb,
            fault,
            lambda: _extensions.smtp_bdat(core, argument),
            lambda reply: _extensions.refuse_chunk(core, argument, reply),
        )
    return _faulting.fire(core, verb, fault, lambda: dispatch(core, verb, argument))
