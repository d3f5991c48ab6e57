"""ENHANCEDSTATUSCODES (RFC 2034, codes from RFC 3463): offered after EHLO
or LHLO when enabled (by default in LMTP mode), then every 2xx, 4xx and 5xx
reply carries its class.subject.detail code; a HELO client, and every
session without the option, gets the bare replies."""

from __future__ import annotations

import asyncio
import smtplib

import aiosmtplib
import pytest
from core_helpers import CLIENT, RECIPIENT, SENDER, new_connection, receive_and_get, send_line

from conftest import TIMEOUT, Wire
from pytest_smtpd import Server
from pytest_smtpd.connection import SessionConfig
from pytest_smtpd.replies import Reply, with_enhanced_code

ENHANCED = SessionConfig(enable_ENHANCEDSTATUSCODES=True, max_recipients=1)


# -- the core ---------------------------------------------------------------------------


def test_offered_only_when_enabled_or_in_lmtp_mode() -> None:
    def offered(config: SessionConfig, greeting: str = "EHLO") -> bool:
        return b"ENHANCEDSTATUSCODES" in send_line(new_connection(config), f"{greeting} {CLIENT}")

    assert offered(ENHANCED)
    assert not offered(SessionConfig())
    assert offered(SessionConfig(lmtp=True), "LHLO")
    assert not offered(SessionConfig(lmtp=True, enable_ENHANCEDSTATUSCODES=False), "LHLO")


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (f"MAIL FROM:<{SENDER}>", b"250 2.1.0 OK\r\n"),
        ("NOOP", b"250 2.0.0 OK\r\n"),
        ("RSET", b"250 2.0.0 OK\r\n"),
        ("VRFY <someone@example.com>", b"252 2.0.0 Cannot VRFY user, but will accept message and attempt delivery\r\n"),
        ("XYZZY", b'500 5.5.1 Error: command "XYZZY" not recognized\r\n'),
        ("MAIL TO:<a@example.com>", b"501 5.5.2 Syntax: MAIL FROM:<address> [SP <mail-parameters>]\r\n"),
        ("RCPT TO:<a@example.com>", b"503 5.5.1 Error: need MAIL command\r\n"),
        ("DATA", b"503 5.5.1 Error: need RCPT command\r\n"),
        (
            "MAIL FROM:<a@example.com> SIZE=99999999999",
            b"552 5.3.4 Error: message size exceeds fixed maximum message size\r\n",
        ),
        ("MAIL FROM:<a@example.com> FOO=1", b"555 5.5.4 MAIL FROM parameters not recognized or not implemented\r\n"),
        ("MAIL FROM:<j\u00fcrgen@example.com>", b"553 5.6.7 Error: non-ASCII address requires SMTPUTF8\r\n"),
        ("EXPN list", b"502 5.5.1 EXPN not implemented\r\n"),
        ("QUIT", b"221 2.0.0 Bye\r\n"),
    ],
)
def test_each_reply_carries_its_code(line: str, expected: bytes) -> None:
    conn = new_connection(ENHANCED)
    send_line(conn, f"EHLO {CLIENT}")
    conn.receive_data(line.encode() + b"\r\n")
    conn.next_event()
    assert conn.data_to_send() == expected


def test_a_whole_transaction_with_codes_and_the_ehlo_reply_and_354_bare() -> None:
    conn = new_connection(ENHANCED)
    ehlo = send_line(conn, f"EHLO {CLIENT}")
    assert ehlo.startswith(b"250-localhost\r\n") and b"250 HELP\r\n" in ehlo  # RFC 2034 3: no code here
    assert send_line(conn, f"MAIL FROM:<{SENDER}>") == b"250 2.1.0 OK\r\n"
    assert send_line(conn, f"RCPT TO:<{RECIPIENT}>") == b"250 2.1.5 OK\r\n"
    # max_recipients=1: the second is 452 with the code its text already has.
    assert send_line(conn, "RCPT TO:<second@example.com>") == b"452 4.5.3 Too many recipients\r\n"
    assert send_line(conn, "DATA") == b"354 End data with <CR><LF>.<CR><LF>\r\n"
    _, out = receive_and_get(conn, b"Subject: hi\r\n\r\nbody\r\n.\r\n")
    assert out == b"250 2.0.0 OK\r\n"


def test_a_multiline_reply_carries_the_code_on_every_line() -> None:
    conn = new_connection(ENHANCED)
    send_line(conn, f"EHLO {CLIENT}")
    conn.reply(Reply(250, "first\nsecond"))
    assert conn.data_to_send() == b"250-2.0.0 first\r\n250 2.0.0 second\r\n"


def test_a_helo_client_and_a_client_before_ehlo_keep_the_bare_replies() -> None:
    conn = new_connection(ENHANCED)
    assert send_line(conn, "NOOP") == b"250 OK\r\n"
    assert send_line(conn, f"HELO {CLIENT}") == b"250 localhost\r\n"
    assert send_line(conn, f"MAIL FROM:<{SENDER}>") == b"250 OK\r\n"
    # An EHLO then agrees on the codes, and a HELO after it drops them again.
    send_line(conn, f"EHLO {CLIENT}")
    assert send_line(conn, "NOOP") == b"250 2.0.0 OK\r\n"
    send_line(conn, f"HELO {CLIENT}")
    assert send_line(conn, "NOOP") == b"250 OK\r\n"


