"""``FixtureServer``: the ``Server`` the pytest fixtures give, with
``assert_sent``, ``assert_not_sent``, their async twin, and ``env`` for a
subprocess. Nothing here needs pytest."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import Any

from . import loopthread
from .matching import Criterion, explain_miss, matcher
from .message import Message
from .server import Server

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

    @property
    def env(self) -> dict[str, str]:
        """Environment variables for an app in a subprocess: ``SMTP_HOST``,
        ``SMTP_PORT``, and for a TLS server those of ``client_env``."""
        env = {"SMTP_HOST": self.host, "SMTP_PORT": str(self.port)}
        if self.ca is not None:
            env |= self.client_env
        return env

    def _verdict(
        self, found: list[Message], criteria: dict[str, Any], count: int | None, waited: float
    ) -> list[Message]:
        __tracebackhide__ = True
        if (count is None and found) or (count is not None and len(found) == count):
            return found
        raise AssertionError(
            explain_miss(
                list(self.messages),
                criteria,
                sessions=list(self.sessions),
                expected_count=count,
                found=len(found),
                waited=waited,
            )
        )

    def assert_sent(self, *, count: int | None = None, timeout: float = 0.0, **criteria: CriterionArg) -> list[Message]:
        """Assert that messages matching every criterion arrived, and return
        them: at least one (``count=None``) or exactly ``count``. With a
        ``timeout``, wait that long for them (mail from another thread or
        process). The failure message lists what did arrive and, for the
        closest message, each criterion that matched and did not."""
        __tracebackhide__ = True
        matches = matcher(criteria)
        if count is not None and count < 0:
            raise ValueError(f"count must be None or 0 or more, got {count}")
        if timeout > 0 and count != 0:
            if loopthread.in_loop_thread():
                raise RuntimeError(
                    "assert_sent(timeout=...) cannot wait on the servers' loop thread (from a handler):"
                    " no mail could arrive while it waits; use timeout=0 there"
                )
            with contextlib.suppress(TimeoutError):
                self.messages.wait_for(count=count or 1, timeout=timeout, where=matches)
        found = [message for message in self.messages if matches(message)]
        return self._verdict(found, criteria, count, timeout)

    async def assert_sent_async(
        self, *, count: int | None = None, timeout: float = 0.0, **criteria: CriterionArg
    ) -> list[Message]:
        """``assert_sent`` for async tests: waits with ``wait_for_async``,
        without blocking the test's event loop."""
        __tracebackhide__ = True
        matches = matcher(criteria)
        if count is not None and count < 0:
            raise ValueError(f"count must be None or 0 or more, got {count}")
        if timeout > 0 and count != 0:
            with contextlib.suppress(TimeoutError):
                await self.messages.wait_for_async(count=count or 1, timeout=timeout, where=matches)
        found = [message for message in self.messages if matches(message)]
        return self._verdict(found, criteria, count, timeout)

    def assert_not_sent(self, **criteria: CriterionArg) -> None:
        """Assert that no message matching every criterion arrived."""
        __tracebackhide__ = True
        matches = matcher(criteria)
        found = [message for message in self.messages if matches(message)]
        if found:
            listed = "\n".join(f"  {message!r}" for message in found)
            raise AssertionError(f"expected no message matching {criteria!r}, found {len(found)}:\n{listed}")

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
