"""PureProxy relaying through real sockets: to our own servers as upstream
(which can refuse at every step), to our server requiring AUTH, and to a real
Postfix, with smtplib and swaks as clients."""

from __future__ import annotations

import asyncio
import io
import smtplib
import socket
import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from peers import TIMEOUT, free_port, require_program
from postfix import (
    BLOCKED_SENDER,
    BUSY_RECIPIENT,
    REFUSED_RECIPIENT,
    REJECTED_SUBJECT,
    Postfix,
    postfix_fixture,  # noqa: F401 (the postfix fixture)
)

from conftest import Wire, send_and_get_data_reply
from pytest_smtpd import PureProxy, Server, SMTPChannel, SMTPServer, smtpd
from pytest_smtpd.proxy import add_x_peer, is_loopback, to_wire
from pytest_smtpd.tls import test_ca

MESSAGE = (
    b"From: Author <author@example.com>\r\n"
    b"To: Recipient <recipient@example.com>\r\n"
    b"Subject: relay test\r\n"
    b"\r\n"
    b"Hello.\r\n"
    b".A line that starts with a dot.\r\n"
    b"\r\n"
    b"Bye.\r\n"
)
#: MESSAGE as the upstream must receive it.
RELAYED = MESSAGE.replace(b"Subject: relay test\r\n", b"Subject: relay test\r\nX-Peer: 127.0.0.1\r\n")

ProxyFactory = Callable[..., PureProxy]


@pytest.fixture
def make_proxy() -> Iterator[ProxyFactory]:
    """Start PureProxy instances on 127.0.0.1 and a free port; all are closed at the end."""
    proxies: list[PureProxy] = []

    def make(upstream: tuple[str, int], **options: Any) -> PureProxy:
        proxy = PureProxy(("127.0.0.1", 0), upstream, **options)
        proxies.append(proxy)
        return proxy

    yield make
    for proxy in proxies:
        proxy.close()


