"""Real clients driven into each fault, over loopback: what smtplib and
aiosmtplib report when the server refuses, hangs up, answers late or not at
all, and when it runs into its connection and message limits. The rules
come from the ``smtpd`` marker, from ``smtpd.faults`` and from ``Server``."""

from __future__ import annotations

import asyncio
import smtplib
import socket
import time
from collections.abc import Callable

import aiosmtplib
import pytest
from peers import TIMEOUT, wait_until

from conftest import Wire
from pytest_smtpd import Fault, Server
from pytest_smtpd.sessions import Session

MESSAGE = b"From: a@example.com\r\nTo: b@example.com\r\nSubject: faults\r\n\r\n" + b"Hello, server.\r\n" * 20
SENDER = "a@example.com"


def send(server: Server, recipients: list[str] | None = None, *, timeout: float = TIMEOUT) -> None:
    with smtplib.SMTP(*server.address, timeout=timeout) as client:
        client.sendmail(SENDER, recipients or ["b@example.com"], MESSAGE)


def aiosend(server: Server, recipients: list[str] | None = None, *, timeout: float = TIMEOUT) -> None:
    asyncio.run(
        aiosmtplib.send(
            MESSAGE,
            sender=SENDER,
            recipients=recipients or ["b@example.com"],
            hostname=server.host,
            port=server.port,
            timeout=timeout,
            start_tls=False,
        )
    )


def ended_by(session: Session) -> str:
    """How ``session`` ended. The server notes it once the connection is
    gone, which may come just after the client has read the last reply."""
    return wait_until(lambda: session.ended_by, "the end of the session")


# -- reply faults ---------------------------------------------------------------


@pytest.mark.smtpd(faults=[Fault.reply("RCPT", "450 4.2.1 Mailbox busy")])
def test_smtplib_reports_a_450_for_the_recipient(smtpd: Server) -> None:
    with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        send(smtpd)
    assert refused.value.recipients == {"b@example.com": (450, b"4.2.1 Mailbox busy")}
    assert len(smtpd.messages) == 0
    (session,) = smtpd.sessions
    assert session.faults_fired == ["RCPT: reply 450 4.2.1 Mailbox busy"]
    # smtplib said RSET after the refusal, then QUIT.
    assert session.commands == ["EHLO", "MAIL", "RCPT", "RSET", "QUIT"]


@pytest.mark.smtpd(faults=[Fault.reply("RCPT", "550 5.1.1 No such user", match="ghost@")])
def test_the_marker_form_refuses_one_recipient_of_two(smtpd: Server) -> None:
    with smtplib.SMTP(*smtpd.address, timeout=TIMEOUT) as client:
        refused = client.sendmail(SENDER, ["ghost@example.com", "b@example.com"], MESSAGE)
    assert refused == {"ghost@example.com": (550, b"5.1.1 No such user")}
    (message,) = smtpd.messages
    assert message.rcpt_tos == ["b@example.com"]


def test_aiosmtplib_reports_the_refused_recipient(smtpd: Server) -> None:
    smtpd.faults.reply("RCPT", "450 4.2.1 Mailbox busy")
    with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as refused:
        aiosend(smtpd)
    (error,) = refused.value.recipients
    assert (error.code, error.message, error.recipient) == (450, "4.2.1 Mailbox busy", "b@example.com")


def test_smtplib_reports_a_554_after_the_dot(smtpd: Server) -> None:
    smtpd.faults.reply("MESSAGE", "554 5.6.0 Message rejected")
    with pytest.raises(smtplib.SMTPDataError) as error:
        send(smtpd)
    assert (error.value.smtp_code, error.value.smtp_error) == (554, b"5.6.0 Message rejected")
    assert len(smtpd.messages) == 0


def test_aiosmtplib_reports_a_554_after_the_dot(smtpd: Server) -> None:
    smtpd.faults.reply("MESSAGE", "554 5.6.0 Message rejected")
    with pytest.raises(aiosmtplib.SMTPDataError) as error:
        aiosend(smtpd)
    assert (error.value.code, error.value.message) == (554, "5.6.0 Message rejected")


