"""``Server.sessions``: a record of every connection, with its transcript,
written by the core as it goes (the same lines as the protocol trace)."""

from __future__ import annotations

import smtplib
import threading

from conftest import TIMEOUT, Wire
from pytest_smtpd import Server


def test_a_delivery_is_recorded_with_its_transcript() -> None:
    with Server() as server:
        with smtplib.SMTP(*server.address, timeout=TIMEOUT) as client:
            client.ehlo("client.test")
            client.sendmail("a@example.com", ["b@example.com"], b"Subject: hi\r\n\r\nhello\r\n")
        [message] = server.messages
        [session] = server.sessions
    assert session.commands == ["EHLO", "MAIL", "RCPT", "DATA", "QUIT"]
    assert session.ended_by == "quit"
    assert session.ended_at is not None and session.ended_at >= session.started_at
    assert session.helo == "client.test"
    assert session.messages == [message]
    assert message.session is session
    assert session.peer == message.peer
    assert not session.pipelined  # smtplib waits for each reply
    lines = [(entry.direction, entry.line) for entry in session.transcript]
    assert lines[0] == ("server", lines[0][1]) and lines[0][1].startswith("220 ")
    assert ("client", "<25 bytes of message data>") in lines
    assert lines[-2:] == [("client", "QUIT"), ("server", "221 Bye")]
    times = [entry.time for entry in session.transcript]
    assert times == sorted(times)
    assert session.last_error() is None
    assert "C: QUIT\nS: 221 Bye" in session.format_transcript()


def test_sessions_without_a_message_say_how_they_ended() -> None:
    with Server() as server:
        with Wire(server.address) as wire:
            assert wire.command("EHLO c") == 250
            assert wire.command("MAIL FROM:<a@example.com>") == 250
            refused = wire.command("RCPT TO:<not an address>")
            assert refused >= 500
        with Wire(server.address) as wire:
            assert wire.command("NOOP") == 250
            assert wire.command("QUIT") == 221
        open_one = Wire(server.address)
        assert open_one.command("EHLO still.here") == 250
    with open_one:
        assert open_one.reply()[0] == 421
    hung_up, quit, stopped = server.sessions
    assert hung_up.ended_by == "client"
    assert (hung_up.last_error() or "").startswith(f"{refused} ")
    assert hung_up.messages == []
    assert quit.ended_by == "quit"
    assert stopped.ended_by == "stop"
    assert stopped.transcript[-1].line.startswith("421 ")
    assert stopped.helo == "still.here"


def test_pipelined_commands_are_noticed() -> None:
    with Server() as server, Wire(server.address) as wire:
        assert wire.command("EHLO c") == 250
        wire.send(b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\n")
        assert [wire.reply()[0], wire.reply()[0]] == [250, 250]
        [session] = server.sessions
        assert session.pipelined
        assert session.is_open


def test_tls_and_auth_are_recorded() -> None:
    with Server(tls="starttls", auth={"alice": "pw"}) as server:
        with smtplib.SMTP(*server.address, timeout=TIMEOUT) as client:
            client.starttls(context=server.client_context())
            client.login("alice", "pw")
            client.sendmail("a@example.com", ["b@example.com"], b"x\r\n")
        [session] = server.sessions
    assert session.commands[:4] == ["EHLO", "STARTTLS", "EHLO", "AUTH"]
    assert session.tls is not None and session.tls.mode == "starttls"
    assert session.auth_identity == "alice"
    assert "pw" not in session.format_transcript().replace("pipelining", "")


def test_clear_forgets_sessions_and_messages() -> None:
    with Server() as server:
        with smtplib.SMTP(*server.address, timeout=TIMEOUT) as client:
            client.sendmail("a@example.com", ["b@example.com"], b"x\r\n")
        server.clear()
        assert list(server.sessions) == [] and list(server.messages) == []


def test_a_server_that_keeps_no_messages_keeps_no_sessions() -> None:
    with Server(keep_messages=False) as server:
        with smtplib.SMTP(*server.address, timeout=TIMEOUT) as client:
            client.noop()
        assert len(server.sessions) == 0


def test_sessions_read_from_another_thread_while_clients_come_and_go() -> None:
    errors: list[BaseException] = []

    def send(address: tuple[str, int]) -> None:
        try:
            with smtplib.SMTP(*address, timeout=TIMEOUT) as client:
                client.sendmail("a@example.com", ["b@example.com"], b"x\r\n")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    with Server() as server:
        senders = [threading.Thread(target=send, args=(server.address,)) for _ in range(10)]
        for thread in senders:
            thread.start()
        for _ in range(50):
            assert all(isinstance(session.commands, list) for session in server.sessions)
        for thread in senders:
            thread.join(TIMEOUT)
        server.messages.wait_for(10)
    assert errors == []
    assert len(server.sessions) == 10
    assert sorted(len(session.messages) for session in server.sessions) == [1] * 10
