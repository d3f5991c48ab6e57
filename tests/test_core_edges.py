"""Protocol edges of the core and its transport, each through a real socket:
fault replies at BDAT and at the greeting, MESSAGE faults with BDAT, the TLS
close when QUIT and close_notify come together or close_notify comes alone,
stop() and the handlers it cancels or that call it, LMTP partial replies
behind MailmanProxy, bounded records with an unbounded trace, byte counts
past the size limit, the idle timer while busy, hostname checks and verdict
codes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import smtplib
import socket
import ssl
import threading
from collections.abc import Iterator
from typing import Literal

import pytest

from conftest import TIMEOUT, Wire
from pytest_smtpd import Message, Reply, Server
from pytest_smtpd.lmtp import deliver_lmtp
from pytest_smtpd.mailman import MailmanProxy
from pytest_smtpd.transport import SessionProtocol

BODY = b"Subject: edge\r\n\r\nbody\r\n"


def greet_and_open(wire: Wire, rcpts: int = 1) -> None:
    """EHLO, MAIL and ``rcpts`` RCPTs, each accepted."""
    assert wire.command("EHLO client.test") == 250
    assert wire.command("MAIL FROM:<a@example.com>") == 250
    for number in range(rcpts):
        assert wire.command(f"RCPT TO:<b{number}@example.com>") == 250


# -- fault replies: when the reply is said, when the session closes ------------------


def test_a_421_fault_at_bdat_is_said_after_the_chunk_then_the_session_closes() -> None:
    with Server(enable_CHUNKING=True, faults=["BDAT=421 4.3.0 Going away"]) as server, Wire(server.address) as wire:
        greet_and_open(wire)
        wire.send(b"BDAT 5 LAST\r\nhello")
        assert wire.reply() == (421, "4.3.0 Going away")
        assert wire.closed_by_peer()
        server.stop()
        [session] = server.sessions
        assert session.ended_by == "fault"
        assert session.faults_fired == ["BDAT: reply 421 4.3.0 Going away"]
        assert len(server.messages) == 0


def test_a_4xx_fault_at_bdat_keeps_the_session_open() -> None:
    with Server(enable_CHUNKING=True, faults=["BDAT[times=1]=452 4.3.1 Busy"]) as server, Wire(server.address) as wire:
        greet_and_open(wire)
        wire.send(b"BDAT 5 LAST\r\nhello")
        assert wire.reply() == (452, "4.3.1 Busy")
        # The transaction is over; a new one goes through.
        assert wire.command("MAIL FROM:<a@example.com>") == 250
        assert wire.command("RCPT TO:<b@example.com>") == 250
        wire.send(b"BDAT 5 LAST\r\nhello")
        assert wire.reply()[0] == 250
        assert [m.data for m in server.messages] == [b"hello"]


@pytest.mark.parametrize("lmtp", [False, True], ids=["smtp", "lmtp"])
def test_a_message_fault_applies_at_bdat_last(lmtp: bool) -> None:
    with Server(enable_CHUNKING=True, lmtp=lmtp) as server, Wire(server.address) as wire:
        server.faults.reply("MESSAGE", "451 4.3.0 Try again later", match="second chunk")
        assert wire.command("LHLO client.test" if lmtp else "EHLO client.test") == 250
        assert wire.command("MAIL FROM:<a@example.com>") == 250
        assert wire.command("RCPT TO:<b@example.com>") == 250
        assert wire.command("RCPT TO:<c@example.com>") == 250
        wire.send(b"BDAT 12\r\nfirst chunk ")
        assert wire.reply()[0] == 250
        wire.send(b"BDAT 12 LAST\r\nsecond chunk")
        for _ in range(2 if lmtp else 1):  # LMTP: one reply per recipient
            assert wire.reply() == (451, "4.3.0 Try again later")
        assert wire.command("NOOP") == 250
        assert len(server.messages) == 0
        assert server.sessions[0].faults_fired == ["MESSAGE: reply 451 4.3.0 Try again later"]


def test_a_554_greeting_serves_nothing_but_quit() -> None:
    with Server(enable_CHUNKING=True, faults=["CONNECT=554 5.3.2 No service"]) as server:
        with Wire(server.address, greeting=False) as wire:
            assert wire.reply() == (554, "5.3.2 No service")
            for line in ("EHLO client.test", "HELO client.test", "MAIL FROM:<a@example.com>",
                         "RCPT TO:<b@example.com>", "DATA", "NOOP", "RSET", "HELP", "BOGUS"):  # fmt: skip
                assert wire.exchange(line) == (503, "Error: no SMTP service here, only QUIT"), line
            wire.send(b"BDAT 5 LAST\r\nhello")  # the chunk is read, and refused
            assert wire.reply()[0] == 503
            assert wire.command("QUIT") == 221
            assert wire.closed_by_peer()
        assert len(server.messages) == 0


def test_a_421_greeting_closes_at_once() -> None:
    with Server(faults=["CONNECT=421 4.3.2 Not now"]) as server, Wire(server.address, greeting=False) as wire:
        assert wire.reply() == (421, "4.3.2 Not now")
        assert wire.closed_by_peer()


def test_smtplib_sees_a_554_greeting_as_a_refusal() -> None:
    with Server(faults=["CONNECT=554 5.3.2 No service"]) as server:
        with pytest.raises(smtplib.SMTPConnectError) as refused:
            smtplib.SMTP(*server.address, timeout=TIMEOUT)
        assert refused.value.smtp_code == 554


def test_a_connect_rule_matches_the_clients_host_and_port() -> None:
    with Server() as server:
        server.faults.reply("CONNECT", "554 5.7.1 Not from there", match="10.0.0.1:")
        server.faults.reply("CONNECT", "554 5.7.1 Go away", match=re.compile(r"\A127\.0\.0\.1:\d+\Z"))
        with Wire(server.address, greeting=False) as wire:
            assert wire.reply() == (554, "5.7.1 Go away")
        server.faults.clear()
        with Wire(server.address, greeting=False) as wire:
            port = wire.sock.getsockname()[1]
            assert wire.reply()[0] == 220
        server.faults.reply("CONNECT", "554 5.7.1 This port", match=f"127.0.0.1:{port + 1}")
        with Wire(server.address, greeting=False) as wire:
            expected = 554 if wire.sock.getsockname()[1] == port + 1 else 220
            assert wire.reply()[0] == expected


# -- TLS: the server's close_notify -----------------------------------------------------


def tls_quit_with_close_notify(server: Server) -> tuple[bytes, bool]:
    """STARTTLS, then QUIT and our close_notify in one write (as Exim ends a
    session); read to the TCP end. What the server said in TLS, and whether
    its own close_notify came."""
    sock = socket.create_connection(server.address, timeout=TIMEOUT)
    try:
        plain = Wire(sock)
        assert plain.command("EHLO client.test") == 250
        assert plain.command("STARTTLS") == 220
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = server.client_context().wrap_bio(incoming, outgoing, server_hostname="localhost")
        for _ in range(50):
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                sock.sendall(outgoing.read())
                incoming.write(sock.recv(65536))
        sock.sendall(outgoing.read())
        tls.write(b"EHLO client.test\r\n")
        sock.sendall(outgoing.read())
        said = b""
        for _ in range(50):
            try:
                said += tls.read(65536)
            except ssl.SSLWantReadError:
                incoming.write(sock.recv(65536))
            if said.endswith(b"250 HELP\r\n"):
                break
        tls.write(b"QUIT\r\n")
        with contextlib.suppress(ssl.SSLWantReadError):
            tls.unwrap()  # queues our close_notify
        sock.sendall(outgoing.read())  # QUIT and close_notify in one write
        raw = b""
        for _ in range(1000):
            chunk = sock.recv(65536)
            if not chunk:
                break
            raw += chunk
        incoming.write(raw)
        said = b""
        for _ in range(50):
            try:
                data = tls.read(65536)
            except (ssl.SSLZeroReturnError, ssl.SSLWantReadError):
                break
            if not data:
                break
            said += data
        try:
            tls.unwrap()  # completes only with the server's close_notify
        except ssl.SSLWantReadError:
            return said, False
        return said, True
    finally:
        sock.close()


def test_quit_and_close_notify_in_one_read_get_221_and_the_servers_close_notify() -> None:
    with Server(tls="starttls") as server:
        for _ in range(3):
            said, close_notify = tls_quit_with_close_notify(server)
            assert said == b"221 Bye\r\n"
            assert close_notify, "the server hung up without its close_notify"


def test_a_tls_client_unwrapping_after_quit_gets_the_servers_close_notify() -> None:
    with Server(tls="starttls") as server, Wire(server.address) as wire:
        assert wire.command("EHLO client.test") == 250
        wire.start_tls(server.client_context())
        assert wire.command("QUIT") == 221
        assert isinstance(wire.sock, ssl.SSLSocket)
        wire.sock.unwrap()  # raises if the server hangs up without close_notify


@pytest.mark.parametrize("mode", ["starttls", "implicit"])
def test_a_tls_clients_close_notify_without_quit_is_answered_with_the_servers(
    mode: Literal["starttls", "implicit"],
) -> None:
    with Server(tls=mode) as server:
        context = server.client_context()
        with Wire(server.address, context=context if mode == "implicit" else None) as wire:
            if mode == "starttls":
                assert wire.command("EHLO client.test") == 250
                wire.start_tls(context)
            assert wire.command("EHLO client.test") == 250
            assert isinstance(wire.sock, ssl.SSLSocket)
            wire.sock.unwrap()  # our close_notify first; raises if the server hangs up without its own


# -- stop() and handlers -----------------------------------------------------------------------


def test_stop_waits_for_the_async_handlers_it_cancels() -> None:
    log: list[str] = []
    started = threading.Event()

    async def handler(message: Message) -> None:
        started.set()
        try:
            await asyncio.sleep(60)
        finally:
            log.append("cleanup started")
            await asyncio.sleep(0.05)  # a rollback, say
            log.append("cleanup finished")

    server = Server(handler=handler)
    server.start()
    try:
        with Wire(server.address) as wire:
            greet_and_open(wire)
            assert wire.command("DATA") == 354
            wire.send(BODY + b".\r\n")
            assert started.wait(TIMEOUT)
            server.stop()
            assert log == ["cleanup started", "cleanup finished"]
            assert wire.reply()[0] == 421
    finally:
        server.stop()


def test_an_async_handler_stopping_its_server_is_heard_then_421() -> None:
    async def handler(message: Message) -> str:
        server.stop()
        await asyncio.sleep(0.01)
        return "250 2.0.0 queued as X"

    server = Server(handler=handler)
    server.start()
    try:
        with Wire(server.address) as wire:
            greet_and_open(wire)
            assert wire.command("DATA") == 354
            assert wire.exchange((BODY + b".").decode()) == (250, "2.0.0 queued as X")
            assert wire.reply()[0] == 421
            assert wire.closed_by_peer()
        assert len(server.messages) == 1
    finally:
        server.stop()
    assert server.sessions[0].ended_by == "stop"


def test_smtplib_hears_the_verdict_of_an_async_handler_that_stops_its_server() -> None:
    async def handler(message: Message) -> None:
        server.stop()
        await asyncio.sleep(0)

    server = Server(handler=handler)
    server.start()
    try:
        client = smtplib.SMTP(*server.address, timeout=TIMEOUT)
        assert client.sendmail("a@example.com", ["b@example.com"], BODY) == {}
        assert client.noop()[0] == 421
        client.close()
    finally:
        server.stop()


# -- LMTP: each recipient's fate is its own reply ---------------------------------------------


@contextlib.contextmanager
def lmtp_dropping_after(replies_given: int) -> Iterator[tuple[str, int]]:
    """An LMTP server that accepts every recipient, reads the message, gives
    ``replies_given`` of the per-recipient replies and hangs up."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(TIMEOUT)

    def serve() -> None:
        with contextlib.suppress(OSError), listener.accept()[0] as conn:
            conn.settimeout(TIMEOUT)
            stream = conn.makefile("rb")
            conn.sendall(b"220 lmtp.test LMTP\r\n")
            recipients = 0
            for _ in range(100):
                line = stream.readline()
                if not line:
                    return
                verb = line[:4].upper()
                if verb == b"LHLO":
                    conn.sendall(b"250-lmtp.test\r\n250 8BITMIME\r\n")
                elif verb == b"RCPT":
                    recipients += 1
                    conn.sendall(b"250 OK\r\n")
                elif verb == b"DATA":
                    conn.sendall(b"354 go ahead\r\n")
                    for _ in range(1000):
                        if stream.readline() in (b".\r\n", b""):
                            break
                    conn.sendall(b"250 2.1.5 delivered\r\n" * replies_given)
                    return
                else:
                    conn.sendall(b"250 OK\r\n")

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        yield listener.getsockname()[:2]
    finally:
        thread.join(TIMEOUT)
        listener.close()


