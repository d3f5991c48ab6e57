"""Fault injection: rules that make a server answer a step of a session
wrongly on purpose (an error reply, a hang-up, a late reply, no reply).

A :class:`Fault` is one rule, a frozen value that can be written in a marker
or parsed from the command line. :class:`Faults` is a server's ordered rule
list (``Server.faults``, ``smtpd.faults``): for each step of each session the
protocol core asks it, and the first rule that matches decides. The test
thread adds rules while the loop thread consults them, so the list is
guarded by a lock; the rules themselves never change, and the counting that
``times=`` and ``after=`` need lives in the list, so one ``Fault`` can serve
in several lists (a marker on a class, say) without them sharing counts.

Nothing here is random unless a rule asks for it with ``probability=`` and a
``seed=``: the same test gets the same faults on every run.
"""

from __future__ import annotations

import enum
import math
import random
import re
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypedDict

from .replies import Reply

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["STEPS", "Action", "Fault", "Faults", "Limits"]

#: The steps a fault can be attached to: the greeting, the verbs, and the
#: reply after the message's final dot. ``DATA`` is the ``354`` step.
STEPS = frozenset(
    {
        "CONNECT",
        "HELO",
        "EHLO",
        "LHLO",
        "MAIL",
        "RCPT",
        "DATA",
        "BDAT",
        "RSET",
        "NOOP",
        "VRFY",
        "QUIT",
        "AUTH",
        "STARTTLS",
        "MESSAGE",
    }
)
#: Steps whose bytes ``disconnect(after_bytes=...)`` can count.
_BYTE_STEPS = frozenset({"DATA", "BDAT"})


class Action(str, enum.Enum):
    """What a fault does instead of the normal reply (a ``str``, so that the
    protocol core can compare it without importing this module)."""

    #: Answer with the fault's reply instead of running the command.
    REPLY = "reply"
    #: Hang up instead of replying (or, with ``after_bytes``, part way into
    #: the message).
    DISCONNECT = "disconnect"
    #: Give the normal reply, ``seconds`` late.
    DELAY = "delay"
    #: Never reply; the session ends at the server's ``timeout`` or stop.
    STALL = "stall"


Match = str | re.Pattern[str] | None


class Limits(TypedDict, total=False):
    """The limits every kind of rule takes, as keyword arguments of
    ``Fault.reply()``, ``Fault.disconnect()``, ``Fault.delay()``,
    ``Fault.stall()`` and the ``Faults`` adders (see ``Fault``)."""

    #: Only steps whose argument contains this string (or where this
    #: compiled regex ``search``-es it).
    match: Match
    #: Fire this many times, then stand aside (None: always).
    times: int | None
    #: Let the first N matching steps pass first.
    after: int
    #: Only in the Nth connection to the server (counting from 1).
    session: int | None
    #: Below 1: fire at random, from a generator seeded with ``seed``.
    probability: float
    seed: int | None


#: The limits a fault's command-line form takes in brackets, and their types.
_LIMIT_TYPES: dict[str, type[Any]] = {
    "times": int,
    "after": int,
    "session": int,
    "seed": int,
    "probability": float,
    "match": str,
}


