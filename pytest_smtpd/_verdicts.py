"""What the application makes of a session's events: the message handler's
verdict and the authenticator's yes or no, given at once or awaited as the
session's busy task (which ``abort()`` cancels; a handler that stopped its
own server gets its verdict said first), the wait of a delay fault, and
going on once a wait is over. Functions of the session
(``SessionProtocol``), as ``_handshake.py``'s are.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Sequence
from typing import TYPE_CHECKING, TypeAlias

from . import replies
from .auth import Credentials
from .errors import LocalProtocolError
from .events import MessageReceived
from .message import Message
from .replies import Reply

if TYPE_CHECKING:
    from .transport import SessionProtocol

log = logging.getLogger("pytest_smtpd")

#: A message handler's answer: None for ``250 OK``, a reply line, a Reply, or
#: (LMTP) one of those per recipient.
Verdict: TypeAlias = Reply | str | Sequence[Reply | str | None] | None


def to_reply(verdict: Verdict) -> Reply | list[Reply] | None:
    """A message handler's answer as a reply: None is ``250 OK``, a string
    like ``"550 No such user"`` is parsed, a list (LMTP) gives one per
    recipient. A verdict must be 2xx, 4xx or 5xx: a 3xx (or any other
    code) would leave the client waiting for more, so it raises ValueError."""
    if verdict is None:
        return verdict
    if isinstance(verdict, Reply | str):
        return _verdict_reply(verdict)
    if isinstance(verdict, Sequence):
        return [_recipient_reply(item) for item in verdict]
    raise TypeError(f"a message handler must return None, a str or a Reply, not {type(verdict).__name__}")


def _verdict_reply(item: Reply | str) -> Reply:
    reply = Reply.parse(item) if isinstance(item, str) else item
    if reply.code // 100 not in (2, 4, 5):
        raise ValueError(f"a message verdict must be a 2xx, 4xx or 5xx reply, not {reply.code} ({reply})")
    return reply


def _recipient_reply(item: Reply | str | None) -> Reply:
    return replies.OK if item is None else _verdict_reply(item)


def accepted(reply: Reply | list[Reply] | None) -> bool:
    """Whether a verdict, as ``to_reply`` gives it, accepts the message (for
    LMTP: for anyone)."""
    if isinstance(reply, list):
        return any(item.is_success for item in reply)
    return reply is None or reply.is_success


def message(session: SessionProtocol, event: MessageReceived) -> Message:
    """The message the handler is given: the event's, with the session's
    peer, TLS and record (lists copied: the handler may keep them)."""
    envelope = event.envelope
    return Message(
        peer=session.peer,
        mail_from=envelope.mail_from or "",
        rcpt_tos=list(envelope.rcpt_tos),
        data=event.data,
        mail_options=list(envelope.mail_options) if envelope.mail_options else None,
        rcpt_options=list(envelope.rcpt_options) if envelope.rcpt_options else None,
        helo=event.helo,
        tls=session.tls,
        auth_identity=event.auth_identity,
        session=session.record,
        transfer=event.transfer,
        options_per_rcpt=[list(options) for options in per_rcpt]
        if any(per_rcpt := envelope.options_per_rcpt)
        else None,
    )


async def delay(session: SessionProtocol, seconds: float) -> None:
    """A delay fault: the step runs ``seconds`` later, on the loop, so
    other sessions and servers go on meanwhile."""
    await asyncio.sleep(seconds)
    session._busy = None
    session._touch()
    resume(session)


def answer(session: SessionProtocol, verdict: Verdict) -> None:
    """Say the handler's verdict (a ``451`` for one that cannot be said)."""
    try:
        session.core.answer_message(to_reply(verdict))
    except (TypeError, ValueError, LocalProtocolError):
        # Not a reply, or (LMTP) not one per recipient: the client must
        # still hear something, and the session goes on.
        log.exception("message handler gave a verdict that cannot be sent: %r", verdict)
        session.core.answer_message(replies.PROCESSING_ERROR)


async def await_verdict(session: SessionProtocol, pending: Awaitable[Verdict]) -> None:
    try:
        verdict = await pending
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("message handler failed for a message from %s", session.peer)
        verdict = replies.PROCESSING_ERROR
    session._busy = None
    answer(session, verdict)
    if session._abort_after is not None:
        # This handler stopped its own server: its verdict, then the 421.
        session.abort(session._abort_after)
        return
    resume(session)


def resume(session: SessionProtocol) -> None:
    """After an async handler or authenticator answered: read again
    (unless the peer is not reading) and go on with what it sent meanwhile.
    The wait was not the client's idleness: the idle clock starts again."""
    session._touch()
    if session.transport is not None and not session.transport.is_closing():
        if not session._writing_paused:
            session.transport.resume_reading()
        session._process()


def authenticate(session: SessionProtocol, credentials: Credentials) -> Awaitable[bool] | None:
    """Answer the AUTH now, or return the awaitable an ``async``
    authenticator gave (a coroutine is never taken for a yes)."""
    try:
        ok = session.owner.authenticate(credentials)
    except Exception:
        log.exception("authenticator failed for %r from %s", credentials, session.peer)
        session.core.answer_auth(False, replies.AUTH_TEMPORARY_FAILURE)
        return None
    if inspect.isawaitable(ok):
        return ok
    answer_auth(session, credentials, ok)
    return None


def answer_auth(session: SessionProtocol, credentials: Credentials, ok: object) -> None:
    if not ok:
        log.info("AUTH %s failed for %r from %s", credentials.mechanism, credentials.username, session.peer)
    session.core.answer_auth(bool(ok))


async def await_auth(session: SessionProtocol, credentials: Credentials, pending: Awaitable[bool]) -> None:
    try:
        ok = await pending
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("authenticator failed for %r from %s", credentials, session.peer)
        session._busy = None
        session.core.answer_auth(False, replies.AUTH_TEMPORARY_FAILURE)
    else:
        session._busy = None
        answer_auth(session, credentials, ok)
    resume(session)
