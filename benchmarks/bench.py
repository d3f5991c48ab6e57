"""Benchmarks: pytest-smtpd's ``Server`` side by side with aiosmtpd's ``Controller``.

Run ``python benchmarks/bench.py`` (or ``nox -s bench``). aiosmtpd is optional
(the ``bench`` extra): without it only our figures are printed. The package
itself never imports aiosmtpd; this script does, for comparison only.

Measured, in one process, every server on 127.0.0.1:

1. fixture start+stop: ``Server().start(); .stop()`` against
   ``Controller(handler, hostname="127.0.0.1", port=<free port>).start(); .stop()``.
2. 20 concurrent aiosmtplib clients x 50 small messages each: messages/s.
   The clients run on an event loop in the main thread, as a test's would,
   so they share the GIL with the server thread. A do-nothing asyncio server
   is measured alongside as a reference: the ceiling for this setup.
3. one 20 MiB DATA from a plain socket client: MiB/s.
4. bytes per held message, with tracemalloc, for 10,000 ~1 KiB messages;
   bytes per idle connection (greeted, then silent), for 200 connections,
   against aiosmtpd and the do-nothing asyncio server.
5. plugin import time, and whether importing the plugin pulls in trustme,
   cryptography or aiosmtpd (it must not).
6. a generated pytest suite, run in a subprocess: the process's RSS after
   1,000 tests that each receive a 1 MiB message against after 10 (target:
   within 1.2x), with function and with session scope; and the ``smtpd``
   fixture's cost per test (a suite of tests using it, less the same suite
   without it).

Repetitions interleave the servers, so that drift of the machine hits them
alike; figures are medians. Options: ``--json PATH`` writes the figures and
samples, ``--quick`` runs smaller sizes (a smoke test), ``--no-aiosmtpd``
skips the comparison, ``--strict`` exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import faulthandler
import gc
import json
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import aiosmtplib

from pytest_smtpd import Server, loopthread

HOST = "127.0.0.1"
SENDER = "sender@example.com"
RECIPIENT = "recipient@example.com"
MiB = 1024 * 1024
#: Socket and client timeout: no single operation may wait longer.
IO_TIMEOUT = 60.0
#: Hard limit for the whole run; past it the script dumps its threads' stacks and exits.
WATCHDOG_SECONDS = 420


@dataclass(frozen=True)
class Sizes:
    start_stop_reps: int = 50
    clients: int = 20
    messages_per_client: int = 50
    throughput_reps: int = 7
    big_message_mib: int = 20
    big_message_reps: int = 3
    held_messages: int = 10_000
    idle_connections: int = 200
    import_reps: int = 5
    #: Tests in the long suite of 6 (the short one has 10).
    suite_tests: int = 1000
    suite_reps: int = 3


QUICK = Sizes(
    start_stop_reps=10,
    clients=5,
    messages_per_client=10,
    throughput_reps=1,
    big_message_mib=2,
    big_message_reps=1,
    held_messages=500,
    idle_connections=50,
    import_reps=2,
    suite_tests=100,
    suite_reps=1,
)


# -- the servers under test ------------------------------------------------------


class Subject(Protocol):
    """A running SMTP server under test."""

    name: str

    @property
    def port(self) -> int: ...
    def start(self) -> None: ...
    def stop(self) -> None: ...
    def held(self) -> int: ...
    def clear(self) -> None: ...


class Ours:
    name = "ours"

    def __init__(self) -> None:
        self.server = Server(HOST, 0)

    @property
    def port(self) -> int:
        return self.server.port

    def start(self) -> None:
        self.server.start()

    def stop(self) -> None:
        self.server.stop()

    def held(self) -> int:
        return len(self.server.messages)

    def clear(self) -> None:
        self.server.messages.clear()


class KeepingHandler:
    """An aiosmtpd handler that keeps every envelope, as a test server would."""

    def __init__(self) -> None:
        self.envelopes: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.envelopes.append(envelope)
        return "250 OK"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


class Aiosmtpd:
    name = "aiosmtpd"

    def __init__(self, port: int | None = None) -> None:
        from aiosmtpd.controller import Controller

        # Controller cannot bind port 0: start() connects to the port it was given.
        self._port = free_port() if port is None else port
        self.handler = KeepingHandler()
        self.controller = Controller(self.handler, hostname=HOST, port=self._port)

    @property
    def port(self) -> int:
        return self._port

    def start(self) -> None:
        self.controller.start()

    def stop(self) -> None:
        self.controller.stop()

    def held(self) -> int:
        return len(self.handler.envelopes)

    def clear(self) -> None:
        self.handler.envelopes.clear()


class _NoOpProtocol(asyncio.Protocol):
    """Canned replies, no parsing: what any asyncio server costs at the least.
    Expects what the aiosmtplib clients send: one command per read, and a
    message body that ends its read with CRLF.CRLF."""

    def __init__(self, owner: NoOpServer) -> None:
        self.owner = owner
        self.in_data = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(b"220 no-op\r\n")

    def data_received(self, data: bytes) -> None:
        transport = self.transport
        assert transport is not None
        if self.in_data:
            if data.endswith(b"\r\n.\r\n"):
                self.in_data = False
                self.owner.count += 1
                transport.write(b"250 OK\r\n")
        elif data[:4].upper() == b"EHLO":
            transport.write(b"250-no-op\r\n250 8BITMIME\r\n")
        elif data[:4].upper() == b"DATA":
            self.in_data = True
            transport.write(b"354 go ahead\r\n")
        elif data[:4].upper() == b"QUIT":
            transport.write(b"221 Bye\r\n")
            transport.close()
        else:
            transport.write(b"250 OK\r\n")


class NoOpServer:
    """A reference for the concurrent-clients figure: a do-nothing asyncio
    server on its own loop thread, the ceiling for any in-process asyncio server."""

    name = "no-op"

    def __init__(self) -> None:
        self.count = 0
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="bench-no-op", daemon=True)
        self._listener: asyncio.base_events.Server | None = None
        self._port = 0

    @property
    def port(self) -> int:
        return self._port

    def start(self) -> None:
        self.thread.start()
        coro = self.loop.create_server(lambda: _NoOpProtocol(self), HOST, 0)
        self._listener = asyncio.run_coroutine_threadsafe(coro, self.loop).result(IO_TIMEOUT)
        self._port = self._listener.sockets[0].getsockname()[1]

    def stop(self) -> None:
        if self.loop.is_closed():
            return
        if self.thread.is_alive():
            if self._listener is not None:
                self.loop.call_soon_threadsafe(self._listener.close)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(IO_TIMEOUT)
        if not self.thread.is_alive():
            self.loop.close()

    def held(self) -> int:
        return self.count

    def clear(self) -> None:
        self.count = 0


def aiosmtpd_available() -> bool:
    try:
        import aiosmtpd.controller  # noqa: F401
    except ImportError:
        return False
    return True


def wait_held(subject: Subject, count: int, timeout: float = IO_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while subject.held() < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{subject.name}: {subject.held()} of {count} messages after {timeout}s")
        time.sleep(0.001)


# -- a plain socket SMTP client -----------------------------------------------------


class RawClient:
    """A blocking SMTP client on a plain socket, for exact control of the bytes."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection((HOST, port), timeout=IO_TIMEOUT)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._buffer = bytearray()

    def close(self) -> None:
        self.sock.close()

    def reply(self) -> int:
        """Read one complete (possibly multi-line) reply; return its code."""
        while True:
            end = self._buffer.find(b"\r\n")
            if end < 0:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionError("server closed the connection")
                self._buffer += chunk
                continue
            line = bytes(self._buffer[:end])
            del self._buffer[: end + 2]
            if len(line) < 4 or line[3:4] != b"-":
                return int(line[:3])

    def expect(self, code: int) -> None:
        got = self.reply()
        if got != code:
            raise RuntimeError(f"expected a {code} reply, got {got}")

    def command(self, line: bytes, code: int) -> None:
        self.sock.sendall(line + b"\r\n")
        self.expect(code)

    def greet(self) -> None:
        self.expect(220)
        self.command(b"EHLO bench.client", 250)

    def quit(self) -> None:
        self.command(b"QUIT", 221)
        self.close()