def test_deliver_lmtp_keeps_the_replies_that_came_before_the_drop() -> None:
    with lmtp_dropping_after(1) as address:
        result = asyncio.run(
            deliver_lmtp(address, "a@example.com", ["one@lists.test", "two@lists.test"], BODY, local_hostname="me")
        )
    assert result.delivered == ["one@lists.test"]
    [(code, text)] = result.refused.values()
    assert list(result.refused) == ["two@lists.test"]
    assert code == -1
    assert text == (
        f"LMTP delivery to {address[0]}:{address[1]} failed: the server closed the connection "
        "(waiting for the reply for <two@lists.test> after the message, 2 of 2)"
    )


def test_mailman_proxy_refuses_only_the_recipients_mailman_did_not_answer() -> None:
    lists = ["one@lists.test", "two@lists.test"]
    with Server() as upstream, lmtp_dropping_after(1) as address:
        proxy = MailmanProxy(("127.0.0.1", 0), upstream.address, lists=lists, mailman_lmtp=address)
        try:
            with smtplib.SMTP(*proxy.address, timeout=TIMEOUT) as client:
                client.ehlo("client.test")
                client.mail("a@example.com")
                for rcpt in lists:
                    client.rcpt(rcpt)
                code, text = client.data(BODY)
        finally:
            proxy.close()
    assert code == 250
    assert b"refused upstream: <two@lists.test> (451 " in text
    assert b"one@lists.test" not in text
    assert b"the server closed the connection" in text