def test_relaying_is_traced_on_the_debugstream_set_on_the_smtpd_shim(
    make_proxy: ProxyFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    trace = io.StringIO()
    monkeypatch.setattr(smtpd, "DEBUGSTREAM", trace)
    with Server() as upstream:
        proxy = make_proxy((upstream.host, upstream.port))
        assert send_and_get_data_reply(proxy.address, ["r@example.com"], MESSAGE)[0] == 250
    assert f"via {upstream.host}:{upstream.port}" in trace.getvalue()


# -- an upstream that refuses on command -------------------------------------


class RefusingChannel(SMTPChannel):
    """Refuses the sender ``blocked@``, and recipients ``refused@`` (550),
    ``busy@`` (450) and ``gone@`` (421, then hangs up)."""

    def smtp_MAIL(self, arg: str | None) -> None:
        if arg and "blocked@" in arg:
            self.push("553 5.7.1 Sender blocked here")
            return
        super().smtp_MAIL(arg)

    def smtp_RCPT(self, arg: str | None) -> None:
        if arg and "refused@" in arg:
            self.push("550 5.1.1 No such user here")
        elif arg and "busy@" in arg:
            self.push("450 4.2.1 Mailbox busy")
        elif arg and "gone@" in arg:
            self.push("421 4.3.2 Shutting down")
            self.close_when_done()
        else:
            super().smtp_RCPT(arg)


class RefusingUpstream(SMTPServer):
    """Keeps what it accepts; refuses a message whose Subject says so."""

    channel_class = RefusingChannel

    def __init__(self) -> None:
        self.received: list[tuple[str, list[str], bytes]] = []
        super().__init__(("127.0.0.1", 0), None)

    def process_message(
        self, peer: tuple[str, int], mailfrom: str, rcpttos: list[str], data: bytes | str, **kwargs: Any
    ) -> str | None:
        assert isinstance(data, bytes)
        if b"Subject: refuse permanently" in data:
            return "550 5.7.1 Message content refused"
        if b"Subject: refuse for now" in data:
            return "450 4.7.1 Try again later"
        self.received.append((mailfrom, rcpttos, data))
        return None


@pytest.fixture
def refusing() -> Iterator[RefusingUpstream]:
    upstream = RefusingUpstream()
    try:
        yield upstream
    finally:
        upstream.close()


# -- relaying to our own Server ------------------------------------------------


def test_relays_the_message_with_x_peer_and_the_whole_envelope(smtpd: Server, make_proxy: ProxyFactory) -> None:
    proxy = make_proxy(smtpd.address)
    code, text = send_and_get_data_reply(
        proxy.address, ["recipient@example.com", "second@example.org", "third@example.net"], MESSAGE
    )
    assert (code, text) == (250, "OK")
    [message] = smtpd.messages
    assert message.mail_from == "author@example.com"
    assert message.rcpt_tos == ["recipient@example.com", "second@example.org", "third@example.net"]
    assert message.data == RELAYED


def test_a_message_received_by_bdat_is_relayed_by_data(smtpd: Server, make_proxy: ProxyFactory) -> None:
    """With CHUNKING the proxy takes BDAT; aiosmtplib relays with DATA, and
    the upstream gets the same message it would have got from DATA."""
    proxy = make_proxy(smtpd.address, enable_CHUNKING=True)
    with Wire(proxy.address) as wire:
        assert wire.command("EHLO client.test") == 250
        assert wire.command("MAIL FROM:<author@example.com>") == 250
        assert wire.command("RCPT TO:<recipient@example.com>") == 250
        wire.send(b"BDAT %d\r\n" % 20 + MESSAGE[:20])
        assert wire.reply()[0] == 250
        wire.send(b"BDAT %d LAST\r\n" % (len(MESSAGE) - 20) + MESSAGE[20:])
        assert wire.reply() == (250, "OK")
    [message] = smtpd.messages
    assert message.data == RELAYED
    assert message.transfer == "DATA"


def test_with_chunking_the_proxy_does_not_offer_binarymime(smtpd: Server, make_proxy: ProxyFactory) -> None:
    # It relays with DATA, which would change bare CRs and LFs: binary data
    # would not arrive as sent, so the client is not invited to send any.
    proxy = make_proxy(smtpd.address, enable_CHUNKING=True)
    with smtplib.SMTP(*proxy.address, timeout=TIMEOUT) as client:
        client.ehlo("client.test")
        assert client.has_extn("chunking")
        assert not client.has_extn("binarymime")
        assert client.mail("author@example.com", ["BODY=BINARYMIME"])[0] == 501
        assert client.mail("author@example.com", ["BODY=8BITMIME"])[0] == 250
    assert smtpd.messages == []


def test_relays_the_null_sender(smtpd: Server, make_proxy: ProxyFactory) -> None:
    proxy = make_proxy(smtpd.address)
    assert send_and_get_data_reply(proxy.address, ["postmaster@example.com"], MESSAGE, mailfrom="")[0] == 250
    [message] = smtpd.messages
    assert message.mail_from == ""


def test_each_message_of_a_session_is_relayed(smtpd: Server, make_proxy: ProxyFactory) -> None:
    proxy = make_proxy(smtpd.address)
    with smtplib.SMTP(*proxy.address, timeout=TIMEOUT) as client:
        for n in range(3):
            assert client.sendmail("a@example.com", [f"r{n}@example.com"], f"Subject: {n}\r\n\r\nbody {n}\r\n") == {}
    assert [m.rcpt_tos for m in smtpd.messages] == [["r0@example.com"], ["r1@example.com"], ["r2@example.com"]]
    assert [m.subject for m in smtpd.messages] == ["0", "1", "2"]


def test_eight_bit_body_is_relayed_with_body_8bitmime(smtpd: Server, make_proxy: ProxyFactory) -> None:
    proxy = make_proxy(smtpd.address)
    data = "Subject: caf\u00e9\r\n\r\nd\u00e9j\u00e0 vu\r\n".encode()
    assert send_and_get_data_reply(proxy.address, ["r@example.com"], data, mail_options=("BODY=8BITMIME",))[0] == 250
    [message] = smtpd.messages
    assert "BODY=8BITMIME" in message.mail_options
    assert message.data == data.replace(b"\r\n\r\n", b"\r\nX-Peer: 127.0.0.1\r\n\r\n")


@pytest.mark.smtpd(decode_data=True)
def test_eight_bit_body_is_refused_when_upstream_lacks_8bitmime(smtpd: Server, make_proxy: ProxyFactory) -> None:
    proxy = make_proxy(smtpd.address)
    data = "Subject: x\r\n\r\nd\u00e9j\u00e0 vu\r\n".encode()
    code, text = send_and_get_data_reply(proxy.address, ["r@example.com"], data, mail_options=("BODY=8BITMIME",))
    assert code == 554
    assert "8BITMIME" in text
    assert len(smtpd.messages) == 0


@pytest.mark.smtpd(decode_data=True)
def test_seven_bit_body_marked_8bitmime_is_relayed_without_it(smtpd: Server, make_proxy: ProxyFactory) -> None:
    proxy = make_proxy(smtpd.address)
    assert send_and_get_data_reply(proxy.address, ["r@example.com"], MESSAGE, mail_options=("BODY=8BITMIME",))[0] == 250
    [message] = smtpd.messages
    assert message.mail_options == ["SIZE=" + str(len(RELAYED))]
    assert message.data == RELAYED


@pytest.mark.smtpd(enable_SMTPUTF8=True)
def test_smtputf8_is_relayed_when_upstream_offers_it(smtpd: Server, make_proxy: ProxyFactory) -> None:
    proxy = make_proxy(smtpd.address, enable_SMTPUTF8=True)
    data = "Subject: gr\u00fc\u00dfe\r\n\r\nhallo\r\n".encode()
    code, _ = send_and_get_data_reply(
        proxy.address,
        ["j\u00fcrgen@b\u00fccher.example"],
        data,
        mailfrom="\u00e4@example.com",
        mail_options=("SMTPUTF8",),
    )
    assert code == 250
    [message] = smtpd.messages
    assert "SMTPUTF8" in message.mail_options
    assert message.mail_from == "\u00e4@example.com"
    assert message.rcpt_tos == ["j\u00fcrgen@b\u00fccher.example"]


def test_smtputf8_address_is_refused_when_upstream_lacks_smtputf8(smtpd: Server, make_proxy: ProxyFactory) -> None:
    proxy = make_proxy(smtpd.address, enable_SMTPUTF8=True)
    code, text = send_and_get_data_reply(
        proxy.address, ["j\u00fcrgen@example.com"], MESSAGE, mail_options=("SMTPUTF8",)
    )
    assert code == 553
    assert text.startswith("5.6.7 ")
    assert len(smtpd.messages) == 0


def test_smtputf8_message_data_is_refused_when_upstream_lacks_smtputf8(smtpd: Server, make_proxy: ProxyFactory) -> None:
    proxy = make_proxy(smtpd.address, enable_SMTPUTF8=True)
    data = "Subject: gr\u00fc\u00dfe\r\n\r\nhallo\r\n".encode()
    code, text = send_and_get_data_reply(proxy.address, ["r@example.com"], data, mail_options=("SMTPUTF8",))
    assert code == 550
    assert text.startswith("5.6.7 ")
    assert len(smtpd.messages) == 0


def test_ascii_message_sent_with_smtputf8_is_relayed_without_it(smtpd: Server, make_proxy: ProxyFactory) -> None:
    proxy = make_proxy(smtpd.address, enable_SMTPUTF8=True)
    assert send_and_get_data_reply(proxy.address, ["r@example.com"], MESSAGE, mail_options=("SMTPUTF8",))[0] == 250
    [message] = smtpd.messages
    assert "SMTPUTF8" not in message.mail_options
    assert message.data == RELAYED


@pytest.mark.parametrize(
    ("verdict", "code"),
    [("550 5.7.1 We do not want it", 550), ("450 4.7.1 Greylisted, try later", 450), ("552 5.3.4 Too big", 552)],
)
def test_upstream_refusal_of_the_message_reaches_the_client(verdict: str, code: int, make_proxy: ProxyFactory) -> None:
    with Server(handler=lambda message: verdict) as upstream:
        proxy = make_proxy(upstream.address)
        assert send_and_get_data_reply(proxy.address, ["r@example.com"], MESSAGE) == (code, verdict[4:])
        assert len(upstream.messages) == 0


def test_refused_sender_reaches_the_client(refusing: RefusingUpstream, make_proxy: ProxyFactory) -> None:
    proxy = make_proxy(refusing.address)
    assert send_and_get_data_reply(proxy.address, ["r@example.com"], MESSAGE, mailfrom="blocked@example.com") == (
        553,
        "5.7.1 Sender blocked here",
    )
    assert refusing.received == []


def test_refused_single_recipient_reaches_the_client(refusing: RefusingUpstream, make_proxy: ProxyFactory) -> None:
    proxy = make_proxy(refusing.address)
    assert send_and_get_data_reply(proxy.address, ["refused@example.com"], MESSAGE) == (550, "5.1.1 No such user here")
    assert send_and_get_data_reply(proxy.address, ["busy@example.com"], MESSAGE) == (450, "4.2.1 Mailbox busy")
    assert refusing.received == []


def test_with_enhanced_status_codes_the_upstreams_code_is_passed_through_once(
    refusing: RefusingUpstream, make_proxy: ProxyFactory
) -> None:
    proxy = make_proxy(refusing.address, enable_ENHANCEDSTATUSCODES=True)
    with smtplib.SMTP(*proxy.address, timeout=TIMEOUT) as client:
        client.ehlo("client.test")
        assert client.has_extn("enhancedstatuscodes")
        assert client.mail("a@example.com") == (250, b"2.1.0 OK")
        assert client.rcpt("refused@example.com") == (250, b"2.1.5 OK")
        assert client.data(MESSAGE) == (550, b"5.1.1 No such user here")
        assert client.mail("a@example.com")[0] == 250
        assert client.rcpt("r@example.com")[0] == 250
        assert client.data(MESSAGE) == (250, b"2.0.0 OK")
    assert len(refusing.received) == 1


def test_when_every_recipient_is_refused_a_temporary_refusal_wins(
    refusing: RefusingUpstream, make_proxy: ProxyFactory
) -> None:
    proxy = make_proxy(refusing.address)
    code, text = send_and_get_data_reply(proxy.address, ["refused@example.com", "busy@example.com"], MESSAGE)
    assert code == 450
    assert "<refused@example.com> (550 5.1.1 No such user here)" in text
    assert "<busy@example.com> (450 4.2.1 Mailbox busy)" in text
    code, text = send_and_get_data_reply(proxy.address, ["refused@example.com", "refused@example.org"], MESSAGE)
    assert code == 550
    assert refusing.received == []


def test_partial_refusal_is_250_naming_the_refused(refusing: RefusingUpstream, make_proxy: ProxyFactory) -> None:
    proxy = make_proxy(refusing.address)
    code, text = send_and_get_data_reply(
        proxy.address, ["a@example.com", "refused@example.com", "b@example.com", "busy@example.com"], MESSAGE
    )
    assert code == 250
    assert text.startswith("2.0.0 OK, delivered to 2 of 4 recipients; refused upstream: ")
    assert "<refused@example.com> (550 5.1.1 No such user here)" in text
    assert "<busy@example.com> (450 4.2.1 Mailbox busy)" in text
    [(mailfrom, rcpttos, _)] = refusing.received
    assert (mailfrom, rcpttos) == ("author@example.com", ["a@example.com", "b@example.com"])


def test_upstream_421_becomes_451(refusing: RefusingUpstream, make_proxy: ProxyFactory) -> None:
    proxy = make_proxy(refusing.address)
    code, text = send_and_get_data_reply(proxy.address, ["a@example.com", "gone@example.com"], MESSAGE)
    assert code == 451
    assert "421 4.3.2 Shutting down" in text
    assert refusing.received == []


def test_unreachable_upstream_is_451(make_proxy: ProxyFactory) -> None:
    proxy = make_proxy(("127.0.0.1", free_port()))
    code, text = send_and_get_data_reply(proxy.address, ["r@example.com"], MESSAGE)
    assert code == 451
    assert text.startswith("4.4.1 Cannot relay to 127.0.0.1:")


def test_silent_upstream_is_451_after_the_timeout(make_proxy: ProxyFactory) -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)  # the kernel accepts; nobody ever greets
        proxy = make_proxy(silent.getsockname(), upstream_timeout=0.3)
        code, text = send_and_get_data_reply(proxy.address, ["r@example.com"], MESSAGE)
    assert code == 451
    assert "4.4.1" in text


