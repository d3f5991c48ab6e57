"""Shared test helpers: a running ``Server``, a raw line-level SMTP client
(in plaintext or TLS), one message sent with smtplib or aiosmtplib, a strict
pytester project, and a guard that no test leaves the loop thread behind."""

from __future__ import annotations

import asyncio
import smtplib
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from types import TracebackType

import aiosmtplib
import peers
import pytest
from pytester_helpers import INI

from pytest_smtpd import Server, loopthread

#: Seconds any single wait in the tests may take before it counts as a hang.
TIMEOUT = 5.0
LOOP_THREAD = "pytest-smtpd-loop"


def loop_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == LOOP_THREAD]


def no_server_running() -> bool:
    """No server uses the loop thread, and the thread is gone unless the
    plugin's ``smtpd_loop`` fixture keeps it for the test session."""
    return loopthread.servers_running() == 0 and (loopthread.is_kept_running() or loop_threads() == [])


class Wire:
    """A client socket that speaks SMTP line by line, in plaintext or TLS, so
    that tests choose every byte sent and see every reply as it comes.

    ``address`` is where to connect, or a connected socket to speak over as it
    is. With ``context`` the socket is wrapped in TLS before the greeting
    (implicit TLS), verified against ``server_hostname``."""

    def __init__(
        self,
        address: tuple[str, int] | socket.socket,
        *,
        greeting: bool = True,
        context: ssl.SSLContext | None = None,
        server_hostname: str = "localhost",
    ) -> None:
        sock = address if isinstance(address, socket.socket) else socket.create_connection(address, timeout=TIMEOUT)
        try:
            if context is not None:
                sock = context.wrap_socket(sock, server_hostname=server_hostname)
            self.sock = sock
            self._file = sock.makefile("rb")
            if greeting:
                code, text = self.reply()
                assert code == 220, text
        except BaseException:
            sock.close()
            raise

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def reply(self) -> tuple[int, str]:
        """The next whole reply: its code and its lines joined by ``\\n``."""
        lines: list[str] = []
        for _ in range(100):
            line = self._file.readline(4096)
            if not line.endswith(b"\r\n"):
                raise ConnectionError(f"connection closed mid-reply, after {lines!r} and {line!r}")
            code, more, text = line[:3], line[3:4] == b"-", line[4:-2].decode("utf-8")
            lines.append(text)
            if not more:
                return int(code), "\n".join(lines)
        raise AssertionError(f"a reply of more than 100 lines: {lines[:3]!r}...")

    def exchange(self, line: str) -> tuple[int, str]:
        """Send one command line (or a message body ending with ``.``) and return the whole reply."""
        self.send(line.encode("utf-8") + b"\r\n")
        return self.reply()

    def command(self, line: str) -> int:
        """Send one command line (or a message body ending with ``.``) and return the reply code."""
        return self.exchange(line)[0]

    def start_tls(self, context: ssl.SSLContext, server_hostname: str = "localhost") -> None:
        """Send ``STARTTLS``, which must be answered 220, and do the TLS
        handshake, verified against ``server_hostname``."""
        code, text = self.exchange("STARTTLS")
        assert code == 220, text
        self._file.close()
        self.sock = context.wrap_socket(self.sock, server_hostname=server_hostname)
        self._file = self.sock.makefile("rb")

    def closed_by_peer(self) -> bool:
        """Whether the server has closed its side (nothing more to read). A
        reset counts: a server that closes with input of ours still unread
        (sent just before it stopped) makes the kernel answer with a reset."""
        try:
            return self._file.read() == b""
        except ConnectionResetError:
            return True

    def close(self) -> None:
        self._file.close()
        self.sock.close()

    def __enter__(self) -> Wire:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def send_and_get_data_reply(
    address: tuple[str, int],
    rcpttos: list[str],
    data: bytes,
    *,
    mailfrom: str = "author@example.com",
    mail_options: tuple[str, ...] = (),
) -> tuple[int, str]:
    """Send one message with smtplib; return the reply to the end of DATA.
    Every command before it must be accepted: a proxy decides at the end."""
    with smtplib.SMTP(*address, timeout=peers.TIMEOUT) as client:
        client.ehlo("client.test")
        code, text = client.mail(mailfrom, list(mail_options))
        assert code == 250, text
        for rcpt in rcpttos:
            code, text = client.rcpt(rcpt)
            assert code == 250, text
        code, reply = client.data(data)
        return code, reply.decode("utf-8")


def aiosmtplib_send(
    address: tuple[str, int],
    data: bytes,
    *,
    use_tls: bool = False,
    start_tls: bool | None = None,
    tls_context: ssl.SSLContext | None = None,
    username: str | None = None,
    password: str | None = None,
) -> None:
    """Send ``data`` from a@example.com to b@example.com with ``aiosmtplib.send``
    (``start_tls=None``: STARTTLS if offered, as aiosmtplib does by default)."""
    asyncio.run(
        aiosmtplib.send(
            data,
            sender="a@example.com",
            recipients=["b@example.com"],
            hostname=address[0],
            port=address[1],
            use_tls=use_tls,
            start_tls=start_tls,
            tls_context=tls_context,
            username=username,
            password=password,
            timeout=peers.TIMEOUT,
        )
    )


def run_python(script: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``script`` in a new interpreter (a fork, a hang: in a child
    process, killed after ``timeout`` seconds), its output as text."""
    return subprocess.run(
        [sys.executable, "-W", "ignore::DeprecationWarning", "-c", script],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


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


@pytest.fixture
def server() -> Iterator[Server]:
    with Server() as running:
        yield running


@pytest.fixture
def strict(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A pytester project with the strict ini of pytester_helpers, and none
    of an outer xdist worker's environment: a run inside an xdist worker's
    test is no worker, so SMTPD_PORT must not get the outer worker's number
    (see xdist_worker_number)."""
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    monkeypatch.delenv("SMTPD_PORT", raising=False)
    pytester.makeini(INI)
    return pytester


@pytest.fixture(autouse=True)
def _no_loop_thread_left() -> Iterator[None]:
    """A test must leave no server running, and a test that found no loop
    thread running must leave none behind, unless the plugin's session
    fixture now keeps it running on purpose."""
    had_loop = bool(loop_threads())
    servers_before = loopthread.servers_running()
    yield
    assert loopthread.servers_running() == servers_before, "a server was left running"
    if not had_loop and not loopthread.is_kept_running():
        assert loop_threads() == [], "a server was left running"
