"""``Server`` over real loopback sockets, judged by real clients (smtplib,
aiosmtplib) and by a raw socket where the exact bytes matter."""

from __future__ import annotations

import asyncio
import logging
import smtplib
import socket
import subprocess
import sys
import textwrap
import threading
import time
from email.message import EmailMessage

import aiosmtplib
import pytest

from conftest import TIMEOUT, Wire, loop_threads, no_server_running
from pytest_smtpd import Message, Reply, Server

FROM = "alice@example.com"
TO = "bob@example.com"
BODY = b"Subject: hello\r\n\r\nHi Bob.\r\n"


def send(server: Server, data: bytes = BODY, *, mail_from: str = FROM, rcpt_tos: tuple[str, ...] = (TO,)) -> None:
    with smtplib.SMTP(server.host, server.port, timeout=TIMEOUT) as client:
        client.sendmail(mail_from, list(rcpt_tos), data)


def ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


# -- lifecycle ----------------------------------------------------------------


def test_port_0_is_read_back_after_binding() -> None:
    server = Server(port=0)
    assert server.port == 0
    with server:
        assert server.port != 0
        assert server.address == ("127.0.0.1", server.port)
        send(server)
    assert len(server.messages) == 1


def test_ipv4_loopback(server: Server) -> None:
    with Wire(server.address) as wire:
        assert wire.sock.family == socket.AF_INET
        assert wire.command("NOOP") == 250


@pytest.mark.skipif(not ipv6_loopback(), reason="no IPv6 loopback")
def test_ipv6_loopback() -> None:
    with Server(host="::1") as server:
        with Wire(server.address) as wire:
            assert wire.sock.family == socket.AF_INET6
            assert wire.command("NOOP") == 250
        send(server)
        (message,) = server.messages
        assert message.peer[0] == "::1"


def test_port_in_use_raises_at_once_with_a_clear_message() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        server = Server(port=port)
        started = time.monotonic()
        with pytest.raises(OSError, match=rf"cannot listen on 127\.0\.0\.1:{port}: the address is already in use"):
            server.start()
        assert time.monotonic() - started < 1.0
        assert not server.is_running()
    assert no_server_running()


def test_start_twice_raises(server: Server) -> None:
    port = server.port
    with pytest.raises(RuntimeError, match="already running"):
        server.start()
    assert server.is_running()
    assert server.port == port


def test_stop_is_prompt_and_idempotent() -> None:
    server = Server()
    server.stop()  # never started: nothing to do
    server.start()
    assert server.is_running()
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 1.0
    assert not server.is_running()
    server.stop()
    assert no_server_running()
    with socket.socket() as probe, pytest.raises(ConnectionRefusedError):
        probe.settimeout(TIMEOUT)
        probe.connect(("127.0.0.1", server.port))


def test_restart_after_stop() -> None:
    server = Server()
    with server:
        send(server)
    with server:
        send(server)
    assert len(server.messages) == 2


def test_stop_says_421_to_a_connected_client_and_closes() -> None:
    server = Server()
    server.start()
    with Wire(server.address) as idle, Wire(server.address) as in_data:
        assert idle.command("EHLO client.test") == 250
        for line in ("HELO client.test", f"MAIL FROM:<{FROM}>", f"RCPT TO:<{TO}>", "DATA"):
            in_data.command(line)
        in_data.send(b"Subject: unfinished\r\n")
        started = time.monotonic()
        server.stop()
        assert time.monotonic() - started < 1.0
        for wire in (idle, in_data):
            assert wire.reply()[0] == 421
            assert wire.closed_by_peer()
    assert server.messages == []
    assert no_server_running()