def make_body(size: int, line_length: int = 76) -> bytes:
    """A message of about ``size`` bytes: headers, then lines of ``line_length``
    characters and CRLF. No line starts with a dot; it ends with CRLF."""
    head = f"From: {SENDER}\r\nTo: {RECIPIENT}\r\nSubject: benchmark\r\n\r\n".encode()
    line = (b"abcdefghijklmnopqrstuvwxyz0123456789" * 4)[:line_length] + b"\r\n"
    lines = max((size - len(head)) // len(line), 1)
    body = head + line * lines
    short = size - len(body)
    if short > 2:
        body += b"x" * (short - 2) + b"\r\n"
    return body


# -- 1. fixture start+stop -----------------------------------------------------------


def time_start_stop(factory: Callable[[], Subject]) -> float:
    """Seconds for construct + start + stop; the free port (aiosmtpd) is picked outside.

    The collector is paused inside the timed region rather than run before
    each repetition: a full collection right before leaves the allocator
    cold and adds hundreds of microseconds that a test run never sees."""
    gc.disable()
    try:
        t0 = time.perf_counter()
        subject = factory()
        subject.start()
        subject.stop()
        return time.perf_counter() - t0
    finally:
        gc.enable()


def aiosmtpd_on_a_free_port() -> Callable[[], Subject]:
    """Picks the free port now, before the clock starts; Controller() is built inside it."""
    port = free_port()
    return lambda: Aiosmtpd(port)


def bench_start_stop(with_aiosmtpd: bool, reps: int) -> dict[str, list[float]]:
    """Seconds per construct+start+stop, interleaved so that drift hits both alike."""
    samples: dict[str, list[float]] = {"ours": []}
    if with_aiosmtpd:
        samples["aiosmtpd"] = []
    gc.collect()
    for rep in range(-3, reps):  # three warm-up rounds: imports, the loop thread, caches
        ours = time_start_stop(Ours)
        # A new free port for every aiosmtpd repetition, chosen outside the timing.
        theirs = time_start_stop(aiosmtpd_on_a_free_port()) if with_aiosmtpd else 0.0
        if rep >= 0:
            samples["ours"].append(ours)
            if with_aiosmtpd:
                samples["aiosmtpd"].append(theirs)
    return samples


# -- 2. concurrent aiosmtplib clients --------------------------------------------------


async def _one_client(port: int, count: int, body: bytes) -> None:
    client = aiosmtplib.SMTP(
        hostname=HOST, port=port, start_tls=False, local_hostname="bench.client", timeout=IO_TIMEOUT
    )
    await client.connect()
    for _ in range(count):
        await client.sendmail(SENDER, [RECIPIENT], body)
    await client.quit()


async def _many_clients(port: int, clients: int, per_client: int, body: bytes) -> float:
    t0 = time.perf_counter()
    jobs = [_one_client(port, per_client, body) for _ in range(clients)]
    await asyncio.wait_for(asyncio.gather(*jobs), timeout=IO_TIMEOUT)
    return time.perf_counter() - t0


def thread_cpu_seconds(thread: threading.Thread | None) -> float:
    """CPU time the server's own thread has used so far (Linux), 0 if unknown."""
    if thread is None or thread.ident is None or not hasattr(time, "pthread_getcpuclockid"):
        return 0.0
    return time.clock_gettime(time.pthread_getcpuclockid(thread.ident))


def server_thread(subject: Subject) -> threading.Thread | None:
    """The thread running the subject's event loop."""
    if isinstance(subject, Aiosmtpd):
        thread: threading.Thread | None = getattr(subject.controller, "_thread", None)
        return thread
    name = "pytest-smtpd-loop" if isinstance(subject, Ours) else "bench-no-op"
    return next((t for t in threading.enumerate() if t.name == name), None)


#: subject name -> server-thread CPU microseconds per message, one per run.
SERVER_CPU_US: dict[str, list[float]] = {}


def run_clients(subject: Subject, sizes: Sizes, body: bytes) -> float:
    """Messages per second for one run of the concurrent clients; also
    records the server thread's CPU time per message in SERVER_CPU_US."""
    total = sizes.clients * sizes.messages_per_client
    subject.clear()
    gc.collect()
    thread = server_thread(subject)
    cpu_before = thread_cpu_seconds(thread)
    elapsed = asyncio.run(_many_clients(subject.port, sizes.clients, sizes.messages_per_client, body))
    wait_held(subject, total)
    cpu = thread_cpu_seconds(thread) - cpu_before
    if cpu > 0:
        SERVER_CPU_US.setdefault(subject.name, []).append(cpu / total * 1e6)
    if subject.held() != total:
        raise RuntimeError(f"{subject.name}: held {subject.held()} messages, expected {total}")
    subject.clear()
    return total / elapsed


# -- 3. one big DATA -----------------------------------------------------------------


def send_big(subject: Subject, message: bytes) -> float:
    """MiB/s for one big DATA (``message`` ends with the final dot): from the
    first body byte sent to the final reply."""
    subject.clear()
    gc.collect()
    client = RawClient(subject.port)
    try:
        client.greet()
        client.command(f"MAIL FROM:<{SENDER}>".encode(), 250)
        client.command(f"RCPT TO:<{RECIPIENT}>".encode(), 250)
        client.command(b"DATA", 354)
        t0 = time.perf_counter()
        client.sock.sendall(message)
        client.expect(250)
        elapsed = time.perf_counter() - t0
        client.quit()
    finally:
        client.close()
    wait_held(subject, 1)
    subject.clear()
    return len(message) / MiB / elapsed


# -- 4. memory per held message ------------------------------------------------------------


def send_pipelined(port: int, count: int, body: bytes, batch: int = 100) -> None:
    """Send ``count`` messages on one connection, ``batch`` transactions per
    write, bodies included without waiting for the 354: both servers read the
    stream in order, and it keeps the client's share of the run small."""
    transaction = f"MAIL FROM:<{SENDER}>\r\nRCPT TO:<{RECIPIENT}>\r\nDATA\r\n".encode() + body + b".\r\n"
    client = RawClient(port)
    try:
        client.greet()
        sent = 0
        while sent < count:
            n = min(batch, count - sent)
            client.sock.sendall(transaction * n)
            for _ in range(n):
                client.expect(250)
                client.expect(250)
                client.expect(354)
                client.expect(250)
            sent += n
        client.quit()
    finally:
        client.close()


def bench_held_memory(subject: Subject, sizes: Sizes) -> tuple[float, int]:
    """Traced bytes per held message, and the payload size of one message."""
    body = make_body(1024)
    subject.clear()
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        send_pipelined(subject.port, sizes.held_messages, body)
        wait_held(subject, sizes.held_messages)
        time.sleep(0.2)  # let the server drop the closed session
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    subject.clear()
    return held / sizes.held_messages, len(body)


def bench_idle_memory(subject: Subject, connections: int) -> float:
    """Traced bytes per idle connection: ``connections`` clients connect and
    read the greeting, then wait. The client sockets are made before tracing
    starts, so what is measured is the server's side (and the kernel's
    buffers, which tracemalloc does not see, are left out alike)."""
    socks = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(connections)]
    for sock in socks:
        sock.settimeout(IO_TIMEOUT)
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        for sock in socks:
            sock.connect((HOST, subject.port))
        for sock in socks:
            greeting = b""
            while not greeting.endswith(b"\r\n"):
                chunk = sock.recv(4096)
                if not chunk:
                    raise ConnectionError(f"{subject.name} closed an idle connection")
                greeting += chunk
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
        for sock in socks:
            sock.close()
    return held / connections