def test_the_client_session_goes_on_after_a_refusal(refusing: RefusingUpstream, make_proxy: ProxyFactory) -> None:
    proxy = make_proxy(refusing.address)
    with smtplib.SMTP(*proxy.address, timeout=TIMEOUT) as client:
        with pytest.raises(smtplib.SMTPDataError) as refused:
            client.sendmail("a@example.com", ["r@example.com"], b"Subject: refuse for now\r\n\r\nx\r\n")
        assert refused.value.smtp_code == 450
        assert client.sendmail("a@example.com", ["r@example.com"], b"Subject: fine\r\n\r\nx\r\n") == {}
    assert [rcpttos for _, rcpttos, _ in refusing.received] == [["r@example.com"]]


def test_starttls_required_but_not_offered_is_451(smtpd: Server, make_proxy: ProxyFactory) -> None:
    proxy = make_proxy(smtpd.address, upstream_starttls=True)
    code, text = send_and_get_data_reply(proxy.address, ["r@example.com"], MESSAGE)
    assert code == 451
    assert "does not offer STARTTLS" in text
    assert len(smtpd.messages) == 0


def test_subclass_may_change_the_message_and_return_super(smtpd: Server) -> None:
    class TaggingProxy(PureProxy):
        def process_message(
            self, peer: tuple[str, int], mailfrom: str, rcpttos: list[str], data: bytes | str, **kwargs: Any
        ) -> Any:
            assert isinstance(data, bytes)
            return super().process_message(peer, mailfrom, rcpttos, b"X-Tag: yes\n" + data, **kwargs)

    with TaggingProxy(("127.0.0.1", 0), smtpd.address) as proxy:
        assert send_and_get_data_reply(proxy.address, ["r@example.com"], MESSAGE)[0] == 250
    [message] = smtpd.messages
    assert message.data == b"X-Tag: yes\r\n" + RELAYED


