"""MailmanProxy end to end: smtplib as the client, our ``Server(lmtp=True)``
standing in for Mailman 3's LMTP runner, and our ``Server()`` as the SMTP
upstream that every other recipient is relayed to."""

from __future__ import annotations

import smtplib
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest
from peers import TIMEOUT, free_port

from conftest import send_and_get_data_reply
from pytest_smtpd import Message, Reply, Server
from pytest_smtpd.mailman import DEFAULT_MAILMAN_LMTP, LIST_SUFFIXES, MailmanProxy, list_matcher
from pytest_smtpd.smtpd import MailmanProxy as ExportedMailmanProxy
from pytest_smtpd.transport import Verdict

LIST = "team@lists.example.com"
MESSAGE = (
    b"From: Author <author@example.com>\r\n"
    b"To: Team <team@lists.example.com>\r\n"
    b"Subject: mailman test\r\n"
    b"\r\n"
    b"Hello, list.\r\n"
    b".A line that starts with a dot.\r\n"
)
#: MESSAGE as Mailman and the upstream must receive it.
RELAYED = MESSAGE.replace(b"Subject: mailman test\r\n", b"Subject: mailman test\r\nX-Peer: 127.0.0.1\r\n")
SUB_ADDRESSES = [
    "team-request@lists.example.com",
    "team-join@lists.example.com",
    "team-leave@lists.example.com",
    "team-owner@lists.example.com",
    "team-bounces@lists.example.com",
    "team-bounces+alice=example.com@lists.example.com",
    "team-confirm+0123456789abcdef@lists.example.com",
    "team-subscribe@lists.example.com",
    "team-unsubscribe@lists.example.com",
]

ProxyFactory = Callable[..., MailmanProxy]


@pytest.fixture
def mailman() -> Iterator[Server]:
    """Mailman's LMTP runner, accepting everything."""
    with Server(lmtp=True, hostname="mailman.test") as server:
        yield server


@pytest.fixture
def make_proxy() -> Iterator[ProxyFactory]:
    """Start MailmanProxy instances on 127.0.0.1 and a free port; all are closed at the end."""
    proxies: list[MailmanProxy] = []

    def make(
        mailman: tuple[str, int],
        upstream: tuple[str, int],
        lists: Iterable[str] | Callable[[str], bool] = (LIST,),
        **options: Any,
    ) -> MailmanProxy:
        proxy = MailmanProxy(("127.0.0.1", 0), upstream, lists=lists, mailman_lmtp=mailman, **options)
        proxies.append(proxy)
        return proxy

    yield make
    for proxy in proxies:
        proxy.close()


def refusing(refusals: dict[str, Reply | str]) -> Callable[[Message], Verdict]:
    """An LMTP handler refusing the recipients in ``refusals``, accepting the others."""

    def handler(message: Message) -> Verdict:
        return [refusals.get(rcpt) for rcpt in message.rcpt_tos]

    return handler


# -- what goes where ---------------------------------------------------------------


def test_list_mail_goes_to_mailman_and_the_rest_upstream(
    mailman: Server, smtpd: Server, make_proxy: ProxyFactory
) -> None:
    proxy = make_proxy(mailman.address, smtpd.address)
    rcpttos = ["bob@example.com", LIST, "carol@example.org", "team-request@lists.example.com"]
    assert send_and_get_data_reply(proxy.address, rcpttos, MESSAGE) == (250, "OK")
    [to_mailman] = mailman.messages
    assert to_mailman.mail_from == "author@example.com"
    assert to_mailman.rcpt_tos == [LIST, "team-request@lists.example.com"]
    assert to_mailman.data == RELAYED
    [upstream] = smtpd.messages
    assert upstream.mail_from == "author@example.com"
    assert upstream.rcpt_tos == ["bob@example.com", "carol@example.org"]
    assert upstream.data == RELAYED


@pytest.mark.parametrize("rcpt", [LIST, "Team@Lists.Example.COM", *SUB_ADDRESSES])
def test_posting_address_and_every_sub_address_go_to_mailman(
    rcpt: str, mailman: Server, smtpd: Server, make_proxy: ProxyFactory
) -> None:
    proxy = make_proxy(mailman.address, smtpd.address)
    assert send_and_get_data_reply(proxy.address, [rcpt], MESSAGE) == (250, "OK")
    [message] = mailman.messages
    assert message.rcpt_tos == [rcpt]
    assert message.data == RELAYED
    assert len(smtpd.messages) == 0