@pytest.mark.smtpd(faults=[Fault.reply("CONNECT", "421 4.3.2 Service not available")])
def test_smtplib_reports_a_421_greeting_as_a_connect_error(smtpd: Server) -> None:
    with pytest.raises(smtplib.SMTPConnectError) as error:
        smtplib.SMTP(*smtpd.address, timeout=TIMEOUT)
    assert (error.value.smtp_code, error.value.smtp_error) == (421, b"4.3.2 Service not available")


def test_aiosmtplib_reports_a_421_greeting_as_a_connect_error(smtpd: Server) -> None:
    smtpd.faults.reply("CONNECT", "421 4.3.2 Service not available")
    with pytest.raises(aiosmtplib.SMTPConnectResponseError) as error:
        aiosend(smtpd)
    assert error.value.code == 421
    assert isinstance(error.value, aiosmtplib.SMTPConnectError)


def test_a_421_fault_reply_closes_the_session(smtpd: Server) -> None:
    smtpd.faults.reply("MAIL", "421 4.3.2 Going down")
    with Wire(smtpd.address) as wire:
        assert wire.command("EHLO client.test") == 250
        assert wire.exchange(f"MAIL FROM:<{SENDER}>") == (421, "4.3.2 Going down")
        assert wire.closed_by_peer()


@pytest.mark.smtpd(faults=[Fault.reply("EHLO", "502 5.5.1 EHLO not implemented")])
def test_smtplib_falls_back_to_helo_when_ehlo_is_refused(smtpd: Server) -> None:
    send(smtpd)
    (session,) = smtpd.sessions
    assert session.commands[:3] == ["EHLO", "HELO", "MAIL"]
    assert len(smtpd.messages) == 1


@pytest.mark.smtpd(tls="starttls", faults=[Fault.reply("STARTTLS", "454 4.7.0 TLS not available")])
def test_smtplib_reports_starttls_refused(smtpd: Server) -> None:
    with smtplib.SMTP(*smtpd.address, timeout=TIMEOUT) as client:
        with pytest.raises(smtplib.SMTPResponseException) as error:
            client.starttls(context=smtpd.client_context())
        assert (error.value.smtp_code, error.value.smtp_error) == (454, b"4.7.0 TLS not available")
        # The session goes on in plaintext: the client decides what to do.
        assert client.noop()[0] == 250


@pytest.mark.smtpd(
    auth={"alice": "s3cret"},
    faults=[Fault.reply("AUTH", "454 4.7.0 Temporary authentication failure", match="PLAIN")],
)
def test_smtplib_reports_a_temporary_auth_failure(smtpd: Server) -> None:
    with smtplib.SMTP(*smtpd.address, timeout=TIMEOUT) as client:
        client.ehlo("client.test")
        client.esmtp_features["auth"] = "PLAIN"  # make smtplib choose PLAIN
        with pytest.raises(smtplib.SMTPAuthenticationError) as error:
            client.login("alice", "s3cret")
        assert error.value.smtp_code == 454
    (session,) = smtpd.sessions
    assert session.faults_fired == ["AUTH: reply 454 4.7.0 Temporary authentication failure"]
    assert session.auth_identity is None


# -- disconnect ---------------------------------------------------------------


def test_smtplib_reports_a_hang_up_mid_data_and_nothing_is_recorded(smtpd: Server) -> None:
    smtpd.faults.disconnect("DATA", after_bytes=100)
    with pytest.raises(smtplib.SMTPServerDisconnected):
        send(smtpd)
    assert len(smtpd.messages) == 0
    (session,) = smtpd.sessions
    assert session.ended_by == "fault" and session.messages == []
    assert session.faults_fired == ["DATA: disconnect after 100 bytes"]
    assert session.commands == ["EHLO", "MAIL", "RCPT", "DATA"]
    assert str(session.transcript[-1]).endswith("bytes of message data, unfinished>")
    # The rule keeps firing; without it the same message goes through.
    smtpd.faults.clear()
    send(smtpd)
    assert len(smtpd.messages) == 1