def test_deliver_reports_what_became_of_each_recipient(refusing: RefusingUpstream, make_proxy: ProxyFactory) -> None:
    proxy = make_proxy(refusing.address)
    data = b"Subject: direct\r\n\r\nbody\r\n"
    rcpttos = ["ok@example.com", "refused@example.com", "no spaces@example.com"]
    result = asyncio.run(proxy.deliver("a@example.com", rcpttos, data))
    assert result.delivered == ["ok@example.com"]
    assert result.refused["refused@example.com"] == (550, "5.1.1 No such user here")
    code, text = result.refused["no spaces@example.com"]
    assert (code, text[:6]) == (553, "5.1.3 ")
    assert result.reply is not None
    assert result.reply.startswith("250 2.0.0 OK, delivered to 1 of 3 recipients; refused upstream: ")
    # Sent as given: no X-Peer added by deliver().
    assert refusing.received == [("a@example.com", ["ok@example.com"], b"Subject: direct\n\nbody")]


def test_deliver_with_an_unusable_sender(refusing: RefusingUpstream, make_proxy: ProxyFactory) -> None:
    proxy = make_proxy(refusing.address)
    result = asyncio.run(proxy.deliver("no spaces@example.com", ["r@example.com"], b"Subject: x\r\n\r\ny\r\n"))
    assert result.reply is not None
    assert result.reply.startswith("553 5.1.7 Cannot relay this sender: ")
    assert result.delivered == []
    assert list(result.refused) == ["r@example.com"]
    assert refusing.received == []


