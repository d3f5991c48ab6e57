"""Audit of the newer public methods under threads and fork: strict mode's
``MessageStore.not_looked_at()`` beside ``clear()`` and reads, the switch
of test (``Server.attribute()``, ``current_test``) and ``reset()`` while
sessions send, a forked child's servers, and the dev inbox's subscribers
coming and going while messages arrive. Mail goes through real smtplib
clients; every loop is bounded; the fork runs in a child process with a
hard timeout."""

from __future__ import annotations

import asyncio
import gc
import smtplib
import threading
from collections.abc import Callable
from typing import Any

import pytest

from conftest import TIMEOUT, run_python
from pytest_smtpd import Message, Server, loopthread


def send(server: Server, subject: str) -> None:
    with smtplib.SMTP(*server.address, timeout=TIMEOUT) as client:
        client.sendmail("app@example.com", ["bob@example.com"], f"Subject: {subject}\r\n\r\nhi\r\n".encode())


def subjects(messages: list[Message]) -> list[str]:
    return [message.subject or "" for message in messages]


class Hammer(threading.Thread):
    """Runs ``step`` until told to stop (at most ``rounds`` times), keeping
    the first exception instead of losing it in the thread."""

    def __init__(self, step: Callable[[], None], rounds: int = 200_000) -> None:
        super().__init__(daemon=True)
        self.step, self.rounds = step, rounds
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.done = 0

    def run(self) -> None:
        try:
            for _ in range(self.rounds):
                if self.stop.is_set():
                    return
                self.step()
                self.done += 1
        except BaseException as exc:  # handed to the test by finish()
            self.error = exc

    def finish(self) -> None:
        self.stop.set()
        self.join(TIMEOUT * 4)
        assert not self.is_alive(), "a hammering thread did not stop"
        if self.error is not None:
            raise self.error


# -- not_looked_at() and clear() -------------------------------------------------------


def test_a_clear_between_a_read_and_its_marking_marks_no_later_message() -> None:
    """``filter`` and ``wait_for`` mark what they found as looked at after
    looking, outside the lock: a ``clear()`` in between (here in the
    ``where``, in a suite the plugin switching tests while another thread
    reads) left the ids of messages gone in the marks, and a later message
    that CPython put at a freed one's address counted as looked at: strict
    mode missed it (in 10 to 40 rounds of 200)."""
    with Server() as server:
        for n in range(200):
            send(server, f"old {n}")
            server.messages.wait_for(1, TIMEOUT, where=lambda message: bool(server.clear()) or True)
            gc.collect()  # the old message (in a cycle with its session) freed, as a suite's gc would
            send(server, f"new {n}")
            assert subjects(server.messages.not_looked_at()) == [f"new {n}"], f"round {n}"
            server.clear()


def test_not_looked_at_reads_and_clears_in_threads_while_200_messages_arrive(short_switch_interval: None) -> None:
    """Two threads, one reading ``not_looked_at()`` and then iterating (which
    looks), one clearing, while smtplib sends 200 messages: no exception,
    every message handed out by exactly one clear() or still held, and no
    message both unlooked-at and looked at by one read."""
    with Server() as server:
        cleared: list[Message] = []
        overlaps: list[list[str]] = []

        def read() -> None:
            unseen = server.messages.not_looked_at()
            if len({id(message) for message in unseen}) != len(unseen):
                overlaps.append(subjects(unseen))
            list(server.messages)

        reader, clearer = Hammer(read), Hammer(lambda: cleared.extend(server.messages.clear()))
        reader.start()
        clearer.start()
        try:
            with smtplib.SMTP(*server.address, timeout=TIMEOUT) as client:
                for n in range(200):
                    client.sendmail("app@example.com", ["bob@example.com"], f"Subject: {n}\r\n\r\nhi\r\n".encode())
        finally:
            reader.finish()
            clearer.finish()
        held = list(server.messages)
        assert sorted(int(s) for s in subjects(cleared + held)) == list(range(200))
        assert overlaps == []
        assert server.messages.not_looked_at() == []
        assert reader.done > 0 and clearer.done > 0


# -- the switch of test and reset() ------------------------------------------------------


def test_switching_tests_and_resetting_from_another_thread_while_sessions_send(short_switch_interval: None) -> None:
    """A thread switches ``current_test`` (``attribute()``, as the plugin
    does between tests) and calls ``reset()`` while 200 sessions each send a
    message: every message is returned by exactly one of those calls or held
    at the end, never both nor lost, and what ``messages`` holds began under
    the test now current."""
    with Server() as server:
        handed: list[Message] = []
        switches = iter(range(10**9))

        def switch() -> None:
            n = next(switches)
            handed.extend(server.reset() if n % 3 == 0 else server.attribute(f"test_{n}"))

        switcher = Hammer(switch, rounds=20_000)
        switcher.start()
        try:
            for n in range(200):
                send(server, str(n))
        finally:
            switcher.finish()
        current = server.current_test
        held = list(server.messages)
        assert all(message.session is not None and message.session.test == current for message in held)
        late = server.attribute(None)  # the late ones kept aside, with what is held
        assert sorted(id(message) for message in held) == sorted(
            id(message) for message in late if message.session is not None and message.session.test == current
        )
        everything = handed + late
        assert sorted(int(s) for s in subjects(everything)) == list(range(200))
        assert switcher.done > 0


