"""Our own checks of what CPython's test_smtplib.py needs of the stdlib
layer (tests/test_compat_cpython.py runs that file): each item of issue 12,
over real sockets, with smtplib or a raw client."""

from __future__ import annotations

import base64
import io
import logging
import smtplib
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from conftest import TIMEOUT, Wire
from pytest_smtpd import DebuggingServer, SMTPChannel, SMTPServer, asyncore, smtpd

LOCAL = ("127.0.0.1", 0)
FROM = "alice@example.com"
TO = "bob@example.com"


class Recorder(SMTPServer):
    """Records process_message calls and answers ``verdict``."""

    def __init__(self, *args: Any, verdict: object = None, **kwargs: Any) -> None:
        self.calls: list[tuple[str, list[str], bytes | str]] = []
        self.verdict = verdict
        super().__init__(*args, **kwargs)

    def process_message(
        self, peer: tuple[str, int], mailfrom: str, rcpttos: list[str], data: bytes | str, **kwargs: Any
    ) -> Any:
        self.calls.append((mailfrom, rcpttos, data))
        return self.verdict


@contextmanager
def raw(server: SMTPServer) -> Iterator[tuple[socket.socket, io.BufferedReader]]:
    """A client socket and its reader, to see reply bytes exactly."""
    with socket.create_connection(server.address, timeout=TIMEOUT) as sock, sock.makefile("rb") as reader:
        assert reader.readline().startswith(b"220 ")
        yield sock, reader


def send_message(sock: socket.socket, reader: io.BufferedReader) -> None:
    """HELO, MAIL, RCPT, DATA and a small message, up to the final reply."""
    for line in (b"HELO client.test", f"MAIL FROM:<{FROM}>".encode(), f"RCPT TO:<{TO}>".encode(), b"DATA"):
        sock.sendall(line + b"\r\n")
        assert reader.readline()[:1] in (b"2", b"3")
    sock.sendall(b"Subject: x\r\n\r\nbody\r\n.\r\n")


# -- SMTPServer.socket, addr, and asyncore's map, poll and close_all ------------


def test_socket_addr_and_socket_map() -> None:
    with Recorder(LOCAL, None) as server:
        assert server.socket.getsockname()[:2] == server.address
        assert server.addr == server.address
        assert asyncore.socket_map[server.socket.fileno()] is server
        fileno = server.socket.fileno()
    assert fileno not in asyncore.socket_map


def test_a_server_listed_in_its_own_map() -> None:
    own: dict[int, Any] = {}
    with Recorder(LOCAL, None, map=own) as server:
        assert list(own.values()) == [server]
        assert server not in asyncore.socket_map.values()
    assert own == {}


def test_a_polling_loop_of_ones_own_runs_ends_and_cleans_up() -> None:
    """The loop of CPython's test file: poll until told to stop, close the
    server, close_all(); the server serves meanwhile (on the loop thread)."""
    server = Recorder(LOCAL, None)
    stop = threading.Event()
    done = threading.Event()

    def serve() -> None:
        n = 1000
        while asyncore.socket_map and n > 0:
            asyncore.poll2(0.01, asyncore.socket_map)
            if stop.is_set():
                server.close()
                break
            n -= 1
        asyncore.close_all()
        done.set()

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        with smtplib.SMTP(*server.address, timeout=TIMEOUT) as smtp:
            assert smtp.sendmail(FROM, [TO], b"Subject: x\r\n\r\nbody\r\n") == {}
    finally:
        stop.set()
        thread.join(TIMEOUT)
    assert done.is_set() and not thread.is_alive()
    assert asyncore.socket_map == {}
    assert not server.accepting
    assert len(server.calls) == 1


def test_poll_returns_when_a_server_closes_not_after_its_timeout() -> None:
    server = Recorder(LOCAL, None)
    polling = threading.Thread(target=asyncore.poll, args=(60.0,))
    polling.start()
    server.close()
    polling.join(TIMEOUT)
    assert not polling.is_alive()


def test_poll_with_an_empty_map_returns_at_once() -> None:
    finished = threading.Event()

    def poll() -> None:
        asyncore.poll(60.0, {})
        finished.set()

    thread = threading.Thread(target=poll)
    thread.start()
    thread.join(TIMEOUT)
    assert finished.is_set()


def test_close_all_closes_every_server_and_raises_unless_ignore_all() -> None:
    class Broken:
        def close(self) -> None:
            raise OSError("cannot close")

    first, second = Recorder(LOCAL, None), Recorder(LOCAL, None)
    asyncore.socket_map[-1] = Broken()
    with pytest.raises(OSError, match="cannot close"):
        asyncore.close_all()
    assert not first.accepting and not second.accepting  # listed before the broken one
    asyncore.socket_map[-1] = Broken()
    asyncore.close_all(ignore_all=True)
    assert asyncore.socket_map == {}