# -- construction ----------------------------------------------------------------


@pytest.mark.parametrize("host", ["0.0.0.0", "", "192.0.2.1", "::", "mail.example.com"])
def test_binding_beyond_loopback_needs_allow_open_relay(host: str) -> None:
    with pytest.raises(ValueError, match=r"not a loopback address: .*open relay.*allow_open_relay=True"):
        PureProxy((host, 0), ("127.0.0.1", 25))


def test_allow_open_relay_lets_construction_go_on_to_binding() -> None:
    # 192.0.2.1 (TEST-NET-1) is no address of this host: binding fails with
    # OSError, which shows the open-relay guard let the construction through.
    with pytest.raises(OSError, match=r"cannot listen on 192\.0\.2\.1"):
        PureProxy(("192.0.2.1", 0), ("127.0.0.1", 25), allow_open_relay=True)


@pytest.mark.parametrize("host", ["localhost", "LOCALHOST", "127.0.0.1", "127.1.2.3", "::1", "[::1]"])
def test_loopback_names(host: str) -> None:
    assert is_loopback(host)


def test_remoteaddr_is_required() -> None:
    with pytest.raises(ValueError, match="needs remoteaddr"):
        PureProxy(("127.0.0.1", 0), None)


def test_upstream_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError, match="upstream_timeout"):
        PureProxy(("127.0.0.1", 0), ("127.0.0.1", 25), upstream_timeout=0)


