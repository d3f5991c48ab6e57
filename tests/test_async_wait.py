"""``messages.wait_for_async`` and ``assert_sent_async`` in pytest-asyncio and
anyio tests. The worker that sends is released by a callback on the test's
own loop, so a wait that blocked the loop would never see the mail."""

from __future__ import annotations

import asyncio
import smtplib
import threading
from collections.abc import Iterator

import pytest

from conftest import TIMEOUT
from pytest_smtpd.assertions import FixtureServer


@pytest.fixture
def anyio_backend() -> str:
    """wait_for_async is for asyncio loops (anyio's default plugin fixture
    also runs trio where it is installed)."""
    return "asyncio"


@pytest.fixture
def worker(smtpd: FixtureServer) -> Iterator[threading.Event]:
    """A thread that sends one message once the returned event is set."""
    go = threading.Event()

    def send() -> None:
        if go.wait(TIMEOUT):
            with smtplib.SMTP(smtpd.host, smtpd.port, timeout=TIMEOUT) as client:
                client.sendmail("app@example.com", ["bob@example.com"], b"Subject: async\r\n\r\nhi\r\n")

    thread = threading.Thread(target=send)
    thread.start()
    yield go
    go.set()
    thread.join(TIMEOUT)


@pytest.mark.asyncio
async def test_wait_for_async_in_pytest_asyncio(smtpd: FixtureServer, worker: threading.Event) -> None:
    asyncio.get_running_loop().call_soon(worker.set)  # runs only if the wait leaves the loop free
    [message] = await smtpd.messages.wait_for_async(count=1, timeout=TIMEOUT)
    assert message.subject == "async"


@pytest.mark.anyio
async def test_wait_for_async_in_anyio(smtpd: FixtureServer, worker: threading.Event) -> None:
    asyncio.get_running_loop().call_soon(worker.set)
    [message] = await smtpd.messages.wait_for_async(timeout=TIMEOUT, where=lambda m: m.subject == "async")
    assert message.rcpt_tos == ["bob@example.com"]


@pytest.mark.asyncio
async def test_assert_sent_async(smtpd: FixtureServer, worker: threading.Event) -> None:
    asyncio.get_running_loop().call_soon(worker.set)
    [message] = await smtpd.assert_sent_async(subject="async", rcpt_to="bob@example.com", timeout=TIMEOUT)
    assert message.mail_from == "app@example.com"


@pytest.mark.anyio
async def test_wait_for_async_times_out_saying_what_arrived(smtpd: FixtureServer) -> None:
    with pytest.raises(TimeoutError, match=r"waited 0.05s for 1 message\(s\), got 0 \(of 0 received: \[\]\)"):
        await smtpd.messages.wait_for_async(timeout=0.05)
    with pytest.raises(AssertionError, match=r"found 0 \(waited 0.05s\)\nno message arrived"):
        await smtpd.assert_sent_async(subject="never", timeout=0.05)


def test_wait_for_async_without_an_asyncio_loop_is_a_clear_error(smtpd: FixtureServer) -> None:
    waiting = smtpd.messages.wait_for_async(timeout=0.05)
    with pytest.raises(RuntimeError, match="wait_for_async needs a running asyncio event loop"):
        waiting.send(None)  # driven by hand, as a loop other than asyncio's would
    waiting.close()