def test_stop_while_an_async_handler_is_pending_is_prompt_and_says_421() -> None:
    handler_started = threading.Event()

    async def never_decides(message: Message) -> None:
        handler_started.set()
        await asyncio.get_running_loop().create_future()

    server = Server(handler=never_decides)
    server.start()
    with Wire(server.address) as wire:
        for line in ("HELO client.test", f"MAIL FROM:<{FROM}>", f"RCPT TO:<{TO}>", "DATA"):
            wire.command(line)
        wire.send(BODY + b".\r\n")
        assert handler_started.wait(TIMEOUT)
        started = time.monotonic()
        server.stop()
        assert time.monotonic() - started < 1.0
        assert wire.reply()[0] == 421
        assert wire.closed_by_peer()
    assert server.messages == []


NO_THREAD_LEFT = """
import smtplib, threading
from pytest_smtpd import Server
def loop_threads():
    return [t for t in threading.enumerate() if t.name == "pytest-smtpd-loop"]
assert loop_threads() == []
with Server() as server:
    assert len(loop_threads()) == 1
    with smtplib.SMTP(server.host, server.port, timeout=5) as client:
        client.sendmail("a@example.com", ["b@example.com"], b"Subject: x\\r\\n\\r\\nx\\r\\n")
assert loop_threads() == [], loop_threads()
print("no thread left")
"""