def test_proxy_on_localhost_name_relays(smtpd: Server) -> None:
    with PureProxy(("localhost", 0), smtpd.address) as proxy:
        host, port = proxy.address
        assert send_and_get_data_reply((host, port), ["r@example.com"], MESSAGE)[0] == 250
    assert len(smtpd.messages) == 1


# -- the message bytes -------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"A: 1\r\nB: 2\r\n\r\nbody\r\n", b"A: 1\r\nB: 2\r\nX-Peer: 10.0.0.1\r\n\r\nbody\r\n"),
        (b"A: 1\r\n\r\n", b"A: 1\r\nX-Peer: 10.0.0.1\r\n\r\n"),
        (b"A: 1\r\nB: 2\r\n", b"A: 1\r\nB: 2\r\nX-Peer: 10.0.0.1\r\n"),
        (b"\r\nbody only\r\n", b"X-Peer: 10.0.0.1\r\n\r\nbody only\r\n"),
        (b"", b"X-Peer: 10.0.0.1\r\n"),
    ],
)
def test_x_peer_goes_after_the_last_header(data: bytes, expected: bytes) -> None:
    assert add_x_peer(data, "10.0.0.1") == expected


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"A: 1\n\nbody", b"A: 1\r\n\r\nbody\r\n"),
        (b"A: 1\r\n\r\nbody\r\n", b"A: 1\r\n\r\nbody\r\n"),
        ("A: \u00e9\n\nx", "A: \u00e9\r\n\r\nx\r\n".encode()),
        (b"", b""),
    ],
)
def test_to_wire_accepts_both_forms(data: bytes | str, expected: bytes) -> None:
    assert to_wire(data) == expected


# -- AUTH, against our own server ----------------------------------------------------


def test_upstream_auth(make_proxy: ProxyFactory) -> None:
    with Server(auth={"relay": "s3cret"}, auth_required=True) as upstream:
        proxy = make_proxy((upstream.host, upstream.port), upstream_auth=("relay", "s3cret"))
        assert send_and_get_data_reply(proxy.address, ["r@example.com"], MESSAGE) == (250, "OK")
        [message] = upstream.messages
    assert message.auth_identity == "relay"
    assert b"X-Peer: 127.0.0.1\r\n" in message.data


def test_upstream_auth_failure_is_451(make_proxy: ProxyFactory) -> None:
    with Server(auth={"relay": "s3cret"}, auth_required=True) as upstream:
        address = (upstream.host, upstream.port)
        proxy = make_proxy(address, upstream_auth=("relay", "wrong"))
        code, text = send_and_get_data_reply(proxy.address, ["r@example.com"], MESSAGE)
        assert code == 451
        assert "authentication failed" in text
        unauthenticated = make_proxy(address)
        assert send_and_get_data_reply(unauthenticated.address, ["r@example.com"], MESSAGE)[0] == 530
        assert list(upstream.messages) == []


# -- Postfix ---------------------------------------------------------------------


def token() -> str:
    return uuid.uuid4().hex


def test_relays_to_postfix(postfix: Postfix, make_proxy: ProxyFactory) -> None:
    proxy = make_proxy(postfix.address)
    subject = token()
    data = MESSAGE.replace(b"relay test", subject.encode())
    code, _ = send_and_get_data_reply(
        proxy.address, ["one@example.com", "two@example.org"], data, mailfrom="sender@example.net"
    )
    assert code == 250
    stored = postfix.wait_for_message(subject)
    headers, _, body = stored.partition(b"\n\n")
    assert b"\nReturn-Path: <sender@example.net>\n" in b"\n" + headers
    assert f"\nSubject: {subject}\nX-Peer: 127.0.0.1\n".encode() in headers
    assert body == b"Hello.\n.A line that starts with a dot.\n\nBye.\n"
    # One copy per recipient.
    copies = postfix.wait_for_messages(subject, 2)
    assert sorted(line for m in copies for line in m.split(b"\n") if line.startswith(b"Delivered-To: ")) == [
        b"Delivered-To: one@example.com",
        b"Delivered-To: two@example.org",
    ]


