"""The sequence table in ``state.py`` on its own (h11's ``test_state.py`` habit)."""

from __future__ import annotations

import pytest

from pytest_smtpd import replies
from pytest_smtpd.connection import ServerConnection
from pytest_smtpd.replies import Reply
from pytest_smtpd.state import COMMAND_STATES, State, gate_error, sequence_error, transaction_state

BAD_SEQUENCE = Reply(503, "Error: bad sequence of commands")
CONNECTED, GREETED, MAIL, RCPT, BDAT = State.CONNECTED, State.GREETED, State.MAIL, State.RCPT, State.BDAT

#: verb -> the reply in each command state (None: in sequence), written out
#: independently of the table under test.
EXPECTED: dict[str, dict[State, Reply | None]] = {
    "MAIL": {
        CONNECTED: replies.SEND_HELO_FIRST,
        GREETED: None,
        MAIL: replies.NESTED_MAIL,
        RCPT: replies.NESTED_MAIL,
        BDAT: replies.NESTED_MAIL,
    },
    "RCPT": {
        CONNECTED: replies.SEND_HELO_FIRST,
        GREETED: replies.NEED_MAIL,
        MAIL: None,
        RCPT: None,
        BDAT: BAD_SEQUENCE,
    },
    "DATA": {
        CONNECTED: replies.SEND_HELO_FIRST,
        GREETED: replies.NEED_RCPT,
        MAIL: replies.NEED_RCPT,
        RCPT: None,
        BDAT: replies.DATA_AFTER_BDAT,
    },
    "STARTTLS": {
        CONNECTED: None,
        GREETED: None,
        MAIL: replies.NOT_IN_TRANSACTION,
        RCPT: replies.NOT_IN_TRANSACTION,
        BDAT: replies.NOT_IN_TRANSACTION,
    },
    "AUTH": {
        CONNECTED: replies.SEND_EHLO_FIRST,
        GREETED: None,
        MAIL: replies.NOT_IN_TRANSACTION,
        RCPT: replies.NOT_IN_TRANSACTION,
        BDAT: replies.NOT_IN_TRANSACTION,
    },
    **{
        verb: dict.fromkeys((CONNECTED, GREETED, MAIL, RCPT, BDAT), None)
        for verb in ("HELO", "EHLO", "LHLO", "NOOP", "QUIT", "RSET", "HELP", "VRFY", "EXPN")
    },
}
NOT_READING_COMMANDS = [
    State.DATA,
    State.CHUNK,
    State.MESSAGE_PENDING,
    State.AUTH,
    State.AUTH_PENDING,
    State.TLS_PENDING,
    State.CLOSED,
]


def test_command_states() -> None:
    assert frozenset({CONNECTED, GREETED, MAIL, RCPT, BDAT, State.REJECTED}) == COMMAND_STATES
    assert set(State) == COMMAND_STATES | set(NOT_READING_COMMANDS)


def test_table_covers_every_builtin_verb() -> None:
    # A new built-in command must get its row in EXPECTED.
    assert set(EXPECTED) == ServerConnection.builtin_verbs()


@pytest.mark.parametrize(("verb", "state"), [(verb, state) for verb in EXPECTED for state in EXPECTED[verb]])
def test_sequence_error_in_command_states(verb: str, state: State) -> None:
    assert sequence_error(verb, state) == EXPECTED[verb][state]


@pytest.mark.parametrize("state", NOT_READING_COMMANDS)
@pytest.mark.parametrize("verb", [*sorted(EXPECTED), "XYZZY"])
def test_no_command_is_in_sequence_outside_command_states(verb: str, state: State) -> None:
    assert sequence_error(verb, state) == BAD_SEQUENCE


@pytest.mark.parametrize("state", [CONNECTED, GREETED, MAIL, RCPT, BDAT])
def test_unknown_verb_is_not_the_tables_business(state: State) -> None:
    # Unknown verbs get their 500 from the connection, not a 503 from here.
    assert sequence_error("XYZZY", state) is None


@pytest.mark.parametrize("verb", [*sorted(EXPECTED), "BDAT", "XYZZY"])
def test_a_session_refused_at_its_greeting_serves_only_quit(verb: str) -> None:
    """RFC 5321 3.1: after a 554 greeting, 503 to every command but QUIT."""
    expected = None if verb == "QUIT" else replies.NO_SERVICE
    assert sequence_error(verb, State.REJECTED) == expected


def test_every_sequence_reply_is_a_503() -> None:
    errors = [sequence_error(verb, state) for verb in EXPECTED for state in State]
    assert {error.code for error in errors if error is not None} == {503}


@pytest.mark.parametrize("verb", ["HELO", "MAIL", "RCPT", "DATA", "AUTH", "RSET", "VRFY", "EXPN", "HELP"])
def test_tls_gate_refuses_all_but_noop_ehlo_starttls_quit(verb: str) -> None:
    """RFC 3207 4: every command but NOOP, EHLO, STARTTLS and QUIT."""
    assert gate_error(verb, tls_missing=True, auth_missing=False) == replies.STARTTLS_FIRST
    assert gate_error(verb, tls_missing=False, auth_missing=False) is None


@pytest.mark.parametrize("verb", ["MAIL", "RCPT", "DATA", "VRFY", "EXPN", "HELP"])
def test_auth_gate_refuses_all_but_the_session_commands(verb: str) -> None:
    """RFC 4954 6: every command but AUTH, EHLO, HELO, NOOP, RSET and QUIT."""
    assert gate_error(verb, tls_missing=False, auth_missing=True) == replies.AUTH_FIRST


@pytest.mark.parametrize("verb", ["EHLO", "LHLO", "NOOP", "QUIT", "STARTTLS"])
def test_gates_let_session_commands_through(verb: str) -> None:
    assert gate_error(verb, tls_missing=True, auth_missing=True) is None


@pytest.mark.parametrize("verb", ["HELO", "RSET", "AUTH"])
def test_the_auth_gate_lets_helo_rset_and_auth_through(verb: str) -> None:
    assert gate_error(verb, tls_missing=False, auth_missing=True) is None


def test_auth_is_not_gated_by_auth() -> None:
    assert gate_error("AUTH", tls_missing=False, auth_missing=True) is None


@pytest.mark.parametrize(
    ("state", "reply"),
    [
        (CONNECTED, replies.SEND_HELO_FIRST),
        (GREETED, replies.NEED_RCPT),
        (MAIL, replies.NEED_RCPT),
        (RCPT, None),
        (BDAT, None),
    ],
)
def test_bdat_sequence(state: State, reply: Reply | None) -> None:
    assert sequence_error("BDAT", state) == reply


@pytest.mark.parametrize(
    ("state", "sender", "recipients", "expected"),
    [
        (GREETED, False, False, GREETED),
        (GREETED, True, False, MAIL),
        (GREETED, True, True, RCPT),
        (MAIL, True, True, RCPT),
        (RCPT, True, False, MAIL),
        (RCPT, True, True, RCPT),
        (CONNECTED, True, True, CONNECTED),
        (BDAT, True, True, BDAT),
    ],
)
def test_an_envelope_filled_from_outside_moves_the_state_by_the_table(
    state: State, sender: bool, recipients: bool, expected: State
) -> None:
    assert transaction_state(state, sender=sender, recipients=recipients) is expected
