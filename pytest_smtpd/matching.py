"""Criteria for ``assert_sent`` and ``messages.filter``: checking a message
criterion by criterion, and explaining a near miss. Pure functions over
``Message`` objects and session records; no I/O."""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Union

from .message import Message, same_address

__all__ = ["CRITERIA", "Check", "Criterion", "check", "explain_miss", "matcher", "validate"]

#: A criterion's value: a str, a compiled regex (searched), or a predicate.
Criterion = Union[str, "re.Pattern[str]", Callable[[Any], bool]]

#: Criteria on a list of addresses: the address is among them.
_ADDRESS_LISTS = {"to": "to", "cc": "cc", "bcc": "bcc", "rcpt_to": "rcpt_tos"}
#: Criteria on one address.
_ADDRESSES = {"from_": "from_", "mail_from": "mail_from"}
#: Criteria on a text that must contain the value.
_CONTAINING = ("text", "html")
#: Every criterion, in the order a failure lists them.
CRITERIA = (
    "from_", "mail_from", "to", "cc", "bcc", "rcpt_to", "subject", "header", "text", "html", "attachment", "dkim_valid"
)  # fmt: skip
#: How much of a long value a failure message shows.
SHOWN = 120


def _short(value: object) -> str:
    shown = repr(value)
    return shown if len(shown) <= SHOWN else shown[: SHOWN - 5] + "...'"


def _describe_expected(expected: Criterion) -> str:
    if isinstance(expected, re.Pattern):
        return f"re.compile({expected.pattern!r})"
    if callable(expected):
        return getattr(expected, "__qualname__", repr(expected))
    return repr(expected)


def validate(criteria: Mapping[str, object]) -> None:
    """A ``TypeError`` naming an unknown criterion or a value of the wrong type."""
    for name, value in criteria.items():
        if name not in CRITERIA:
            raise TypeError(f"unknown criterion {name!r}; the criteria are: {', '.join(CRITERIA)}")
        if name == "dkim_valid":
            if not isinstance(value, bool):
                raise TypeError(f"dkim_valid= takes True or False, got {value!r}")
            continue
        values = value.values() if name == "header" and isinstance(value, Mapping) else [value]
        if name == "header" and not isinstance(value, Mapping):
            raise TypeError(f"header= takes a dict {{name: value}}, got {value!r}")
        for one in values:
            if not (isinstance(one, str | re.Pattern) or callable(one)):
                raise TypeError(
                    f"{name}= takes a str, a compiled regex or a callable, got {type(one).__name__}: {one!r}"
                )


@dataclass(frozen=True, slots=True)
class Check:
    """One criterion checked against one message."""

    name: str
    matched: bool
    #: What was expected and what the message has, for a failure message.
    detail: str
    #: How close a miss came, 0 to 1 (1 for a match), to pick the closest message.
    closeness: float = 0.0


def _similarity(expected: str, actual: Iterable[str | None]) -> float:
    return max((difflib.SequenceMatcher(None, expected, one).ratio() for one in actual if one is not None), default=0.0)


def _scored(found: Check, expected: Criterion, actual: Iterable[str | None]) -> Check:
    if found.matched:
        return Check(found.name, True, found.detail, 1.0)
    if isinstance(expected, str):
        return Check(found.name, False, found.detail, _similarity(expected, actual))
    return found


def _one_value(name: str, expected: Criterion, actual: str | None, containing: bool = False) -> Check:
    if isinstance(expected, re.Pattern):
        ok = actual is not None and expected.search(actual) is not None
        how = "matches" if ok else "does not match"
        return Check(name, ok, f"{name}: {_short(actual)} {how} {_describe_expected(expected)}")
    if callable(expected):
        ok = bool(expected(actual))
        return Check(name, ok, f"{name}: {_describe_expected(expected)}({_short(actual)}) is {ok}")
    if containing:
        ok = actual is not None and expected in actual
        return Check(name, ok, f"{name}: {expected!r} {'in' if ok else 'not in'} {_short(actual)}")
    ok = actual == expected
    return Check(name, ok, f"{name}: {expected!r}" if ok else f"{name}: expected {expected!r}, got {_short(actual)}")


