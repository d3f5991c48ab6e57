"""LMTP (RFC 2033) through real sockets: ``Server(lmtp=True)`` judged by
smtplib's LMTP client and by a raw socket where the per-recipient replies
matter, and ``pytest_smtpd.lmtp.deliver_lmtp`` (MailmanProxy's client)
delivering to it."""

from __future__ import annotations

import asyncio
import smtplib
import socket
from collections.abc import Awaitable, Iterator, Sequence

import pytest
from peers import free_port

from conftest import TIMEOUT, Wire
from pytest_smtpd import Message, Reply, Server
from pytest_smtpd.lmtp import LMTPResult, _read_reply, deliver_lmtp
from pytest_smtpd.transport import SessionProtocol, Verdict

MESSAGE = b"From: a@example.com\r\nTo: list@example.com\r\nSubject: lmtp test\r\n\r\nHello.\r\n"
#: Verdicts by recipient, for handlers that answer each one differently.
VERDICTS: dict[str, Reply | str | None] = {
    "ok@example.com": None,
    "nouser@example.com": "550 5.1.1 No such user here",
    "full@example.com": Reply(452, "4.2.2 Mailbox full"),
    "kept@example.com": "250 2.1.5 Delivered",
}


def per_recipient(message: Message) -> list[Reply | str | None]:
    return [VERDICTS[rcpt] for rcpt in message.rcpt_tos]


@pytest.fixture
def lmtp() -> Iterator[Server]:
    with Server(lmtp=True, hostname="lmtp.test") as server:
        yield server


def deliver(
    address: tuple[str, int],
    rcpttos: Sequence[str],
    data: bytes = MESSAGE,
    *,
    mailfrom: str = "sender@example.com",
    mail_options: Sequence[str] = (),
    timeout: float = TIMEOUT,
) -> LMTPResult:
    """``deliver_lmtp`` run to completion on a loop of this thread."""
    return asyncio.run(
        deliver_lmtp(
            address,
            mailfrom,
            rcpttos,
            data,
            local_hostname="client.test",
            mail_options=mail_options,
            timeout=timeout,
        )
    )


def lhlo_transaction(wire: Wire, rcpttos: Sequence[str]) -> None:
    """LHLO, MAIL, every RCPT (each must be accepted) and DATA, up to the 354."""
    assert wire.command("LHLO client.test") == 250
    assert wire.command("MAIL FROM:<sender@example.com>") == 250
    for rcpt in rcpttos:
        assert wire.command(f"RCPT TO:<{rcpt}>") == 250
    assert wire.command("DATA") == 354


# -- smtplib.LMTP --------------------------------------------------------------------


@pytest.mark.smtpd(lmtp=True)
def test_the_smtpd_marker_makes_an_lmtp_server(smtpd: Server) -> None:
    with smtplib.LMTP(smtpd.host, smtpd.port, timeout=TIMEOUT) as client:
        assert client.sendmail("sender@example.com", ["ok@example.com"], MESSAGE) == {}
    with Wire(smtpd.address) as wire:
        assert wire.command("EHLO client.test") == 500
    [message] = smtpd.messages
    assert message.rcpt_tos == ["ok@example.com"]


def test_smtplib_lmtp_client_delivers(lmtp: Server) -> None:
    with smtplib.LMTP(lmtp.host, lmtp.port, local_hostname="client.test", timeout=TIMEOUT) as client:
        code, greeting = client.ehlo()  # smtplib.LMTP sends LHLO
        assert code == 250
        assert greeting.startswith(b"lmtp.test\n")
        assert client.sendmail("sender@example.com", ["ok@example.com"], MESSAGE) == {}
        # The session goes on: a second message on the same connection.
        assert client.sendmail("", ["other@example.com"], b"Subject: two\r\n\r\nx\r\n") == {}
    first, second = lmtp.messages
    assert first.mail_from == "sender@example.com"
    assert first.rcpt_tos == ["ok@example.com"]
    assert first.helo == "client.test"
    assert first.data == MESSAGE
    assert (second.mail_from, second.rcpt_tos, second.subject) == ("", ["other@example.com"], "two")


