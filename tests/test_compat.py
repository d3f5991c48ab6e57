"""The stdlib-``smtpd``-compatible API over real sockets: ``SMTPServer``,
``SMTPChannel``, ``DebuggingServer`` and the ``smtpd``/``asyncore`` shims."""

from __future__ import annotations

import asyncio
import io
import logging
import os
import smtplib
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from conftest import TIMEOUT, Wire, no_server_running
from pytest_smtpd import DebuggingServer, Message, Server, SMTPChannel, SMTPServer, asyncore, compat, smtpd

LOCAL = ("127.0.0.1", 0)
FROM = "alice@example.com"
TO = "bob@example.com"
BODY = b"Subject: hello\r\n\r\nHi Bob.\r\nBye.\r\n"
#: BODY as ``process_message`` receives it: ``\n`` between lines, none at the end.
SEED_BODY = b"Subject: hello\n\nHi Bob.\nBye."

Call = tuple[tuple[str, int], str, list[str], "bytes | str", dict[str, Any]]


class Recorder(SMTPServer):
    """Records every process_message call and answers ``self.verdict``."""

    def __init__(self, *args: Any, verdict: str | None = None, **kwargs: Any) -> None:
        self.calls: list[Call] = []
        self.verdict = verdict
        super().__init__(*args, **kwargs)

    def process_message(
        self, peer: tuple[str, int], mailfrom: str, rcpttos: list[str], data: bytes | str, **kwargs: Any
    ) -> str | None:
        self.calls.append((peer, mailfrom, rcpttos, data, kwargs))
        return self.verdict


@contextmanager
def client(server: SMTPServer) -> Iterator[smtplib.SMTP]:
    with smtplib.SMTP(*server.address, timeout=TIMEOUT) as smtp:
        yield smtp


def transaction(smtp: smtplib.SMTP, data: bytes = BODY) -> tuple[int, bytes]:
    """MAIL, RCPT and DATA without options; the reply to the data."""
    assert smtp.mail(FROM)[0] == 250
    assert smtp.rcpt(TO)[0] == 250
    return smtp.data(data)


# -- SMTPServer.process_message ---------------------------------------------------


def test_four_argument_process_message_gets_no_keywords() -> None:
    """Python 2 style overrides know nothing of mail_options/rcpt_options."""

    class Old(SMTPServer):
        def __init__(self, *args: Any) -> None:
            self.calls: list[tuple[tuple[str, int], str, list[str], bytes | str]] = []
            super().__init__(*args)

        def process_message(  # type: ignore[override]
            self, peer: tuple[str, int], mailfrom: str, rcpttos: list[str], data: bytes | str
        ) -> None:
            self.calls.append((peer, mailfrom, rcpttos, data))

    with Old(LOCAL, None) as server, client(server) as smtp:
        smtp.sendmail(FROM, [TO, "carol@example.com"], BODY)
        assert smtp.sock is not None
        local = smtp.sock.getsockname()
    assert server.calls == [(local, FROM, [TO, "carol@example.com"], SEED_BODY)]


def test_process_message_with_kwargs_gets_the_options() -> None:
    with Recorder(LOCAL, None) as server, client(server) as smtp:
        smtp.sendmail(FROM, [TO], BODY, mail_options=["BODY=8BITMIME"])
    ((_, mailfrom, rcpttos, data, kwargs),) = server.calls
    assert (mailfrom, rcpttos, data) == (FROM, [TO], SEED_BODY)
    assert kwargs == {"mail_options": [f"SIZE={len(BODY)}", "BODY=8BITMIME"], "rcpt_options": []}


def test_process_message_with_named_option_parameters() -> None:
    class Named(SMTPServer):
        def __init__(self, *args: Any) -> None:
            self.options: list[tuple[list[str], list[str]]] = []
            super().__init__(*args)

        def process_message(  # type: ignore[override]
            self,
            peer: tuple[str, int],
            mailfrom: str,
            rcpttos: list[str],
            data: bytes | str,
            mail_options: list[str],
            rcpt_options: list[str],
        ) -> None:
            self.options.append((mail_options, rcpt_options))

    with Named(LOCAL, None) as server, client(server) as smtp:
        smtp.ehlo()
        smtp.mail(FROM, ["BODY=7BIT"])
        smtp.rcpt(TO)
        assert smtp.data(BODY) == (250, b"OK")
    assert server.options == [(["BODY=7BIT"], [])]


