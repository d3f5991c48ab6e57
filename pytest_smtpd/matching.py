"""Criteria for ``assert_sent`` and ``messages.filter``: checking a message
criterion by criterion, and explaining a near miss. Pure functions over
``Message`` objects and session records; no I/O."""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, Union

from .message import Message, same_address

__all__ = [
    "CRITERIA",
    "Check",
    "Criterion",
    "at_each_end",
    "check",
    "criteria_text",
    "describe_message",
    "describe_session_end",
    "explain_miss",
    "last_error_reply",
    "listing",
    "matcher",
    "near_miss",
    "validate",
]

_T = TypeVar("_T")

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
    __tracebackhide__ = True  # the test's line is the one to show
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
        values = message.header_values(header)
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
            subject = message.subject
            checks.append(_scored(_one_value(name, expected, subject), expected, [subject]))
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


def matcher(criteria: Mapping[str, Any], seen: dict[int, list[Check]] | None = None) -> Callable[[Message], bool]:
    """A predicate for the messages matching every criterion (validated now).
    With ``seen``, it keeps each message's checks there, by ``id``: a failure
    then finds the closest message without checking them all again."""
    __tracebackhide__ = True
    validate(criteria)
    if seen is None:
        return lambda message: all(one.matched for one in check(message, criteria))

    def matches(message: Message) -> bool:
        checks = seen[id(message)] = check(message, criteria)
        return all(one.matched for one in checks)

    return matches


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
    """One line for a message in a failure: its envelope (``mail_from``,
    ``rcpt_to``, as the criteria name them) and its headers (``From:`` where
    it differs, ``To:``) told apart, its subject and size."""
    header_from = message.from_
    shown_from = f" From: {header_from!r}," if header_from is not None and header_from != message.mail_from else ""
    return (
        f"#{index} mail_from {message.mail_from!r}, rcpt_to {message.rcpt_tos!r},{shown_from}"
        f" To: {message.to!r}, subject {message.subject!r}, {len(message.data)} bytes"
    )


#: A longer listing in a failure shows this many items at each end, and a count.
LISTED_AT_EACH_END = 5


def at_each_end(count: int, all_up_to: int = 2 * LISTED_AT_EACH_END + 1) -> list[int | None]:
    """The indexes of a list of ``count`` to show: all of up to
    ``all_up_to``, else the first and last ``LISTED_AT_EACH_END`` with None
    where the ``count - 2 * LISTED_AT_EACH_END`` left out go."""
    if count <= all_up_to:
        return list(range(count))
    return [*range(LISTED_AT_EACH_END), None, *range(count - LISTED_AT_EACH_END, count)]


def listing(items: Sequence[_T], describe: Callable[[int, _T], str], indent: str = "  ") -> list[str]:
    """A line per item, numbered from 1; of a long list, the first and last
    ``LISTED_AT_EACH_END`` around a count of those left out (a failure over
    20,000 messages stays short, and is quick to make)."""
    return [
        f"{indent}... {len(items) - 2 * LISTED_AT_EACH_END} more ..."
        if index is None
        else f"{indent}{describe(index + 1, items[index])}"
        for index in at_each_end(len(items))
    ]


def _last_error_reply(transcript: Sequence[Any]) -> str | None:
    """The last 4xx/5xx reply in a session's ``transcript``, with what it
    answered: ``'550 No such user' (to RCPT)``."""
    for index in range(len(transcript) - 1, -1, -1):
        entry = transcript[index]
        line = str(getattr(entry, "line", ""))
        if getattr(entry, "direction", None) == "server" and line[:1] in ("4", "5") and line[:3].isdigit():
            asked = next((e for e in reversed(transcript[:index]) if getattr(e, "direction", None) == "client"), None)
            if asked is None:
                return repr(line)
            said = str(getattr(asked, "line", ""))
            data = said.startswith("<") and "bytes of message data" in said
            answered = "the message data" if data else said.split(" ", 1)[0].upper()
            return f"{line!r} (to {answered})"
    return None


def _without_closing_421(session: Any) -> tuple[list[Any], bool]:
    """The session's transcript without the 421 its server said as it
    stopped or timed the session out (no answer to a client's command),
    and whether there was one."""
    transcript = list(getattr(session, "transcript", ()) or ())
    if getattr(session, "ended_by", None) in ("stop", "timeout") and transcript:
        last = transcript[-1]
        if getattr(last, "direction", None) == "server" and str(getattr(last, "line", "")).startswith("421"):
            return transcript[:-1], True
    return transcript, False


def last_error_reply(session: Any) -> str | None:
    """The last 4xx/5xx reply a session's client got, with the command it
    answered: ``'550 No such user' (to RCPT)``; the server's own closing
    421 is none."""
    return _last_error_reply(_without_closing_421(session)[0])


