"""Shared test helpers: a running ``Server``, a raw line-level SMTP client,
and a guard that no test leaves the loop thread behind."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from types import TracebackType

import pytest

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
    """A client socket that speaks SMTP line by line, so that tests choose
    every byte sent and see every reply as it comes."""

    def __init__(self, address: tuple[str, int], *, greeting: bool = True) -> None:
        self.sock = socket.create_connection(address, timeout=TIMEOUT)
        self._file = self.sock.makefile("rb")
        if greeting:
            code, text = self.reply()
            assert code == 220, text

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

    def command(self, line: str) -> int:
        """Send one command line (or a message body ending with ``.``) and return the reply code."""
        self.send(line.encode("utf-8") + b"\r\n")
        return self.reply()[0]

    def closed_by_peer(self) -> bool:
        """Whether the server has closed its side (nothing more to read)."""
        return self._file.read() == b""

    def close(self) -> None:
        self._file.close()
        self.sock.close()

    def __enter__(self) -> Wire:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


@pytest.fixture
def server() -> Iterator[Server]:
    with Server() as running:
        yield running


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