def _address(name: str, expected: Criterion, actual: str | None) -> Check:
    if isinstance(expected, str):
        ok = actual is not None and same_address(expected, actual)
        return Check(name, ok, f"{name}: {expected!r}" if ok else f"{name}: expected {expected!r}, got {actual!r}")
    return _one_value(name, expected, actual)


def _among(name: str, expected: Criterion, actual: Sequence[str], compare: Callable[[str, str], bool]) -> Check:
    if isinstance(expected, re.Pattern):
        ok = any(expected.search(one) for one in actual)
        how = "matches" if ok else "does not match"
        return Check(name, ok, f"{name}: {_short(list(actual))} {how} {_describe_expected(expected)}")
    if callable(expected):
        ok = bool(expected(list(actual)))
        return Check(name, ok, f"{name}: {_describe_expected(expected)}({_short(list(actual))}) is {ok}")
    ok = any(compare(expected, one) for one in actual)
    return Check(name, ok, f"{name}: {expected!r} {'in' if ok else 'not in'} {_short(list(actual))}")


def _header(message: Message, expected: Mapping[str, Criterion]) -> list[Check]:
    checks = []
    for header, wanted in expected.items():
        values = [str(value) for value in message.email.get_all(header) or []]
        name = f"header {header}"
        if not values:
            checks.append(Check(name, False, f"{name}: missing, expected {_describe_expected(wanted)}"))
        elif len(values) == 1:
            checks.append(_one_value(name, wanted, values[0]))
        else:
            checks.append(_among(name, wanted, values, str.__eq__))
    return checks


def check(message: Message, criteria: Mapping[str, Any]) -> list[Check]:
    """Each criterion checked against ``message``, in ``CRITERIA`` order."""
    checks: list[Check] = []
    for name in CRITERIA:
        if name not in criteria:
            continue
        expected = criteria[name]
        if name in _ADDRESS_LISTS:
            addresses = getattr(message, _ADDRESS_LISTS[name])
            checks.append(_scored(_among(name, expected, addresses, same_address), expected, addresses))
        elif name in _ADDRESSES:
            address = getattr(message, _ADDRESSES[name])
            checks.append(_scored(_address(name, expected, address), expected, [address]))
        elif name == "subject":
            checks.append(_scored(_one_value(name, expected, message.subject), expected, [message.subject]))
        elif name in _CONTAINING:
            body = getattr(message, name)
            checks.append(_scored(_one_value(name, expected, body, containing=True), expected, []))
        elif name == "attachment":
            filenames = [a.filename for a in message.attachments if a.filename is not None]
            checks.append(_scored(_among(name, expected, filenames, str.__eq__), expected, filenames))
        elif name == "dkim_valid":
            result = message.verify_dkim()
            checks.append(
                Check(
                    name,
                    result.valid == expected,
                    f"{name}: expected {expected}, got {result.valid} ({result.reason})",
                    float(result.valid == expected),
                )
            )
        elif name == "header":
            checks += [_scored(one, expected[one.name[7:]], []) for one in _header(message, expected)]
    return checks


def matcher(criteria: Mapping[str, Any]) -> Callable[[Message], bool]:
    """A predicate for the messages matching every criterion (validated now)."""
    validate(criteria)
    return lambda message: all(one.matched for one in check(message, criteria))


def _criteria_text(criteria: Mapping[str, Any]) -> str:
    if not criteria:
        return "any message"
    return ", ".join(
        f"header={ {header: _describe_expected(wanted) for header, wanted in value.items()} }"
        if name == "header"
        else f"{name}={_describe_expected(value)}"
        for name, value in criteria.items()
    )