# -- handle_accepted ---------------------------------------------------------------


class TaggedChannel(SMTPChannel):
    def __init__(self, tag: str, *args: Any, **kwargs: Any) -> None:
        self.tag = tag
        super().__init__(*args, **kwargs)

    def smtp_XTAG(self, arg: str | None) -> None:
        self.push(f"250 {self.tag}")


class TaggingServer(Recorder):
    channel_class = TaggedChannel

    def handle_accepted(self, conn: Any, addr: tuple[str, int]) -> None:
        self.last_channel = self.channel_class("tagged", self, conn, addr, decode_data=True)


def test_handle_accepted_override_builds_the_channel_with_extra_arguments() -> None:
    with TaggingServer(LOCAL, None) as server, Wire(server.address) as wire:
        assert wire.exchange("XTAG") == (250, "tagged")
        assert isinstance(server.last_channel, TaggedChannel)
        assert server.last_channel.peer == wire.sock.getsockname()[:2]


def test_the_channels_own_arguments_rule_its_session() -> None:
    """TaggingServer's channel gets decode_data=True, the server did not."""
    with TaggingServer(LOCAL, None) as server, smtplib.SMTP(*server.address, timeout=TIMEOUT) as smtp:
        assert smtp.ehlo()[0] == 250
        assert not smtp.has_extn("8bitmime")  # not offered with decode_data
        smtp.sendmail(FROM, [TO], b"Subject: x\r\n\r\nbody\r\n")
    assert server.calls == [(FROM, [TO], "Subject: x\n\nbody")]


def test_handle_accepted_that_makes_no_channel_gets_the_client_421(caplog: pytest.LogCaptureFixture) -> None:
    class Refusing(Recorder):
        def handle_accepted(self, conn: Any, addr: tuple[str, int]) -> None:
            pass

    with caplog.at_level(logging.ERROR), Refusing(LOCAL, None) as server, Wire(server.address, greeting=False) as wire:
        assert wire.reply()[0] == 421
        assert wire.closed_by_peer()
    assert any("made no channel" in str(r.exc_info[1]) for r in caplog.records if r.exc_info)


def test_a_channel_is_not_made_directly() -> None:
    with Recorder(LOCAL, None) as server, pytest.raises(TypeError, match="handle_accepted"):
        SMTPChannel(server, None, ("127.0.0.1", 1))


# -- the line interface and the channel's own state ----------------------------------


class LoginChannel(SMTPChannel):
    """An AUTH PLAIN dialogue of its own, written as CPython's test file
    writes it: its own EHLO, its own state, and found_terminator()."""

    AUTH = 99
    lines_seen: list[Any]

    def smtp_EHLO(self, arg: str | None) -> None:
        self.push("250-own.test\r\n250-AUTH PLAIN\r\n250 HELP")
        self.seen_greeting = arg or ""
        self.extended_smtp = True

    def smtp_AUTH(self, arg: str | None) -> None:
        self.smtp_state = self.AUTH
        self.push("334 ")

    def found_terminator(self) -> None:
        if self.smtp_state == self.AUTH:
            line = self._emptystring.join(self.received_lines)
            self.received_lines = []
            self.lines_seen.append(line)
            user = base64.b64decode(line).split(b"\0")[1]
            self.smtp_state = self.COMMAND
            self.push(f"235 Welcome {user.decode()}")
            return
        super().found_terminator()


class LoginServer(Recorder):
    channel_class = LoginChannel

    def handle_accepted(self, conn: Any, addr: tuple[str, int]) -> None:
        self.channel = self.channel_class(self, conn, addr, decode_data=self._decode_data)
        self.channel.lines_seen = []


@pytest.mark.parametrize("decode_data", [False, True])
def test_a_subclass_runs_its_own_dialogue_through_found_terminator(decode_data: bool) -> None:
    with LoginServer(LOCAL, None, decode_data=decode_data) as server:
        with smtplib.SMTP(*server.address, timeout=TIMEOUT) as smtp:
            smtp.ehlo("client.test")
            assert smtp.has_extn("auth")
            smtp.user, smtp.password = "alice", "secret"
            code, _ = smtp.docmd("AUTH", "PLAIN")
            assert code == 334
            assert smtp.docmd(base64.b64encode(b"\0alice\0secret").decode()) == (235, b"Welcome alice")
            # The greeting set through seen_greeting puts MAIL in sequence.
            assert smtp.sendmail(FROM, [TO], b"Subject: x\r\n\r\nbody\r\n") == {}
        expected = base64.b64encode(b"\0alice\0secret")
        assert server.channel.lines_seen == [expected.decode() if decode_data else expected]
        assert server.channel.seen_greeting == "client.test"
        assert len(server.calls) == 1


