"""What a stdlib-style ``SMTPChannel`` (``compat.py``) does to a session
beside the driving API: it reads command lines itself (``deliver_lines``
and ``LineReceived``) and hands back those it leaves to the core, and it
fills the envelope from outside. Functions of the session
(``ServerConnection``), which binds them as its methods.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .state import transaction_state

if TYPE_CHECKING:
    from .connection import ServerConnection


def process_line(core: ServerConnection, line: bytes) -> None:
    """Hand back a line from ``LineReceived``: ``next_event()`` runs it as
    a command next, before reading further input."""
    core._delivered_at = None  # recorded as it runs
    if core._returned is None:
        core._returned = []
    core._returned.append(line)


def envelope_changed(core: ServerConnection) -> None:
    """The envelope was filled from outside (a stdlib-style channel set
    its sender or recipients): the state follows, as the table in
    ``state.py`` says, so that RCPT and DATA find them in sequence."""
    envelope = core.envelope
    sender = envelope.mail_from is not None
    core.state = transaction_state(core.state, sender=sender, recipients=bool(envelope.rcpt_tos))