# -- 5. plugin import --------------------------------------------------------------------

#: What pytest imports for the plugin: its entry point and the plugins it names (pytest_plugins).
_PLUGIN_MODULES = "import pytest_smtpd.plugin, pytest_smtpd.checks_plugin, pytest_smtpd.inbox.pytest_plugin"
_IMPORT_PROBE = """
import json, sys, time
import pytest
t0 = time.perf_counter()
import pytest_smtpd.plugin, pytest_smtpd.checks_plugin, pytest_smtpd.inbox.pytest_plugin  # _PLUGIN_MODULES
elapsed = time.perf_counter() - t0
print(json.dumps({"ms": elapsed * 1000, "loaded": [m for m in sys.argv[1:] if m in sys.modules]}))
"""
#: Importing the plugin must not load these (trustme pulls in cryptography; aiosmtpd is bench-only).
FORBIDDEN_MODULES = ("trustme", "cryptography", "aiosmtpd")
WATCHED_MODULES = (*FORBIDDEN_MODULES, "aiosmtplib", "ssl", "email.policy")
_IMPORTTIME_LINE = re.compile(r"import time:\s*(\d+) \|\s*(\d+) \|( *)(\S+)")


def bench_import(sizes: Sizes) -> tuple[list[float], list[str], list[tuple[str, float]]]:
    """The ms to import the plugin once pytest is imported (as under pytest),
    the watched modules it loads, and its heaviest imports by self time."""
    times = []
    loaded: list[str] = []
    for _ in range(sizes.import_reps):
        out = subprocess.run(
            [sys.executable, "-c", _IMPORT_PROBE, *WATCHED_MODULES],
            capture_output=True,
            text=True,
            timeout=IO_TIMEOUT,
            check=True,
        )
        result = json.loads(out.stdout)
        times.append(float(result["ms"]))
        loaded = list(result["loaded"])
    trace = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import pytest; " + _PLUGIN_MODULES],
        capture_output=True,
        text=True,
        timeout=IO_TIMEOUT,
        check=True,
    )
    # The lines after pytest's own top-level line belong to the plugin's import.
    heavy: list[tuple[str, float]] = []
    after_pytest = False
    for line in trace.stderr.splitlines():
        match = _IMPORTTIME_LINE.match(line)
        if not match:
            continue
        if after_pytest:
            heavy.append((match.group(4), int(match.group(1)) / 1000))
        elif match.group(4) == "pytest" and len(match.group(3)) == 1:  # pytest's top-level line
            after_pytest = True
    heavy.sort(key=lambda item: -item[1])
    return times, loaded, heavy[:8]


