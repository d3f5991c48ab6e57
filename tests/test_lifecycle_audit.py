"""Audit of the I/O shell through real sockets: flow control across STARTTLS."""

from __future__ import annotations

import asyncio
import logging
import smtplib
import socket
import threading
import time

import pytest

from pytest_smtpd import Message, Server
from pytest_smtpd.server import STOP_GRACE

MESSAGE = b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\nDATA\r\nhi\r\n.\r\n"


def test_starttls_while_the_client_is_not_reading_leaves_no_stale_flow_control(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A client pipelines commands and STARTTLS without reading: the server's
    writes are paused when the handshake begins. Once the client reads and
    does TLS, the session must not stay paused: an async handler's answer is
    followed by the next command, not by the idle timeout's 421."""
    release = threading.Event()

    async def handler(message: Message) -> None:
        # Holds the session (reading paused) until the client has sent all.
        await asyncio.get_running_loop().run_in_executor(None, release.wait, 10)

    with Server(tls="starttls", handler=handler, timeout=10) as server:
        # Small kernel buffers on both sides (accepted sockets inherit the
        # listener's), so that the replies to one read fill asyncio's buffer.
        server.sockets[0].setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        raw = socket.socket()
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        raw.connect(server.address)
        raw.settimeout(20)
        raw.sendall(b"EHLO x\r\n" + MESSAGE + b"HELP\r\n" * 3000 + b"STARTTLS\r\n")
        release.set()
        got = bytearray()
        while b"\r\n220 " not in got and len(got) < 10_000_000:
            chunk = raw.recv(65536)
            assert chunk, "the server hung up before its 220"
            got += chunk
        tls = server.client_context().wrap_socket(raw, server_hostname="localhost")
        with tls, tls.makefile("rb") as replies:
            tls.sendall(b"EHLO x\r\n" + MESSAGE)
            lines = [replies.readline()]
            while lines[-1] and not lines[-1].startswith(b"354 ") and len(lines) < 50:
                lines.append(replies.readline())
            assert replies.readline() == b"250 OK\r\n", lines
            tls.sendall(b"NOOP\r\n")
            assert replies.readline() == b"250 OK\r\n"
            tls.sendall(b"QUIT\r\n")
            assert replies.readline().startswith(b"221 ")
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text


@pytest.mark.parametrize("mode", ["starttls", "implicit"])
def test_stop_does_not_wait_for_an_idle_tls_clients_close_notify(mode: str) -> None:
    """A TLS client still connected at stop() gets its 421 at once; stop()
    does not wait out its grace for a close_notify the client never sends
    (it took STOP_GRACE, 2 s, per stop with any idle TLS client)."""
    server = Server(tls=mode)  # type: ignore[arg-type]
    server.start()
    context = server.client_context()
    if mode == "starttls":
        client = smtplib.SMTP(*server.address, timeout=10)
        client.starttls(context=context)
    else:
        client = smtplib.SMTP_SSL(*server.address, context=context, timeout=10)
    with client:
        client.ehlo()
        started = time.monotonic()
        server.stop()
        took = time.monotonic() - started
        assert client.noop()[0] == 421
    assert took < STOP_GRACE / 2, took
    assert server.sessions[0].ended_by == "stop"


def test_starttls_to_a_client_that_never_reads_ends_at_the_timeout(caplog: pytest.LogCaptureFixture) -> None:
    """The wait for the writes to drain before the handshake is bounded by
    the server's timeout, and the session ends as timed out."""
    with Server(tls="starttls", timeout=1) as server:
        server.sockets[0].setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        with socket.socket() as raw:
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            raw.connect(server.address)
            raw.settimeout(10)
            assert raw.recv(100).startswith(b"220 ")  # accepted; never read from again
            raw.sendall(b"EHLO x\r\n" + b"HELP\r\n" * 3000 + b"STARTTLS\r\n")
            server.stop(grace=30)  # returns once the session has ended by itself
        session = server.sessions[0]
    assert session.ended_by == "timeout"
    assert "the client does not read its replies" in caplog.text
