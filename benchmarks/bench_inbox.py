"""The dev inbox's benchmark cases (issue 21), run by bench.py:

1. SMTP ingestion with the inbox attached and a browser subscribed (headless
   Chromium with the UI open, where Selenium and Debian's chromium are
   installed; else a process standing in for it, which reads every event
   and, like the UI, fetches the first page at most every 250 ms) against
   the same server without the inbox: the ratio of messages/s, target at
   least 0.9. Also with the inbox and nobody watching.
2. ``GET /api/messages?limit=50`` over N stored messages against
   ``GET /healthz`` in the same run, in memory and with the SQLite store:
   at most 3x the time (a page is built, not the whole list).
3. Memory per message in the in-memory store (tracemalloc), and the
   SQLite file's size per message.
"""

from __future__ import annotations

import asyncio
import gc
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiosmtplib

from pytest_smtpd import Message, Server
from pytest_smtpd.inbox.hub import Inbox
from pytest_smtpd.inbox.store import InboxStore, MemoryStore, SQLiteStore
from pytest_smtpd.inbox.web import WebInbox

HOST = "127.0.0.1"
TIMEOUT = 60.0
#: How often the stand-in browser fetches the list, at most (as app.js).
UI_RELOAD = 0.25


def _body(size: int) -> bytes:
    line = b"x" * 76 + b"\r\n"
    return b"From: a@example.com\r\nTo: b@example.com\r\nSubject: bench\r\n\r\n" + line * (size // len(line))


async def _clients(port: int, clients: int, per_client: int, body: bytes) -> float:
    async def one() -> None:
        client = aiosmtplib.SMTP(hostname=HOST, port=port, start_tls=False, timeout=TIMEOUT)
        await client.connect()
        for _ in range(per_client):
            await client.sendmail("a@example.com", ["b@example.com"], body)
        await client.quit()

    started = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*[one() for _ in range(clients)]), TIMEOUT)
    return time.perf_counter() - started


_SUBSCRIBER = """
import sys, time, urllib.request
base = sys.argv[1]
last = 0.0
with urllib.request.urlopen(base + "/api/events", timeout=60) as stream:
    for raw in stream:
        if raw.startswith(b":"):
            print("ready", flush=True)
        if raw.startswith(b"event: "):
            if time.monotonic() - last >= RELOAD:
                last = time.monotonic()
                with urllib.request.urlopen(base + "/api/messages?limit=100", timeout=60) as page:
                    page.read()
""".replace("RELOAD", repr(UI_RELOAD))


class _Subscriber:
    """A process of its own, as a browser is: it reads the event stream and
    refetches the first page, throttled, as the UI does."""

    def __init__(self, base: str) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-c", _SUBSCRIBER, base], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True
        )
        assert self._process.stdout is not None
        if self._process.stdout.readline().strip() != "ready":
            self.close()
            raise RuntimeError("the event stream did not open")

    def close(self) -> None:
        self._process.kill()
        self._process.wait(TIMEOUT)
        assert self._process.stdout is not None
        self._process.stdout.close()


def _loop_cpu() -> float:
    """CPU seconds the servers' loop thread has used (Linux; 0 elsewhere)."""
    thread = next((t for t in threading.enumerate() if t.name == "pytest-smtpd-loop"), None)
    if thread is None or thread.ident is None or not hasattr(time, "pthread_getcpuclockid"):
        return 0.0
    return time.clock_gettime(time.pthread_getcpuclockid(thread.ident))


class _Browser:
    """Headless Chromium with the UI open (Selenium, Debian's chromium and
    chromedriver), when they are installed: the browser the target speaks of."""

    def __init__(self, base: str) -> None:
        from selenium import webdriver

        options = webdriver.ChromeOptions()
        options.binary_location = shutil.which("chromium") or "chromium"
        for argument in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"]:
            options.add_argument(argument)
        service = webdriver.ChromeService(executable_path=shutil.which("chromedriver") or "chromedriver")
        self.driver = webdriver.Chrome(service=service, options=options)
        self.driver.get(base + "/")
        deadline = time.monotonic() + TIMEOUT
        while self.driver.execute_script("return document.getElementById('status').textContent") != "live":
            if time.monotonic() > deadline:
                self.close()
                raise RuntimeError("the UI did not go live")
            time.sleep(0.05)

    @staticmethod
    def available() -> bool:
        """Whether Selenium and the system's Chromium and chromedriver are there."""
        try:
            import selenium  # noqa: F401
        except ImportError:
            return False
        return shutil.which("chromium") is not None and shutil.which("chromedriver") is not None

    def close(self) -> None:
        self.driver.quit()