# -- bounded records, an unbounded trace --------------------------------------------------------


def test_the_trace_goes_on_past_the_kept_transcript(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="pytest_smtpd.trace")
    with Server(max_transcript_lines=20) as server:
        with smtplib.SMTP(*server.address, timeout=TIMEOUT) as client:
            for _ in range(10):
                client.sendmail("a@example.com", ["b@example.com"], BODY)
            client.noop()
            client.docmd("VRFY", "last@example.com")
        server.stop()
        [session] = server.sessions
    assert len(session.transcript) == 20
    assert session.transcript[-1].line == "<transcript limit of 20 lines reached: the rest is not recorded>"
    traced = [record.getMessage() for record in caplog.records if record.name == "pytest_smtpd.trace"]
    assert len(traced) > 80
    assert any(line.endswith("> VRFY last@example.com") for line in traced)
    assert traced[-1].endswith("< 221 Bye")
    assert not any("transcript limit" in line for line in traced)


def test_faults_fired_is_bounded_like_the_transcript() -> None:
    with Server(max_transcript_lines=50, faults=["NOOP=450 4.3.0 Busy"]) as server:
        with Wire(server.address) as wire:
            wire.send(b"NOOP\r\n" * 300)
            for _ in range(300):
                assert wire.reply()[0] == 450
        server.stop()
        [session] = server.sessions
    assert len(session.faults_fired) == 50
    assert session.faults_fired[0] == "NOOP: reply 450 4.3.0 Busy"
    assert session.faults_fired[-1] == "<limit of 50 faults fired reached: the rest is not recorded>"