def test_aiosmtplib_reports_a_hang_up_mid_data(smtpd: Server) -> None:
    smtpd.faults.disconnect("DATA", after_bytes=100)
    with pytest.raises(aiosmtplib.SMTPServerDisconnected):
        aiosend(smtpd)
    assert len(smtpd.messages) == 0


def test_a_hang_up_instead_of_the_354(smtpd: Server) -> None:
    smtpd.faults.disconnect("DATA")
    with Wire(smtpd.address) as wire:
        for line in ["EHLO client.test", f"MAIL FROM:<{SENDER}>", "RCPT TO:<b@example.com>"]:
            assert wire.command(line) == 250
        wire.send(b"DATA\r\n")
        assert wire.closed_by_peer()


# -- retry ----------------------------------------------------------------------


def send_with_retries(server: Server, attempts: int = 3) -> int:
    """A client as applications write them: a 4xx means try again, on a new
    connection. Returns the number of attempts it took."""
    for attempt in range(1, attempts + 1):
        try:
            send(server)
        except (smtplib.SMTPRecipientsRefused, smtplib.SMTPSenderRefused, smtplib.SMTPDataError) as exc:
            codes = (
                [code for code, _ in exc.recipients.values()] if isinstance(exc, smtplib.SMTPRecipientsRefused) else []
            )
            code = codes[0] if codes else getattr(exc, "smtp_code", 0)
            if not 400 <= code < 500:
                raise
            continue
        return attempt
    raise AssertionError(f"no success in {attempts} attempts")


@pytest.mark.smtpd(faults=[Fault.reply("MESSAGE", "451 4.3.0 Try again later", times=1)])
def test_a_client_that_retries_after_a_451_sends_one_message(smtpd: Server) -> None:
    assert send_with_retries(smtpd) == 2
    first, second = smtpd.sessions
    (message,) = smtpd.messages
    assert first.faults_fired == ["MESSAGE: reply 451 4.3.0 Try again later"]
    assert first.messages == [] and first.last_error() == "451 4.3.0 Try again later"
    assert second.faults_fired == [] and second.messages == [message] and message.session is second
    assert [ended_by(first), ended_by(second)] == ["quit", "quit"]


@pytest.mark.smtpd(faults=[Fault.reply("RCPT", "450 4.2.1 Mailbox busy", session=1)])
def test_session_limits_the_fault_to_the_first_connection(smtpd: Server) -> None:
    assert send_with_retries(smtpd) == 2
    assert len(smtpd.messages) == 1


# -- delay and stall ------------------------------------------------------------


def test_a_delayed_reply_comes_late(smtpd: Server) -> None:
    smtpd.faults.delay("MAIL", 0.5)
    started = time.monotonic()
    send(smtpd)
    assert time.monotonic() - started >= 0.5
    assert len(smtpd.messages) == 1


def test_a_client_timeout_fires_on_a_delay_longer_than_it() -> None:
    # A plain Server: its stop() does not wait for the delayed session, as
    # the fixture's teardown grace would.
    with Server(faults=[Fault.delay("RCPT", 30)]) as server:
        with pytest.raises(smtplib.SMTPServerDisconnected, match="timed out") as error:
            send(server, timeout=0.5)
        assert isinstance(error.value.__context__, TimeoutError)