def test_smtplib_lmtp_client_sees_a_refusal() -> None:
    with Server(lmtp=True, handler=lambda message: "554 5.7.1 Not for this list") as server:
        with smtplib.LMTP(server.host, server.port, timeout=TIMEOUT) as client:
            with pytest.raises(smtplib.SMTPDataError) as refused:
                client.sendmail("sender@example.com", ["ok@example.com"], MESSAGE)
            assert (refused.value.smtp_code, refused.value.smtp_error) == (554, b"5.7.1 Not for this list")
            assert client.noop()[0] == 250
        assert len(server.messages) == 0


# -- one reply per recipient, on the wire ---------------------------------------------


def test_one_reply_per_recipient_in_rcpt_order() -> None:
    with Server(lmtp=True, handler=per_recipient) as server, Wire(server.address) as wire:
        order = ["full@example.com", "ok@example.com", "kept@example.com", "nouser@example.com"]
        lhlo_transaction(wire, order)
        wire.send(MESSAGE + b".\r\n")
        assert [wire.reply() for _ in order] == [
            (452, "4.2.2 Mailbox full"),
            (250, "2.0.0 OK"),  # ENHANCEDSTATUSCODES is on in LMTP mode
            (250, "2.1.5 Delivered"),
            (550, "5.1.1 No such user here"),
        ]
        # Nothing more was queued: the next reply is HELP's.
        assert wire.command("HELP") == 214
    # Accepted for some recipients, so kept, with the whole envelope.
    [message] = server.messages
    assert message.rcpt_tos == order


def test_async_handler_may_answer_per_recipient() -> None:
    async def handler(message: Message) -> Verdict:
        await asyncio.sleep(0)
        return per_recipient(message)

    with Server(lmtp=True, handler=handler) as server, Wire(server.address) as wire:
        lhlo_transaction(wire, ["nouser@example.com", "ok@example.com"])
        wire.send(MESSAGE + b".\r\n")
        assert [wire.reply()[0] for _ in range(2)] == [550, 250]
        assert wire.command("NOOP") == 250
    assert [m.rcpt_tos for m in server.messages] == [["nouser@example.com", "ok@example.com"]]


def test_a_single_verdict_is_repeated_for_each_recipient() -> None:
    with Server(lmtp=True, handler=lambda message: "451 4.3.0 Try again later") as server, Wire(server.address) as wire:
        lhlo_transaction(wire, ["a@example.com", "b@example.com", "c@example.com"])
        wire.send(MESSAGE + b".\r\n")
        assert [wire.reply() for _ in range(3)] == [(451, "4.3.0 Try again later")] * 3
        assert wire.command("HELP") == 214
    assert len(server.messages) == 0  # refused for everyone: not kept


def test_refusal_for_every_recipient_is_not_kept() -> None:
    refusals: list[Reply | str | None] = ["550 5.1.1 No", Reply(452, "4.2.2 Full")]
    with Server(lmtp=True, handler=lambda message: refusals) as server, Wire(server.address) as wire:
        lhlo_transaction(wire, ["a@example.com", "b@example.com"])
        wire.send(MESSAGE + b".\r\n")
        assert [wire.reply()[0] for _ in range(2)] == [550, 452]
    assert len(server.messages) == 0


