"""Relaying internationalized mail (issue 18): ``PureProxy`` and
``MailmanProxy`` hand an SMTPUTF8 message on bit-exact, with the parameter,
to an upstream that offers SMTPUTF8 (a real Postfix with
``smtputf8_enable = yes``, and our own server); to one that does not, the
client's reply to the end of DATA, where the proxy learns it, is a
permanent 5xx naming the reason (5.6.7), and nothing is delivered."""

from __future__ import annotations

import smtplib
import uuid
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from email.policy import SMTPUTF8
from typing import Any

import pytest
from postfix import Postfix, postfix_fixture  # noqa: F401 (the postfix fixture)

from conftest import TIMEOUT, send_and_get_data_reply
from pytest_smtpd import PureProxy, Server
from pytest_smtpd.mailman import MailmanProxy
from pytest_smtpd.proxy import add_x_peer

SENDER = "josé@例え.jp"


def utf8_message(subject: str) -> bytes:
    """UTF-8 headers (RFC 6532) and an 8-bit UTF-8 body, folded, with a dot line."""
    return (
        f'From: José <{SENDER}>\r\nTo: "Jürgen Groß" <jürgen@bücher.de>,\r\n Ärger <ärger@bücher.de>\r\n'
        f"Subject: {subject} Grüße aus 東京\r\nMIME-Version: 1.0\r\n"
        # Postfix adds the Date and Message-ID a message lacks.
        f"Date: Mon, 07 Dec 2026 02:00:00 +0000\r\nMessage-ID: <{subject}@例え.jp>\r\n"
        "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
        "Hallo, 世界.\r\n.Eine Zeile mit Punkt.\r\n\r\nTschüß\r\n"
    ).encode()


def relayed(data: bytes) -> bytes:
    """``data`` as the upstream must receive it: with the proxy's X-Peer."""
    return add_x_peer(data, "127.0.0.1")


@pytest.fixture
def proxies() -> Iterator[Callable[..., PureProxy]]:
    made: list[PureProxy] = []

    def make(cls: type[PureProxy], upstream: tuple[str, int], **options: Any) -> PureProxy:
        proxy = cls(("127.0.0.1", 0), upstream, enable_SMTPUTF8=True, **options)
        made.append(proxy)
        return proxy

    yield make
    for proxy in made:
        proxy.close()


def stored_in_postfix(postfix: Postfix, token: str) -> bytes:
    """The one copy Postfix delivered, its LF line endings as CRLF."""
    return postfix.wait_for_message(token).replace(b"\n", b"\r\n")


def test_pureproxy_relays_to_postfix_with_smtputf8_bit_exact(
    postfix: Postfix, proxies: Callable[..., PureProxy]
) -> None:
    proxy = proxies(PureProxy, postfix.address)
    token = uuid.uuid4().hex
    data = utf8_message(token)
    code, text = send_and_get_data_reply(
        proxy.address, ["jürgen@bücher.de"], data, mailfrom=SENDER, mail_options=("SMTPUTF8",)
    )
    assert code == 250, text
    stored = stored_in_postfix(postfix, token)
    # Postfix adds its trace headers above, and keeps every byte we sent.
    assert stored.endswith(relayed(data))
    trace = stored[: -len(relayed(data))]
    assert f"Return-Path: <{SENDER}>\r\n".encode() in trace
    assert "Delivered-To: jürgen@bücher.de\r\n".encode() in trace
    # Postfix names the protocol of an SMTPUTF8 session UTF8SMTP (RFC 6531 3.7.3).
    assert b"with UTF8SMTP id" in trace


def test_pureproxy_relays_to_our_server_with_smtputf8_bit_exact(proxies: Callable[..., PureProxy]) -> None:
    with Server(enable_SMTPUTF8=True) as upstream:
        proxy = proxies(PureProxy, upstream.address)
        data = utf8_message("to ours")
        code, _ = send_and_get_data_reply(
            proxy.address, ["jürgen@bücher.de", "ärger@bücher.de"], data, mailfrom=SENDER, mail_options=("SMTPUTF8",)
        )
        assert code == 250
        [message] = upstream.messages
    assert message.data == relayed(data)
    assert message.mail_options == [f"SIZE={len(relayed(data))}", "SMTPUTF8"]
    assert (message.mail_from, message.rcpt_tos) == (SENDER, ["jürgen@bücher.de", "ärger@bücher.de"])
    assert message.to == ["jürgen@bücher.de", "ärger@bücher.de"]


ASCII = b"Subject: ascii\r\n\r\nhi\r\n"
FOR_ADDRESS = "5.6.7 Upstream does not offer SMTPUTF8, needed for a non-ASCII address"
FOR_HEADERS = "5.6.7 Upstream does not offer SMTPUTF8, needed for this message's UTF-8 headers"


