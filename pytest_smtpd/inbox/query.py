"""The inbox's search: the REST API's query parameters (``to``, ``from``,
``subject``, ``text``, ``has``, ``test``, and ``q`` in the UI's search syntax)
turned into a predicate over stored messages, checked with the fixture's
criteria (``matching.check``) wherever the fixture has one."""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Mapping
from typing import Any

from ..matching import check, validate
from ..message import Message
from .store import Predicate, Stored, copy_of

__all__ = ["PARAMETERS", "CriteriaError", "parse"]

#: The search parameters, in the order an error lists them.
PARAMETERS = ("to", "from", "subject", "text", "has", "test", "q")
#: What ``has`` takes.
HAS = ("attachment",)
#: Query parameters that are not criteria (paging, waiting, the token).
NOT_CRITERIA = ("limit", "offset", "timeout", "token")


class CriteriaError(ValueError):
    """A bad search: ``name`` is the parameter (or ``q`` term) at fault."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"{name}: {problem}")
        self.name = name


def _containing(value: str) -> re.Pattern[str]:
    return re.compile(re.escape(value), re.IGNORECASE)


def _address(value: str) -> str | re.Pattern[str]:
    """An address (with an ``@``) is compared as the fixture compares them;
    part of one (``alice``, ``example.com``) is searched for."""
    return value if "@" in value and not value.startswith("@") else _containing(value)


def _any_of(*criteria: Mapping[str, Any]) -> Callable[[Message], bool]:
    for one in criteria:
        validate(one)
    return lambda message: any(all(c.matched for c in check(message, one)) for one in criteria)


def _free_text(word: str) -> Callable[[Message], bool]:
    pattern = _containing(word)

    def found(message: Message) -> bool:
        fields = [message.subject, message.from_, message.mail_from, *message.to, *message.rcpt_tos]
        fields += [message.text, message.html]
        return any(field is not None and pattern.search(field) for field in fields)

    return found


def _terms(text: str) -> list[tuple[str, str]]:
    """The ``q`` syntax: ``key:value`` terms for the parameters above (a
    value may be quoted), and free words or quoted phrases."""
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise CriteriaError("q", f"cannot read {text!r}: {exc}") from None
    terms = []
    for word in words:
        key, colon, value = word.partition(":")
        if colon and key.lower() in PARAMETERS[:-1] and value:
            terms.append((key.lower(), value))
        else:
            terms.append(("", word))
    return terms


def parse(query: Mapping[str, str] | list[tuple[str, str]]) -> Predicate | None:
    """The predicate for a request's query parameters, or None for "every
    message"; ``CriteriaError`` for an unknown parameter or a bad value."""
    items = list(query.items()) if isinstance(query, Mapping) else list(query)
    terms: list[tuple[str, str]] = []
    for name, value in items:
        if name in NOT_CRITERIA:
            continue
        if name not in PARAMETERS:
            raise CriteriaError(name, f"unknown criterion; the criteria are: {', '.join(PARAMETERS)}")
        if not value:
            continue
        terms += _terms(value) if name == "q" else [(name, value)]
    checks: list[Callable[[Message], bool]] = []
    tests: list[str] = []
    for name, value in terms:
        if name == "to":
            checks.append(_any_of({"to": _address(value)}, {"cc": _address(value)}, {"rcpt_to": _address(value)}))
        elif name == "from":
            checks.append(_any_of({"from_": _address(value)}, {"mail_from": _address(value)}))
        elif name == "subject":
            checks.append(_any_of({"subject": _containing(value)}))
        elif name == "text":
            checks.append(_any_of({"text": _containing(value)}, {"html": _containing(value)}))
        elif name == "has":
            if value.lower() not in HAS:
                raise CriteriaError("has", f"unknown value {value!r}; expected one of: {', '.join(HAS)}")
            checks.append(lambda message: bool(message.attachments))
        elif name == "test":
            tests.append(value)
        else:
            checks.append(_free_text(value))
    if not checks and not tests:
        return None

    def wanted(entry: Stored) -> bool:
        if any(entry.test is None or test not in entry.test for test in tests):
            return False
        if not checks:
            return True
        message = copy_of(entry.message)
        return all(one(message) for one in checks)

    return wanted
