"""Helpers for tests that talk to real programs: finding them (a missing one
skips the test, or fails it under CI), a free loopback port, and a
subprocess whose output lines are read as they come, with a deadline."""

from __future__ import annotations

import os
import pwd
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, NoReturn, TypeVar

import pytest

__all__ = [
    "TIMEOUT",
    "Spawned",
    "free_port",
    "missing",
    "mta_base",
    "require_program",
    "wait_for_listener",
    "wait_until",
]

#: Seconds any single wait may take before it counts as a hang.
TIMEOUT = 10.0
#: Where Debian puts daemons, which a non-login root PATH may lack.
SBIN = os.pathsep.join(["/usr/local/sbin", "/usr/sbin", "/sbin"])

T = TypeVar("T")


def missing(reason: str) -> NoReturn:
    """A peer the test needs is not available: skip, or fail when CI is set
    (CI installs every peer, so a missing one there is a broken setup)."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set, so this is an error: run .ci/install-peers.sh)", pytrace=False)
    pytest.skip(reason)


def require_program(name: str, package: str) -> str:
    """The path of program ``name``, which Debian's ``package`` installs."""
    path = shutil.which(name) or shutil.which(name, path=SBIN)
    if path is None:
        missing(f"{name} is not installed: install the Debian package {package!r} (see .ci/install-peers.sh)")
    return path


def mta_base(prefix: str, mta: str, user: str, user_hint: str) -> Path:
    """A new directory for a private instance of ``mta`` (Postfix, Exim),
    once it is known that one can run here: as root, with its ``user``
    (``user_hint`` says where it comes from); else skipped. Not pytest's
    tmp_path: the MTA's unprivileged processes must reach the directory, and
    pytest makes its temporary root 0700."""
    if os.geteuid() != 0:
        missing(f"running {mta} needs root")
    try:
        pwd.getpwnam(user)
    except KeyError:
        missing(f"the user {user} does not exist: {user_hint}")
    base = Path(tempfile.mkdtemp(prefix=prefix))
    base.chmod(0o755)
    return base


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(condition: Callable[[], T | None], what: str, timeout: float = TIMEOUT, interval: float = 0.02) -> T:
    """Poll ``condition`` until it returns something other than None (or
    False), for at most ``timeout`` seconds. For state another process
    changes without telling us (a Maildir, a pid), where nothing can be
    waited on directly."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while True:
        result = condition()
        if result is not None and result is not False:
            return result
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"waited {timeout}s for {what}")
        pause.wait(min(interval, remaining))


class Spawned:
    """A child process whose stdout and stderr lines are collected by
    reader threads, so a test can wait for a given line with a deadline."""

    def __init__(self, args: Sequence[str], *, env: dict[str, str] | None = None, cwd: str | None = None) -> None:
        self.args = list(args)
        self.proc = subprocess.Popen(
            self.args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            errors="backslashreplace",
            env=env,
            cwd=cwd,
        )
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self.lines: dict[str, list[str]] = {"stdout": [], "stderr": []}
        self._queues: dict[str, queue.Queue[str | None]] = {"stdout": queue.Queue(), "stderr": queue.Queue()}
        self._threads = [
            threading.Thread(target=self._read, args=("stdout", self.proc.stdout), daemon=True),
            threading.Thread(target=self._read, args=("stderr", self.proc.stderr), daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    @classmethod
    def python(cls, *args: str, env: dict[str, str] | None = None, cwd: str | None = None) -> Spawned:
        """``python args...`` with unbuffered output, so lines come as printed."""
        full_env = dict(os.environ if env is None else env)
        full_env["PYTHONUNBUFFERED"] = "1"
        return cls([sys.executable, *args], env=full_env, cwd=cwd)

    def _read(self, name: str, stream: IO[str]) -> None:
        for line in stream:
            self._queues[name].put(line.rstrip("\n"))
        self._queues[name].put(None)

    def expect(self, pattern: str, stream: str = "stdout", timeout: float = TIMEOUT) -> re.Match[str]:
        """Read ``stream`` until a line matches ``pattern`` (``re.search``)."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        source = self._queues[stream]
        while True:
            remaining = deadline - time.monotonic()
            try:
                line = source.get(timeout=max(remaining, 0))
            except queue.Empty:
                self._give_up(f"no line matching {pattern!r} on {stream} within {timeout}s")
            if line is None:
                source.put(None)  # stay at end of stream for later calls
                self._give_up(f"{stream} ended without a line matching {pattern!r}")
            self.lines[stream].append(line)
            match = regex.search(line)
            if match:
                return match

    def next_line(self, stream: str = "stdout", timeout: float = TIMEOUT) -> str:
        """The next line of ``stream``."""
        return self.expect("", stream, timeout).string

    def _give_up(self, problem: str) -> NoReturn:
        self.close()
        raise AssertionError(f"{problem}\n{self.report()}")

    def report(self) -> str:
        """Everything read so far, for failure messages."""
        self._drain()
        return (
            f"command: {self.args}\nexit status: {self.proc.returncode}\n"
            f"stdout:\n{chr(10).join(self.lines['stdout'])}\nstderr:\n{chr(10).join(self.lines['stderr'])}"
        )

    def _drain(self) -> None:
        for name, source in self._queues.items():
            while True:
                try:
                    line = source.get_nowait()
                except queue.Empty:
                    break
                if line is None:
                    source.put(None)
                    break
                self.lines[name].append(line)

    def interrupt(self, timeout: float = TIMEOUT) -> int:
        """Ctrl-C: send SIGINT and wait for the exit status."""
        self.proc.send_signal(signal.SIGINT)
        return self.wait(timeout)

    def wait(self, timeout: float = TIMEOUT) -> int:
        try:
            status = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._give_up(f"the process did not exit within {timeout}s")
        for thread in self._threads:
            thread.join(timeout)
        self._drain()
        return status

    def output(self, stream: str = "stdout") -> str:
        """Everything the stream carried; call after wait()."""
        self._drain()
        return "\n".join(self.lines[stream])

    def close(self) -> None:
        """Kill the process if it still runs and reap it."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(TIMEOUT)
        for thread in self._threads:
            thread.join(TIMEOUT)
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self.proc.stdout.close()
        self.proc.stderr.close()

    def __enter__(self) -> Spawned:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def wait_for_listener(address: tuple[str, int], proc: Spawned, timeout: float = TIMEOUT) -> None:
    """Poll-connect until something listens on ``address``, for at most
    ``timeout`` seconds, failing early if ``proc`` exits. Each try that is
    refused waits a moment on the process itself, not on a clock."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(address, timeout=timeout):
                return
        except ConnectionRefusedError:
            pass
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            proc._give_up(f"nothing listened on {address} within {timeout}s")
        try:
            proc.proc.wait(min(0.05, remaining))
        except subprocess.TimeoutExpired:
            continue
        proc._give_up(f"the process exited before listening on {address}")