class LineSpy(SMTPChannel):
    lines: list[bytes | str]

    def collect_incoming_data(self, data: bytes | str) -> None:
        self.smtp_server.lines.append(data)  # type: ignore[attr-defined]
        super().collect_incoming_data(data)


class LineSpyServer(Recorder):
    channel_class = LineSpy

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.lines: list[bytes | str] = []
        super().__init__(*args, **kwargs)


def test_the_core_still_frames_the_lines_a_subclass_reads() -> None:
    """Only CRLF ends a line, and a line over the limit gets 500 from the
    core without reaching the subclass."""
    with LineSpyServer(LOCAL, None) as server, Wire(server.address) as wire:
        assert wire.exchange("NOOP\nQUIT") == (500, 'Error: command "NOOP?QUIT" not recognized')  # one line
        assert wire.command("NOOP " + "x" * 600) == 500
        assert wire.command("NOOP") == 250
    assert server.lines == [b"NOOP\nQUIT", b"NOOP"]


def test_found_terminator_may_answer_a_message_in_place_of_process_message() -> None:
    class Closing(SMTPChannel):
        def found_terminator(self) -> None:
            if self.smtp_state == self.DATA:
                self.smtp_server.seen = self.received_lines[:]  # type: ignore[attr-defined]
                self.push("421 closing")
            else:
                super().found_terminator()

    class ClosingServer(Recorder):
        channel_class = Closing

    with ClosingServer(LOCAL, None) as server, smtplib.SMTP(*server.address, timeout=TIMEOUT) as smtp:
        with pytest.raises(smtplib.SMTPDataError) as error:
            smtp.sendmail(FROM, [TO], b"Subject: x\r\n\r\n.dot\r\nbody\r\n")
        assert error.value.smtp_code == 421
        assert smtp.sock is None  # smtplib closes on 421
    assert server.calls == []
    # As the stdlib showed it: the data as sent, dots stuffed, no final CRLF.
    assert server.seen == [b"Subject: x\r\n\r\n..dot\r\nbody"]  # type: ignore[attr-defined]


def test_set_terminator_and_smtp_state_refuse_what_cannot_be_honoured() -> None:
    class Odd(SMTPChannel):
        def smtp_XTERM(self, arg: str | None) -> None:
            self.set_terminator(b"\r\n")  # what the core frames by: fine
            try:
                self.set_terminator(b"\n")
            except ValueError as exc:
                self.push(f"250 {exc}")

        def smtp_XDATA(self, arg: str | None) -> None:
            self.smtp_state = self.DATA

    class OddServer(Recorder):
        channel_class = Odd

    with OddServer(LOCAL, None) as server, Wire(server.address) as wire:
        code, text = wire.exchange("XTERM")
        assert code == 250 and "frames lines by CRLF only" in text
        assert wire.command("XDATA") == 451  # the ValueError, logged


class OwnEnvelope(SMTPChannel):
    """Takes MAIL and RCPT itself, as stdlib subclasses did: by setting
    mailfrom and appending to rcpttos."""

    def smtp_MAIL(self, arg: str | None) -> None:
        self.mailfrom = (arg or "").partition(":")[2].strip("<>")
        self.push("250 sender noted")

    def smtp_RCPT(self, arg: str | None) -> None:
        self.rcpttos.append((arg or "").partition(":")[2].strip("<>"))
        self.push("250 recipient noted")

    def smtp_XFORGET(self, arg: str | None) -> None:
        self.mailfrom = None
        self.push("250 forgotten")


class OwnEnvelopeServer(Recorder):
    channel_class = OwnEnvelope


def test_an_envelope_filled_by_a_subclass_puts_data_in_sequence() -> None:
    with OwnEnvelopeServer(LOCAL, None) as server, Wire(server.address) as wire:
        assert wire.command("HELO client.test") == 250
        assert wire.command("DATA") == 503  # no transaction yet
        assert wire.exchange(f"MAIL FROM:<{FROM}>") == (250, "sender noted")
        assert wire.command("DATA") == 503  # no recipient yet
        assert wire.exchange(f"RCPT TO:<{TO}>") == (250, "recipient noted")
        assert wire.command("DATA") == 354
        assert wire.command("Subject: x\r\n\r\nbody\r\n.") == 250
        assert wire.command(f"MAIL FROM:<{FROM}>") == 250
        assert wire.command("XFORGET") == 250
        assert wire.command("DATA") == 503  # the transaction was ended
    assert server.calls == [(FROM, [TO], b"Subject: x\n\nbody")]


