"""Audit of the layer tests touch for thread and lifecycle races: session
records read from several threads at once or right after the client's last
reply, and a restart's connection count. Every client goes through a real
socket and every wait is bounded (none of these can hang, so they run here,
not in a child process)."""

from __future__ import annotations

import smtplib
import socket
import threading

import pytest
from peers import wait_until

from conftest import TIMEOUT, Wire
from pytest_smtpd import Fault, Message, Server
from pytest_smtpd.sessions import Session


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


def test_a_connection_refused_by_max_connections_leaves_the_connect_faults_alone() -> None:
    """The refused connection's core asked the fault rules for its greeting
    before the refusal took its place: a ``times=1`` CONNECT fault was used
    up by a client that only heard 421, and never reached anyone."""
    with Server(max_connections=1) as server, Wire(server.address) as holder:
        server.faults.reply("CONNECT", "554 5.3.2 Not today", times=1)
        with Wire(server.address, greeting=False) as refused:
            assert refused.reply()[0] == 421
        assert holder.command("QUIT") == 221
        assert holder.closed_by_peer()
        with Wire(server.address, greeting=False) as next_client:
            assert next_client.reply()[0] == 554
        with Wire(server.address) as after_the_fault:
            assert after_the_fault.command("NOOP") == 250
        assert [session.faults_fired for session in server.sessions][1:3] == [
            [],
            ["CONNECT: reply 554 5.3.2 Not today"],
        ]


def test_a_refused_implicit_tls_connection_does_not_hold_a_place() -> None:
    """Refused beyond ``max_connections``, an implicit-TLS connection says
    its 421 after the handshake; until then (up to ``timeout``, for a client
    that never does the handshake) it counted as one of the sessions, and so
    the next client was refused too, though the server had room."""
    with Server(tls="implicit", max_connections=1, timeout=TIMEOUT) as server:
        context = server.client_context()
        with smtplib.SMTP_SSL(*server.address, context=context, timeout=TIMEOUT) as first:
            assert first.noop()[0] == 250
            silent = socket.create_connection(server.address, timeout=TIMEOUT)  # no handshake
            try:
                wait_until(lambda: len(server.sessions) == 2, "the silent connection to be refused")
                first.quit()
                with smtplib.SMTP_SSL(*server.address, context=context, timeout=TIMEOUT) as second:
                    assert second.noop()[0] == 250
            finally:
                silent.close()


def _send(server: Server, subject: str, timeout: float = TIMEOUT) -> None:
    with smtplib.SMTP(*server.address, timeout=timeout) as client:
        client.sendmail("app@example.com", ["bob@example.com"], f"Subject: {subject}\r\n\r\nhi\r\n".encode())


def test_a_slow_where_does_not_hold_up_the_server() -> None:
    """``wait_for`` ran its ``where`` (and ``assert_sent`` its criteria,
    which parse each message) while holding the store's lock, so the loop
    thread could not append the next message: every session of every
    server waited behind a slow predicate."""
    in_where = threading.Event()
    release = threading.Event()

    def where(message: Message) -> bool:
        in_where.set()
        release.wait(TIMEOUT)
        return True

    with Server() as server:
        _send(server, "first")
        result: list[list[Message]] = []
        waiter = threading.Thread(target=lambda: result.append(server.messages.wait_for(2, TIMEOUT, where=where)))
        waiter.start()
        try:
            assert in_where.wait(TIMEOUT)
            # Answered while the predicate is still running (it would run
            # on for TIMEOUT, well past this client's own timeout).
            _send(server, "second", timeout=TIMEOUT / 5)
            assert len(server.messages) == 2
        finally:
            release.set()
            waiter.join(TIMEOUT)
        assert [len(found) for found in result] == [2]


def test_clear_returns_what_it_forgot_taken_at_once() -> None:
    """The shared server's take-over warns about each message that arrived
    after the last test: it reads and clears in one step, so a message
    arriving in between can be neither missed nor dropped unannounced."""
    with Server() as server:
        _send(server, "late")
        forgotten = server.clear()
        assert [message.subject for message in forgotten] == ["late"]
        assert list(server.messages) == [] and server.clear() == []
