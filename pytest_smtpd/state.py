"""The session states and the one table saying which command may come when.

Everything that decides whether a command is in sequence lives here, so the
command handlers in ``connection.py`` never check the state themselves.
"""

from __future__ import annotations

from enum import Enum

from . import replies
from .replies import Reply

__all__ = ["COMMAND_STATES", "State", "gate_error", "sequence_error", "transaction_state"]


class State(Enum):
    """Where a session is. ``_ALLOWED`` below says in which states each
    verb is in sequence, ``_OUT_OF_SEQUENCE`` the ``503`` for the others."""

    #: The greeting was sent; the client has not said HELO or EHLO yet.
    CONNECTED = "CONNECTED"
    #: HELO/EHLO done, no mail transaction open.
    GREETED = "GREETED"
    #: MAIL FROM accepted, no recipient yet.
    MAIL = "MAIL"
    #: At least one RCPT TO accepted.
    RCPT = "RCPT"
    #: Reading the message after DATA.
    DATA = "DATA"
    #: Reading the octets of a BDAT chunk.
    CHUNK = "CHUNK"
    #: Chunks of a message received (BDAT without LAST): more BDAT to come.
    BDAT = "BDAT"
    #: The message is complete and waits for the application's verdict.
    MESSAGE_PENDING = "MESSAGE_PENDING"
    #: In a SASL exchange: lines are AUTH responses, not commands.
    AUTH = "AUTH"
    #: The client's credentials wait for the application's verdict.
    AUTH_PENDING = "AUTH_PENDING"
    #: STARTTLS answered with 220; the transport is doing the handshake.
    TLS_PENDING = "TLS_PENDING"
    #: The greeting was a 554 (a CONNECT fault): every command but QUIT
    #: gets a 503 and nothing is kept (RFC 5321 3.1).
    REJECTED = "REJECTED"
    #: QUIT answered, the peer hung up, or the session was aborted.
    CLOSED = "CLOSED"


#: The states in which a command line is read.
COMMAND_STATES = frozenset({State.CONNECTED, State.GREETED, State.MAIL, State.RCPT, State.BDAT, State.REJECTED})

#: Where a verb not listed in ``_ALLOWED`` is in sequence: anywhere but in a
#: session refused at its greeting.
_ANY = COMMAND_STATES - {State.REJECTED}

#: verb -> the states in which it is in sequence. Verbs not listed are
#: allowed in every command state.
_ALLOWED: dict[str, frozenset[State]] = {
    "MAIL": frozenset({State.GREETED}),
    "RCPT": frozenset({State.MAIL, State.RCPT}),
    "DATA": frozenset({State.RCPT}),
    "BDAT": frozenset({State.RCPT, State.BDAT}),
    "STARTTLS": frozenset({State.CONNECTED, State.GREETED}),
    "AUTH": frozenset({State.GREETED}),
}

#: (verb, state) -> the 503 reply for a command out of sequence.
_OUT_OF_SEQUENCE: dict[tuple[str, State], Reply] = {
    ("MAIL", State.CONNECTED): replies.SEND_HELO_FIRST,
    ("MAIL", State.MAIL): replies.NESTED_MAIL,
    ("MAIL", State.RCPT): replies.NESTED_MAIL,
    ("RCPT", State.CONNECTED): replies.SEND_HELO_FIRST,
    ("RCPT", State.GREETED): replies.NEED_MAIL,
    ("DATA", State.CONNECTED): replies.SEND_HELO_FIRST,
    ("DATA", State.GREETED): replies.NEED_RCPT,
    ("DATA", State.MAIL): replies.NEED_RCPT,
    ("DATA", State.BDAT): replies.DATA_AFTER_BDAT,
    ("MAIL", State.BDAT): replies.NESTED_MAIL,
    ("STARTTLS", State.BDAT): replies.NOT_IN_TRANSACTION,
    ("AUTH", State.BDAT): replies.NOT_IN_TRANSACTION,
    ("BDAT", State.CONNECTED): replies.SEND_HELO_FIRST,
    ("BDAT", State.GREETED): replies.NEED_RCPT,
    ("BDAT", State.MAIL): replies.NEED_RCPT,
    ("STARTTLS", State.MAIL): replies.NOT_IN_TRANSACTION,
    ("STARTTLS", State.RCPT): replies.NOT_IN_TRANSACTION,
    ("AUTH", State.CONNECTED): replies.SEND_EHLO_FIRST,
    ("AUTH", State.MAIL): replies.NOT_IN_TRANSACTION,
    ("AUTH", State.RCPT): replies.NOT_IN_TRANSACTION,
}

#: The commands answered before TLS when STARTTLS is required: RFC 3207 4
#: gives every other command a 530 (LHLO being LMTP's EHLO).
TLS_EXEMPT = frozenset({"NOOP", "EHLO", "LHLO", "STARTTLS", "QUIT"})
#: The commands answered before a login when AUTH is required (RFC 4954 6),
#: and STARTTLS, which needs no login and often has to come first.
AUTH_EXEMPT = frozenset({"AUTH", "EHLO", "LHLO", "HELO", "NOOP", "RSET", "QUIT", "STARTTLS"})


def sequence_error(verb: str, state: State) -> Reply | None:
    """The reply for ``verb`` arriving in ``state``, or None if it is in sequence."""
    if state in _ALLOWED.get(verb, _ANY):
        return None
    if state is State.REJECTED:
        return None if verb == "QUIT" else replies.NO_SERVICE
    return _OUT_OF_SEQUENCE.get((verb, state), Reply(503, "Error: bad sequence of commands"))


def gate_error(verb: str, *, tls_missing: bool, auth_missing: bool) -> Reply | None:
    """The 530 for a command that needs TLS or a login the session lacks."""
    if tls_missing and verb not in TLS_EXEMPT:
        return replies.STARTTLS_FIRST
    if auth_missing and verb not in AUTH_EXEMPT:
        return replies.AUTH_FIRST
    return None


def transaction_state(state: State, *, sender: bool, recipients: bool) -> State:
    """The state an envelope filled from outside the core (a stdlib-style
    channel setting ``mailfrom`` or ``rcpttos`` itself) puts a session in:
    MAIL once there is a sender, RCPT once there are recipients, MAIL again
    when they are gone. Other states are left as they are."""
    if state is State.GREETED and sender:
        state = State.MAIL
    if state is State.MAIL and recipients:
        return State.RCPT
    if state is State.RCPT and not recipients:
        return State.MAIL
    return state