def test_recipients_refused_at_rcpt_get_no_reply_after_data(lmtp: Server) -> None:
    with Wire(lmtp.address) as wire:
        assert wire.command("LHLO client.test") == 250
        assert wire.command("MAIL FROM:<sender@example.com>") == 250
        assert wire.command("RCPT TO:<a@example.com>") == 250
        # Not accepted (no SMTPUTF8 here), so not counted after DATA.
        assert wire.command("RCPT TO:<j\u00fcrgen@example.com>") == 553
        assert wire.command("RCPT TO:<b@example.com>") == 250
        assert wire.command("DATA") == 354
        wire.send(MESSAGE + b".\r\n")
        assert [wire.reply()[0] for _ in range(2)] == [250, 250]
        assert wire.command("HELP") == 214
    [message] = lmtp.messages
    assert message.rcpt_tos == ["a@example.com", "b@example.com"]


# -- greetings ---------------------------------------------------------------------------


def test_lhlo_lists_the_extensions(lmtp: Server) -> None:
    with Wire(lmtp.address) as wire:
        wire.send(b"LHLO client.test\r\n")
        code, text = wire.reply()
    assert code == 250
    first, *extensions = text.split("\n")
    assert first == "lmtp.test"
    assert "PIPELINING" in extensions
    assert "8BITMIME" in extensions


@pytest.mark.parametrize("verb", ["HELO", "EHLO"])
def test_helo_and_ehlo_are_500_in_lmtp_mode(lmtp: Server, verb: str) -> None:
    with Wire(lmtp.address) as wire:
        wire.send(f"{verb} client.test\r\n".encode())
        code, text = wire.reply()
        assert (code, text) == (500, f'Error: command "{verb}" not recognized')
        # Not greeted: a transaction needs LHLO first.
        assert wire.command("MAIL FROM:<sender@example.com>") == 503
        assert wire.command("LHLO client.test") == 250
        assert wire.command("MAIL FROM:<sender@example.com>") == 250


def test_lhlo_is_500_in_smtp_mode(server: Server) -> None:
    with Wire(server.address) as wire:
        wire.send(b"LHLO client.test\r\n")
        assert wire.reply() == (500, 'Error: command "LHLO" not recognized')
        assert wire.command("EHLO client.test") == 250


def test_smtplib_lmtp_against_an_smtp_server_fails_at_lhlo(server: Server) -> None:
    with smtplib.LMTP(server.host, server.port, timeout=TIMEOUT) as client:
        assert client.ehlo()[0] == 500


# -- deliver_lmtp ---------------------------------------------------------------------------


def test_deliver_lmtp_splits_delivered_and_refused() -> None:
    with Server(lmtp=True, handler=per_recipient) as server:
        rcpttos = ["ok@example.com", "nouser@example.com", "j\u00fcrgen@example.com", "full@example.com"]
        result = deliver(server.address, rcpttos)
    assert result.delivered == ["ok@example.com"]
    assert result.refused == {
        # Refused at RCPT: the server had no SMTPUTF8 to offer.
        "j\u00fcrgen@example.com": (553, "5.6.7 Error: non-ASCII address requires SMTPUTF8"),
        # Refused after DATA, each with its own reply.
        "nouser@example.com": (550, "5.1.1 No such user here"),
        "full@example.com": (452, "4.2.2 Mailbox full"),
    }
    [message] = server.messages
    assert message.mail_from == "sender@example.com"
    assert message.rcpt_tos == ["ok@example.com", "nouser@example.com", "full@example.com"]
    assert message.helo == "client.test"
    assert message.data == MESSAGE


def test_deliver_lmtp_every_recipient_refused_at_rcpt_sends_no_data(lmtp: Server) -> None:
    result = deliver(lmtp.address, ["\u00e4@example.com", "\u00f6@example.com"])
    assert result.delivered == []
    assert set(result.refused) == {"\u00e4@example.com", "\u00f6@example.com"}
    assert {code for code, _ in result.refused.values()} == {553}
    assert len(lmtp.messages) == 0


def test_deliver_lmtp_multiline_refusal_keeps_every_line() -> None:
    refusal = Reply(550, "5.7.1 Refused\nsee https://example.com/why")
    with Server(lmtp=True, handler=lambda message: [None, refusal]) as server:
        result = deliver(server.address, ["a@example.com", "b@example.com"])
    assert result.delivered == ["a@example.com"]
    # RFC 2034 3: every line carries the code, the one the first line gave.
    assert result.refused == {"b@example.com": (550, "5.7.1 Refused\n5.7.1 see https://example.com/why")}