@pytest.mark.parametrize(
    "rcpt",
    [
        "team@example.com",  # the list's name at another domain
        "team@lists.example.com.evil.example",
        "team-request@other.example.com",
        "teamx-request@lists.example.com",  # another list's sub-address
        "xteam@lists.example.com",
        "team-unknown@lists.example.com",
        "postmaster@lists.example.com",
    ],
)
def test_other_recipients_go_upstream(rcpt: str, mailman: Server, smtpd: Server, make_proxy: ProxyFactory) -> None:
    proxy = make_proxy(mailman.address, smtpd.address)
    assert send_and_get_data_reply(proxy.address, [rcpt], MESSAGE) == (250, "OK")
    [message] = smtpd.messages
    assert message.rcpt_tos == [rcpt]
    assert len(mailman.messages) == 0


def test_null_sender_reaches_mailman(mailman: Server, smtpd: Server, make_proxy: ProxyFactory) -> None:
    proxy = make_proxy(mailman.address, smtpd.address)
    assert send_and_get_data_reply(proxy.address, ["team-bounces@lists.example.com"], MESSAGE, mailfrom="")[0] == 250
    [message] = mailman.messages
    assert message.mail_from == ""


def test_mailman_is_greeted_with_lhlo(mailman: Server, smtpd: Server, make_proxy: ProxyFactory) -> None:
    proxy = make_proxy(mailman.address, smtpd.address)
    assert send_and_get_data_reply(proxy.address, [LIST], MESSAGE)[0] == 250
    [message] = mailman.messages
    assert message.helo  # LHLO with our host name: HELO or EHLO would have been refused


def test_each_message_of_a_session_is_routed(mailman: Server, smtpd: Server, make_proxy: ProxyFactory) -> None:
    proxy = make_proxy(mailman.address, smtpd.address)
    with smtplib.SMTP(*proxy.address, timeout=TIMEOUT) as client:
        for n in range(3):
            data = f"Subject: {n}\r\n\r\nbody {n}\r\n"
            assert client.sendmail("a@example.com", [LIST, f"r{n}@example.com"], data) == {}
    assert [m.subject for m in mailman.messages] == ["0", "1", "2"]
    assert [m.rcpt_tos for m in smtpd.messages] == [["r0@example.com"], ["r1@example.com"], ["r2@example.com"]]


def test_lists_may_be_a_callable(mailman: Server, smtpd: Server, make_proxy: ProxyFactory) -> None:
    asked: list[str] = []

    def is_list(rcpt: str) -> bool:
        asked.append(rcpt)
        return rcpt.endswith("@lists.example.com")

    proxy = make_proxy(mailman.address, smtpd.address, lists=is_list)
    code, _ = send_and_get_data_reply(
        proxy.address, ["any@lists.example.com", "bob@example.com", "other@lists.example.com"], MESSAGE
    )
    assert code == 250
    assert asked == ["any@lists.example.com", "bob@example.com", "other@lists.example.com"]
    [message] = mailman.messages
    assert message.rcpt_tos == ["any@lists.example.com", "other@lists.example.com"]
    [upstream] = smtpd.messages
    assert upstream.rcpt_tos == ["bob@example.com"]


def test_several_lists(mailman: Server, smtpd: Server, make_proxy: ProxyFactory) -> None:
    proxy = make_proxy(mailman.address, smtpd.address, lists=[LIST, "dev@lists.example.org"])
    rcpttos = ["dev-owner@lists.example.org", "team-leave@lists.example.com", "dev@x.example"]
    assert send_and_get_data_reply(proxy.address, rcpttos, MESSAGE) == (250, "OK")
    [message] = mailman.messages
    assert message.rcpt_tos == ["dev-owner@lists.example.org", "team-leave@lists.example.com"]
    [upstream] = smtpd.messages
    assert upstream.rcpt_tos == ["dev@x.example"]


def test_body_8bitmime_reaches_mailman_and_upstream(mailman: Server, smtpd: Server, make_proxy: ProxyFactory) -> None:
    proxy = make_proxy(mailman.address, smtpd.address)
    data = "Subject: caf\u00e9\r\n\r\nd\u00e9j\u00e0 vu\r\n".encode()
    # In lower case, as a client may send it.
    code, _ = send_and_get_data_reply(proxy.address, [LIST, "bob@example.com"], data, mail_options=("body=8bitmime",))
    assert code == 250
    [message] = mailman.messages
    assert message.mail_options == ["BODY=8BITMIME"]
    assert message.data == data.replace(b"\r\n\r\n", b"\r\nX-Peer: 127.0.0.1\r\n\r\n")
    [upstream] = smtpd.messages
    assert "BODY=8BITMIME" in upstream.mail_options