def test_no_thread_is_left_after_stop() -> None:
    # In a fresh interpreter: in this one the plugin may keep the thread for the session.
    result = subprocess.run(
        [sys.executable, "-X", "dev", "-W", "error", "-c", NO_THREAD_LEFT],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "no thread left"


def test_two_servers_share_one_loop_thread() -> None:
    with Server() as first, Server() as second:
        assert first.port != second.port
        assert len(loop_threads()) == 1
        send(first, rcpt_tos=("first@example.com",))
        send(second, rcpt_tos=("second@example.com",))
        first.stop()
        assert len(loop_threads()) == 1
        send(second, rcpt_tos=("second@example.com",))
    assert [m.rcpt_tos for m in first.messages] == [["first@example.com"]]
    assert [m.rcpt_tos for m in second.messages] == [["second@example.com"]] * 2
    assert no_server_running()


def test_accepted_sockets_have_tcp_nodelay(server: Server) -> None:
    """Replies are small writes that must not wait for Nagle's algorithm.
    (The stdlib's selector loop sets it too; the transport makes sure.)"""
    with Wire(server.address):
        # The greeting is written once the session is registered.
        (session,) = server._serving.live
        assert session.socket is not None
        assert session.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0


def test_no_resource_warning_or_leftover_thread_in_dev_mode() -> None:
    """Start, serve, stop with a client connected, in a fresh interpreter in
    development mode, where every unclosed socket, transport or loop warns."""
    script = textwrap.dedent(
        """
        import gc, smtplib, socket, threading
        from pytest_smtpd import Server

        with Server() as a, Server() as b:
            for server in (a, b):
                with smtplib.SMTP(server.host, server.port) as client:
                    client.sendmail("a@example.com", ["b@example.com"], b"Subject: x\\r\\n\\r\\nbody\\r\\n")
            idle = socket.create_connection(a.address, timeout=5)
            idle.recv(1024)
        assert idle.recv(1024).startswith(b"421 "), "no 421 at stop"
        idle.close()
        gc.collect()
        assert [t.name for t in threading.enumerate()] == ["MainThread"], threading.enumerate()
        assert len(a.messages) == len(b.messages) == 1
        """
    )
    result = subprocess.run(
        [sys.executable, "-X", "dev", "-W", "error", "-c", script],
        capture_output=True,
        text=True,
        timeout=30,
    )
    # Development mode also logs callbacks slower than 0.1s, harmless on a busy machine.
    noise = [line for line in result.stderr.splitlines() if "Executing" not in line or " took " not in line]
    assert result.returncode == 0, result.stderr
    assert noise == []


# -- delivery through real clients ---------------------------------------------


def test_smtplib_sendmail_delivers_with_envelope(server: Server) -> None:
    with smtplib.SMTP(server.host, server.port, timeout=TIMEOUT) as client:
        client.ehlo("client.test")
        refused = client.sendmail(FROM, [TO, "carol@example.com"], BODY, mail_options=["BODY=8BITMIME"])
        assert client.sock is not None
        client_address = client.sock.getsockname()
    assert refused == {}
    (message,) = server.messages
    assert message.peer == client_address
    assert message.mail_from == FROM
    assert message.rcpt_tos == [TO, "carol@example.com"]
    assert message.mail_options == [f"SIZE={len(BODY)}", "BODY=8BITMIME"]
    assert message.rcpt_options == []
    assert message.helo == "client.test"
    assert message.data == BODY
    assert message.email["Subject"] == "hello"
    assert message.email.get_content().splitlines() == ["Hi Bob."]


def test_smtplib_send_message_delivers_a_parsed_email(server: Server) -> None:
    email = EmailMessage()
    email["From"] = FROM
    email["To"] = f"{TO}, carol@example.com"
    email["Subject"] = "Grüße"
    email.set_content("Ünïcödé body\n")
    with smtplib.SMTP(server.host, server.port, timeout=TIMEOUT) as client:
        client.send_message(email)
    (message,) = server.messages
    assert message.mail_from == FROM
    assert message.rcpt_tos == [TO, "carol@example.com"]
    assert message.subject == "Grüße"
    assert message.email.get_content().splitlines() == ["Ünïcödé body"]
    assert b"\r\n" in message.data
    assert b"\n" not in message.data.replace(b"\r\n", b"")


def test_aiosmtplib_send_delivers(server: Server) -> None:
    email = EmailMessage()
    email["From"] = FROM
    email["To"] = TO
    email["Subject"] = "async"
    email.set_content("sent by aiosmtplib\n")
    errors, response = asyncio.run(aiosmtplib.send(email, hostname=server.host, port=server.port, timeout=TIMEOUT))
    assert errors == {}
    assert response.startswith("OK")
    (message,) = server.messages
    assert (message.mail_from, message.rcpt_tos) == (FROM, [TO])
    assert message.subject == "async"
    assert message.email.get_content().splitlines() == ["sent by aiosmtplib"]


def test_rcpt_options_are_kept_with_dsn() -> None:
    with Server(enable_DSN=True) as server:
        with smtplib.SMTP(server.host, server.port, timeout=TIMEOUT) as client:
            client.sendmail(FROM, [TO], BODY, mail_options=["RET=HDRS"], rcpt_options=["NOTIFY=SUCCESS,FAILURE"])
        (message,) = server.messages
    assert message.mail_options == [f"SIZE={len(BODY)}", "RET=HDRS"]
    assert message.rcpt_options == ["NOTIFY=SUCCESS,FAILURE"]


def test_rcpt_options_are_refused_without_dsn(server: Server) -> None:
    with (
        smtplib.SMTP(server.host, server.port, timeout=TIMEOUT) as client,
        pytest.raises(smtplib.SMTPRecipientsRefused) as refused,
    ):
        client.sendmail(FROM, [TO], BODY, rcpt_options=["NOTIFY=NEVER"])
    assert refused.value.recipients[TO][0] == 555
    assert server.messages == []


def test_raw_data_is_dot_unstuffed_with_crlf_kept(server: Server) -> None:
    with Wire(server.address) as wire:
        for line in ("HELO client.test", f"MAIL FROM:<{FROM}>", f"RCPT TO:<{TO}>"):
            assert wire.command(line) == 250
        assert wire.command("DATA") == 354
        wire.send(b"Subject: dots\r\n\r\n..one dot\r\n...two dots\r\n. \r\nbare\nlf and bare\rcr\r\n.\r\n")
        assert wire.reply()[0] == 250
    (message,) = server.messages
    assert message.data == b"Subject: dots\r\n\r\n.one dot\r\n..two dots\r\n \r\nbare\nlf and bare\rcr\r\n"


def test_smtplib_dot_stuffing_round_trips(server: Server) -> None:
    data = b"Subject: dots\r\n\r\n.leading\r\n..\r\n.\r\nend\r\n"
    send(server, data)
    assert server.messages[0].data == data


def test_null_sender(server: Server) -> None:
    send(server, mail_from="")
    (message,) = server.messages
    assert message.mail_from == ""
    assert message.rcpt_tos == [TO]


@pytest.mark.smtpd(enable_SMTPUTF8=True)
def test_smtputf8_with_a_non_ascii_address(smtpd: Server) -> None:
    data = "Subject: Grüße\r\n\r\nHallo Jürgen\r\n".encode()
    with smtplib.SMTP(smtpd.host, smtpd.port, timeout=TIMEOUT) as client:
        client.ehlo()
        assert client.has_extn("smtputf8")
        client.sendmail("jörg@exämple.com", ["jürgen@exämple.com"], data, mail_options=["SMTPUTF8"])
    (message,) = smtpd.messages
    assert message.mail_from == "jörg@exämple.com"
    assert message.rcpt_tos == ["jürgen@exämple.com"]
    assert "SMTPUTF8" in message.mail_options
    assert message.data == data
    assert message.subject == "Grüße"


def test_non_ascii_address_needs_smtputf8(server: Server) -> None:
    with Wire(server.address) as wire:
        assert wire.command("EHLO client.test") == 250
        assert wire.command("MAIL FROM:<jörg@exämple.com>") == 553
        assert wire.command("MAIL FROM:<jörg@exämple.com> SMTPUTF8") == 555  # not offered
        assert wire.command(f"MAIL FROM:<{FROM}>") == 250
    assert server.messages == []


LIMIT = 200


def message_of(size: int, *, dotted_lines: int = 0) -> bytes:
    """A message of exactly ``size`` bytes, some of whose lines start with a dot."""
    head = b"Subject: size\r\n\r\n" + b".dot\r\n" * dotted_lines
    filler = size - len(head) - 2
    assert filler >= 0
    return head + b"x" * filler + b"\r\n"


@pytest.mark.smtpd(data_size_limit=LIMIT)
def test_data_size_limit_both_sides_and_session_stays_usable(smtpd: Server) -> None:
    exact, dotted, over = message_of(LIMIT), message_of(LIMIT, dotted_lines=5), message_of(LIMIT + 1)
    with smtplib.SMTP(smtpd.host, smtpd.port, timeout=TIMEOUT) as client:
        client.ehlo("client.test")
        assert client.sendmail(FROM, [TO], exact) == {}
        # smtplib stuffs the dots, so more than LIMIT bytes cross the wire.
        assert client.sendmail(FROM, [TO], dotted) == {}
        # Announced with SIZE, refused at MAIL.
        with pytest.raises(smtplib.SMTPSenderRefused) as refused:
            client.sendmail(FROM, [TO], over)
        assert refused.value.smtp_code == 552
        # Not announced, refused after the data.
        assert client.mail(FROM) == (250, b"OK")
        assert client.rcpt(TO)[0] == 250
        code, text = client.data(over)
        assert (code, text) == (552, b"Error: Too much mail data")
        # The same connection goes on.
        assert client.sendmail(FROM, ["after@example.com"], exact) == {}
    assert [m.data for m in smtpd.messages] == [exact, dotted, exact]
    assert smtpd.messages[-1].rcpt_tos == ["after@example.com"]


def test_pipelined_commands_are_answered_in_order(server: Server) -> None:
    with Wire(server.address) as wire:
        wire.send(
            b"EHLO client.test\r\n"
            b"MAIL FROM:<a@example.com>\r\n"
            b"RCPT TO:<b@example.com>\r\n"
            b"RCPT TO:<broken\r\n"
            b"RCPT TO:<c@example.com> FOO=1\r\n"
            b"DATA\r\n"
            b"Subject: pipelined\r\n\r\nbody\r\n.\r\n"
            b"MAIL FROM:<d@example.com>\r\n"
            b"DATA\r\n"
            b"NOOP\r\n"
            b"QUIT\r\n"
        )
        codes = [wire.reply()[0] for _ in range(11)]
        assert wire.closed_by_peer()
    assert codes == [250, 250, 250, 501, 555, 354, 250, 250, 503, 250, 221]
    (message,) = server.messages
    assert message.rcpt_tos == ["b@example.com"]
    assert message.data == b"Subject: pipelined\r\n\r\nbody\r\n"


# -- message handlers -----------------------------------------------------------


@pytest.mark.parametrize("verdict", ["550 nope", Reply(550, "nope")], ids=["str", "Reply"])
def test_handler_refusal(verdict: str | Reply) -> None:
    seen: list[Message] = []

    def refuse(message: Message) -> str | Reply:
        seen.append(message)
        return verdict

    with Server(handler=refuse) as server:
        with pytest.raises(smtplib.SMTPDataError) as refused:
            send(server)
        assert (refused.value.smtp_code, refused.value.smtp_error) == (550, b"nope")
        assert len(seen) == 1
        assert server.messages == []


def test_handler_reply_text_reaches_the_client() -> None:
    with Server(handler=lambda message: "250 queued as 42") as server:
        with smtplib.SMTP(server.host, server.port, timeout=TIMEOUT) as client:
            client.ehlo()
            client.mail(FROM)
            client.rcpt(TO)
            assert client.data(BODY) == (250, b"queued as 42")
        assert len(server.messages) == 1


def test_handler_error_gives_451_and_the_session_continues(caplog: pytest.LogCaptureFixture) -> None:
    def fail_on_first(message: Message) -> None:
        if message.subject == "boom":
            raise RuntimeError("handler bug")

    with Server(handler=fail_on_first) as server:
        with smtplib.SMTP(server.host, server.port, timeout=TIMEOUT) as client:
            with pytest.raises(smtplib.SMTPDataError) as failed:
                client.sendmail(FROM, [TO], b"Subject: boom\r\n\r\nx\r\n")
            assert failed.value.smtp_code == 451
            assert client.sendmail(FROM, [TO], BODY) == {}
        assert [m.subject for m in server.messages] == ["hello"]
    (record,) = [r for r in caplog.records if r.name == "pytest_smtpd" and r.levelno >= logging.ERROR]
    assert "message handler failed" in record.getMessage()
    assert record.exc_info is not None
    assert "handler bug" in str(record.exc_info[1])


def test_async_handler() -> None:
    async def decide(message: Message) -> str:
        await asyncio.sleep(0)
        return "550 no async mail" if message.subject == "no" else "250 async OK"

    with Server(handler=decide) as server:
        with smtplib.SMTP(server.host, server.port, timeout=TIMEOUT) as client:
            client.ehlo()
            for subject, expected in (("no", (550, b"no async mail")), ("yes", (250, b"async OK"))):
                client.mail(FROM)
                client.rcpt(TO)
                assert client.data(f"Subject: {subject}\r\n\r\nx\r\n".encode()) == expected
        assert [m.subject for m in server.messages] == ["yes"]


def test_async_handler_error_gives_451(caplog: pytest.LogCaptureFixture) -> None:
    async def fail(message: Message) -> None:
        raise RuntimeError("async handler bug")

    with Server(handler=fail) as server:
        with smtplib.SMTP(server.host, server.port, timeout=TIMEOUT) as client:
            client.ehlo()
            client.mail(FROM)
            client.rcpt(TO)
            assert client.data(BODY)[0] == 451
            assert client.noop()[0] == 250
        assert server.messages == []
    assert any("async handler bug" in str(r.exc_info[1]) for r in caplog.records if r.exc_info)


def test_commands_pipelined_behind_an_async_handler_wait_their_turn() -> None:
    async def slow(message: Message) -> str:
        for _ in range(3):
            await asyncio.sleep(0)
        return "250 decided"

    with Server(handler=slow) as server, Wire(server.address) as wire:
        wire.send(
            b"HELO client.test\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n"
            b"one\r\n.\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\ntwo\r\n.\r\nQUIT\r\n"
        )
        replies = [wire.reply() for _ in range(9)]
        assert [code for code, _ in replies] == [250, 250, 250, 354, 250, 250, 250, 354, 250]
        assert replies[4][1] == replies[8][1] == "decided"
        assert wire.reply()[0] == 221
    assert [m.data for m in server.messages] == [b"one\r\n", b"two\r\n"]


# -- waiting for messages ---------------------------------------------------------


def test_wait_for_messages_sent_by_another_thread(server: Server) -> None:
    go = threading.Event()

    def sender() -> None:
        assert go.wait(TIMEOUT)
        with smtplib.SMTP(server.host, server.port, timeout=TIMEOUT) as client:
            for n in range(3):
                client.sendmail(FROM, [f"user{n}@example.com"], BODY)

    thread = threading.Thread(target=sender)
    thread.start()
    go.set()
    try:
        messages = server.messages.wait_for(3, timeout=TIMEOUT)
        last = server.messages.wait_for(1, timeout=TIMEOUT, where=lambda m: m.rcpt_tos == ["user2@example.com"])
    finally:
        thread.join(TIMEOUT)
    assert [m.rcpt_tos for m in messages] == [[f"user{n}@example.com"] for n in range(3)]
    assert last == [messages[2]]


def test_wait_for_timeout_says_what_arrived(server: Server) -> None:
    send(server, b"Subject: the only one\r\n\r\nx\r\n")
    with pytest.raises(TimeoutError, match=r"waited 0\.05s for 2 message\(s\), got 1") as waited:
        server.messages.wait_for(2, timeout=0.05)
    assert "the only one" in str(waited.value)
    assert FROM in str(waited.value)
    with pytest.raises(TimeoutError, match="matching the condition, got 0"):
        server.messages.wait_for(1, timeout=0.05, where=lambda m: m.mail_from == "nobody@example.com")


def test_clear_forgets_messages(server: Server) -> None:
    send(server)
    assert len(server.messages) == 1
    server.clear()
    assert server.messages == []
    send(server)
    assert len(server.messages) == 1


@pytest.mark.skipif(sys.platform != "linux", reason="counts descriptors in /proc/self/fd")
def test_out_of_file_descriptors_pauses_accepting_and_loses_no_connection() -> None:
    """A server process at its descriptor limit logs the EMFILE, keeps the
    queued connection in the kernel's backlog, and greets it once a session
    ends and frees a descriptor."""
    script = textwrap.dedent(
        """
        import logging, os, resource, sys
        from pytest_smtpd import Server

        logging.basicConfig(stream=sys.stderr, format="%(levelname)s %(message)s")
        with Server() as server:
            with Server() as warm_up:  # let the loop open what it needs first
                pass
            open_fds = os.listdir("/proc/self/fd")
            limit = max(int(fd) for fd in open_fds) + 3  # room for two sessions
            resource.setrlimit(resource.RLIMIT_NOFILE, (limit, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
            free = limit - len(open_fds)
            print(server.port, free, flush=True)
            sys.stdin.readline()
        """
    )
    with subprocess.Popen(
        [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as process:
        clients: list[Wire] = []
        try:
            assert process.stdout is not None and process.stderr is not None and process.stdin is not None
            port, free = map(int, process.stdout.readline().split())
            for _ in range(free):
                clients.append(Wire(("127.0.0.1", port)))  # greeted
            queued = Wire(("127.0.0.1", port), greeting=False)  # accept() fails with EMFILE
            clients.append(queued)
            assert "cannot accept connections" in process.stderr.readline()
            clients.pop(0).close()  # the server's end closes and frees a descriptor
            assert queued.reply()[0] == 220
            assert queued.command("QUIT") == 221
            process.stdin.write("\n")
            process.stdin.flush()
            assert process.wait(timeout=TIMEOUT) == 0
        finally:
            for client in clients:
                client.close()
            if process.poll() is None:
                process.kill()
