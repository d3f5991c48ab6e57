"""The ``smtpd`` fixture's life around each test: which test a shared
server's mail belongs to (the late-mail warning), strict mode, putting the
shared server back as configured after each test, the worker's port for an
app (``SMTPD_PORT``), and what a test item keeps of its server: only until
its last report is made, so that a long run's memory stays flat."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest

from .config import OptionError

if TYPE_CHECKING:  # the plugin imports this module at start-up; the server loads with the first fixture
    from .assertions import FixtureServer
    from .message import Message
    from .sessions import Session

__all__ = [
    "PORT_ENV",
    "SMTPDLateMessageWarning",
    "TestUse",
    "end_own",
    "export_port",
    "forget",
    "hand_back",
    "note_failed",
    "pop_strict",
    "take_over",
    "use",
]

#: The environment variable that gives an app the port of this pytest
#: process's server (with ``smtpd_port`` set; under xdist, the worker's).
PORT_ENV = "SMTPD_PORT"
#: Unseen messages strict mode lists by name; the rest are counted.
STRICT_LISTED = 10


class SMTPDLateMessageWarning(pytest.PytestWarning):
    """A message reached the shared server in a session that began before
    the running test (in an earlier test, or between tests): it is not
    shown to the running test."""


@dataclass
class TestUse:
    """What the plugin keeps of a test's use of ``smtpd`` until the test's
    teardown report is made."""

    server: FixtureServer
    #: Strict mode: fail at teardown for messages the test never looked at.
    strict: bool
    #: Whether setup or the call failed (strict mode then says nothing).
    failed: bool = False
    #: Whether it is the shared server (``smtpd_session``).
    shared: bool = False


#: The server a test used, for its report (and the save dir).
USED_SERVER = pytest.StashKey["FixtureServer"]()
TEST_USE = pytest.StashKey[TestUse]()
#: The last test that used the shared server, to name in a warning about
#: mail whose session began after it.
PREVIOUS_TEST = pytest.StashKey[str]()
#: Set once ``SMTPD_PORT`` is exported (and its restore registered).
PORT_EXPORTED = pytest.StashKey[bool]()


def pop_strict(options: dict[str, Any], default: bool, source: str) -> bool:
    """Take ``strict`` out of the options (it is the fixture's, not a
    ``Server`` option): its value, or ``default`` (the ini's); an
    ``OptionError`` for one that is not a bool."""
    if "strict" not in options:
        return default
    strict = options.pop("strict")
    if not isinstance(strict, bool):
        raise OptionError(f"{source}: strict must be True or False, got {strict!r}")
    return strict


def use(item: pytest.Item, server: FixtureServer, strict: bool, shared: bool = False) -> TestUse:
    """Note that ``item`` uses ``server`` (kept until ``forget``)."""
    item.stash[USED_SERVER] = server
    used = item.stash[TEST_USE] = TestUse(server, strict, shared=shared)
    return used


def note_failed(item: pytest.Item) -> None:
    """Setup or the call of ``item`` failed."""
    used = item.stash.get(TEST_USE, None)
    if used is not None:
        used.failed = True


def _untie(messages: Sequence[Message], sessions: Sequence[Session]) -> None:
    """A message and its session refer to each other (``message.session``,
    ``session.messages``): let go of, such a pair is freed only by the
    garbage collector's next full collection, which a long run may not reach
    for many tests, and their mail piles up meanwhile. The test is over: its
    sessions' ``messages`` lists are emptied, so that dropping the last
    reference frees them at once."""
    for session in {*sessions, *(m.session for m in messages if m.session is not None)}:
        session.messages.clear()


def forget(item: pytest.Item) -> None:
    """After the test's last report: the item (which pytest keeps for the
    whole run) no longer holds its server, messages or transcripts."""
    used = item.stash.get(TEST_USE, None)
    if USED_SERVER in item.stash:
        del item.stash[USED_SERVER]
    if TEST_USE in item.stash:
        del item.stash[TEST_USE]
    if used is not None and not used.shared:
        _untie(used.server.messages.snapshot(), list(used.server.sessions))


def _not_looked_at(used: TestUse) -> list[Message]:
    return [] if not used.strict or used.failed else used.server.messages.not_looked_at()


def _fail_strict(unseen: Sequence[Message]) -> None:
    if not unseen:
        return
    listed = [f"  {message!r}" for message in unseen[:STRICT_LISTED]]
    if len(unseen) > STRICT_LISTED:
        listed.append(f"  ... and {len(unseen) - STRICT_LISTED} more")
    pytest.fail(
        f"smtpd strict mode: {len(unseen)} message(s) arrived that the test never looked at"
        " (with assert_sent, wait_for, filter, last, indexing or iteration):\n" + "\n".join(listed),
        pytrace=False,
    )


def end_own(used: TestUse, stop: Callable[[], None]) -> None:
    """Teardown of a test's own server: ``stop()`` it, then strict mode."""
    unseen = _not_looked_at(used)
    stop()
    _fail_strict(unseen)


def _warn_late(message: Message, nodeid: str, previous: str | None) -> None:
    if message.test is not None:
        began = f"began in {message.test}"
    else:
        began = f"began between tests (after {previous} ended)" if previous else "began before any test"
    warnings.warn(
        SMTPDLateMessageWarning(
            f"{message!r} reached the shared smtpd server in a session that {began}; {nodeid} does not see it"
        ),
        stacklevel=3,
    )


def take_over(config: pytest.Config, server: FixtureServer, nodeid: str) -> None:
    """Before a test: the shared server runs (a test before may have stopped
    it and its restart failed), its sessions begin under ``nodeid``, and a
    warning names each message that arrived since the last test ended."""
    if not server.is_running():
        server.start()
    late = server.attribute(nodeid)  # taken and cleared at once: none slips between
    _untie(late, ())
    for message in late:
        _warn_late(message, nodeid, config.stash.get(PREVIOUS_TEST, None))


def hand_back(config: pytest.Config, used: TestUse, nodeid: str) -> None:
    """After a test: strict mode, then the shared server as its
    configuration says (whatever the test changed undone, running, no
    messages or sessions), with a warning naming each message that came
    during the test in a session begun before it."""
    server = used.server
    unseen = _not_looked_at(used)
    held = server.messages.snapshot(), list(server.sessions)
    server.reset()
    _untie(*held)
    try:
        if not server.is_running():
            server.start()
    finally:
        arrived = server.attribute(None)
        late = [message for message in arrived if message.test != nodeid]
        _untie(arrived, ())
        previous = config.stash.get(PREVIOUS_TEST, None)
        config.stash[PREVIOUS_TEST] = nodeid
    for message in late:  # under filterwarnings = error, the first one raises
        _warn_late(message, nodeid, previous)
    _fail_strict(unseen)


def export_port(config: pytest.Config, port: int | None) -> None:
    """Set ``SMTPD_PORT`` to ``port`` (the fixed ``smtpd_port``, plus the
    xdist worker's number) for an app whose settings read it; the value
    before is put back when pytest ends."""
    if not port:
        return
    if not config.stash.get(PORT_EXPORTED, False):
        config.stash[PORT_EXPORTED] = True
        before = os.environ.get(PORT_ENV)

        def restore() -> None:
            if before is None:
                os.environ.pop(PORT_ENV, None)
            else:
                os.environ[PORT_ENV] = before

        config.add_cleanup(restore)
    os.environ[PORT_ENV] = str(port)