# -- what the client is told ----------------------------------------------------------------


def test_partial_refusal_by_mailman_is_250_naming_the_refused(smtpd: Server, make_proxy: ProxyFactory) -> None:
    handler = refusing({"ghost@lists.example.com": "550 5.1.1 No such list"})
    with Server(lmtp=True, handler=handler) as mailman:
        proxy = make_proxy(mailman.address, smtpd.address, lists=[LIST, "ghost@lists.example.com"])
        code, text = send_and_get_data_reply(
            proxy.address, [LIST, "ghost@lists.example.com", "bob@example.com"], MESSAGE
        )
        assert code == 250
        assert text == (
            "2.0.0 OK, delivered to 2 of 3 recipients; refused upstream: "
            "<ghost@lists.example.com> (550 5.1.1 No such list)"
        )
        # Mailman got the message, refused for one of its recipients after DATA.
        [message] = mailman.messages
        assert message.rcpt_tos == [LIST, "ghost@lists.example.com"]
    [upstream] = smtpd.messages
    assert upstream.rcpt_tos == ["bob@example.com"]


def test_refusal_of_the_only_recipient_is_its_reply(smtpd: Server, make_proxy: ProxyFactory) -> None:
    with Server(lmtp=True, handler=lambda message: "550 5.1.1 No such list") as mailman:
        proxy = make_proxy(mailman.address, smtpd.address)
        assert send_and_get_data_reply(proxy.address, [LIST], MESSAGE) == (550, "5.1.1 No such list")
        assert len(mailman.messages) == 0
    assert len(smtpd.messages) == 0


def test_everything_refused_is_the_refusal(make_proxy: ProxyFactory) -> None:
    with (
        Server(lmtp=True, handler=lambda message: "550 5.1.1 No such list") as mailman,
        Server(handler=lambda message: "554 5.7.1 Not relaying that") as upstream,
    ):
        proxy = make_proxy(mailman.address, upstream.address)
        code, text = send_and_get_data_reply(proxy.address, [LIST, "bob@example.com"], MESSAGE)
        assert code == 550
        assert text.startswith("Every recipient was refused upstream: ")
        assert f"<{LIST}> (550 5.1.1 No such list)" in text
        assert "<bob@example.com> (554 5.7.1 Not relaying that)" in text


def test_everything_refused_with_a_temporary_refusal_is_temporary(smtpd: Server, make_proxy: ProxyFactory) -> None:
    handler = refusing({LIST: "550 5.1.1 No such list", "team-owner@lists.example.com": "452 4.2.2 Owner's box full"})
    with Server(lmtp=True, handler=handler) as mailman:
        proxy = make_proxy(mailman.address, smtpd.address)
        code, text = send_and_get_data_reply(proxy.address, [LIST, "team-owner@lists.example.com"], MESSAGE)
    assert code == 452
    assert f"<{LIST}> (550 5.1.1 No such list)" in text
    assert "<team-owner@lists.example.com> (452 4.2.2 Owner's box full)" in text


def test_mailman_421_for_every_recipient_is_451_and_the_session_goes_on(
    smtpd: Server, make_proxy: ProxyFactory
) -> None:
    verdicts: list[Verdict] = ["421 4.3.2 Shutting down", None]

    def handler(message: Message) -> Verdict:
        return verdicts.pop(0)

    with Server(lmtp=True, handler=handler) as mailman:
        proxy = make_proxy(mailman.address, smtpd.address)
        with smtplib.SMTP(*proxy.address, timeout=TIMEOUT) as client:
            client.ehlo("client.test")
            with pytest.raises(smtplib.SMTPDataError) as refused:
                client.sendmail("a@example.com", [LIST, "team-request@lists.example.com"], MESSAGE)
            # Not 421: that would tell the client we are closing the connection.
            assert refused.value.smtp_code == 451
            assert b"(421 4.3.2 Shutting down)" in refused.value.smtp_error
            assert client.sendmail("a@example.com", [LIST], MESSAGE) == {}
        assert [m.rcpt_tos for m in mailman.messages] == [[LIST]]


def test_unreachable_mailman_is_451(smtpd: Server, make_proxy: ProxyFactory) -> None:
    port = free_port()
    proxy = make_proxy(("127.0.0.1", port), smtpd.address)
    code, text = send_and_get_data_reply(proxy.address, [LIST], MESSAGE)
    assert code == 451
    assert text.startswith(f"LMTP delivery to 127.0.0.1:{port} failed: ")
    assert len(smtpd.messages) == 0