def ingestion(clients: int, per_client: int, reps: int) -> dict[str, list[float]]:
    """Messages/s without the inbox, with it and nobody watching, and with
    it and a subscriber, interleaved; and the loop thread's CPU
    microseconds per message, which a loaded machine disturbs less than
    the rate."""
    body = _body(500)
    names = ("without", "unwatched", "with")
    samples: dict[str, list[float]] = {key: [] for name in names for key in (name, f"cpu_{name}")}
    total = clients * per_client
    capacity = max(10_000, total * (reps + 1))
    with Server() as plain, Server() as unwatched, Server() as watched:
        Inbox(MemoryStore(capacity)).attach(unwatched)
        inbox = Inbox(MemoryStore(capacity))
        inbox.attach(watched)
        with WebInbox(inbox, HOST, 0) as web:
            base = f"http://{HOST}:{web.port}"
            subscriber: _Browser | _Subscriber = _Browser(base) if _Browser.available() else _Subscriber(base)
            samples["browser"] = [float(isinstance(subscriber, _Browser))]
            try:
                for rep in range(-1, reps):  # one warm-up round
                    for name, server in zip(names, (plain, unwatched, watched), strict=True):
                        server.clear()
                        gc.collect()
                        cpu = _loop_cpu()
                        elapsed = asyncio.run(_clients(server.port, clients, per_client, body))
                        cpu = _loop_cpu() - cpu
                        if len(server.messages) != total:
                            raise RuntimeError(f"{name}: {len(server.messages)} messages, expected {total}")
                        if rep >= 0:
                            samples[name].append(total / elapsed)
                            samples[f"cpu_{name}"].append(cpu / total * 1e6)
            finally:
                subscriber.close()
    return samples


def _fill(store: InboxStore, count: int) -> None:
    body = _body(1024)
    for _ in range(count):
        message = Message(peer=(HOST, 1), mail_from="a@example.com", rcpt_tos=["b@example.com"], data=body)
        store.add(message, None, None)


def _timed(url: str, reps: int) -> list[float]:
    found = []
    for _ in range(reps):
        started = time.perf_counter()
        with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
            response.read()
        found.append(time.perf_counter() - started)
    return found


def listing(count: int, reps: int) -> dict[str, dict[str, list[float]]]:
    """Seconds per ``/api/messages?limit=50`` and per ``/healthz`` over
    ``count`` stored messages, in memory and in SQLite."""
    results: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory() as directory:
        stores: list[tuple[str, Callable[[], InboxStore]]] = [
            ("memory", lambda: MemoryStore(count)),
            ("sqlite", lambda: SQLiteStore(Path(directory) / "bench.sqlite", count)),
        ]
        for name, make in stores:
            store = make()
            if isinstance(store, SQLiteStore):
                # Filling only: one commit per message would take a fsync each.
                store._db.execute("PRAGMA synchronous=OFF")
            _fill(store, count)
            if isinstance(store, SQLiteStore):
                store._db.execute("PRAGMA synchronous=FULL")
            with WebInbox(Inbox(store), HOST, 0) as web:
                base = f"http://{HOST}:{web.port}"
                _timed(base + "/api/messages?limit=50", 2)  # warm-up: the summaries of the first page
                page: list[float] = []
                health: list[float] = []
                for _ in range(reps):  # interleaved
                    page += _timed(base + "/api/messages?limit=50", 1)
                    health += _timed(base + "/healthz", 1)
                results[name] = {"page": page, "healthz": health}
    return results


def memory_per_message(count: int) -> dict[str, float]:
    """Traced bytes per message in the in-memory store (envelope, bytes,
    entry), and SQLite file bytes per message."""
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        store = MemoryStore(count)
        _fill(store, count)
        gc.collect()
        traced = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    del store
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "size.sqlite"
        sqlite = SQLiteStore(path, count)
        sqlite._db.execute("PRAGMA synchronous=OFF")
        _fill(sqlite, count)
        sqlite._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        sqlite.close()
        file_bytes = path.stat().st_size
    return {"memory": traced / count, "sqlite_file": file_bytes / count, "payload": float(len(_body(1024)))}


def median(samples: list[float]) -> float:
    """The median, for the report."""
    return statistics.median(samples)


def run(held: int, clients: int, per_client: int, reps: int) -> dict[str, Any]:
    """Every case, as samples."""
    return {
        "ingestion": ingestion(clients, per_client, reps),
        "listing": listing(held, max(reps, 5) * 4),
        "memory": memory_per_message(held),
    }