@dataclass(frozen=True, slots=True)
class Fault:
    """One fault rule. Make one with ``Fault.reply()``, ``Fault.disconnect()``,
    ``Fault.delay()``, ``Fault.stall()`` or ``Fault.parse()``.

    ``match`` limits the rule to steps whose argument contains the string (or
    where the compiled regex ``search``-es it): for MAIL and RCPT the text
    after the verb (``"TO:<ghost@example.com>"``), for MESSAGE the message
    (decoded as UTF-8, errors replaced; MESSAGE is the step after the final
    dot of DATA and after ``BDAT ... LAST``), for CONNECT the client's
    ``host:port`` (``"127.0.0.1:50312"``). A 5xx reply at CONNECT refuses
    the session: every command but QUIT then gets ``503`` (RFC 5321 3.1).
    ``times`` lets the rule fire that many times, then stand aside; ``after``
    lets the first N matching steps pass first; ``session`` limits it to the
    Nth connection to the server (counting from 1, since it started or was
    last cleared). ``probability`` below 1 fires it at random, from a
    generator seeded with ``seed`` (required), so runs repeat.
    """

    step: str
    action: Action
    #: The reply of an ``Action.REPLY`` fault.
    response: Reply | None = None
    #: The delay of an ``Action.DELAY`` fault.
    seconds: float = 0.0
    #: For ``Action.DISCONNECT`` on DATA or BDAT: hang up after this many
    #: octets of the message (None: at once, instead of the 354).
    after_bytes: int | None = None
    match: Match = None
    times: int | None = None
    after: int = 0
    session: int | None = None
    probability: float = 1.0
    seed: int | None = None

    def __post_init__(self) -> None:
        step = self.step.upper() if isinstance(self.step, str) else self.step
        if step not in STEPS:
            raise ValueError(f"unknown fault step {self.step!r}: use one of {', '.join(sorted(STEPS))}")
        object.__setattr__(self, "step", step)
        if self.action is Action.REPLY:
            if self.response is None or not 400 <= self.response.code <= 599:
                raise ValueError(
                    f"a reply fault needs a 4xx or 5xx reply (a success would leave the session out of step), "
                    f"got {self.response}"
                )
        elif self.response is not None:
            raise ValueError(f"only a reply fault has a reply, not a {self.action.value} fault")
        if self.action is Action.DELAY and not (math.isfinite(self.seconds) and self.seconds >= 0):
            raise ValueError(f"a delay must be a finite number of seconds >= 0, got {self.seconds}")
        if self.after_bytes is not None:
            if self.action is not Action.DISCONNECT or step not in _BYTE_STEPS:
                raise ValueError("after_bytes is for disconnect faults on DATA or BDAT")
            if self.after_bytes < 0:
                raise ValueError(f"after_bytes must be 0 or more, got {self.after_bytes}")
        if self.match is not None and not isinstance(self.match, str | re.Pattern):
            raise TypeError(f"match must be a str or a compiled regex, not {type(self.match).__name__}")
        if self.times is not None and self.times < 1:
            raise ValueError(f"times must be 1 or more (or None: always), got {self.times}")
        if self.after < 0:
            raise ValueError(f"after must be 0 or more, got {self.after}")
        if self.session is not None and self.session < 1:
            raise ValueError(f"session counts from 1, got {self.session}")
        if not 0.0 <= self.probability <= 1.0:
            raise ValueError(f"probability must be between 0 and 1, got {self.probability}")
        if self.probability < 1.0 and self.seed is None:
            raise ValueError("a fault with a probability needs a seed=, so that every run gets the same faults")

    # -- constructors ----------------------------------------------------------

    @classmethod
    def reply(
        cls,
        step: str,
        reply: Reply | str,
        **limits: Unpack[Limits],
    ) -> Fault:
        """Answer ``step`` with ``reply`` (e.g. ``"450 4.2.1 Mailbox busy"``)
        instead of running the command. A 421 also closes the session."""
        response = Reply.parse(reply) if isinstance(reply, str) else reply
        return cls(
            step,
            Action.REPLY,
            response=response,
            **limits,
        )

    @classmethod
    def disconnect(
        cls,
        step: str,
        *,
        after_bytes: int | None = None,
        **limits: Unpack[Limits],
    ) -> Fault:
        """Hang up instead of replying to ``step``. With ``after_bytes`` on
        DATA: send the 354, then hang up once that many octets of the message
        have arrived (or at its end, if it is shorter). The message is lost."""
        return cls(
            step,
            Action.DISCONNECT,
            after_bytes=after_bytes,
            **limits,
        )

    @classmethod
    def delay(
        cls,
        step: str,
        seconds: float,
        **limits: Unpack[Limits],
    ) -> Fault:
        """Give the normal reply to ``step`` ``seconds`` late. Other sessions
        and servers go on meanwhile; this session reads nothing more until then."""
        return cls(
            step,
            Action.DELAY,
            seconds=float(seconds),
            **limits,
        )

    @classmethod
    def stall(
        cls,
        step: str,
        **limits: Unpack[Limits],
    ) -> Fault:
        """Never reply to ``step``: the client's timeout must fire. The
        session ends at the server's ``timeout`` (with a 421) or at stop."""
        return cls(
            step,
            Action.STALL,
            **limits,
        )

    @classmethod
    def parse(cls, text: str) -> Fault:
        """A fault in the command line's form ``STEP=WHAT``, where WHAT is a
        reply (``RCPT=450 4.2.1 Mailbox busy``), ``disconnect``,
        ``disconnect:OCTETS`` (DATA), ``delay:SECONDS`` or ``stall``. Limits
        go in brackets after the step: ``RCPT[times=1,match=ghost@]=450 ...``
        (``times``, ``after``, ``session``, ``match``, ``probability``, ``seed``)."""
        head, equals, what = cls._split_step(text)
        what = what.strip()
        step, limits = cls._parse_limits(text, head.strip())
        if not equals or not step or not what:
            raise ValueError(
                f"bad fault {text!r}: expected STEP=REPLY, STEP=disconnect, STEP=disconnect:OCTETS, "
                "STEP=delay:SECONDS or STEP=stall, e.g. 'RCPT=450 4.2.1 Mailbox busy'"
            )
        name, _, value = what.partition(":")
        name = name.strip().lower()
        value = value.strip()
        if what[:3].isdigit():
            return cls.reply(step, what, **limits)
        if name == "disconnect":
            if not value:
                return cls.disconnect(step, **limits)
            if not (value.isascii() and value.isdigit()):
                raise ValueError(f"bad fault {text!r}: disconnect:OCTETS needs a whole number of octets")
            return cls.disconnect(step, after_bytes=int(value), **limits)
        if name == "delay":
            try:
                seconds = float(value)
            except ValueError:
                raise ValueError(f"bad fault {text!r}: delay:SECONDS needs a number of seconds") from None
            return cls.delay(step, seconds, **limits)
        if name == "stall" and not value:
            return cls.stall(step, **limits)
        raise ValueError(
            f"bad fault {text!r}: after '=' comes a reply such as '450 4.2.1 Mailbox busy', "
            "disconnect, disconnect:OCTETS, delay:SECONDS or stall"
        )

    @staticmethod
    def _split_step(text: str) -> tuple[str, str, str]:
        """Split at the ``=`` after the step (and its bracketed limits, whose
        own ``=`` signs do not count)."""
        bracket = text.find("[")
        equals = text.find("=")
        if 0 <= bracket < equals:
            close = text.find("]", bracket)
            if close < 0:
                raise ValueError(f"bad fault {text!r}: '[' without its ']'")
            head, equals_sign, what = text[close + 1 :].partition("=")
            if head.strip():
                raise ValueError(f"bad fault {text!r}: expected '=' right after ']'")
            return text[: close + 1], equals_sign, what
        return text.partition("=")

    @staticmethod
    def _parse_limits(text: str, head: str) -> tuple[str, dict[str, Any]]:
        """``RCPT[times=1,match=ghost@]`` as ``("RCPT", {"times": 1, "match": "ghost@"})``."""
        step, bracket, rest = head.partition("[")
        if not bracket:
            return step.strip(), {}
        limits: dict[str, Any] = {}
        for item in rest.removesuffix("]").split(","):
            key, equals, value = item.partition("=")
            key, value = key.strip(), value.strip()
            if not equals or not key:
                raise ValueError(f"bad fault {text!r}: limits are NAME=VALUE, e.g. [times=1,match=ghost@]")
            if key in limits:
                raise ValueError(f"bad fault {text!r}: {key} is given twice")
            if key not in _LIMIT_TYPES:
                raise ValueError(
                    f"bad fault {text!r}: unknown limit {key!r}: use times, after, session, match, probability or seed"
                )
            try:
                limits[key] = _LIMIT_TYPES[key](value)
            except ValueError:
                raise ValueError(f"bad fault {text!r}: {key} needs a number, got {value!r}") from None
        return step.strip(), limits

    # -- what the protocol core and the records use ----------------------------

    def matches(self, argument: str) -> bool:
        """Whether ``match=`` lets the rule fire for this argument (the text
        after the verb): always without one."""
        if self.match is None:
            return True
        if isinstance(self.match, str):
            return self.match in argument
        return self.match.search(argument) is not None

    def describe(self) -> str:
        """One line for a session's ``faults_fired``: ``"RCPT: reply 450 4.2.1 Mailbox busy"``."""
        if self.action is Action.REPLY:
            what = f"reply {self.response}"
        elif self.action is Action.DELAY:
            what = f"delay {self.seconds:g}s"
        elif self.after_bytes is not None:
            what = f"disconnect after {self.after_bytes} bytes"
        else:
            what = self.action.value
        return f"{self.step}: {what}"

    @property
    def closes_session(self) -> bool:
        """Whether firing this fault ends the session (a hang-up or a 421)."""
        if self.action is Action.DISCONNECT:
            return True
        return self.action is Action.REPLY and self.response is not None and self.response.code == 421