def test_a_delay_holds_up_neither_other_sessions_nor_other_servers() -> None:
    """The first session waits 30 s for its MAIL reply; meanwhile a second
    session to the same server and one to another server each deliver a
    message. No clock is read: the delayed client has simply no reply yet."""
    with Server(faults=[Fault.delay("MAIL", 30, session=1)]) as server, Server() as other:
        with Wire(server.address) as delayed:
            assert delayed.command("EHLO client.test") == 250
            delayed.send(f"MAIL FROM:<{SENDER}>\r\n".encode())
            wait_until(lambda: server.sessions[0].faults_fired == ["MAIL: delay 30s"] or None, "the delay")
            send(server)
            send(other)
            assert len(server.messages) == 1 and len(other.messages) == 1
            delayed.sock.setblocking(False)
            with pytest.raises(BlockingIOError):
                delayed.sock.recv(1)
            delayed.sock.setblocking(True)
            server.stop()
            # stop() ends the wait with a 421.
            assert delayed.reply()[0] == 421
        assert [session.ended_by for session in server.sessions] == ["stop", "quit"]


def test_smtplib_times_out_on_a_stall(smtpd: Server) -> None:
    """smtplib reports its read timeout as a disconnection, the timeout as
    its context. The stalled session sees the client leave."""
    smtpd.faults.stall("DATA")
    with pytest.raises(smtplib.SMTPServerDisconnected, match="timed out") as error:
        send(smtpd, timeout=0.5)
    assert isinstance(error.value.__context__, TimeoutError)
    assert ended_by(smtpd.sessions[0]) == "client"


def test_aiosmtplib_times_out_on_a_stall(smtpd: Server) -> None:
    smtpd.faults.stall("MESSAGE")
    with pytest.raises(aiosmtplib.SMTPTimeoutError):
        aiosend(smtpd, timeout=0.5)
    assert len(smtpd.messages) == 0


@pytest.mark.smtpd(timeout=0.3, faults=[Fault.stall("RCPT")])
def test_a_stalled_session_ends_at_the_server_timeout(smtpd: Server) -> None:
    with Wire(smtpd.address) as wire:
        assert wire.command("EHLO client.test") == 250
        assert wire.command(f"MAIL FROM:<{SENDER}>") == 250
        # No reply to RCPT, nor to what follows, then the idle timeout's 421
        # (what the client sends meanwhile does not put it off).
        wire.send(b"RCPT TO:<b@example.com>\r\nNOOP\r\n")
        assert wire.reply() == (421, "Error: timeout exceeded")
        assert wire.closed_by_peer()
    (session,) = smtpd.sessions
    assert (session.faults_fired, session.ended_by) == (["RCPT: stall"], "timeout")


def test_a_stalled_greeting_ends_at_the_server_timeout() -> None:
    with Server(timeout=0.3, faults=["CONNECT=stall"]) as server, Wire(server.address, greeting=False) as wire:
        assert wire.reply() == (421, "Error: timeout exceeded")


def test_a_stalled_session_ends_at_stop() -> None:
    with Server(faults=["EHLO=stall"]) as server, Wire(server.address) as wire:
        wire.send(b"EHLO client.test\r\n")
        # Stopped before it read the EHLO, the server would close with it
        # unread, and the kernel would answer with a reset.
        wait_until(lambda: bool(server.sessions) and bool(server.sessions[0].faults_fired), "the stall")
        server.stop()
        assert wire.reply() == (421, "Service not available, closing transmission channel")
    (session,) = server.sessions
    assert (session.faults_fired, session.ended_by) == (["EHLO: stall"], "stop")


# -- limits ---------------------------------------------------------------------


@pytest.mark.smtpd(max_messages_per_connection=2)
def test_max_messages_per_connection(smtpd: Server) -> None:
    with smtplib.SMTP(*smtpd.address, timeout=TIMEOUT) as client:
        for _ in range(2):
            client.sendmail(SENDER, ["b@example.com"], MESSAGE)
        with pytest.raises(smtplib.SMTPSenderRefused) as refused:
            client.sendmail(SENDER, ["b@example.com"], MESSAGE)
    assert refused.value.smtp_code == 421
    assert refused.value.smtp_error == b"4.7.0 Too many messages in this connection, closing"
    assert len(smtpd.messages) == 2
    assert ended_by(smtpd.sessions[0]) == "fault"
    send(smtpd)  # a new connection starts counting again
    assert len(smtpd.messages) == 3