def test_without_the_option_replies_stay_as_the_stdlib_had_them() -> None:
    conn = new_connection(SessionConfig())
    send_line(conn, f"EHLO {CLIENT}")
    assert send_line(conn, f"MAIL FROM:<{SENDER}>") == b"250 OK\r\n"
    assert send_line(conn, "DATA") == b"503 Error: need RCPT command\r\n"


def test_an_application_reply_keeps_its_own_code_and_gets_one_if_it_has_none() -> None:
    assert str(with_enhanced_code(Reply.parse("550 5.1.1 No such user"))) == "550 5.1.1 No such user"
    assert str(with_enhanced_code(Reply.parse("550 No such user"))) == "550 5.0.0 No such user"
    assert str(with_enhanced_code(Reply.parse("451 try later"))) == "451 4.3.0 try later"
    assert str(with_enhanced_code(Reply(334, "VXNlcm5hbWU6"))) == "334 VXNlcm5hbWU6"
    with pytest.raises(ValueError, match="not an enhanced status code"):
        Reply(250, "OK", enhanced="2.0")


# -- through a socket, with real clients ------------------------------------------------


def test_smtplib_sees_the_extension_and_the_codes() -> None:
    with (
        Server(enable_ENHANCEDSTATUSCODES=True, handler=lambda m: "550 No such user") as server,
        smtplib.SMTP(*server.address, timeout=TIMEOUT) as client,
    ):
        client.ehlo()
        assert client.has_extn("enhancedstatuscodes")
        assert client.mail(SENDER) == (250, b"2.1.0 OK")
        assert client.rcpt(RECIPIENT) == (250, b"2.1.5 OK")
        assert client.data(b"Subject: x\r\n\r\nbody\r\n") == (550, b"5.0.0 No such user")
        assert client.noop() == (250, b"2.0.0 OK")
        client.helo(CLIENT)
        assert client.noop() == (250, b"OK")


def test_aiosmtplib_reads_the_codes() -> None:
    async def send(server: Server) -> tuple[dict[str, tuple[int, str]], str]:
        async with aiosmtplib.SMTP(hostname=server.host, port=server.port, timeout=TIMEOUT) as client:
            assert client.supports_extension("enhancedstatuscodes")
            errors, response = await client.sendmail(SENDER, [RECIPIENT, "second@example.com"], b"Subject: x\r\n\r\n")
            return {rcpt: (error.code, error.message) for rcpt, error in errors.items()}, response

    with Server(enable_ENHANCEDSTATUSCODES=True, max_recipients=1) as server:
        errors, response = asyncio.run(send(server))
        assert response == "2.0.0 OK"
        assert errors == {"second@example.com": (452, "4.5.3 Too many recipients")}
        assert len(server.messages) == 1


def test_lmtp_mode_has_them_by_default_on_the_wire() -> None:
    with Server(lmtp=True) as server, Wire(server.address) as wire:
        assert wire.command("LHLO client.test") == 250
        assert wire.command(f"MAIL FROM:<{SENDER}>") == 250
        wire.send(f"RCPT TO:<{RECIPIENT}>\r\nRCPT TO:<x@example.com>\r\nDATA\r\nSubject: x\r\n\r\n.\r\n".encode())
        assert [wire.reply() for _ in range(4)] == [
            (250, "2.1.5 OK"),
            (250, "2.1.5 OK"),
            (354, "End data with <CR><LF>.<CR><LF>"),
            (250, "2.0.0 OK"),
        ]
        assert wire.reply() == (250, "2.0.0 OK")  # LMTP: one reply per recipient


@pytest.mark.smtpd(enable_ENHANCEDSTATUSCODES=True)
def test_the_marker_passes_the_option(smtpd: Server) -> None:
    with smtplib.SMTP(*smtpd.address, timeout=TIMEOUT) as client:
        client.ehlo()
        assert client.has_extn("enhancedstatuscodes")
        assert client.rset() == (250, b"2.0.0 OK")


def test_bdat_replies_carry_codes_too() -> None:
    with (
        Server(enable_ENHANCEDSTATUSCODES=True, enable_CHUNKING=True, data_size_limit=10) as server,
        Wire(server.address) as wire,
    ):
        assert wire.command("EHLO client.test") == 250
        assert wire.exchange(f"MAIL FROM:<{SENDER}>") == (250, "2.1.0 OK")
        assert wire.exchange(f"RCPT TO:<{RECIPIENT}>") == (250, "2.1.5 OK")
        wire.send(b"BDAT 4\r\nab\r\nBDAT 2 LAST\r\ncd")
        assert [wire.reply() for _ in range(2)] == [(250, "2.0.0 4 octets received"), (250, "2.0.0 OK")]
        assert wire.exchange("BDAT x") == (501, "5.5.2 Syntax: BDAT chunk-size [LAST]")
        assert wire.exchange(f"MAIL FROM:<{SENDER}>") == (250, "2.1.0 OK")
        assert wire.exchange(f"RCPT TO:<{RECIPIENT}>") == (250, "2.1.5 OK")
        wire.send(b"BDAT 11 LAST\r\n01234567890")
        assert wire.reply() == (552, "5.3.4 Error: Too much mail data")
        assert [m.data for m in server.messages] == [b"ab\r\ncd"]
