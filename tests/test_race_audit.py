"""Audit of the layer tests touch for thread and lifecycle races: session
records read from several threads at once or right after the client's last
reply, and a restart's connection count. Every client goes through a real
socket and every wait is bounded (none of these can hang, so they run here,
not in a child process)."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator

import pytest

from conftest import TIMEOUT, Wire
from pytest_smtpd import Fault, Server
from pytest_smtpd.sessions import Session


@pytest.fixture
def short_switch_interval() -> Iterator[None]:
    """Switch threads as often as the interpreter can, so that a race
    between threads shows within a few rounds."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(before)


def _read_transcript(session: Session, barrier: threading.Barrier, seen: list[list[str]]) -> None:
    barrier.wait(TIMEOUT)
    seen.append([str(entry) for entry in session.transcript])


def test_a_transcript_read_from_threads_at_once_stays_whole(short_switch_interval: None) -> None:
    """``Session.transcript`` builds its entries on first read: two threads
    reading it at once (a handler on the loop thread and the test, or two
    test threads) each appended the lines to the shared cache, which then
    held them twice, interleaved, for every later read."""
    noops = 300
    expected_tail = ["C: NOOP", "S: 250 OK"] * 3 + ["C: QUIT", "S: 221 Bye"]
    with Server() as server:
        for _ in range(10):
            with Wire(server.address) as wire:
                wire.send(b"NOOP\r\n" * noops + b"QUIT\r\n")
                for _ in range(noops):
                    assert wire.reply()[0] == 250
                assert wire.reply()[0] == 221
    assert len(server.sessions) == 10
    readers = 4
    for session in server.sessions:
        barrier = threading.Barrier(readers)
        seen: list[list[str]] = []
        threads = [threading.Thread(target=_read_transcript, args=(session, barrier, seen)) for _ in range(readers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(TIMEOUT)
            assert not thread.is_alive()
        final = [str(entry) for entry in session.transcript]
        assert len(final) == 1 + 2 * noops + 2
        assert final[-len(expected_tail) :] == expected_tail
        assert seen == [final] * readers


@pytest.mark.parametrize("how", ["quit", "fault", "refused"])
def test_a_session_is_recorded_as_ended_once_its_client_has_the_last_reply(how: str) -> None:
    """``ended_by`` and ``ended_at`` were set only when the loop saw the
    socket close, a loop iteration after the last reply went out: a test
    that checked ``ended_by == "quit"`` right after its client's QUIT (the
    README's example) found None most of the time."""
    with Server(max_connections=1 if how == "refused" else 0) as server:
        if how == "fault":
            server.faults.reply("NOOP", "421 4.3.2 Going away")
        holder = Wire(server.address) if how == "refused" else None
        try:
            for _ in range(50):
                if how == "refused":
                    with Wire(server.address, greeting=False) as wire:
                        assert wire.reply()[0] == 421
                elif how == "quit":
                    with Wire(server.address) as wire:
                        assert wire.command("QUIT") == 221
                else:
                    with Wire(server.address) as wire:
                        assert wire.command("NOOP") == 421
                session = server.sessions[-1]
                assert session.ended_by == ("quit" if how == "quit" else "fault")
                assert session.ended_at is not None and not session.is_open
        finally:
            if holder is not None:
                holder.close()


def test_connections_are_counted_from_1_again_after_a_restart() -> None:
    """``session=N`` counts connections "from 1 since start or clear()" (the
    README): after stop() and start() the first connection was numbered on
    from the last run, so a rule for the first session never fired again."""
    server = Server(faults=[Fault.reply("NOOP", "450 4.3.2 First session only", session=1)])
    for _ in range(2):
        with server, Wire(server.address) as first:
            assert first.command("NOOP") == 450
            with Wire(server.address) as second:
                assert second.command("NOOP") == 250
