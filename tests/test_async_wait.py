"""``messages.wait_for_async`` and ``assert_sent_async`` in pytest-asyncio and
anyio tests (on asyncio and on trio), and under trio.run. The worker that
sends is released by a task or callback on the test's own loop, so a wait
that blocked the loop would never see the mail."""

from __future__ import annotations

import asyncio
import smtplib
import threading
from collections.abc import Iterator

import anyio
import pytest
import trio

from conftest import TIMEOUT
from pytest_smtpd import Message
from pytest_smtpd.assertions import FixtureServer


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Every anyio test runs on both of anyio's backends."""
    return str(request.param)


async def _release_when_the_loop_is_free(worker: threading.Event) -> None:
    # A task of the test's own loop: it runs only once the test waits.
    worker.set()


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
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(_release_when_the_loop_is_free, worker)
        [message] = await smtpd.messages.wait_for_async(timeout=TIMEOUT, where=lambda m: m.subject == "async")
    assert message.rcpt_tos == ["bob@example.com"]


@pytest.mark.anyio
async def test_assert_sent_async_in_anyio(smtpd: FixtureServer, worker: threading.Event) -> None:
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(_release_when_the_loop_is_free, worker)
        [message] = await smtpd.assert_sent_async(subject="async", timeout=TIMEOUT)
    assert message.mail_from == "app@example.com"


def test_wait_for_async_under_trio_run(smtpd: FixtureServer, worker: threading.Event) -> None:
    async def main() -> list[Message]:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_release_when_the_loop_is_free, worker)
            return await smtpd.messages.wait_for_async(count=1, timeout=TIMEOUT)

    [message] = trio.run(main)
    assert message.subject == "async"


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


def test_wait_for_async_without_a_running_loop_is_a_clear_error(smtpd: FixtureServer) -> None:
    waiting = smtpd.messages.wait_for_async(timeout=0.05)
    with pytest.raises(RuntimeError, match=r"wait_for_async needs a running event loop: asyncio .* or trio"):
        waiting.send(None)  # driven by hand, as a loop other than asyncio's or trio's would
    waiting.close()