def describe_message(index: int, message: Message) -> str:
    return (
        f"#{index} from {message.mail_from!r} to {message.rcpt_tos!r}, subject {message.subject!r},"
        f" {len(message.data)} bytes"
    )


def _last_error_reply(session: Any) -> str | None:
    """The last 4xx/5xx reply a session's client got, from its transcript,
    with what it answered: ``'550 No such user' (to RCPT)``."""
    transcript = list(getattr(session, "transcript", ()) or ())
    for index in range(len(transcript) - 1, -1, -1):
        entry = transcript[index]
        line = str(getattr(entry, "line", ""))
        if getattr(entry, "direction", None) == "server" and line[:1] in ("4", "5") and line[:3].isdigit():
            asked = next((e for e in reversed(transcript[:index]) if getattr(e, "direction", None) == "client"), None)
            if asked is None:
                return repr(line)
            said = str(getattr(asked, "line", ""))
            answered = "the message data" if said.endswith("bytes of message data>") else said.split(" ", 1)[0].upper()
            return f"{line!r} (to {answered})"
    return None


def describe_session_end(session: Any) -> str:
    """How a session ended, told for a person: its peer, its last error
    reply if it got one, else what its client did last."""
    peer = getattr(session, "peer", None)
    where = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) and len(peer) >= 2 else str(peer)
    commands = list(getattr(session, "commands", ()) or ())
    ended_by = getattr(session, "ended_by", None)
    if ended_by is None and commands and commands[-1] == "QUIT":
        ended_by = "quit"  # answered, its close not yet seen by the server
    if ended_by == "quit" and commands and commands[-1] == "QUIT":
        commands.pop()  # "said QUIT after RCPT", not "after QUIT"
    error = _last_error_reply(session)
    after = f" after {commands[-1]}" if commands else " before any command"
    how = {
        "quit": "said QUIT",
        "client": "the client hung up",
        "timeout": "timed out",
        "fault": "an injected fault ended it",
        "stop": "cut off when the server stopped",
        None: "still open",
    }.get(ended_by, str(ended_by))
    text = f"session from {where}: {how}{after}"
    if error is not None:
        text += f"; last error reply: {error}"
    return text


def sessions_without_message(sessions: Iterable[Any]) -> list[Any]:
    return [session for session in sessions if not list(getattr(session, "messages", ()) or ())]


def explain_miss(
    messages: Sequence[Message],
    criteria: Mapping[str, Any],
    *,
    sessions: Iterable[Any] = (),
    expected_count: int | None = None,
    found: int = 0,
    waited: float = 0.0,
) -> str:
    """The failure message of ``assert_sent``: what was asked, what arrived,
    the closest message criterion by criterion, and the sessions that ended
    without a message (with the error reply their client got)."""
    wanted = "at least 1" if expected_count is None else f"exactly {expected_count}"
    lines = [
        f"expected {wanted} message(s) matching {_criteria_text(criteria)}, found {found}"
        + (f" (waited {waited}s)" if waited else "")
    ]
    if not messages:
        lines.append("no message arrived.")
    else:
        lines.append(f"{len(messages)} message(s) arrived:")
        lines += [f"  {describe_message(i, m)}" for i, m in enumerate(messages, 1)]
        if criteria and found == 0:
            scored = [(sum(c.closeness for c in check(m, criteria)), i, m) for i, m in enumerate(messages, 1)]
            _, index, closest = max(scored, key=lambda item: (item[0], item[1]))
            lines.append(f"closest, #{index}:")
            for one in check(closest, criteria):
                lines.append(f"  {'ok  ' if one.matched else 'FAIL'} {one.detail}")
    quiet = sessions_without_message(sessions)
    if quiet:
        lines.append(f"{len(quiet)} session(s) ended without a message:")
        lines += [f"  {describe_session_end(session)}" for session in quiet]
    return "\n".join(lines)