# -- 6. a pytest suite -------------------------------------------------------------------------

_SUITE = """
import json, os, resource, smtplib, time
import pytest

TESTS = int(os.environ["BENCH_SUITE_TESTS"])
MAIL = os.environ["BENCH_SUITE_MAIL"] == "1"
BODY = b"Subject: suite\\r\\n\\r\\n" + (b"x" * 1022 + b"\\r\\n") * 1024 if MAIL else b""
CLOCK = []

def rss_kib():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))

@pytest.mark.parametrize("i", range(TESTS))
def test_one(i, request):
    CLOCK.append((time.perf_counter(), time.process_time()))
    if os.environ["BENCH_SUITE_FIXTURE"] == "1":
        smtpd = request.getfixturevalue("smtpd")
        if BODY:
            with smtplib.SMTP(smtpd.host, smtpd.port, timeout=60) as client:
                client.sendmail("a@example.com", ["b@example.com"], BODY)
            smtpd.assert_sent(count=1)

def test_zz_figures():
    CLOCK.append((time.perf_counter(), time.process_time()))
    # No gc.collect() first: what the run holds, garbage waiting for the collector included.
    with open(os.environ["BENCH_SUITE_OUT"], "w") as out:
        json.dump(
            {
                "rss_kib": rss_kib(),
                "max_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                "per_test_s": (CLOCK[-1][0] - CLOCK[0][0]) / TESTS,
                "per_test_cpu_s": (CLOCK[-1][1] - CLOCK[0][1]) / TESTS,
            },
            out,
        )
"""