# -- fork ------------------------------------------------------------------------------------

FORK_SCRIPT = """
import os, signal, smtplib, sys, threading
from pytest_smtpd import Server

def send(server, subject):
    with smtplib.SMTP(*server.address, timeout=10) as client:
        client.sendmail("a@example.com", ["b@example.com"], f"Subject: {subject}\\r\\n\\r\\nhi\\r\\n".encode())

server = Server()
server.start()
server.attribute("parent::test")
# A session of the parent's under way at the fork: its client has sent
# the envelope and half the message.
client = smtplib.SMTP(*server.address, timeout=10)
client.ehlo()
assert client.mail("a@example.com")[0] == 250 and client.rcpt("b@example.com")[0] == 250
assert client.docmd("DATA")[0] == 354
client.send(b"Subject: parent\\r\\n\\r\\nfirst half\\r\\n")
# Another thread in the locks the loop thread takes to keep a message.
held, release = threading.Event(), threading.Event()
def hold():
    with server._attribution, server.messages._changed:
        held.set()
        release.wait(30)
threading.Thread(target=hold, daemon=True).start()
held.wait(30)
pid = os.fork()
if pid == 0:
    signal.alarm(20)  # a hang in the child ends it, not the test run
    try:
        assert not server.is_running()
        assert server.attribute("child::test") == [] and server.current_test == "child::test"
        server.start()  # the inherited server, on its own loop thread in the child
        send(server, "child 1")
        assert [m.subject for m in server.messages.not_looked_at()] == ["child 1"]
        assert [m.subject for m in server.reset()] == ["child 1"]
        server.stop()
        with Server() as fresh:  # and a new one
            fresh.attribute("child::fresh")
            send(fresh, "child 2")
            assert [m.subject for m in fresh.attribute(None)] == ["child 2"]
            assert fresh.reset() == []
    except BaseException as exc:
        print("child:", repr(exc), file=sys.stderr)
        os._exit(1)
    os._exit(0)
release.set()
_, status = os.waitpid(pid, 0)
client.send(b"second half\\r\\n.\\r\\n")
code, _ = client.getreply()
client.quit()
subjects = [m.subject for m in server.messages]
server.stop()
print("child", os.waitstatus_to_exitcode(status), "parent", code, subjects)
"""


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs os.fork")
def test_after_a_fork_the_child_runs_servers_switches_tests_and_resets() -> None:
    """Forked while a session was mid-message and another thread held the
    locks that keep a message: in the child the inherited server starts,
    switches test and resets, and a new server works; the parent's session
    finishes and its message is the parent's."""
    result = run_python(FORK_SCRIPT)
    assert result.stdout.strip() == "child 0 parent 250 ['parent']", result.stderr


# -- the dev inbox's subscribers -----------------------------------------------------------


def test_inbox_subscribers_come_and_go_from_threads_while_messages_arrive(short_switch_interval: None) -> None:
    """Two threads subscribe and unsubscribe (on the loop thread, where the
    hub's methods run: ``run_coroutine_threadsafe``) while smtplib sends 200
    messages: a subscriber there all along gets every message event once, in
    order; one that came and went gets a gapless run of them; the count of
    subscribers is right at the end."""
    pytest.importorskip("aiohttp")
    from pytest_smtpd.inbox.hub import Inbox

    inbox = Inbox()
    lease = loopthread.acquire_loop()
    loop = lease.loop

    def on_loop(call: Callable[[], Any]) -> Any:
        async def run() -> Any:
            return call()

        return asyncio.run_coroutine_threadsafe(run(), loop).result(TIMEOUT)

    def drained(queue: asyncio.Queue[dict[str, Any] | None]) -> list[int]:
        def take() -> list[dict[str, Any] | None]:
            events = []
            for _ in range(queue.qsize()):
                events.append(queue.get_nowait())
            return events

        events = on_loop(take)
        assert None not in events, "a subscriber was dropped as fallen behind"
        return [event["id"] for event in events if event is not None and event["type"] == "message"]

    runs: list[list[int]] = []

    def churn() -> None:
        queue = on_loop(inbox.subscribe)
        on_loop(lambda: None)  # at least one round of the loop subscribed
        on_loop(lambda: inbox.unsubscribe(queue))
        runs.append(drained(queue))

    try:
        with Server() as server:
            inbox.attach(server)
            steady = on_loop(inbox.subscribe)
            seen: list[int] = []
            churners = [Hammer(churn, rounds=5_000) for _ in range(2)]
            for churner in churners:
                churner.start()
            try:
                with smtplib.SMTP(*server.address, timeout=TIMEOUT) as client:
                    for n in range(200):
                        client.sendmail("app@example.com", ["bob@example.com"], f"Subject: {n}\r\n\r\nhi\r\n".encode())
                        if n % 50 == 49:  # keep the steady subscriber below its backlog
                            seen.extend(drained(steady))
            finally:
                for churner in churners:
                    churner.finish()
            seen.extend(drained(steady))
            assert on_loop(lambda: inbox.subscribers) == 1
    finally:
        lease.release()
        inbox.close()
    assert len(seen) == 200 and seen == list(range(seen[0], seen[0] + 200)), seen
    for run in runs:
        assert run == list(range(run[0], run[0] + len(run))) if run else run == [], run
    assert sum(churner.done for churner in churners) > 0