# -- replies ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("verdict", "wire_reply"),
    [
        ("", b"250 OK\r\n"),
        (None, b"250 OK\r\n"),
        ("550", b"550\r\n"),
        ("550 No such user", b"550 No such user\r\n"),
        ("250-first\r\n250 second", b"250-first\r\n250 second\r\n"),
        ("250-first\n250 second", b"250-first\r\n250 second\r\n"),
        ("550 first\nsecond", b"550-first\r\n550 second\r\n"),
        ("250 OK\r\n", b"250 OK\r\n"),
    ],
)
def test_process_message_replies_as_the_stdlib_sent_them(verdict: str | None, wire_reply: bytes) -> None:
    with Recorder(LOCAL, None, verdict=verdict) as server, raw(server) as (sock, reader):
        send_message(sock, reader)
        lines = [reader.readline()]
        while lines[-1][3:4] == b"-" and len(lines) < 10:
            lines.append(reader.readline())
        assert b"".join(lines) == wire_reply


@pytest.mark.parametrize(
    "verdict",
    [
        "250 OK\r\nRCPT TO:<evil@example.com>",  # a line that is not a reply
        "250 OK\r\n550 mixed codes",
        "250 OK\rsmuggled",
        "250-never finished",
        "OK",
        17,
    ],
)
def test_a_verdict_that_is_not_reply_lines_gives_451(verdict: object, caplog: pytest.LogCaptureFixture) -> None:
    with (
        caplog.at_level(logging.ERROR),
        Recorder(LOCAL, None, verdict=verdict) as server,
        raw(server) as (sock, reader),
    ):
        send_message(sock, reader)
        assert reader.readline().startswith(b"451 ")
        sock.sendall(b"NOOP\r\n")
        assert reader.readline() == b"250 OK\r\n"  # nothing else was sent


def test_a_command_answered_before_an_error_gets_no_second_reply(caplog: pytest.LogCaptureFixture) -> None:
    class Late(SMTPChannel):
        def smtp_XDONE(self, arg: str | None) -> None:
            self.push("250 done")
            raise RuntimeError("after the answer")

        def smtp_XHALF(self, arg: str | None) -> None:
            self.push("250-half")
            raise RuntimeError("mid-reply")

    class LateServer(Recorder):
        channel_class = Late

    with caplog.at_level(logging.ERROR), LateServer(LOCAL, None) as server, Wire(server.address) as wire:
        assert wire.exchange("XDONE") == (250, "done")
        assert wire.exchange("NOOP") == (250, "OK")  # in step: no 451 was queued
        assert wire.exchange("XHALF") == (451, "half\nRequested action aborted: error in processing")
        assert wire.exchange("NOOP") == (250, "OK")
    assert sum("after the answer" in str(r.exc_info[1]) for r in caplog.records if r.exc_info) == 1


# -- DebuggingServer, DEBUGSTREAM, EHLO and the host name -------------------------


@pytest.mark.parametrize(
    ("message", "printed"),
    [
        (b"A test message\r\n", "A test message\n"),
        (b"Subject: x\r\nTo: b\r\n", "Subject: x\nTo: b\n"),
        (b"Subject: x\r\n\r\nbody\r\n", "Subject: x\nX-Peer: 127.0.0.1\n\nbody\n"),
        # The stdlib split the data into lines: the last line ending is not an empty line.
        (b"Subject: x\r\n\r\nbody\r\n\r\n", "Subject: x\nX-Peer: 127.0.0.1\n\nbody\n"),
        (b"\r\nbody only\r\n", "X-Peer: 127.0.0.1\n\nbody only\n"),
    ],
)
def test_debugging_server_adds_x_peer_only_where_the_headers_end(message: bytes, printed: str) -> None:
    out = io.StringIO()
    server = DebuggingServer(LOCAL, None, stream=out, decode_data=True)
    with server, smtplib.SMTP(*server.address, timeout=TIMEOUT) as smtp:
        smtp.sendmail(FROM, [TO], message)
    assert out.getvalue() == f"---------- MESSAGE FOLLOWS ----------\n{printed}------------ END MESSAGE ------------\n"


