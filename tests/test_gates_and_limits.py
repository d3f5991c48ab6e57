"""What a session refuses before TLS or a login (RFC 3207 4, RFC 4954 6),
AUTH after a plain HELO, the recipient limit, and addresses without angle
brackets: through a socket, as a client meets them."""

from __future__ import annotations

import inspect
import smtplib

import pytest

from conftest import TIMEOUT, Wire
from pytest_smtpd import Server


@pytest.mark.parametrize("line", ["HELO c", "VRFY bob", "EXPN staff", "HELP", "RSET", "MAIL FROM:<a@example.com>"])
def test_require_starttls_refuses_all_but_noop_ehlo_starttls_quit(line: str) -> None:
    with Server(tls="starttls", require_starttls=True) as server, Wire(server.address) as wire:
        assert wire.command("EHLO c") == 250
        assert wire.exchange(line) == (530, "5.7.0 Must issue a STARTTLS command first")
        assert wire.command("NOOP") == 250
        assert wire.command("QUIT") == 221


@pytest.mark.parametrize("line", ["VRFY bob", "EXPN staff", "HELP", "MAIL FROM:<a@example.com>"])
def test_auth_required_refuses_all_but_the_session_commands(line: str) -> None:
    with Server(auth={"alice": "pw"}, auth_required=True) as server, Wire(server.address) as wire:
        assert wire.command("EHLO c") == 250
        assert wire.exchange(line) == (530, "5.7.0 Authentication required")
        for allowed in ("HELO c", "EHLO c", "NOOP", "RSET"):
            assert wire.command(allowed) == 250, allowed


def test_auth_required_lets_starttls_come_first() -> None:
    with Server(tls="starttls", auth={"alice": "pw"}, auth_required=True) as server:
        with smtplib.SMTP(*server.address, timeout=TIMEOUT) as client:
            client.starttls(context=server.client_context())
            client.login("alice", "pw")
            client.sendmail("a@example.com", ["b@example.com"], b"x\r\n")
        assert len(server.messages) == 1


def test_auth_after_helo_is_out_of_sequence() -> None:
    """AUTH is an ESMTP extension: a client that said HELO never saw it offered."""
    with Server(auth={"alice": "pw"}) as server, Wire(server.address) as wire:
        assert wire.command("HELO c") == 250
        assert wire.exchange("AUTH PLAIN AGFsaWNlAHB3") == (503, "Error: send EHLO first")
        assert wire.command("EHLO c") == 250
        assert wire.command("AUTH PLAIN AGFsaWNlAHB3") == 235


def test_recipients_over_the_limit_get_452_and_the_rest_is_delivered() -> None:
    with Server(max_recipients=3) as server:
        with smtplib.SMTP(*server.address, timeout=TIMEOUT) as client:
            refused = client.sendmail("a@example.com", [f"r{n}@example.com" for n in range(5)], b"x\r\n")
        assert refused == {
            "r3@example.com": (452, b"4.5.3 Too many recipients"),
            "r4@example.com": (452, b"4.5.3 Too many recipients"),
        }
        [message] = server.messages
        assert message.rcpt_tos == ["r0@example.com", "r1@example.com", "r2@example.com"]


def test_the_default_recipient_limit_is_1000() -> None:
    with Server() as server, Wire(server.address) as wire:
        assert wire.command("EHLO c") == 250
        assert wire.command("MAIL FROM:<a@example.com>") == 250
        wire.send(b"".join(b"RCPT TO:<r%d@example.com>\r\n" % n for n in range(1001)))
        codes = [wire.reply()[0] for _ in range(1001)]
        assert codes == [250] * 1000 + [452]
        assert wire.command("RSET") == 250
        assert wire.command("MAIL FROM:<a@example.com>") == 250
        assert wire.command("RCPT TO:<again@example.com>") == 250  # the limit is per transaction


def test_a_negative_recipient_limit_is_an_error() -> None:
    with pytest.raises(ValueError, match="max_recipients"):
        Server(max_recipients=-1)


@pytest.mark.parametrize("address", ["bob@example.org", '"Fred Blogs"@example.org', '"a\\"b"@example.org'])
def test_addresses_without_angle_brackets_are_accepted_quoted_or_not(address: str) -> None:
    """As the stdlib and aiosmtpd do, quoted local part or not."""
    with Server() as server, Wire(server.address) as wire:
        assert wire.command("EHLO c") == 250
        assert wire.command(f"MAIL FROM:{address} SIZE=10") == 250
        assert wire.command(f"RCPT TO:{address}") == 250
        assert wire.command("DATA") == 354
        assert wire.command("x\r\n.") == 250
        [message] = server.messages
        assert (message.mail_from, message.rcpt_tos, message.mail_options) == (address, [address], ["SIZE=10"])


def test_server_signature_shows_no_private_parameters() -> None:
    assert [name for name in inspect.signature(Server).parameters if name.startswith("_")] == []