# -- disconnect(after_bytes=) counts what is received ---------------------------------------------


@pytest.mark.parametrize("data_size_limit", [0, 1000], ids=["no-limit", "limit-below-N"])
def test_disconnect_after_bytes_counts_octets_received_past_the_size_limit(data_size_limit: int) -> None:
    with Server(data_size_limit=data_size_limit) as server, Wire(server.address) as wire:
        server.faults.disconnect("DATA", after_bytes=5000)
        greet_and_open(wire)
        assert wire.command("DATA") == 354
        wire.send(b"x" * 4000)
        wire.send(b"x" * 2000)  # past N, but no end of data: the cut must come now
        assert wire.closed_by_peer()
        server.stop()
        [session] = server.sessions
    assert session.ended_by == "fault"
    assert session.transcript[-1].line == "<6000 bytes of message data, unfinished>"


# -- the idle timer while a session is busy ------------------------------------------------------


def test_the_idle_timer_does_not_spin_while_a_delay_fault_holds_the_session(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[None] = []
    check_idle = SessionProtocol._check_idle

    def counting(self: SessionProtocol) -> None:
        calls.append(None)
        check_idle(self)

    monkeypatch.setattr(SessionProtocol, "_check_idle", counting)
    with Server(timeout=0.3, faults=["MAIL=delay:1.0"]) as server, Wire(server.address) as wire:
        assert wire.command("EHLO client.test") == 250
        assert wire.command("MAIL FROM:<a@example.com>") == 250  # late, not a 421
    # Wake-ups at about 0.3, 0.6, 0.9 (busy), then by the idle clock: not every 10 ms.
    assert len(calls) <= 8


def test_the_idle_timeout_still_ends_a_silent_session() -> None:
    with Server(timeout=0.3) as server, Wire(server.address) as wire:
        assert wire.reply() == (421, "Error: timeout exceeded")
        assert wire.closed_by_peer()


# -- hostname and verdict checks ------------------------------------------------------------------


@pytest.mark.parametrize("hostname", ["mx\rtest", "mx\ntest", "mx test", "mx\x00", "mx\ttest"])
def test_a_hostname_that_cannot_be_said_is_refused_at_construction(hostname: str) -> None:
    with pytest.raises(ValueError, match="hostname must be a name without spaces or control characters"):
        Server(hostname=hostname)


def test_a_good_hostname_is_said_in_one_greeting_line() -> None:
    with Server(hostname="mx.example.test") as server, Wire(server.address, greeting=False) as wire:
        assert wire.reply() == (220, "mx.example.test Python SMTP proxy version 0.3")


@pytest.mark.parametrize("verdict", ["354 go on", Reply(302, "moved")])
@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_a_verdict_must_be_2xx_4xx_or_5xx(
    verdict: str | Reply, is_async: bool, caplog: pytest.LogCaptureFixture
) -> None:
    def handler(message: Message) -> str | Reply:
        return verdict

    async def async_handler(message: Message) -> str | Reply:
        return verdict

    with Server(handler=async_handler if is_async else handler) as server:
        with smtplib.SMTP(*server.address, timeout=TIMEOUT) as client:
            with pytest.raises(smtplib.SMTPDataError) as refused:
                client.sendmail("a@example.com", ["b@example.com"], BODY)
            assert refused.value.smtp_code == 451
            assert client.noop()[0] == 250  # the session goes on
        assert len(server.messages) == 0
    assert "a message verdict must be a 2xx, 4xx or 5xx reply" in caplog.text


def test_an_lmtp_verdict_with_a_3xx_for_one_recipient_is_refused(caplog: pytest.LogCaptureFixture) -> None:
    with Server(lmtp=True, handler=lambda message: [None, "354 more"]) as server, Wire(server.address) as wire:
        assert wire.command("LHLO client.test") == 250
        assert wire.command("MAIL FROM:<a@example.com>") == 250
        assert wire.command("RCPT TO:<b@example.com>") == 250
        assert wire.command("RCPT TO:<c@example.com>") == 250
        assert wire.command("DATA") == 354
        wire.send(BODY + b".\r\n")
        assert [wire.reply()[0], wire.reply()[0]] == [451, 451]
        assert len(server.messages) == 0
    assert "not 354" in caplog.text