@pytest.mark.parametrize(
    ("mailfrom", "rcpt", "data", "reply"),
    [
        (SENDER, "r@example.com", ASCII, (553, FOR_ADDRESS)),
        ("a@example.com", "jürgen@bücher.de", ASCII, (553, FOR_ADDRESS)),
        ("a@example.com", "r@example.com", utf8_message("headers"), (550, FOR_HEADERS)),
    ],
    ids=["sender", "recipient", "headers"],
)
def test_an_upstream_without_smtputf8_is_a_permanent_5_6_7_at_the_end_of_data(
    proxies: Callable[..., PureProxy], mailfrom: str, rcpt: str, data: bytes, reply: tuple[int, str]
) -> None:
    with Server(enable_ENHANCEDSTATUSCODES=True) as upstream:
        proxy = proxies(PureProxy, upstream.address, enable_ENHANCEDSTATUSCODES=True)
        # MAIL and RCPT are accepted (send_and_get_data_reply checks): the
        # proxy connects upstream once it has the message.
        assert (
            send_and_get_data_reply(proxy.address, [rcpt], data, mailfrom=mailfrom, mail_options=("SMTPUTF8",)) == reply
        )
        assert upstream.messages == []
        # It asked, and went no further than EHLO.
        assert [session.commands[:1] for session in upstream.sessions] == [["EHLO"]]
        assert "MAIL" not in upstream.sessions[0].commands


def test_a_real_client_sees_the_refusal_as_a_permanent_error(proxies: Callable[..., PureProxy]) -> None:
    with Server() as upstream:
        proxy = proxies(PureProxy, upstream.address)
        message = EmailMessage(policy=SMTPUTF8)
        message["From"], message["To"], message["Subject"] = SENDER, "jürgen@bücher.de", "Grüße"
        message.set_content("Hallo")
        with smtplib.SMTP(*proxy.address, timeout=TIMEOUT) as client, pytest.raises(smtplib.SMTPDataError) as refused:
            client.send_message(message)
    assert refused.value.smtp_code == 553
    assert b"5.6.7" in refused.value.smtp_error and b"SMTPUTF8" in refused.value.smtp_error


def test_ascii_headers_and_an_8bit_body_are_relayed_without_smtputf8_with_body_8bitmime(
    proxies: Callable[..., PureProxy],
) -> None:
    data = "Subject: ascii headers\r\n\r\nbut an 8-bit body: Grüße\r\n".encode()
    with Server() as upstream:
        proxy = proxies(PureProxy, upstream.address)
        assert send_and_get_data_reply(proxy.address, ["r@example.com"], data, mail_options=("SMTPUTF8",))[0] == 250
        [message] = upstream.messages
    assert message.data == relayed(data)
    assert message.mail_options == [f"SIZE={len(relayed(data))}", "BODY=8BITMIME"]


LIST = "team@lists.例え.jp"


def test_mailmanproxy_relays_smtputf8_to_mailman_and_to_postfix_bit_exact(
    postfix: Postfix, proxies: Callable[..., PureProxy]
) -> None:
    token = uuid.uuid4().hex
    data = utf8_message(token)
    with Server(lmtp=True, enable_SMTPUTF8=True) as mailman:
        proxy = proxies(MailmanProxy, postfix.address, lists=[LIST], mailman_lmtp=mailman.address)
        code, text = send_and_get_data_reply(
            proxy.address, [LIST, "jürgen@bücher.de"], data, mailfrom=SENDER, mail_options=("SMTPUTF8",)
        )
        assert code == 250, text
        [to_list] = mailman.messages
    assert to_list.data == relayed(data)
    assert to_list.mail_options == ["SMTPUTF8"]
    assert to_list.rcpt_tos == [LIST]
    stored = stored_in_postfix(postfix, token)
    assert stored.endswith(relayed(data))
    assert b"with UTF8SMTP id" in stored


@pytest.mark.parametrize(
    ("rcpt", "data", "reply"),
    [
        ("équipe@lists.example.com", ASCII, (553, FOR_ADDRESS.replace("Upstream", "LMTP server"))),
        ("team@lists.example.com", utf8_message("headers"), (550, FOR_HEADERS.replace("Upstream", "LMTP server"))),
    ],
    ids=["address", "headers"],
)
def test_mailmanproxy_to_an_lmtp_server_without_smtputf8_is_a_permanent_5_6_7(
    proxies: Callable[..., PureProxy], rcpt: str, data: bytes, reply: tuple[int, str]
) -> None:
    with Server(lmtp=True) as mailman, Server() as upstream:
        proxy = proxies(MailmanProxy, upstream.address, lists=[rcpt], mailman_lmtp=mailman.address)
        assert send_and_get_data_reply(proxy.address, [rcpt], data, mail_options=("SMTPUTF8",)) == reply
        assert mailman.messages == []
        assert [session.commands for session in mailman.sessions] == [["LHLO", "QUIT"]]