def _phase(transcript: Sequence[Any], commands: Sequence[str]) -> str:
    """Where the client was when the server ended the session: `` while the
    client was in DATA``, `` after RCPT``, `` before any command``."""
    said = [e for e in transcript if getattr(e, "direction", None) == "client"]
    last_client = str(getattr(said[-1], "line", "")) if said else ""
    replies = [e for e in transcript if getattr(e, "direction", None) == "server"]
    last_reply = str(getattr(replies[-1], "line", "")) if replies else ""
    verb = commands[-1] if commands else ""
    if last_client.endswith("unfinished>") or (verb == "DATA" and last_reply.startswith("354")):
        return f" while the client was in {verb or 'DATA'}"
    if verb == "AUTH" and last_reply.startswith("334"):
        return " while the client was in AUTH"
    return f" after {verb}" if verb else " before any command"


def describe_session_end(session: Any, *, by_teardown: bool = False) -> str:
    """How a session ended, told for a person: its peer, how and where it
    ended, and its last error reply if it got one. The 421 a server says as
    it stops or times a session out is told as the server's own, not as an
    answer to the client's last command; ``by_teardown``: the stop was the
    fixture's, at the end of the test."""
    peer = getattr(session, "peer", None)
    where = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) and len(peer) >= 2 else str(peer)
    commands = list(getattr(session, "commands", ()) or ())
    ended_by = getattr(session, "ended_by", None)
    if ended_by is None and commands and commands[-1] == "QUIT":
        ended_by = "quit"  # answered, its close not yet seen by the server
    if ended_by == "quit" and commands and commands[-1] == "QUIT":
        commands.pop()  # "said QUIT after RCPT", not "after QUIT"
    transcript, own_421 = _without_closing_421(session)
    closing = " (the server's own 421 closed it)" if own_421 else ""
    error = _last_error_reply(transcript)
    if ended_by in ("stop", "timeout"):
        stopped = "stopped by teardown" if by_teardown else "closed by the server's stop()"
        how = stopped if ended_by == "stop" else "timed out"
        text = f"session from {where}: {how}{_phase(transcript, commands)}{closing}"
    else:
        after = f" after {commands[-1]}" if commands else " before any command"
        ends = {"quit": "said QUIT", "client": "the client hung up", "fault": "an injected fault ended it"}
        how = ends.get(ended_by, str(ended_by)) if ended_by is not None else "still open"
        text = f"session from {where}: {how}{after}"
    if error is not None:
        text += f"; last error reply: {error}"
    return text


def sessions_without_message(sessions: Iterable[Any]) -> list[Any]:
    return [session for session in sessions if not list(getattr(session, "messages", ()) or ())]


def criteria_text(criteria: Mapping[str, Any]) -> str:
    """The criteria as a failure names them: ``to='bob@example.com', subject=re.compile('^Hi')``."""
    return _criteria_text(criteria)


def near_miss(
    messages: Sequence[Message], criteria: Mapping[str, Any], seen: Mapping[int, list[Check]] | None = None
) -> list[str]:
    """The message closest to matching ``criteria``, criterion by criterion:
    ``closest, #2:`` then an ``ok``/``FAIL`` line per criterion. ``seen``:
    checks made already (``matcher``'s), by ``id`` of the message."""
    if not messages or not criteria:
        return []
    seen = seen or {}
    best: tuple[float, int, list[Check]] | None = None
    for index, message in enumerate(messages, 1):
        checks = seen.get(id(message))
        if checks is None:
            checks = check(message, criteria)
        score = sum(one.closeness for one in checks)
        if best is None or (score, index) >= best[:2]:
            best = (score, index, checks)
    assert best is not None
    lines = [f"closest, #{best[1]}:"]
    for one in best[2]:
        lines.append(f"  {'ok  ' if one.matched else 'FAIL'} {one.detail}")
    return lines


def explain_miss(
    messages: Sequence[Message],
    criteria: Mapping[str, Any],
    *,
    sessions: Iterable[Any] = (),
    expected_count: int | None = None,
    found: int = 0,
    waited: float = 0.0,
    closest: Sequence[str] | None = None,
) -> str:
    """The failure message of ``assert_sent``: what was asked, what arrived
    (the first and last few of a long list), the closest message criterion
    by criterion, and the sessions that ended without a message (with the
    error reply their client got). ``closest``: ``near_miss()``'s lines, if
    made already."""
    wanted = "at least 1" if expected_count is None else f"exactly {expected_count}"
    lines = [
        f"expected {wanted} message(s) matching {_criteria_text(criteria)}, found {found}"
        + (f" (waited {waited}s)" if waited else "")
    ]
    if not messages:
        lines.append("no message arrived.")
    else:
        lines.append(f"{len(messages)} message(s) arrived:")
        lines += listing(messages, describe_message)
        if found == 0:
            lines += near_miss(messages, criteria) if closest is None else closest
    quiet = sessions_without_message(sessions)
    if quiet:
        lines.append(f"{len(quiet)} session(s) ended without a message:")
        lines += listing(quiet, lambda _, session: describe_session_end(session))
    return "\n".join(lines)