def test_postfix_refusals_reach_the_client(postfix: Postfix, make_proxy: ProxyFactory) -> None:
    proxy = make_proxy(postfix.address)
    code, text = send_and_get_data_reply(proxy.address, [REFUSED_RECIPIENT], MESSAGE)
    assert (code, text) == (550, f"5.1.1 <{REFUSED_RECIPIENT}>: Recipient address rejected: no such user here")
    code, text = send_and_get_data_reply(proxy.address, [BUSY_RECIPIENT], MESSAGE)
    assert code == 450
    assert "mailbox busy" in text
    code, text = send_and_get_data_reply(proxy.address, ["r@example.com"], MESSAGE, mailfrom=BLOCKED_SENDER)
    assert code == 553
    assert "sender blocked" in text
    data = MESSAGE.replace(b"relay test", REJECTED_SUBJECT.encode())
    code, text = send_and_get_data_reply(proxy.address, ["r@example.com"], data)
    assert (code, text) == (550, "5.7.1 message refused by policy")


def test_partial_refusal_by_postfix(postfix: Postfix, make_proxy: ProxyFactory) -> None:
    proxy = make_proxy(postfix.address)
    subject = token()
    data = MESSAGE.replace(b"relay test", subject.encode())
    code, text = send_and_get_data_reply(proxy.address, ["kept@example.com", REFUSED_RECIPIENT], data)
    assert code == 250
    assert f"refused upstream: <{REFUSED_RECIPIENT}> (550 5.1.1" in text
    stored = postfix.wait_for_message(subject)
    assert b"Delivered-To: kept@example.com\n" in stored


def test_smtputf8_to_postfix(postfix: Postfix, make_proxy: ProxyFactory) -> None:
    proxy = make_proxy(postfix.address, enable_SMTPUTF8=True)
    subject = token()
    data = f"Subject: {subject} gr\u00fc\u00dfe\r\n\r\nhallo\r\n".encode()
    code, _ = send_and_get_data_reply(proxy.address, ["j\u00fcrgen@example.com"], data, mail_options=("SMTPUTF8",))
    assert code == 250
    stored = postfix.wait_for_message(subject)
    assert "Delivered-To: j\u00fcrgen@example.com\n".encode() in stored


def test_starttls_to_postfix(postfix: Postfix, make_proxy: ProxyFactory) -> None:
    proxy = make_proxy(postfix.address, upstream_starttls=True, upstream_tls_context=test_ca().client_context())
    subject = token()
    code, _ = send_and_get_data_reply(
        proxy.address, ["tls@example.com"], MESSAGE.replace(b"relay test", subject.encode())
    )
    assert code == 250
    stored = postfix.wait_for_message(subject)
    # Postfix notes the protocol in its Received header: ESMTPS is over TLS.
    assert b"with ESMTPS id" in stored


def test_starttls_to_postfix_with_an_untrusted_certificate_is_451(postfix: Postfix, make_proxy: ProxyFactory) -> None:
    # The default context trusts the system's CAs, not the test CA.
    proxy = make_proxy(postfix.address, upstream_starttls=True)
    code, text = send_and_get_data_reply(proxy.address, ["tls@example.com"], MESSAGE)
    assert code == 451
    assert "CERTIFICATE_VERIFY_FAILED" in text


def test_swaks_through_the_proxy_to_postfix(postfix: Postfix, make_proxy: ProxyFactory) -> None:
    swaks = require_program("swaks", "swaks")
    proxy = make_proxy(postfix.address)
    subject = token()
    host, port = proxy.address
    result = subprocess.run(
        [swaks, "--server", f"{host}:{port}", "--from", "swaks@example.com", "--to", "r@example.com",
         "--header", f"Subject: {subject}", "--body", "sent by swaks"],
        capture_output=True, text=True, timeout=TIMEOUT, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "<-  250 OK" in result.stdout
    stored = postfix.wait_for_message(subject)
    assert b"X-Peer: 127.0.0.1\n" in stored
    assert b"sent by swaks" in stored


def test_proxies_run_concurrently(smtpd: Server, make_proxy: ProxyFactory) -> None:
    proxy = make_proxy(smtpd.address)
    errors: list[BaseException] = []

    def client(n: int) -> None:
        try:
            assert send_and_get_data_reply(proxy.address, [f"r{n}@example.com"], MESSAGE)[0] == 250
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT)
    assert errors == []
    assert sorted(m.rcpt_tos[0] for m in smtpd.messages) == sorted(f"r{n}@example.com" for n in range(8))
