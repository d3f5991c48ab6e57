"""``FixtureServer``: the ``Server`` the pytest fixtures give, with
``assert_sent``, ``assert_not_sent``, their async twin, and ``env`` for a
subprocess. Nothing here needs pytest."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from . import loopthread
from .matching import Check, Criterion, criteria_text, describe_message, explain_miss, listing, matcher
from .matching import near_miss as closest_message
from .message import Message
from .server import Server
from .store import refuse_blocking_in_event_loop

__all__ = ["FixtureServer"]

CriterionArg = Criterion | dict[str, Criterion] | bool  # bool: dkim_valid


class FixtureServer(Server):
    """A ``Server`` that remembers the options it was made with (so that the
    plugin can tell whether a shared server fits a test) and asserts on what
    it received."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, **options: Any) -> None:
        super().__init__(host, port, **options)
        #: The options as given, host and port included.
        self.options: dict[str, Any] = {"host": host, "port": port, **options}
        #: The last failed ``assert_sent``: what it asked, and the closest
        #: message criterion by criterion; the "smtpd" report section shows it.
        self.near_miss: list[str] = []

    def __repr__(self) -> str:
        # A traceback through a failed __init__ shows ``self``: one that
        # refused its options is not yet a server to describe.
        if "_state" not in vars(self):
            return f"<{type(self).__name__}, not made: its options were refused>"
        return super().__repr__()

    @property
    def env(self) -> dict[str, str]:
        """Environment variables for an app in a subprocess: ``SMTP_HOST``,
        ``SMTP_PORT``, and for a TLS server those of ``client_env``."""
        env = {"SMTP_HOST": self.host, "SMTP_PORT": str(self.port)}
        if self.ca is not None:
            env |= self.client_env
        return env

    def clear(self) -> list[Message]:
        """``Server.clear()``, and forget the last failed assertion too."""
        self.near_miss = []
        return super().clear()

    def _verdict(
        self,
        found: list[Message],
        criteria: dict[str, Any],
        count: int | None,
        waited: float,
        seen: dict[int, list[Check]],
    ) -> list[Message]:
        __tracebackhide__ = True
        if (count is None and found) or (count is not None and len(found) == count):
            return found
        messages = self.messages.snapshot()
        closest = closest_message(messages, criteria, seen) if not found else []
        text = explain_miss(
            messages,
            criteria,
            sessions=list(self.sessions),
            expected_count=count,
            found=len(found),
            waited=waited,
            closest=closest,
        )
        self.near_miss = [f"last failed assertion: {text.splitlines()[0]}", *closest]
        raise AssertionError(text)

    def _checked(self, count: int | None, timeout: float) -> None:
        __tracebackhide__ = True
        if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 0):
            raise ValueError(f"count must be None or a whole number, 0 or more, got {count!r}")
        if not (isinstance(timeout, int | float) and math.isfinite(timeout) and timeout >= 0):
            raise ValueError(f"timeout must be a finite number of seconds, 0 or more, got {timeout!r}")

    def assert_sent(self, *, count: int | None = None, timeout: float = 0.0, **criteria: CriterionArg) -> list[Message]:
        """Assert that messages matching every criterion arrived, and return
        them: at least one (``count=None``) or exactly ``count``. With a
        ``timeout``, wait that long for them (mail from another thread or
        process). The failure message lists what did arrive and, for the
        closest message, each criterion that matched and did not."""
        __tracebackhide__ = True
        seen: dict[int, list[Check]] = {}
        matches = matcher(criteria, seen)
        self._checked(count, timeout)
        if timeout > 0 and count != 0:
            if loopthread.in_loop_thread():
                raise RuntimeError(
                    "assert_sent(timeout=...) cannot wait on the servers' loop thread (from a handler):"
                    " no mail could arrive while it waits; use timeout=0 there"
                )
            refuse_blocking_in_event_loop("assert_sent(timeout=...)")
            found = self.messages._waited(count or 1, timeout, matches)
        else:
            found = [message for message in self.messages.snapshot() if matches(message)]
        return self.messages._looked_at(self._verdict(found, criteria, count, timeout, seen))

    async def assert_sent_async(
        self, *, count: int | None = None, timeout: float = 0.0, **criteria: CriterionArg
    ) -> list[Message]:
        """``assert_sent`` for async tests: waits with ``wait_for_async``,
        without blocking the test's event loop."""
        __tracebackhide__ = True
        seen: dict[int, list[Check]] = {}
        matches = matcher(criteria, seen)
        self._checked(count, timeout)
        if timeout > 0 and count != 0:
            found = await self.messages._waited_async(count or 1, timeout, matches)
        else:
            found = [message for message in self.messages.snapshot() if matches(message)]
        return self.messages._looked_at(self._verdict(found, criteria, count, timeout, seen))

    def assert_not_sent(self, **criteria: CriterionArg) -> None:
        """Assert that no message matching every criterion arrived. The
        failure names the criteria as ``assert_sent``'s does, and lists the
        messages that matched (the first and last few of many)."""
        __tracebackhide__ = True
        matches = matcher(criteria)
        found = [message for message in self.messages.snapshot() if matches(message)]
        if found:
            self.near_miss = []
            raise AssertionError(
                "\n".join(
                    [
                        f"expected no message matching {criteria_text(criteria)}, found {len(found)}:",
                        *listing(found, describe_message),
                    ]
                )
            )

    def assert_well_formed(
        self, message: Message | None = None, ignore: Iterable[str] = (), *, level: str = "error"
    ) -> None:
        """Assert that ``message``, or every message so far, lints clean at
        ``level`` (``"error"``, or ``"warning"`` to fail on warnings too),
        the codes in ``ignore`` left out; the failure lists each message's
        findings."""
        __tracebackhide__ = True
        from .lint import check_messages

        check_messages(list(self.messages) if message is None else [message], level, ignore)