def test_unreachable_mailman_is_named_when_the_upstream_part_went_through(
    smtpd: Server, make_proxy: ProxyFactory
) -> None:
    port = free_port()
    proxy = make_proxy(("127.0.0.1", port), smtpd.address)
    code, text = send_and_get_data_reply(proxy.address, [LIST, "bob@example.com"], MESSAGE)
    assert code == 250
    assert text.startswith(
        "2.0.0 OK, delivered to 1 of 2 recipients; refused upstream: "
        f"<{LIST}> (451 LMTP delivery to 127.0.0.1:{port} failed: "
    )
    [upstream] = smtpd.messages
    assert upstream.rcpt_tos == ["bob@example.com"]


def test_unreachable_upstream_is_named_when_mailman_took_its_part(mailman: Server, make_proxy: ProxyFactory) -> None:
    port = free_port()
    proxy = make_proxy(mailman.address, ("127.0.0.1", port))
    code, text = send_and_get_data_reply(proxy.address, [LIST, "bob@example.com"], MESSAGE)
    assert code == 250
    assert text.startswith("2.0.0 OK, delivered to 1 of 2 recipients; refused upstream: <bob@example.com> (451 ")
    [message] = mailman.messages
    assert message.rcpt_tos == [LIST]


def test_both_unreachable_is_451(make_proxy: ProxyFactory) -> None:
    proxy = make_proxy(("127.0.0.1", free_port()), ("127.0.0.1", free_port()))
    code, text = send_and_get_data_reply(proxy.address, [LIST, "bob@example.com"], MESSAGE)
    assert code == 451
    assert f"<{LIST}> (451 LMTP delivery to 127.0.0.1:" in text
    assert "<bob@example.com> (451 " in text


# -- construction ----------------------------------------------------------------------


@pytest.mark.parametrize("host", ["0.0.0.0", "", "192.0.2.1", "::"])
def test_binding_beyond_loopback_needs_allow_open_relay(host: str) -> None:
    with pytest.raises(ValueError, match=r"MailmanProxy would listen on .*not a loopback address.*allow_open_relay"):
        MailmanProxy((host, 0), ("127.0.0.1", 25), lists=[LIST])


def test_remoteaddr_is_required() -> None:
    with pytest.raises(ValueError, match="MailmanProxy needs remoteaddr"):
        MailmanProxy(("127.0.0.1", 0), None, lists=[LIST])


def test_defaults_and_export() -> None:
    assert DEFAULT_MAILMAN_LMTP == ("127.0.0.1", 8024)
    with MailmanProxy(("127.0.0.1", 0), ("127.0.0.1", 25), lists=[LIST]) as proxy:
        assert proxy.mailman_lmtp == ("127.0.0.1", 8024)
        assert proxy.is_list_address(LIST)
    assert ExportedMailmanProxy is MailmanProxy


# -- list_matcher ----------------------------------------------------------------------


def test_list_matcher_posting_address_and_sub_addresses() -> None:
    belongs = list_matcher([LIST])
    assert belongs(LIST)
    for suffix in LIST_SUFFIXES:
        assert belongs(f"team{suffix}@lists.example.com"), suffix
    assert belongs("team-bounces+alice=example.com@lists.example.com")
    assert belongs("team-confirm+abcdef@lists.example.com")


def test_list_matcher_is_case_insensitive() -> None:
    belongs = list_matcher(["Team@Lists.Example.com"])
    assert belongs("team@lists.example.com")
    assert belongs("TEAM@LISTS.EXAMPLE.COM")
    assert belongs("Team-Request@lists.EXAMPLE.com")
    assert belongs("team-BOUNCES+x@lists.example.com")


@pytest.mark.parametrize(
    "rcpt",
    [
        "team@example.com",
        "team@lists.example.org",
        "team-request@example.com",
        "teamx-request@lists.example.com",
        "teamx@lists.example.com",
        "xteam@lists.example.com",
        "team-requests@lists.example.com",
        "team-other@lists.example.com",
        "-request@lists.example.com",
        "team",
        "",
    ],
)
def test_list_matcher_refuses_everything_else(rcpt: str) -> None:
    assert not list_matcher([LIST])(rcpt)


def test_list_matcher_with_no_lists_matches_nothing() -> None:
    belongs = list_matcher([])
    assert not belongs(LIST)
    assert not belongs("team-request@lists.example.com")


def test_list_matcher_takes_any_iterable() -> None:
    belongs = list_matcher(address for address in [LIST, "dev@lists.example.org"])
    assert belongs("dev-join@lists.example.org")
    assert belongs("team-leave@lists.example.com")
    # Consumed once, at construction: asking again still works.
    assert belongs(LIST)
