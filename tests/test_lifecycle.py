"""Server lifecycle under races: two threads stopping one server, a handler
and the test both stopping it, a restart after a handler's stop, a fork,
stop(grace=...), and clients that never read. Each scenario that could hang
runs in a child process with a hard timeout."""

from __future__ import annotations

import contextlib
import os
import smtplib
import socket
import subprocess
import sys
import textwrap
import threading

import pytest

from conftest import TIMEOUT, Wire
from pytest_smtpd import Message, Server

#: A hang in a child process fails the test after this many seconds.
CHILD_TIMEOUT = 60


def run_child(code: str) -> list[str]:
    """Run ``code`` in a fresh interpreter (with the tests' helpers importable);
    return its output lines, failing on a non-zero exit or any stderr noise."""
    result = subprocess.run(
        [sys.executable, "-X", "dev", "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT,
        cwd=os.path.dirname(__file__),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr == "", result.stderr
    return result.stdout.splitlines()


def test_two_threads_stopping_one_server_leave_the_others_serving() -> None:
    """The shared loop is let go of once per start, however many threads stop:
    b keeps answering while a is stopped from two threads at once."""
    lines = run_child(
        """
        import threading
        from conftest import Wire
        from pytest_smtpd import Server

        for _ in range(50):
            a, b = Server(), Server()
            a.start()
            b.start()
            barrier = threading.Barrier(2)

            def stop_a():
                barrier.wait()
                a.stop()

            stoppers = [threading.Thread(target=stop_a) for _ in range(2)]
            for thread in stoppers:
                thread.start()
            for thread in stoppers:
                thread.join(10)
                assert not thread.is_alive(), "stop() hung"
            assert not a.is_running()
            with Wire(b.address) as wire:
                assert wire.command("NOOP") == 250
            b.stop()
        print("threads", [t.name for t in threading.enumerate()])
        """
    )
    assert lines == ["threads ['MainThread']"]


def test_a_handler_and_the_test_stopping_one_server_at_once() -> None:
    """A handler's stop() (on the loop thread) and the test's stop() (in its
    own thread) are one stop: both return, the other server goes on, and the
    loop thread ends with the last server. Also with the loop kept running,
    as the pytest plugin keeps it."""
    lines = run_child(
        """
        import threading
        from conftest import Wire
        from pytest_smtpd import Server, loopthread

        def scenario(test_first):
            handled = threading.Event()
            holder = []
            go = threading.Event()
            in_handler = threading.Event()

            def handler(message):
                in_handler.set()
                if test_first:
                    # The test's stop() is under way (it waits for this loop
                    # thread) when the handler stops the server too.
                    assert go.wait(10)
                holder[0].stop()
                handled.set()

            a = Server(handler=handler)
            holder.append(a)
            other = Server()
            a.start()
            other.start()
            with Wire(a.address) as wire:
                for line in ("HELO c", "MAIL FROM:<x@example.com>", "RCPT TO:<y@example.com>", "DATA"):
                    wire.command(line)
                wire.send(b"hello\\r\\n.\\r\\n")
                if test_first:
                    assert in_handler.wait(10)
                    stopper = threading.Thread(target=a.stop)
                    stopper.start()
                    for _ in range(10000):  # bounded: stop() marks the server at once
                        if not a.is_running():
                            break
                        go.wait(0.001)
                    go.set()
                    stopper.join(10)
                    assert not stopper.is_alive()
                assert handled.wait(10)
                a.stop()  # waits for the stop under way
            assert not a.is_running()
            with Wire(other.address) as wire:
                assert wire.command("NOOP") == 250
            other.stop()

        for index in range(20):
            scenario(index % 2 == 0)
        print("bare", [t.name for t in threading.enumerate()])
        with loopthread.kept_running():
            for index in range(20):
                scenario(index % 2 == 0)
            print("kept", loopthread.servers_running())
        print("after", [t.name for t in threading.enumerate()])
        """
    )
    assert lines == ["bare ['MainThread']", "kept 0", "after ['MainThread']"]


def test_a_restart_after_a_handlers_stop_greets_and_serves() -> None:
    """start() right after a handler's stop() waits for that stop to end, so
    nothing of the old run (its late close) reaches the new one: clients of
    the restarted server get 220 and 250, never 421."""
    lines = run_child(
        """
        import threading
        from conftest import Wire
        from pytest_smtpd import Server

        handled = threading.Event()
        holder = []

        def handler(message):
            holder[0].stop()
            handled.set()

        server = Server(handler=handler)
        holder.append(server)
        for _ in range(100):
            handled.clear()
            server.start()
            with Wire(server.address) as wire:
                for line in ("HELO c", "MAIL FROM:<x@example.com>", "RCPT TO:<y@example.com>", "DATA"):
                    wire.command(line)
                wire.send(b"hello\\r\\n.\\r\\n")
                assert handled.wait(10)
                server.start()  # the handler's stop may still be under way
            with Wire(server.address) as wire:  # asserts the 220 greeting
                assert wire.command("NOOP") == 250
                assert wire.command("QUIT") == 221
            handled.clear()
            server.stop()
        print("messages", len(server.messages))
        """
    )
    assert lines == ["messages 100"]


def test_start_twice_and_stop_twice() -> None:
    with Server() as server:
        with pytest.raises(RuntimeError, match="already running"):
            server.start()
        server.stop()
        server.stop()
        assert not server.is_running()
        server.start()
        with Wire(server.address) as wire:
            assert wire.command("NOOP") == 250


def test_starting_again_from_a_handler_after_its_stop_is_a_clear_error() -> None:
    """On the loop thread, start() cannot wait for the stop it follows."""
    errors: list[BaseException] = []
    holder: list[Server] = []
    done = threading.Event()

    def handler(message: Message) -> None:
        holder[0].stop()
        try:
            holder[0].start()
        except RuntimeError as exc:
            errors.append(exc)
        done.set()

    server = Server(handler=handler)
    holder.append(server)
    server.start()
    try:
        with smtplib.SMTP(*server.address, timeout=TIMEOUT) as client:
            client.sendmail("a@example.com", ["b@example.com"], b"hi\r\n")
            assert done.wait(TIMEOUT)
            assert client.noop()[0] == 421
    finally:
        server.stop()
    assert [str(exc) for exc in errors] == [
        "Server is stopping: start it again once its stop is done, not from a handler"
    ]


def test_a_negative_grace_is_an_error() -> None:
    with Server() as server, pytest.raises(ValueError, match="grace"):
        server.stop(grace=-1)


FORK = """
    import multiprocessing, os, smtplib, socket, threading, warnings
    from conftest import Wire
    from pytest_smtpd import Server

    warnings.filterwarnings("ignore", category=DeprecationWarning)  # 3.12+: fork with threads

    parent = Server()
    parent.start()
    idle = Wire(parent.address)  # a session open across the fork
    port = parent.port

    def child(queue, checked):
        # The parent's server: stopped here without touching its loop thread.
        parent.stop()
        own = Server()
        own.start()
        with smtplib.SMTP(*own.address, timeout=10) as client:
            client.sendmail("a@example.com", ["b@example.com"], b"Subject: forked\\r\\n\\r\\nhi\\r\\n")
        own.stop()
        queue.put(("child", own.messages[0].email["Subject"], parent.is_running()))
        queue.put(("threads", sorted(t.name for t in threading.enumerate())))
        assert checked.wait(30)  # stay alive while the parent checks its port

    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    checked = context.Event()
    process = context.Process(target=child, args=(queue, checked))
    process.start()
    print(*queue.get(timeout=30))
    print(*queue.get(timeout=30))
    # The parent goes on serving, and the child holds nothing of it open:
    with Wire(parent.address) as wire:
        assert wire.command("NOOP") == 250
    assert idle.command("NOOP") == 250
    parent.stop()
    assert idle.reply()[0] == 421
    assert idle.closed_by_peer()  # while the child lives
    idle.close()
    with socket.socket() as probe:
        print("after stop", probe.connect_ex(("127.0.0.1", port)) != 0)
    checked.set()
    process.join(30)
    print("exit", process.exitcode)
"""


def test_a_forked_child_serves_on_its_own_loop_thread() -> None:
    """A fork child (multiprocessing's default on Linux before 3.14) gets
    no loop thread from its parent: it can stop the parent's server without
    hanging, start its own, serve and stop it; the parent's port and
    sessions are not held open by the child."""
    lines = run_child(FORK)
    assert lines == [
        "child forked False",
        "threads ['MainThread', 'QueueFeederThread']",
        "after stop True",
        "exit 0",
    ]


def _session_to_quit(server: Server) -> Wire:
    wire = Wire(server.address)
    assert wire.command("EHLO c") == 250
    assert wire.command("MAIL FROM:<a@example.com>") == 250
    return wire


def test_stop_with_grace_lets_open_sessions_finish() -> None:
    """A session under way when stop(grace=...) begins may finish its
    transaction and QUIT (221, not 421); new connections are refused at once."""
    stopping = threading.Event()
    holder: list[Server] = []

    def handler(message: Message) -> None:
        if message.mail_from == "stop@example.com":
            holder[0].stop(grace=30)  # from the loop thread: returns at once
            stopping.set()

    server = Server(handler=handler)
    holder.append(server)
    server.start()
    try:
        late = _session_to_quit(server)
        with smtplib.SMTP(*server.address, timeout=TIMEOUT) as trigger:
            trigger.sendmail("stop@example.com", ["b@example.com"], b"stop\r\n")
            assert stopping.wait(TIMEOUT)
        # Its QUIT was read after the close began (callbacks run in order).
        with socket.socket() as probe:
            probe.settimeout(TIMEOUT)
            assert probe.connect_ex(server.address) != 0
        with late:
            assert late.command("RCPT TO:<b@example.com>") == 250
            assert late.command("DATA") == 354
            assert late.command("late\r\n.") == 250
            assert late.command("QUIT") == 221
    finally:
        server.stop()  # waits for the stop under way: its sessions are gone
    assert [m.data for m in server.messages] == [b"stop\r\n", b"late\r\n"]


def test_stop_with_grace_closes_what_is_still_open_after_it() -> None:
    server = Server()
    server.start()
    wire = _session_to_quit(server)
    stopper = threading.Thread(target=server.stop, kwargs={"grace": 0.2})
    stopper.start()
    with wire:
        code, text = wire.reply()
        assert (code, text) == (421, "Service not available, closing transmission channel")
        assert wire.closed_by_peer()
    stopper.join(TIMEOUT)
    assert not stopper.is_alive()


def _flood_without_reading(address: tuple[str, int], limit: int) -> tuple[socket.socket, int]:
    """Send NOOPs and never read the replies, until the server stops taking
    them (the send times out) or ``limit`` octets are sent."""
    sock = socket.create_connection(address, timeout=TIMEOUT)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(0.5)  # no progress for this long: the server has stopped reading
    chunk = b"NOOP\r\n" * 10922
    sent = 0
    while sent < limit:
        try:
            sent += sock.send(chunk)
        except (TimeoutError, ConnectionResetError, BrokenPipeError):
            break  # the server stopped reading, or has already hung up
    return sock, sent


def _buffered_for(server: Server) -> int:
    """What the server holds unsent for its sessions, read on the loop thread."""
    return sum(s.transport.get_write_buffer_size() for s in list(server._serving.live) if s.transport is not None)


def test_a_client_that_never_reads_is_not_buffered_without_bound() -> None:
    """Reading pauses while the peer does not drain its replies: the server
    stops taking commands long before 64 MiB of NOOPs, and holds at most
    asyncio's high-water mark plus one read's replies."""
    with Server() as server:
        sock, sent = _flood_without_reading(server.address, 64 * 1024 * 1024)
        with sock:
            assert sent < 16 * 1024 * 1024
            assert _buffered_for(server) < 1024 * 1024


def test_a_session_that_times_out_unread_is_gone() -> None:
    """The idle timeout ends a session whose peer reads nothing: its 421 is
    queued, and the connection is dropped after a grace, so nothing of it is
    left in memory (the client sees the end of the stream after its replies)."""
    with Server(timeout=0.5) as server:
        sock, _ = _flood_without_reading(server.address, 64 * 1024 * 1024)
        with sock:
            sock.settimeout(TIMEOUT)
            for _ in range(100_000):  # bounded: the replies the server had queued
                try:
                    if not sock.recv(65536):
                        break
                except ConnectionResetError:
                    break
            else:
                pytest.fail("the server kept the session open")
        [session] = server.sessions
        assert session.ended_by == "timeout"
        assert _buffered_for(server) == 0


def test_the_timeout_option_reaches_tls_handshakes() -> None:
    """A client that connects to an implicit-TLS port and says nothing is cut
    off after the server's ``timeout``, not after a fixed 30 seconds."""
    with Server(tls="implicit", timeout=0.5) as server, socket.create_connection(server.address) as sock:
        sock.settimeout(10)
        with contextlib.suppress(ConnectionResetError):
            assert sock.recv(1024) == b""