def test_deliver_lmtp_mail_refused_by_size() -> None:
    with Server(lmtp=True, data_size_limit=100) as server:
        result = deliver(server.address, ["a@example.com", "b@example.com"], mail_options=["SIZE=5000"])
    refusal = (552, "5.3.4 Error: message size exceeds fixed maximum message size")
    assert result == LMTPResult(delivered=[], refused={"a@example.com": refusal, "b@example.com": refusal})
    assert len(server.messages) == 0


def test_data_over_the_limit_is_552_for_each_recipient() -> None:
    """RFC 2033 4.2: after DATA, one reply per accepted recipient, refusals
    included; a single 552 would put the client out of step."""
    with Server(lmtp=True, data_size_limit=50) as server, Wire(server.address) as wire:
        lhlo_transaction(wire, ["a@example.com", "b@example.com"])
        assert wire.command("Subject: big\r\n\r\n" + "x" * 60 + "\r\n.") == 552
        assert wire.reply()[0] == 552
        assert wire.command("NOOP") == 250
    assert len(server.messages) == 0


def test_deliver_lmtp_data_over_the_limit_is_refused_for_each_recipient() -> None:
    big = b"Subject: big\r\n\r\n" + b"x" * 200 + b"\r\n"
    with Server(lmtp=True, data_size_limit=100) as server:
        result = deliver(server.address, ["a@example.com", "b@example.com"], big)
    assert result.delivered == []
    assert {rcpt: code for rcpt, (code, _) in result.refused.items()} == {"a@example.com": 552, "b@example.com": 552}


def test_deliver_lmtp_mail_refused_for_a_non_ascii_sender(lmtp: Server) -> None:
    result = deliver(lmtp.address, ["a@example.com"], mailfrom="\u00e4@example.com")
    assert result == LMTPResult(refused={"a@example.com": (553, "5.6.7 Error: non-ASCII address requires SMTPUTF8")})
    assert len(lmtp.messages) == 0


def test_deliver_lmtp_passes_mail_options_the_server_offers() -> None:
    data = "Subject: cafe\r\n\r\nd\u00e9j\u00e0 vu\r\n".encode()
    with Server(lmtp=True) as plain:
        # 8BITMIME is offered, SMTPUTF8 is not: only BODY=8BITMIME goes.
        result = deliver(plain.address, ["a@example.com"], data, mail_options=["BODY=8BITMIME", "SMTPUTF8"])
        assert result.delivered == ["a@example.com"]
        [message] = plain.messages
        assert message.mail_options == ["BODY=8BITMIME"]
        assert message.data == data
    with Server(lmtp=True, enable_SMTPUTF8=True) as utf8:
        result = deliver(utf8.address, ["j\u00fcrgen@example.com"], data, mail_options=["SMTPUTF8"])
        assert result.delivered == ["j\u00fcrgen@example.com"]
        [message] = utf8.messages
        assert message.mail_options == ["SMTPUTF8"]
        assert message.rcpt_tos == ["j\u00fcrgen@example.com"]


def test_deliver_lmtp_dot_stuffing_round_trips(lmtp: Server) -> None:
    data = b".first line starts with a dot\r\nSubject: dots\r\n\r\n.\r\n..\r\n.hidden\r\n...\r\nlast . line\r\n.\r\n"
    assert deliver(lmtp.address, ["a@example.com"], data).delivered == ["a@example.com"]
    # Without a final line ending, one is added.
    assert deliver(lmtp.address, ["b@example.com"], b"Subject: x\r\n\r\n.no newline").delivered == ["b@example.com"]
    first, second = lmtp.messages
    assert first.data == data
    assert second.data == b"Subject: x\r\n\r\n.no newline\r\n"