class _Rule:
    """A fault in a list, with the counts ``after`` and ``times`` need (a
    plain class: a dataclass would cost import time for nothing)."""

    __slots__ = ("fault", "fired", "random", "seen")

    def __init__(self, fault: Fault, random: random.Random | None = None) -> None:
        self.fault = fault
        self.random = random
        self.seen = 0
        self.fired = 0


class Faults:
    """A server's fault rules, in order: the first rule that matches a step
    decides it. Safe to change from any thread while sessions run; a rule
    added during a session applies from that session's next step on."""

    def __init__(self, faults: Iterable[Fault | str] = ()) -> None:
        self._lock = threading.Lock()
        #: The rules as a tuple, replaced (never changed) under the lock, so
        #: that the core's "any rules?" test is one attribute read.
        self.rules: tuple[_Rule, ...] = ()
        if faults or isinstance(faults, str):  # (a server without faults skips this)
            self.extend(faults)

    # -- adding and removing -----------------------------------------------

    def add(self, fault: Fault | str) -> Fault:
        """Append a rule (a ``Fault``, or a string as ``Fault.parse`` reads it)."""
        rule = self._rule(fault)
        with self._lock:
            self.rules = (*self.rules, rule)
        return rule.fault

    @staticmethod
    def _rule(fault: Fault | str) -> _Rule:
        if isinstance(fault, str):
            fault = Fault.parse(fault)
        elif not isinstance(fault, Fault):
            raise TypeError(f"a fault rule must be a Fault or a 'STEP=WHAT' string, not {type(fault).__name__}")
        return _Rule(fault, random=random.Random(fault.seed) if fault.probability < 1.0 else None)

    def extend(self, faults: Iterable[Fault | str]) -> None:
        """Add several rules at the end, in order (what the marker's
        ``faults=`` and the CLI's ``--fault`` do)."""
        if isinstance(faults, Fault | str):
            raise TypeError("faults must be a list of Fault rules (or 'STEP=WHAT' strings), not a single one")
        for fault in faults:
            self.add(fault)

    def reply(
        self,
        step: str,
        reply: Reply | str,
        **limits: Unpack[Limits],
    ) -> Fault:
        """Add ``Fault.reply(...)``: answer ``step`` with ``reply``."""
        return self.add(
            Fault.reply(
                step,
                reply,
                **limits,
            )
        )

    def disconnect(
        self,
        step: str,
        *,
        after_bytes: int | None = None,
        **limits: Unpack[Limits],
    ) -> Fault:
        """Add ``Fault.disconnect(...)``: hang up at ``step``."""
        return self.add(
            Fault.disconnect(
                step,
                after_bytes=after_bytes,
                **limits,
            )
        )

    def delay(
        self,
        step: str,
        seconds: float,
        **limits: Unpack[Limits],
    ) -> Fault:
        """Add ``Fault.delay(...)``: reply to ``step`` ``seconds`` late."""
        return self.add(
            Fault.delay(
                step,
                seconds,
                **limits,
            )
        )

    def stall(
        self,
        step: str,
        **limits: Unpack[Limits],
    ) -> Fault:
        """Add ``Fault.stall(...)``: never reply to ``step``."""
        return self.add(
            Fault.stall(
                step,
                **limits,
            )
        )

    def clear(self) -> None:
        """Remove every rule."""
        with self._lock:
            self.rules = ()

    def reset(self, faults: Iterable[Fault | str]) -> None:
        """Replace every rule by ``faults``, counted from zero, at once."""
        if isinstance(faults, Fault | str):
            raise TypeError("faults must be a list of Fault rules (or 'STEP=WHAT' strings), not a single one")
        rules = tuple(self._rule(fault) for fault in faults)
        with self._lock:
            self.rules = rules

    def _after_fork_in_child(self) -> None:
        """A fork may have copied the lock held by the loop thread, which the
        child does not have: a new lock (the rules stay)."""
        self._lock = threading.Lock()

    # -- reading -----------------------------------------------------------

    def __iter__(self) -> Iterator[Fault]:
        return iter([rule.fault for rule in self.rules])

    def __len__(self) -> int:
        return len(self.rules)

    def __bool__(self) -> bool:
        return bool(self.rules)

    def __getitem__(self, index: int) -> Fault:
        return self.rules[index].fault

    def __repr__(self) -> str:
        return f"Faults({[rule.fault for rule in self.rules]!r})"

    def decide(self, step: str, argument: str, session: int) -> Fault | None:
        """The fault for this step of the ``session``-th connection, if one
        fires; counts the step for the rules it matches. Called by the
        protocol core (on the loop thread) only when ``rules`` is not empty."""
        with self._lock:
            for rule in self.rules:
                fault = rule.fault
                if fault.step != step or (fault.session is not None and fault.session != session):
                    continue
                if fault.times is not None and rule.fired >= fault.times:
                    continue
                if not fault.matches(argument):
                    continue
                rule.seen += 1
                if rule.seen <= fault.after:
                    continue
                if rule.random is not None and rule.random.random() >= fault.probability:
                    continue
                rule.fired += 1
                return fault
        return None