def run_suite(tests: int, *, scope: str = "function", mail: bool = True, fixture: bool = True) -> dict[str, float]:
    """Run the generated suite in a subprocess (only this plugin loaded) and
    return its figures: RSS (KiB) after the tests, seconds per test."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="bench-suite-") as directory:
        with open(os.path.join(directory, "test_suite.py"), "w", encoding="utf-8") as file:
            file.write(_SUITE)
        with open(os.path.join(directory, "pytest.ini"), "w", encoding="utf-8") as file:
            file.write(f"[pytest]\nsmtpd_scope = {scope}\n")
        out = os.path.join(directory, "figures.json")
        env = {
            **os.environ,
            "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",
            "BENCH_SUITE_TESTS": str(tests),
            "BENCH_SUITE_MAIL": "1" if mail else "0",
            "BENCH_SUITE_FIXTURE": "1" if fixture else "0",
            "BENCH_SUITE_OUT": out,
        }
        subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "pytest_smtpd.plugin", "-p", "no:cacheprovider"],
            cwd=directory,
            env=env,
            capture_output=True,
            timeout=WATCHDOG_SECONDS,
            check=True,
        )
        with open(out, encoding="utf-8") as file:
            figures: dict[str, float] = json.load(file)
        return figures


def bench_suite(sizes: Sizes) -> tuple[dict[str, float], list[float]]:
    """RSS after ``suite_tests`` tests over RSS after 10, per scope; and
    microseconds the smtpd fixture adds per test, one per repetition: the
    process's CPU time (all its threads), which other load on the machine
    sways less than the wall clock."""
    ratios = {}
    for scope in ("function", "session"):
        short = run_suite(10, scope=scope)
        long = run_suite(sizes.suite_tests, scope=scope)
        ratios[scope] = long["rss_kib"] / short["rss_kib"]
        mib = {
            name: (run["rss_kib"] / 1024, run["max_rss_kib"] / 1024) for name, run in (("short", short), ("long", long))
        }
        progress(
            f"{scope} scope: RSS {mib['short'][0]:.0f} MiB after 10 tests (max {mib['short'][1]:.0f}),"
            f" {mib['long'][0]:.0f} MiB after {sizes.suite_tests} (max {mib['long'][1]:.0f})"
        )
    costs = []
    for _ in range(sizes.suite_reps):
        with_fixture = run_suite(sizes.suite_tests, mail=False)["per_test_cpu_s"]
        without = run_suite(sizes.suite_tests, mail=False, fixture=False)["per_test_cpu_s"]
        costs.append((with_fixture - without) * 1e6)
    return ratios, costs


# -- report -------------------------------------------------------------------------------


@dataclass
class Row:
    name: str
    unit: str
    ours: float
    aiosmtpd: float | None
    #: How many times better ours is (higher is better); None without aiosmtpd.
    ratio: float | None
    #: The ratio wanted at least; None for figures without a target.
    target: float | None
    #: Whether the target is met; None for figures without one.
    passed: bool | None
    samples_ours: list[float] = field(default_factory=list)
    samples_aiosmtpd: list[float] = field(default_factory=list)
    #: Shown instead of the figures, for yes/no rows.
    text: str = ""
    #: The target column of such a row.
    target_text: str = "no"


def make_row(
    name: str,
    unit: str,
    ours: Sequence[float],
    theirs: Sequence[float] | None,
    *,
    target: float | None = None,
    lower_is_better: bool,
) -> Row:
    """A row from the samples: medians, and the ratio of the medians."""
    our_median = statistics.median(ours)
    their_median = statistics.median(theirs) if theirs else None
    ratio = None
    if their_median is not None:
        ratio = their_median / our_median if lower_is_better else our_median / their_median
    passed = None if target is None or ratio is None else ratio >= target
    return Row(name, unit, our_median, their_median, ratio, target, passed, list(ours), list(theirs or []))


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if value >= 100:
        return f"{value:,.0f} {unit}"
    if value >= 10:
        return f"{value:.1f} {unit}"
    return f"{value:.2f} {unit}"


def spread(samples: Sequence[float]) -> str:
    if len(samples) < 2:
        return ""
    return f"{min(samples):.4g}..{max(samples):.4g}"


def print_table(rows: Sequence[Row]) -> None:
    header = ("benchmark", "ours", "aiosmtpd", "ratio", "target", "result")
    table = [header]
    for row in rows:
        result = {True: "PASS", False: "MISS", None: "-"}[row.passed]
        if row.text:
            table.append((row.name, row.text, "-", "-", row.target_text, result))
            continue
        table.append(
            (
                row.name,
                fmt(row.ours, row.unit),
                fmt(row.aiosmtpd, row.unit),
                "-" if row.ratio is None else f"{row.ratio:.1f}x",
                "-" if row.target is None else f">= {row.target:g}x",
                result,
            )
        )
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    rule = "  ".join("-" * width for width in widths)
    print(rule)
    for index, line in enumerate(table):
        figures = [cell.rjust(width) for cell, width in zip(line[1:], widths[1:], strict=True)]
        cells = [line[0].ljust(widths[0]), *figures]
        print("  ".join(cells).rstrip())
        if index == 0:
            print(rule)
    print(rule)


def progress(text: str) -> None:
    print(f"... {text}", file=sys.stderr, flush=True)


def run(sizes: Sizes, with_aiosmtpd: bool) -> tuple[list[Row], dict[str, Any]]:
    rows: list[Row] = []
    extra: dict[str, Any] = {}

    progress(f"fixture start+stop x {sizes.start_stop_reps}")
    # As the smtpd fixture does it: the plugin keeps the loop thread for the
    # test session (smtpd_loop), so each test's server is a bind and a close.
    with loopthread.kept_running():
        start_stop = bench_start_stop(with_aiosmtpd, sizes.start_stop_reps)
    rows.append(
        make_row(
            f"fixture start+stop (median of {sizes.start_stop_reps})",
            "ms",
            [seconds * 1000 for seconds in start_stop["ours"]],
            [seconds * 1000 for seconds in start_stop["aiosmtpd"]] if with_aiosmtpd else None,
            target=5,
            lower_is_better=True,
        )
    )
    progress(f"Server start+stop outside pytest x {sizes.start_stop_reps}")
    # Outside pytest the last stop() also ends the thread: start and join it each time.
    cold = bench_start_stop(with_aiosmtpd, sizes.start_stop_reps)
    rows.append(
        make_row(
            "Server start+stop with the loop thread (no target)",
            "ms",
            [seconds * 1000 for seconds in cold["ours"]],
            [seconds * 1000 for seconds in cold["aiosmtpd"]] if with_aiosmtpd else None,
            target=None,
            lower_is_better=True,
        )
    )

    subjects: list[Subject] = [Ours()]
    if with_aiosmtpd:
        subjects.append(Aiosmtpd())
    throughput: dict[str, list[float]] = {subject.name: [] for subject in subjects}
    big: dict[str, list[float]] = {subject.name: [] for subject in subjects}
    held: dict[str, float] = {}
    idle: dict[str, float] = {}
    payload = 0
    reference = NoOpServer()
    throughput[reference.name] = []
    for subject in [*subjects, reference]:
        subject.start()
    try:
        # Repetitions interleave the servers, so that drift of the machine hits all alike.
        progress(f"{sizes.clients} aiosmtplib clients x {sizes.messages_per_client} messages x {sizes.throughput_reps}")
        body = make_body(500)
        for rep in range(-1, sizes.throughput_reps):  # one warm-up round
            for subject in [*subjects, reference]:
                rate = run_clients(subject, sizes, body)
                if rep >= 0:
                    throughput[subject.name].append(rate)
                else:
                    SERVER_CPU_US.pop(subject.name, None)  # the warm-up does not count
        for subject in [*subjects, reference]:
            progress(f"{subject.name}: {sizes.idle_connections} idle connections under tracemalloc")
            idle[subject.name] = bench_idle_memory(subject, sizes.idle_connections)
        reference.stop()
        progress(f"one {sizes.big_message_mib} MiB DATA x {sizes.big_message_reps}")
        message = make_body(sizes.big_message_mib * MiB) + b".\r\n"
        for subject in subjects:  # warm-up with a small one
            send_big(subject, make_body(MiB) + b".\r\n")
        for _ in range(sizes.big_message_reps):
            for subject in subjects:
                big[subject.name].append(send_big(subject, message))
        del message
        for subject in subjects:
            progress(f"{subject.name}: {sizes.held_messages:,} held messages under tracemalloc")
            held[subject.name], payload = bench_held_memory(subject, sizes)
    finally:
        reference.stop()
        for subject in subjects:
            subject.stop()
    gc.collect()

    rows.append(
        make_row(
            f"{sizes.clients} aiosmtplib clients x {sizes.messages_per_client} msgs"
            f" (median of {sizes.throughput_reps})",
            "msg/s",
            throughput["ours"],
            throughput.get("aiosmtpd"),
            target=2,
            lower_is_better=False,
        )
    )
    if "ours" in SERVER_CPU_US:
        rows.append(
            make_row(
                "  server-thread CPU per message in that run",
                "us",
                SERVER_CPU_US["ours"],
                SERVER_CPU_US.get("aiosmtpd"),
                lower_is_better=True,
            )
        )
    rows.append(
        make_row(
            f"one {sizes.big_message_mib} MiB DATA, raw socket (median of {sizes.big_message_reps})",
            "MiB/s",
            big["ours"],
            big.get("aiosmtpd"),
            target=5,
            lower_is_better=False,
        )
    )
    rows.append(
        make_row(
            f"bytes per held message ({sizes.held_messages:,} x {payload} B payload)",
            "B",
            [held["ours"]],
            [held["aiosmtpd"]] if "aiosmtpd" in held else None,
            target=1,
            lower_is_better=True,
        )
    )
    rows.append(
        make_row(
            f"bytes per idle connection ({sizes.idle_connections} connections)",
            "B",
            [idle["ours"]],
            [idle["aiosmtpd"]] if "aiosmtpd" in idle else None,
            lower_is_better=True,
        )
    )
    rows.append(
        make_row(
            "  the same, against the do-nothing server (aiosmtpd column), at most 2x",
            "B",
            [idle["ours"]],
            [idle[reference.name]],
            target=0.5,
            lower_is_better=True,
        )
    )
    extra["held_message_payload_bytes"] = payload
    extra["no_op_server_msg_per_s"] = throughput[reference.name]

    progress(f"plugin import x {sizes.import_reps}")
    import_ms, loaded, heavy = bench_import(sizes)
    rows.append(
        make_row(
            f"plugin import, pytest already loaded (median of {sizes.import_reps})",
            "ms",
            import_ms,
            None,
            lower_is_better=True,
        )
    )
    forbidden = [module for module in loaded if module in FORBIDDEN_MODULES]
    rows.append(
        Row(
            "plugin import loads trustme/cryptography/aiosmtpd",
            "",
            float(len(forbidden)),
            None,
            None,
            None,
            not forbidden,
            text=", ".join(forbidden) if forbidden else "no",
        )
    )
    extra["plugin_import_loaded_modules"] = loaded
    extra["plugin_import_heaviest_self_ms"] = heavy

    if sys.platform.startswith("linux"):  # RSS from /proc
        progress(f"a pytest suite: {sizes.suite_tests} tests each receiving 1 MiB, against 10")
        ratios, costs = bench_suite(sizes)
        for scope, ratio in ratios.items():
            row = Row(
                f"RSS after {sizes.suite_tests} 1 MiB tests / after 10, {scope} scope",
                "x",
                ratio,
                None,
                None,
                None,
                ratio <= 1.2,
            )
            row.text, row.target_text = f"{ratio:.2f}x", "<= 1.2x"
            rows.append(row)
        rows.append(
            make_row(
                f"smtpd fixture CPU per test, pytest suite (median of {sizes.suite_reps})",
                "us",
                costs,
                None,
                lower_is_better=True,
            )
        )
        extra["suite_rss_ratio"] = ratios
    rows += per_message_rows(sizes, with_aiosmtpd, extra)
    rows += inbox_rows(sizes, extra)
    return rows, extra


def per_message_rows(sizes: Sizes, with_aiosmtpd: bool, extra: dict[str, Any]) -> list[Row]:
    """bench_per_message.py in two subprocesses, one free to use every CPU
    and one pinned to one CPU (as an xdist worker on a 2-core runner is):
    msg/s and loop-thread CPU per message for smtplib on one connection and
    for the concurrent aiosmtplib clients, target at least 1.2x aiosmtpd."""
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bench_per_message.py")
    args = ["--reps", str(sizes.throughput_reps), "--messages", str(sizes.clients * sizes.messages_per_client * 2)]
    args += ["--clients", str(sizes.clients), "--per-client", str(sizes.messages_per_client)]
    if not with_aiosmtpd:
        args.append("--no-aiosmtpd")
    rows: list[Row] = []
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    import tempfile

    for label, pin in (("all CPUs", []), ("pinned to 1 CPU", ["--pin", str(cpus[-1])] if cpus else None)):
        if pin is None:
            continue
        progress(f"per message, {label}: smtplib on one connection, {sizes.clients} aiosmtplib clients")
        with tempfile.TemporaryDirectory(prefix="bench-per-message-") as directory:
            out = os.path.join(directory, "figures.json")
            command = [sys.executable, script, *args, *pin, "--json", out]
            # Its own summary lines go to stderr, beside the progress lines, not into the table.
            subprocess.run(command, check=True, timeout=WATCHDOG_SECONDS, stdout=sys.stderr)
            with open(out, encoding="utf-8") as file:
                found = json.load(file)["results"]
        extra[f"per_message_{'pinned' if pin else 'unpinned'}"] = found
        cases = (("smtplib", "smtplib, one connection"), ("aiosmtplib", f"{sizes.clients} aiosmtplib clients"))
        for case, title in cases:
            ours, theirs = found[case]["ours"], found[case].get("aiosmtpd")
            rows.append(
                make_row(
                    f"per message, {label}: {title}",
                    "msg/s",
                    ours["rate"],
                    theirs["rate"] if theirs else None,
                    target=1.2,
                    lower_is_better=False,
                )
            )
            rows.append(
                make_row(
                    "  loop-thread CPU per message",
                    "us",
                    ours["cpu_us"],
                    theirs["cpu_us"] if theirs else None,
                    lower_is_better=True,
                )
            )
            floor = statistics.median(found[case]["no-op"]["rate"])
            extra[f"per_message_floor_{case}_{'pinned' if pin else 'unpinned'}"] = floor
    return rows


def inbox_rows(sizes: Sizes, extra: dict[str, Any]) -> list[Row]:
    """The dev inbox's cases (bench_inbox.py), when aiohttp (the web extra) is there.
    Ratios: higher is better; the inbox's own figure is in "ours"."""
    try:
        import bench_inbox
    except ImportError:
        progress("no aiohttp (the web extra): the inbox's rows are left out")
        return []
    progress(f"dev inbox: ingestion, and the list over {sizes.held_messages:,} stored messages")
    found = bench_inbox.run(sizes.held_messages, sizes.clients, sizes.messages_per_client, sizes.throughput_reps)
    extra["inbox"] = found
    ingestion = found["ingestion"]
    without = statistics.median(ingestion["without"])
    rows = []
    watcher = "a browser" if ingestion.get("browser") == [1.0] else "a stand-in subscriber"
    for name, label in (("unwatched", "nobody watching"), ("with", watcher)):
        rate = statistics.median(ingestion[name])
        rows.append(
            Row(
                f"inbox: msg/s with --web and {label} (ratio: to without)",
                "msg/s",
                rate,
                None,
                rate / without,
                0.9,
                rate / without >= 0.9,
                ingestion[name],
                ingestion["without"],
            )
        )
    for name, label in (("without", "without the inbox"), ("unwatched", "nobody watching"), ("with", watcher)):
        cpu = ingestion[f"cpu_{name}"]
        rows.append(make_row(f"  loop-thread CPU per message, {label}", "us", cpu, None, lower_is_better=True))
    for store, times in found["listing"].items():
        page, health = statistics.median(times["page"]) * 1000, statistics.median(times["healthz"]) * 1000
        rows.append(
            Row(
                f"inbox: GET /api/messages?limit=50 over {sizes.held_messages:,}, {store} (ratio: healthz/it)",
                "ms",
                page,
                None,
                health / page,
                1 / 3,
                health / page >= 1 / 3,
                [t * 1000 for t in times["page"]],
                [t * 1000 for t in times["healthz"]],
            )
        )
    memory = found["memory"]
    in_memory = f"inbox: bytes per stored message in memory ({memory['payload']:.0f} B payload)"
    rows.append(make_row(in_memory, "B", [memory["memory"]], None, lower_is_better=True))
    in_file = "inbox: SQLite file bytes per message"
    rows.append(make_row(in_file, "B", [memory["sqlite_file"]], None, lower_is_better=True))
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Benchmarks: pytest-smtpd's Server against aiosmtpd's Controller.")
    parser.add_argument("--json", metavar="PATH", help="also write the figures to PATH as JSON")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke test")
    parser.add_argument("--strict", action="store_true", help="exit 1 if a target is missed")
    parser.add_argument("--no-aiosmtpd", action="store_true", help="measure our server only")
    args = parser.parse_args(argv)

    faulthandler.dump_traceback_later(WATCHDOG_SECONDS, exit=True)
    sizes = QUICK if args.quick else Sizes()
    with_aiosmtpd = not args.no_aiosmtpd and aiosmtpd_available()
    if not with_aiosmtpd:
        progress("aiosmtpd is not importable (or --no-aiosmtpd): our figures only")
    t0 = time.perf_counter()
    rows, extra = run(sizes, with_aiosmtpd)
    elapsed = time.perf_counter() - t0
    faulthandler.cancel_dump_traceback_later()

    versions = f"Python {platform.python_version()}, aiosmtplib {aiosmtplib.__version__}"
    if with_aiosmtpd:
        import aiosmtpd

        versions += f", aiosmtpd {aiosmtpd.__version__}"
    print(f"pytest-smtpd benchmarks ({versions}, {platform.machine()}, {os.cpu_count()} CPUs)")
    print_table(rows)
    print("ratio: how many times better ours is (faster, or smaller); medians, spread of the samples:")
    for row in rows:
        if len(row.samples_ours) > 1:
            line = f"  {row.name}: ours {spread(row.samples_ours)}"
            if row.samples_aiosmtpd:
                line += f", aiosmtpd {spread(row.samples_aiosmtpd)}"
            print(f"{line} {row.unit}")
    no_op = statistics.median(extra["no_op_server_msg_per_s"])
    line = f"reference: a no-op asyncio server (canned replies) takes the same clients at {no_op:,.0f} msg/s"
    if with_aiosmtpd:
        their = next(row.aiosmtpd for row in rows if row.unit == "msg/s")
        line += f" = {no_op / their:.1f}x aiosmtpd" if their else ""
    print(line + ": the ceiling for any in-process asyncio server with this client")
    loaded = extra["plugin_import_loaded_modules"]
    print(f"importing the plugin loads (of {', '.join(WATCHED_MODULES)}): {', '.join(loaded) or 'none of them'}")
    heavy = ", ".join(f"{name} {ms:.1f}" for name, ms in extra["plugin_import_heaviest_self_ms"])
    print(f"its heaviest imports, self ms: {heavy}")
    print(f"total {elapsed:.1f} s")

    if args.json:
        document = {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "aiosmtpd": with_aiosmtpd,
            "quick": args.quick,
            "seconds": elapsed,
            "results": [asdict(row) for row in rows],
            **extra,
        }
        with open(args.json, "w", encoding="utf-8") as file:
            json.dump(document, file, indent=2)
            file.write("\n")
    missed = [row.name for row in rows if row.passed is False]
    return 1 if args.strict and missed else 0


if __name__ == "__main__":
    sys.exit(main())