def test_deliver_lmtp_to_an_unreachable_address_refuses_with_minus_one() -> None:
    port = free_port()  # bound, then closed: nothing listens there
    result = deliver(("127.0.0.1", port), ["a@example.com", "b@example.com"])
    assert result.delivered == []
    assert list(result.refused) == ["a@example.com", "b@example.com"]
    for code, text in result.refused.values():
        assert code == -1
        assert text.startswith(f"LMTP delivery to 127.0.0.1:{port} failed: ")


def test_deliver_lmtp_to_a_silent_server_times_out_with_minus_one() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)  # the kernel accepts; nobody ever greets
        result = deliver(silent.getsockname(), ["a@example.com"], timeout=0.3)
    assert result.delivered == []
    [(code, text)] = result.refused.values()
    assert code == -1
    assert text.endswith("failed: no answer in time (waiting for the greeting)")


def test_deliver_lmtp_to_an_smtp_server_refuses_with_minus_one(server: Server) -> None:
    result = deliver(server.address, ["a@example.com"])
    [(code, text)] = result.refused.values()
    assert code == -1
    assert 'LHLO refused: 500 Error: command "LHLO" not recognized' in text
    assert len(server.messages) == 0


class HangsUpBeforeQuit(Server):
    """An LMTP server that answers each recipient after DATA and closes the
    connection at once, so the client's QUIT gets no answer."""

    def handle_message(self, message: Message, session: SessionProtocol) -> Verdict | Awaitable[Verdict]:
        assert session.transport is not None
        session.transport.write(b"250 2.1.5 Delivered\r\n" * len(message.rcpt_tos))
        session.transport.close()
        return super().handle_message(message, session)


def test_deliver_lmtp_keeps_the_outcome_when_only_quit_fails() -> None:
    with HangsUpBeforeQuit(lmtp=True) as server:
        result = deliver(server.address, ["a@example.com", "b@example.com"])
    # Reporting these as refused would have the message sent to them again.
    assert result == LMTPResult(delivered=["a@example.com", "b@example.com"])
    assert len(server.messages) == 1


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"250 OK\r\n", (250, "OK")),
        (b"250-first\r\n250-second\r\n250 last\r\n", (250, "first\nsecond\nlast")),
        (b"250\r\n", (250, "")),  # RFC 5321 4.2: the text is optional
        (b"550-one\r\n550\r\n", (550, "one\n")),
        (b"452 4.2.2 Full\n", (452, "4.2.2 Full")),
    ],
)
def test_reply_lines(raw: bytes, expected: tuple[int, str]) -> None:
    async def read() -> tuple[int, str]:
        reader = asyncio.StreamReader()
        reader.feed_data(raw)
        reader.feed_eof()
        return await _read_reply(reader)

    assert asyncio.run(read()) == expected


@pytest.mark.parametrize("lmtp", [True, False])
def test_verdict_list_that_does_not_fit_gives_451_and_the_session_goes_on(
    lmtp: bool, caplog: pytest.LogCaptureFixture
) -> None:
    # Two recipients but one verdict (LMTP), or a list at all (SMTP): the
    # handler's mistake must not cost the client its reply.
    with Server(lmtp=lmtp, handler=lambda message: [None]) as server, Wire(server.address) as wire:
        wire.command(f"{'LHLO' if lmtp else 'EHLO'} client.test")
        wire.command("MAIL FROM:<a@example.com>")
        wire.command("RCPT TO:<b@example.com>")
        wire.command("RCPT TO:<c@example.com>")
        assert wire.command("DATA") == 354
        wire.send(b"Subject: x\r\n\r\nx\r\n.\r\n")
        codes = [wire.reply()[0] for _ in range(2 if lmtp else 1)]
        assert codes == [451] * len(codes)
        assert wire.command("NOOP") == 250
    assert "cannot be sent" in caplog.text