@pytest.mark.parametrize(
    ("verdict", "expected"),
    [(None, (250, b"OK")), ("554 Go away", (554, b"Go away")), ("250 Queued as 17", (250, b"Queued as 17"))],
)
def test_process_message_return_value_is_the_reply(verdict: str | None, expected: tuple[int, bytes]) -> None:
    with Recorder(LOCAL, None, verdict=verdict) as server, client(server) as smtp:
        smtp.helo()
        assert transaction(smtp) == expected
        assert smtp.noop() == (250, b"OK")
    assert len(server.calls) == 1


def test_decode_data_gives_str_and_no_keywords() -> None:
    data = "Subject: é\r\n\r\nGrüße\r\n".encode()
    with Recorder(LOCAL, None, decode_data=True) as server, client(server) as smtp:
        smtp.ehlo()
        assert not smtp.has_extn("8bitmime")
        assert transaction(smtp, data) == (250, b"OK")
    ((_, _, _, received, kwargs),) = server.calls
    assert received == "Subject: é\n\nGrüße"
    assert kwargs == {}


def test_decode_data_and_smtputf8_together_raise_before_binding() -> None:
    with pytest.raises(ValueError, match="decode_data and enable_SMTPUTF8 cannot be set to True at the same time"):
        Recorder(LOCAL, None, decode_data=True, enable_SMTPUTF8=True)
    assert no_server_running()


def test_smtputf8_server() -> None:
    with Recorder(LOCAL, None, enable_SMTPUTF8=True) as server, client(server) as smtp:
        smtp.sendmail("jörg@exämple.com", ["ü@exämple.com"], "Subject: ü\r\n\r\nü\r\n".encode(), ["SMTPUTF8"])
    ((_, mailfrom, rcpttos, data, kwargs),) = server.calls
    assert (mailfrom, rcpttos, data) == ("jörg@exämple.com", ["ü@exämple.com"], "Subject: ü\n\nü".encode())
    assert "SMTPUTF8" in kwargs["mail_options"]


def test_data_size_limit() -> None:
    with Recorder(LOCAL, None, data_size_limit=len(BODY)) as server, client(server) as smtp:
        smtp.ehlo()
        assert smtp.esmtp_features["size"] == str(len(BODY))
        assert transaction(smtp, BODY) == (250, b"OK")
        assert transaction(smtp, BODY + b"!\r\n")[0] == 552
        assert transaction(smtp, BODY) == (250, b"OK")
    assert len(server.calls) == 2


def test_coroutine_process_message() -> None:
    class Async(SMTPServer):
        async def process_message(
            self, peer: tuple[str, int], mailfrom: str, rcpttos: list[str], data: bytes | str, **kwargs: Any
        ) -> str | None:
            await asyncio.sleep(0)
            return None if rcpttos == [TO] else "550 unknown user"

    with Async(LOCAL, None) as server, client(server) as smtp:
        smtp.helo()
        assert transaction(smtp) == (250, b"OK")
        smtp.mail(FROM)
        smtp.rcpt("nobody@example.com")
        assert smtp.data(BODY) == (550, b"unknown user")