def test_debugstream_shows_sender_and_recipients(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = io.StringIO()
    monkeypatch.setattr(smtpd, "DEBUGSTREAM", stream)
    with Recorder(LOCAL, None) as server, smtplib.SMTP(*server.address, timeout=TIMEOUT) as smtp:
        smtp.sendmail("<>", [TO, "carol@example.com"], b"Subject: x\r\n\r\nbody\r\n")
    lines = stream.getvalue().splitlines()
    assert [line for line in lines if line.startswith(("sender:", "recips:"))] == [
        "sender: <>",
        f"recips: ['{TO}']",
        f"recips: ['{TO}', 'carol@example.com']",
    ]


def test_debugstream_is_silent_about_a_refused_mail_or_rcpt(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = io.StringIO()
    monkeypatch.setattr(smtpd, "DEBUGSTREAM", stream)
    with Recorder(LOCAL, None) as server, Wire(server.address) as wire:
        assert wire.command("HELO client.test") == 250
        assert wire.command("RCPT TO:<nobody@example.com>") == 503
        assert wire.command(f"MAIL FROM:<{FROM}>") == 250
        assert wire.command(f"MAIL FROM:<{FROM}>") == 503
        assert wire.command("RCPT TO:<oops") == 501
    assert [line for line in stream.getvalue().splitlines() if line.startswith(("sender:", "recips:"))] == [
        f"sender: {FROM}"
    ]


def test_ehlo_of_the_stdlib_classes_offers_no_pipelining_as_the_stdlib(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket, "getfqdn", lambda *args: "patched.test")
    with Recorder(LOCAL, None, decode_data=True) as server:
        with smtplib.SMTP(*server.address, timeout=TIMEOUT) as smtp:
            assert smtp.ehlo() == (250, b"patched.test\nSIZE 33554432\nHELP")
        with raw(server) as (sock, reader):
            sock.sendall(b"HELO client.test\r\nRSET\r\nNOOP\r\n")  # pipelined all the same
            assert [reader.readline() for _ in range(3)] == [b"250 patched.test\r\n", b"250 OK\r\n", b"250 OK\r\n"]


def test_a_fork_child_has_no_server_listed_and_its_loop_returns() -> None:
    """In a fork child the parent's servers do not run: socket_map is empty
    there, asyncore.loop() returns at once, and the child can serve its own."""
    code = """
        import multiprocessing, smtplib, warnings
        from pytest_smtpd import asyncore, smtpd

        warnings.filterwarnings("ignore", category=DeprecationWarning)  # 3.12+: fork with threads

        class Sink(smtpd.SMTPServer):
            def process_message(self, peer, mailfrom, rcpttos, data, **kwargs):
                return None

        parent = Sink(("127.0.0.1", 0), None)

        def child(queue):
            queue.put(("listed", len(asyncore.socket_map)))
            asyncore.loop()
            own = Sink(("127.0.0.1", 0), None)
            with smtplib.SMTP(*own.address, timeout=10) as client:
                queue.put(("own", client.noop()[0], len(asyncore.socket_map)))
            own.close()
            parent.close()

        context = multiprocessing.get_context("fork")
        queue = context.Queue()
        process = context.Process(target=child, args=(queue,))
        process.start()
        print(*queue.get(timeout=30))
        print(*queue.get(timeout=30))
        process.join(30)
        print("exit", process.exitcode, len(asyncore.socket_map))
        parent.close()
    """
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=45)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["listed 0", "own 250 1", "exit 0 1"], result.stderr


class NullSenderSpy(SMTPChannel):
    """Reads the null sender back as the stdlib's channel held it, and sets
    it itself the stdlib's way."""

    seen: list[str | None] = []

    def smtp_RCPT(self, arg: str | None) -> None:
        self.seen.append(self.mailfrom)
        super().smtp_RCPT(arg)

    def smtp_XBOUNCE(self, arg: str | None) -> None:
        self.mailfrom = "<>"
        self.push("250 null sender set")


class NullSenderServer(Recorder):
    channel_class = NullSenderSpy


def test_the_null_sender_is_the_stdlibs_angle_brackets() -> None:
    NullSenderSpy.seen = []
    with NullSenderServer(LOCAL, None) as server, Wire(server.address) as wire:
        assert wire.command("HELO client.test") == 250
        assert wire.command("MAIL FROM:<>") == 250
        assert wire.command(f"RCPT TO:<{TO}>") == 250
        assert wire.command("DATA") == 354
        assert wire.command("Subject: bounce\r\n\r\nbody\r\n.") == 250
        assert wire.command("XBOUNCE") == 250
        assert wire.command(f"RCPT TO:<{TO}>") == 250
        assert wire.command("DATA") == 354
        assert wire.command("Subject: bounce 2\r\n\r\nbody\r\n.") == 250
    assert NullSenderSpy.seen == ["<>", "<>"]
    assert [mailfrom for mailfrom, _, _ in server.calls] == ["<>", "<>"]