@pytest.mark.smtpd(max_connections=1)
def test_max_connections(smtpd: Server) -> None:
    with Wire(smtpd.address) as first:
        with pytest.raises(smtplib.SMTPConnectError) as refused:
            smtplib.SMTP(*smtpd.address, timeout=TIMEOUT)
        assert (refused.value.smtp_code, refused.value.smtp_error) == (
            421,
            b"4.7.0 Too many connections, try again later",
        )
        assert first.command("QUIT") == 221
        assert first.closed_by_peer()
    assert [ended_by(session) for session in smtpd.sessions] == ["quit", "fault"]
    # The server has let go of the first session before its socket closed.
    send(smtpd)
    assert len(smtpd.messages) == 1


def test_clear_puts_back_the_configured_faults_with_fresh_counts() -> None:
    """A shared server configured with faults gets them back, counted
    afresh, when it is cleared for the next test; rules added since go."""
    with Server(faults=[Fault.reply("RCPT", "450 4.2.1 Mailbox busy", times=1)]) as server:
        server.faults.stall("DATA")
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            send(server)
        server.clear()
        assert list(server.faults) == [Fault.reply("RCPT", "450 4.2.1 Mailbox busy", times=1)]
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            send(server)
        send(server)  # times=1 used up, and no stall
        assert len(server.messages) == 1


def test_max_connections_with_implicit_tls_refuses_inside_tls() -> None:
    with Server(tls="implicit", max_connections=1) as server:
        context = server.client_context()
        with smtplib.SMTP_SSL(*server.address, context=context, timeout=TIMEOUT) as first:
            assert first.noop()[0] == 250
            with pytest.raises(smtplib.SMTPConnectError) as refused:
                smtplib.SMTP_SSL(*server.address, context=context, timeout=TIMEOUT)
            assert refused.value.smtp_code == 421


def test_assigning_a_list_replaces_the_rules(smtpd: Server) -> None:
    smtpd.faults.stall("DATA")
    smtpd.faults = ["RCPT=450 4.2.1 Mailbox busy"]
    assert list(smtpd.faults) == [Fault.reply("RCPT", "450 4.2.1 Mailbox busy")]
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        send(smtpd)
    with pytest.raises(TypeError, match="a list of Fault rules"):
        smtpd.faults = Fault.stall("DATA")  # type: ignore[assignment]
    assert len(smtpd.faults) == 1


def test_bad_limits_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="max_connections must be 0"):
        Server(max_connections=-1)
    with pytest.raises(ValueError, match="max_messages_per_connection must be 0"):
        Server(max_messages_per_connection=-1)


# -- the rule list on the server ------------------------------------------------


def test_clear_removes_the_faults_and_counts_sessions_from_one_again(smtpd: Server) -> None:
    smtpd.faults.reply("CONNECT", "421 4.3.2 Not you", session=2)
    send(smtpd)
    with pytest.raises(smtplib.SMTPConnectError):
        send(smtpd)
    smtpd.clear()
    assert list(smtpd.faults) == [] and len(smtpd.messages) == 0
    smtpd.faults.reply("CONNECT", "421 4.3.2 Not you", session=2)
    send(smtpd)  # the first connection since clear()
    with pytest.raises(smtplib.SMTPConnectError):
        send(smtpd)


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        (lambda: Server(faults=["RCPT=ok"]), ValueError),
        (lambda: Server(faults=Fault.stall("DATA")), TypeError),  # type: ignore[arg-type]
    ],
)
def test_bad_faults_for_a_server_are_clear_errors(bad: Callable[[], Server], error: type[Exception]) -> None:
    with pytest.raises(error):
        bad()


def test_the_loop_thread_serves_on_after_a_fault_closed_a_session(smtpd: Server) -> None:
    smtpd.faults.disconnect("MAIL", times=1)
    with pytest.raises(smtplib.SMTPServerDisconnected):
        send(smtpd)
    send(smtpd)
    with socket.create_connection(smtpd.address, timeout=TIMEOUT) as sock:
        assert sock.recv(3) == b"220"