def test_process_message_error_gives_451_is_logged_and_the_session_continues(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Flaky(Recorder):
        def process_message(
            self, peer: tuple[str, int], mailfrom: str, rcpttos: list[str], data: bytes | str, **kwargs: Any
        ) -> str | None:
            if isinstance(data, bytes) and b"boom" in data:
                raise KeyError("process_message bug")
            return super().process_message(peer, mailfrom, rcpttos, data, **kwargs)

    with caplog.at_level(logging.ERROR, logger="pytest_smtpd"), Flaky(LOCAL, None) as server, client(server) as smtp:
        smtp.helo()
        assert transaction(smtp, b"Subject: boom\r\n\r\n")[0] == 451
        assert transaction(smtp) == (250, b"OK")
    assert len(server.calls) == 1
    (record,) = caplog.records
    assert record.exc_info is not None and "process_message bug" in str(record.exc_info[1])


def test_remoteaddr_and_address() -> None:
    with Recorder(LOCAL, ("mx.example.com", 25)) as server:
        assert server._remoteaddr == ("mx.example.com", 25)
        host, port = server.address
        assert host == "127.0.0.1"
        assert port != 0
        with Wire(server.address) as wire:
            assert wire.command("NOOP") == 250


def test_close_is_idempotent_and_stops_serving() -> None:
    server = Recorder(LOCAL, None)
    address = server.address
    server.close()
    server.close()
    assert no_server_running()
    with socket.socket() as probe, pytest.raises(ConnectionRefusedError):
        probe.settimeout(TIMEOUT)
        probe.connect(address)


# -- SMTPChannel subclasses --------------------------------------------------------


class Channel(SMTPChannel):
    """Adds XYZZY and refuses one HELO name, leaving the rest to the built-in."""

    def smtp_XYZZY(self, arg: str | None) -> None:
        self.push(f"250 Nothing happens ({arg})")

    def smtp_HELO(self, arg: str | None) -> None:
        if arg == "evil.test":
            self.push("550 Go away")
            return
        super().smtp_HELO(arg)


class ChannelServer(Recorder):
    channel_class = Channel


def test_channel_subclass_adds_a_command_and_extends_helo() -> None:
    with ChannelServer(LOCAL, None, hostname="mx.test") as server, Wire(server.address) as wire:
        wire.send(b"XYZZY magic\r\n")
        assert wire.reply() == (250, "Nothing happens (magic)")
        assert wire.command("HELO evil.test") == 550
        assert wire.command(f"MAIL FROM:<{FROM}>") == 503  # the refused HELO did not greet
        wire.send(b"HELO good.test\r\n")
        assert wire.reply() == (250, "mx.test")
        for line in (f"MAIL FROM:<{FROM}>", f"RCPT TO:<{TO}>"):
            assert wire.command(line) == 250
        assert wire.command("DATA") == 354
        assert wire.command("Subject: x\r\n\r\nbody\r\n.") == 250
        assert wire.command("EHLO other.test") == 250  # EHLO is untouched
        assert wire.command("XYZZY") == 250
    ((_, _, _, data, _),) = server.calls
    assert data == b"Subject: x\n\nbody"


class Snooping(SMTPChannel):
    """Reports its stdlib attributes to the server on XYZZY and at DATA."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.built = True

    def smtp_XYZZY(self, arg: str | None) -> None:
        assert isinstance(self.smtp_server, SnoopServer)
        self.smtp_server.snapshots.append(
            {
                "built": self.built,
                "seen_greeting": self.seen_greeting,
                "mailfrom": self.mailfrom,
                "rcpttos": list(self.rcpttos),
                "smtp_state": self.smtp_state,
                "fqdn": self.fqdn,
                "peer": self.peer,
                "addr": self.addr,
                "conn_peer": self.conn.getpeername(),
                "smtp_server": self.smtp_server,
                "received_data": self.received_data,
            }
        )
        self.push("250 noted")

    def smtp_DATA(self, arg: str | None) -> None:
        super().smtp_DATA(arg)
        assert isinstance(self.smtp_server, SnoopServer)
        self.smtp_server.snapshots.append({"smtp_state": self.smtp_state})


class SnoopServer(Recorder):
    channel_class = Snooping

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.snapshots: list[dict[str, Any]] = []
        super().__init__(*args, **kwargs)


def test_channel_attributes() -> None:
    with SnoopServer(LOCAL, None, hostname="mx.test") as server, Wire(server.address) as wire:
        local = wire.sock.getsockname()
        script = [
            "XYZZY",
            "HELO client.test",
            f"MAIL FROM:<{FROM}>",
            f"RCPT TO:<{TO}>",
            "XYZZY",
            "DATA",
            "Subject: x\r\n\r\nbody\r\n.",
            "XYZZY",
        ]
        assert [wire.command(line) for line in script] == [250, 250, 250, 250, 250, 354, 250, 250]
    fresh, in_transaction, in_data, after = server.snapshots
    common = {
        "built": True,
        "fqdn": "mx.test",
        "peer": local,
        "addr": local,
        "conn_peer": local,
        "smtp_server": server,
    }
    assert fresh == {
        **common,
        "seen_greeting": "",
        "mailfrom": None,
        "rcpttos": [],
        "smtp_state": SMTPChannel.COMMAND,
        "received_data": b"",
    }
    assert in_transaction == {
        **common,
        "seen_greeting": "client.test",
        "mailfrom": FROM,
        "rcpttos": [TO],
        "smtp_state": SMTPChannel.COMMAND,
        "received_data": b"",
    }
    assert in_data == {"smtp_state": SMTPChannel.DATA}
    assert after == {
        **common,
        "seen_greeting": "client.test",
        "mailfrom": None,
        "rcpttos": [],
        "smtp_state": SMTPChannel.COMMAND,
        "received_data": b"Subject: x\n\nbody",
    }


def test_error_in_a_channel_command_gives_451_and_the_session_continues(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Broken(SMTPChannel):
        def smtp_XYZZY(self, arg: str | None) -> None:
            raise RuntimeError("channel bug")

    class BrokenServer(Recorder):
        channel_class = Broken

    with caplog.at_level(logging.ERROR), BrokenServer(LOCAL, None) as server, Wire(server.address) as wire:
        assert wire.command("XYZZY") == 451
        assert wire.command("NOOP") == 250
    assert any(r.exc_info and "channel bug" in str(r.exc_info[1]) for r in caplog.records)


def test_error_in_the_channel_constructor_refuses_the_session_with_421(caplog: pytest.LogCaptureFixture) -> None:
    class Unbuildable(SMTPChannel):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            raise RuntimeError("constructor bug")

    class UnbuildableServer(Recorder):
        channel_class = Unbuildable

    with caplog.at_level(logging.ERROR), UnbuildableServer(LOCAL, None) as server:
        for _ in range(2):
            with Wire(server.address, greeting=False) as wire:
                assert wire.reply()[0] == 421
                assert wire.closed_by_peer()
    assert any(r.exc_info and "constructor bug" in str(r.exc_info[1]) for r in caplog.records)


# -- DebuggingServer ---------------------------------------------------------------


def test_debugging_server_output() -> None:
    out = io.StringIO()
    with DebuggingServer(LOCAL, None, stream=out) as server, client(server) as smtp:
        smtp.helo()
        assert transaction(smtp, b"Subject: hi\r\nFrom: a@example.com\r\n\r\nline one\r\nline two\r\n") == (250, b"OK")
    assert out.getvalue() == (
        "---------- MESSAGE FOLLOWS ----------\n"
        "Subject: hi\n"
        "From: a@example.com\n"
        "X-Peer: 127.0.0.1\n"
        "\n"
        "line one\n"
        "line two\n"
        "------------ END MESSAGE ------------\n"
    )


def test_debugging_server_escapes_what_an_ascii_stream_cannot_show() -> None:
    """8-bit mail to a stream that cannot encode it: printed with escapes,
    and the client still gets 250 (the message is not lost to a 451)."""
    raw = io.BytesIO()
    out = io.TextIOWrapper(raw, encoding="ascii")
    with DebuggingServer(LOCAL, None, stream=out) as server, client(server) as smtp:
        smtp.helo()
        body = "Subject: caf\u00e9\r\n\r\nd\u00e9j\u00e0 vu \u2603\r\n".encode()
        assert transaction(smtp, body) == (250, b"OK")
    printed = raw.getvalue().decode("ascii")
    assert "Subject: caf\\xe9\nX-Peer: 127.0.0.1\n\nd\\xe9j\\xe0 vu \\u2603\n" in printed
    assert printed.endswith("------------ END MESSAGE ------------\n")


def test_debugging_server_prints_mail_options_to_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    with DebuggingServer(LOCAL, None) as server, client(server) as smtp:
        smtp.sendmail(FROM, [TO], BODY, mail_options=["BODY=8BITMIME"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[:3] == [
        "---------- MESSAGE FOLLOWS ----------",
        f"mail options: ['SIZE={len(BODY)}', 'BODY=8BITMIME']",
        "Subject: hello",
    ]
    assert lines[-1] == "------------ END MESSAGE ------------"


# -- the smtpd and asyncore shims -----------------------------------------------------


def test_shims_expose_the_stdlib_names() -> None:
    assert smtpd.SMTPServer is SMTPServer
    assert smtpd.SMTPChannel is SMTPChannel
    assert smtpd.DebuggingServer is DebuggingServer
    assert smtpd.DATA_SIZE_DEFAULT == 33554432
    assert smtpd.__version__ == "Python SMTP proxy version 0.3"
    assert asyncore.loop is compat.loop


def test_debugstream_set_on_the_smtpd_shim_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    trace = io.StringIO()
    monkeypatch.setattr(smtpd, "DEBUGSTREAM", trace)
    with Recorder(LOCAL, None) as server, Wire(server.address):
        pass
    assert "Incoming connection from" in trace.getvalue()


def test_asyncore_loop_with_count_returns() -> None:
    with Recorder(LOCAL, None) as server:
        started = time.monotonic()
        asyncore.loop(timeout=0.01, count=3)
        assert time.monotonic() - started < 1.0
        with client(server) as smtp:
            smtp.sendmail(FROM, [TO], BODY)
    assert len(server.calls) == 1


def test_asyncore_loop_returns_when_the_servers_are_closed() -> None:
    server = Recorder(LOCAL, None)
    closer = threading.Thread(target=server.close)
    closer.start()
    started = time.monotonic()
    asyncore.loop(timeout=0.05, count=200)  # at most 10s
    assert time.monotonic() - started < 5.0
    closer.join(TIMEOUT)
    assert no_server_running()


def test_asyncore_loop_without_servers_returns_at_once() -> None:
    started = time.monotonic()
    asyncore.loop()
    assert time.monotonic() - started < 1.0


ONE_SHOT = textwrap.dedent(
    """
    import threading
    from conftest import Wire
    from pytest_smtpd import SMTPServer, loop

    class OneShot(SMTPServer):
        def process_message(self, peer, mailfrom, rcpttos, data, **kwargs):
            print("got", len(data), flush=True)
            self.close()  # on the loop thread, from inside a session

    server = OneShot(("127.0.0.1", 0), None)
    replies = []

    def client():
        with Wire(server.address) as wire:
            for line in ("HELO c", "MAIL FROM:<a@example.com>", "RCPT TO:<b@example.com>", "DATA", "hello\\r\\n."):
                replies.append(wire.command(line))
            replies.append(wire.reply()[0])  # the 421 of the close
            replies.append(wire.closed_by_peer())

    sender = threading.Thread(target=client)
    sender.start()
    loop()  # returns once the server has closed itself
    sender.join(10)
    print(replies, flush=True)
    print("threads", sorted(t.name for t in threading.enumerate()), flush=True)
    """
)


def test_process_message_may_close_its_own_server() -> None:
    """The stdlib one-shot pattern: ``self.close()`` inside process_message.
    The client hears its 250, then 421; loop() returns; no thread is left."""
    result = subprocess.run(
        [sys.executable, "-X", "dev", "-W", "error", "-c", ONE_SHOT],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=os.path.dirname(__file__),
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "got 5"  # stdlib-style data: "hello", no final line end
    assert lines[1] == "[250, 250, 250, 354, 250, 421, True]"
    assert lines[2] == "threads ['MainThread']"
    noise = [line for line in result.stderr.splitlines() if "Executing" not in line or " took " not in line]
    assert noise == [], result.stderr


def test_a_handler_may_stop_its_server(caplog: pytest.LogCaptureFixture, smtpd_loop: None) -> None:
    """Server.stop() from a handler returns at once; the close follows the
    answer. (With the loop thread kept, as in a test session; the subprocess
    test above covers the last server ending the thread.)"""
    stopped = threading.Event()
    holder: list[Server] = []

    def handler(message: Message) -> None:
        holder[0].stop()
        stopped.set()

    server = Server(handler=handler)
    holder.append(server)
    server.start()
    with Wire(server.address) as wire:
        for line in ("HELO c", "MAIL FROM:<a@example.com>", "RCPT TO:<b@example.com>", "DATA"):
            wire.command(line)
        assert wire.command("hello\r\n.") == 250
        assert stopped.wait(TIMEOUT)
        assert wire.reply()[0] == 421
        assert wire.closed_by_peer()
    assert not server.is_running()
    server.stop()  # waits for the stop the handler began
    assert repr(server).endswith("stopped, 1 message(s)>")
    assert len(server.messages) == 1
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text


def test_channel_command_size_limit_sets_the_line_limit() -> None:
    """The stdlib's knob: SMTPChannel.command_size_limit (512 by default)."""

    class LongLines(SMTPChannel):
        command_size_limit = 1024

    class LongLineServer(Recorder):
        channel_class = LongLines

    noop = "NOOP " + "x" * 700
    with Recorder(LOCAL, None) as plain, Wire(plain.address) as wire:
        assert wire.command(noop) == 500
    with LongLineServer(LOCAL, None) as server, Wire(server.address) as wire:
        assert wire.command(noop) == 250
        assert wire.command("NOOP " + "x" * 1100) == 500


def test_migration_guides_handle_rcpt_recipe() -> None:
    """docs/migration.rst: refusing a recipient at RCPT time, as aiosmtpd's handle_RCPT would."""

    class KnownRecipientsOnly(SMTPChannel):
        def smtp_RCPT(self, arg: str | None) -> None:
            if arg and "unknown@" in arg:
                self.push("550 5.1.1 No such user here")
                return
            super().smtp_RCPT(arg)

    class Sink(Recorder):
        channel_class = KnownRecipientsOnly

    with Sink(LOCAL, None) as server, client(server) as smtp:
        refused = smtp.sendmail(FROM, [TO, "unknown@example.com"], BODY)
    assert refused == {"unknown@example.com": (550, b"5.1.1 No such user here")}
    [(_, _, rcpttos, _, _)] = server.calls
    assert rcpttos == [TO]
