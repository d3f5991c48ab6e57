"""Internationalized mail through real sockets (issue 18): UTF-8 headers
(RFC 6532) and RFC 2047 words in every header view, addresses matched in
U-label or A-label form after NFC, bodies in the charsets clients use,
RFC 2231 and RFC 2047 attachment names, links in non-ASCII text, and the
envelope rules of RFC 6531 (SMTPUTF8 needed for a UTF-8 address, SIZE in
octets)."""

from __future__ import annotations

import base64
import quopri
import re
import smtplib
import subprocess
import sys
import unicodedata
from typing import Any

import pytest

from conftest import TIMEOUT, Wire
from pytest_smtpd import FixtureServer, Server

pytestmark = pytest.mark.smtpd(enable_SMTPUTF8=True)

SENDER = "josé@例え.jp"
#: The same address, its domain as an A-label, its é decomposed (NFD).
SENDER_A_LABEL = "josé@xn--r8jz45g.jp"
SENDER_NFD = unicodedata.normalize("NFD", SENDER)


def send(server: Server, data: bytes, rcpt_tos: list[str], mail_from: str = SENDER) -> None:
    """One message with smtplib, SMTPUTF8 on MAIL when the server offers it."""
    with smtplib.SMTP(server.host, server.port, timeout=TIMEOUT) as client:
        client.ehlo("client.test")
        options = ["SMTPUTF8"] if client.has_extn("smtputf8") else []
        client.sendmail(mail_from, rcpt_tos, data, mail_options=options)


def crlf(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode("utf-8")


UTF8_HEADERS = crlf(
    "From: José Müller <josé@例え.jp>\n"
    'To: "Grüße, Jürgen" <jürgen@bücher.de>, andré@EXAMPLE.com\n'
    "Cc: 李 <李@中国.cn>\n"
    "Reply-To: Ärger <ärger@bücher.de>\n"
    "Subject: Grüße aus 東京\n"
    "\n"
    "Hallo.\n"
)


def test_raw_utf8_headers_give_every_address_view_in_unicode(smtpd: FixtureServer) -> None:
    send(smtpd, UTF8_HEADERS, ["jürgen@bücher.de", "andré@example.com", "李@中国.cn", "geheim@bücher.de"])
    message = smtpd.messages.last
    assert "SMTPUTF8" in message.mail_options
    assert message.mail_from == SENDER
    assert message.from_ == SENDER
    assert message.to == ["jürgen@bücher.de", "andré@EXAMPLE.com"]
    assert message.cc == ["李@中国.cn"]
    assert message.reply_to == ["ärger@bücher.de"]
    # Only the one recipient in neither To nor Cc (the domain in another case counts as the same).
    assert message.bcc == ["geheim@bücher.de"]
    assert message.subject == "Grüße aus 東京"
    smtpd.assert_sent(header={"Reply-To": "Ärger <ärger@bücher.de>", "Cc": "李 <李@中国.cn>"})
    names = [address.display_name for address in message.email["To"].addresses]
    assert names == ["Grüße, Jürgen", ""]
    assert str(message.email["From"]) == "José Müller <josé@例え.jp>"
    # The parsed message writes the headers back as they came.
    assert message.email.as_bytes(policy=message.email.policy.clone(linesep="\r\n")) == message.data


def test_rfc2047_words_in_any_charset_folded_and_mixed_with_raw_utf8(smtpd: FixtureServer) -> None:
    sjis = base64.b64encode("日本語".encode("shift_jis")).decode()
    koi8 = base64.b64encode("Привет".encode("koi8-r")).decode()
    data = (
        b"From: =?iso-8859-1?q?Andr=E9_M=FCller?= <andre@example.com>\r\n"
        b"To: =?shift_jis?b?" + sjis.encode() + b"?= <taro@example.jp>,\r\n"
        b" =?koi8-r?b?" + koi8.encode() + b"?= <ivan@example.ru>,\r\n"
        b"\t" + "Jürgen =?utf-8?q?M=C3=BCller?= <jürgen@bücher.de>".encode() + b"\r\n"
        b"Subject: " + "Grüße".encode() + b" =?utf-8?b?" + base64.b64encode("東京".encode()) + b"?=\r\n"
        b" =?windows-1252?q?=80uro?= und =?gb18030?b?" + base64.b64encode("中文".encode("gb18030")) + b"?=\r\n"
        b"\r\n"
        b"body\r\n"
    )
    send(smtpd, data, ["taro@example.jp"])
    message = smtpd.messages.last
    assert message.from_ == "andre@example.com"
    assert message.email["From"].addresses[0].display_name == "André Müller"
    assert message.to == ["taro@example.jp", "ivan@example.ru", "jürgen@bücher.de"]
    assert [a.display_name for a in message.email["To"].addresses] == ["日本語", "Привет", "Jürgen Müller"]
    # Between two encoded words, the folding white space is not part of the text (RFC 2047 6.2).
    assert message.subject == "Grüße 東京€uro und 中文"


def test_an_undecodable_header_gives_replacement_characters_and_never_raises(smtpd: FixtureServer) -> None:
    data = (
        b"From: Ren\xe9 <ren\xe9@example.com>\r\n"  # Latin-1 bytes, not UTF-8
        b"To: =?x-no-such-charset?q?abc?= <a@example.com>, =?utf-8?b?broken!?= <b@example.com>\r\n"
        b"Cc: \xff\xfe <c@example.com>\r\n"
        b"Subject: caf\xe9 \xf0\x9f\r\n"
        b"\r\n"
        b"body\r\n"
    )
    send(smtpd, data, ["a@example.com"], mail_from="app@example.com")
    message = smtpd.messages.last
    assert message.subject == "caf\ufffd \ufffd"
    assert message.from_ == "ren\ufffd@example.com"
    assert message.to == ["a@example.com", "b@example.com"]
    assert message.cc == ["c@example.com"]
    assert message.data.startswith(b"From: Ren\xe9 <ren\xe9@")  # the bytes are untouched
    for view in ("from_", "to", "cc", "bcc", "reply_to", "subject", "text", "html", "attachments", "links"):
        value = repr(getattr(message, view))
        assert not re.search(r"\\udc[89a-f]", value), (view, value)


#: Pieces of header values real mail has been seen to break parsers with.
NASTY = [
    b"=?utf-8?q?", b"?=", b"=?x-unknown?b?AAAA?=", b"=?utf-8*en?q?a?=", b"\xff\xfe", b"\xc3", b"\xe4\xbe",
    b'"', b"\\", b"<", b">", b"@", b",", b";", b":", b"(", b")", b"[", b"]", b"\r\n ", b"\t",
    "josé".encode(), "例え".encode(), b"xn--", b"=?utf-8?b?w6k=?=", b"undisclosed-recipients:;", b" ",
]  # fmt: skip


def test_no_view_raises_on_broken_headers_and_bodies() -> None:
    """Pure: four hundred messages of random fragments (a fixed seed), every
    view read and criteria checked, none raising or handing out surrogate
    escapes (the stdlib's address parser raises on some of them)."""
    import random

    from pytest_smtpd import Message
    from pytest_smtpd.matching import check

    rng = random.Random(18)
    for _ in range(400):
        headers = b"".join(
            name + b": " + b"".join(rng.choice(NASTY) for _ in range(rng.randint(0, 8))) + b"\r\n"
            for name in rng.sample([b"From", b"To", b"Cc", b"Reply-To", b"Subject", b"Content-Type"], 4)
        )
        body = b"".join(rng.choice(NASTY) for _ in range(rng.randint(0, 6)))
        message = Message(peer=("127.0.0.1", 1), mail_from="", rcpt_tos=["a@例え.jp"], data=headers + b"\r\n" + body)
        views: list[object] = [message.from_, message.to, message.cc, message.bcc, message.reply_to, message.subject]
        views += [message.text, message.html, message.attachments, message.links]
        views += [message.header_values(name) for name in ("From", "To", "Cc", "Reply-To", "Subject")]
        assert check(message, {"header": {"To": "x", "Cc": "y"}, "to": "a@例え.jp", "subject": "z"})
        assert not re.search(r"\\udc[89a-f]", repr(views)), views


# -- matching -------------------------------------------------------------------


@pytest.mark.parametrize("spelling", [SENDER, SENDER_A_LABEL, SENDER_NFD, "josé@例え.JP", "josé@XN--R8JZ45G.jp"])
def test_every_address_criterion_matches_either_label_form_and_either_normal_form(
    smtpd: FixtureServer, spelling: str
) -> None:
    data = crlf(f"From: {SENDER}\nTo: {SENDER_A_LABEL}\nCc: {SENDER_NFD}\nSubject: forms\n\nhi\n")
    send(smtpd, data, [SENDER, "blind@例え.jp"])
    # The recipient's other spellings are in To and Cc: only blind@ is a blind copy.
    assert smtpd.messages.last.bcc == ["blind@例え.jp"]
    for criterion in ("from_", "mail_from", "to", "cc", "rcpt_to"):
        criteria: dict[str, Any] = {criterion: spelling}
        smtpd.assert_sent(**criteria)
        assert len(smtpd.messages.filter(**criteria)) == 1
    smtpd.assert_sent(bcc="blind@xn--r8jz45g.jp")


def test_local_parts_compare_exactly_and_idna_2008_keeps_sharp_s(smtpd: FixtureServer) -> None:
    send(smtpd, crlf("To: jürgen@straße.de\nSubject: s\n\nhi\n"), ["jürgen@straße.de"], mail_from="a@example.com")
    smtpd.assert_sent(to="jürgen@xn--strae-oqa.de")  # IDNA 2008's A-label for straße.de
    smtpd.assert_sent(to="jürgen@STRAßE.de")
    # IDNA 2003 (the stdlib codec) would call strasse.de the same domain: it is not.
    smtpd.assert_not_sent(to="jürgen@strasse.de")
    smtpd.assert_not_sent(to="JÜRGEN@straße.de")
    smtpd.assert_not_sent(rcpt_to="jurgen@straße.de")


def test_the_near_miss_shows_addresses_readably(smtpd: FixtureServer) -> None:
    send(smtpd, UTF8_HEADERS, ["jürgen@bücher.de"])
    with pytest.raises(AssertionError) as failure:
        smtpd.assert_sent(to="jörg@bücher.de", subject="Grüße aus Kyōto")
    text = str(failure.value)
    assert "FAIL to: 'jörg@bücher.de' not in ['jürgen@bücher.de', 'andré@EXAMPLE.com']" in text
    assert "FAIL subject: expected 'Grüße aus Kyōto', got 'Grüße aus 東京'" in text
    assert "#1 mail_from 'josé@例え.jp', rcpt_to ['jürgen@bücher.de']," in text
    assert "To: ['jürgen@bücher.de', 'andré@EXAMPLE.com']" in text
    assert "\\udc" not in text and "\\x" not in text


def test_an_invalid_idn_label_falls_back_to_comparing_it_as_written(smtpd: FixtureServer) -> None:
    send(smtpd, crlf("To: a@xn--zz.例え.jp, b@_dmarc.例え.jp\n\nhi\n"), ["a@xn--zz.例え.jp"])
    smtpd.assert_sent(to="a@XN--ZZ.xn--r8jz45g.jp")
    smtpd.assert_sent(to="b@_DMARC.xn--r8jz45g.jp")
    smtpd.assert_not_sent(to="a@xn--zy.例え.jp")


# -- bodies and attachments -----------------------------------------------------

TEXT = {
    "utf-8": "Grüße, 東京! €",
    "iso-8859-1": "Grüße, déjà vu",
    "windows-1252": "Grüße “quoted” €5 – dash",  # noqa: RUF001 (the characters Latin-1 lacks)
    "shift_jis": "日本語のテキスト、カタカナ",
    "iso-2022-jp": "日本語のメール",
    "gb18030": "中文邮件 €",
}


def encoded_body(text: str, charset: str, cte: str) -> bytes:
    """The part's body, ending in the CRLF that belongs to the next boundary."""
    raw = text.replace("\n", "\r\n").encode(charset)
    if cte == "base64":
        return base64.encodebytes(raw).replace(b"\n", b"\r\n")
    if cte == "quoted-printable":
        return quopri.encodestring(raw.replace(b"\r\n", b"\n")).replace(b"\n", b"\r\n") + b"\r\n"
    return raw + b"\r\n"


#: Each charset with each transfer encoding that can carry it (7bit only
#: ASCII octets: of these charsets, iso-2022-jp's).
ENCODINGS = [
    (charset, cte)
    for charset in TEXT
    for cte in ("8bit", "quoted-printable", "base64", "7bit")
    if cte != "7bit" or TEXT[charset].encode(charset).isascii()
]


@pytest.mark.parametrize(("charset", "cte"), ENCODINGS)
def test_text_and_html_bodies_decode_any_declared_charset_and_transfer_encoding(
    smtpd: FixtureServer, charset: str, cte: str
) -> None:
    text = TEXT[charset]
    body = encoded_body(text, charset, cte)
    boundary = "b0undary"
    head = f"Content-Type: %s; charset={charset}\r\nContent-Transfer-Encoding: {cte}\r\n\r\n"
    data = (
        f"From: a@example.com\r\nSubject: {charset}\r\nMIME-Version: 1.0\r\n"
        f"Content-Type: multipart/alternative; boundary={boundary}\r\n\r\n--{boundary}\r\n".encode()
        + (head % "text/plain").encode()
        + body
        + f"--{boundary}\r\n".encode()
        + (head % "text/html").encode()
        + encoded_body(f"<p>{text}</p>", charset, cte)
        + f"--{boundary}--\r\n".encode()
    )
    send(smtpd, data, ["b@example.com"], mail_from="a@example.com")
    message = smtpd.messages.last
    assert message.text == text
    assert message.html == f"<p>{text}</p>"
    smtpd.assert_sent(text=text.split()[0], html=text.split()[-1])


@pytest.mark.parametrize(
    ("content_type", "body", "expected"),
    [
        ("text/plain; charset=x-unknown-charset", "Grüße".encode(), "Grüße"),
        ("text/plain; charset=x-unknown-charset", b"Gr\xfc\xdfe", "Gr\ufffd\ufffde"),
        ("text/plain", "Grüße, no charset".encode(), "Grüße, no charset"),
        ("text/plain; charset=us-ascii", "mislabelled Grüße".encode(), "mislabelled Grüße"),
        ("text/plain; charset=utf-8", b"bad \xff\xfe utf-8", "bad \ufffd\ufffd utf-8"),
    ],
    ids=["unknown-utf8", "unknown-latin1", "missing", "mislabelled-ascii", "invalid-utf8"],
)
def test_a_missing_or_unknown_charset_decodes_with_replacement(
    smtpd: FixtureServer, content_type: str, body: bytes, expected: str
) -> None:
    data = f"Subject: c\r\nMIME-Version: 1.0\r\nContent-Type: {content_type}\r\n\r\n".encode() + body + b"\r\n"
    send(smtpd, data, ["b@example.com"], mail_from="a@example.com")
    assert smtpd.messages.last.text == expected + "\n"


def attachment(disposition: str, content_type: str = "application/pdf") -> bytes:
    return (
        f"--b\r\nContent-Type: {content_type}\r\nContent-Disposition: attachment;{disposition}\r\n"
        "Content-Transfer-Encoding: base64\r\n\r\nJVBERi0=\r\n"
    ).encode()


def test_attachment_filenames_from_rfc2231_and_rfc2047_forms(smtpd: FixtureServer) -> None:
    data = (
        b"Subject: files\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
        b"--b\r\nContent-Type: text/plain\r\n\r\nsee the files\r\n"
        + attachment(" filename*=utf-8''r%C3%A9sum%C3%A9.pdf")
        + attachment(" filename*=iso-8859-1'fr'r%E9sum%E9%202.pdf")
        # RFC 2231 continuations, encoded and not, over three lines.
        + attachment(
            "\r\n filename*0*=utf-8''%E6%9D%B1%E4%BA%AC;\r\n filename*1=-report;\r\n filename*2*=%E2%82%AC.pdf"
        )
        + attachment(' filename="=?utf-8?b?' + base64.b64encode("über.pdf".encode()).decode() + '?="')
        + attachment("", content_type='application/pdf; name="=?iso-8859-1?q?=C4rger.pdf?="')
        + '--b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename="grüße.pdf"\r\n'
        "Content-Transfer-Encoding: base64\r\n\r\nJVBERi0=\r\n".encode()
        + b"--b--\r\n"
    )
    send(smtpd, data, ["b@example.com"], mail_from="a@example.com")
    message = smtpd.messages.last
    names = ["résumé.pdf", "résumé 2.pdf", "東京-report€.pdf", "über.pdf", "Ärger.pdf", "grüße.pdf"]
    assert [a.filename for a in message.attachments] == names
    assert {a.content for a in message.attachments} == {b"%PDF-"}
    for name in names:
        smtpd.assert_sent(attachment=name)


def test_links_in_non_ascii_text_and_idn_urls(smtpd: FixtureServer) -> None:
    text = (
        "詳しくは https://例え.jp/パス?q=東京。ご確認ください、"
        "「https://xn--r8jz45g.jp/a」または（https://bücher.de/straße）を。\n"  # noqa: RUF001 (full-width, as written)
        "Voir «https://exemple.fr/é» ou “https://example.com/quoted”.\n"
    )
    html = '<p>Lien: <a href="https://bücher.de/über?x=1&amp;y=2">ici</a>, 或 https://中国.cn/页面。</p>'
    data = (
        "Subject: links\r\nMIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=b\r\n\r\n"
        "--b\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
        f"{text}\r\n--b\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
        f"{html}\r\n--b--\r\n"
    ).encode()
    send(smtpd, data, ["b@example.com"], mail_from="a@example.com")
    assert smtpd.messages.last.links == [
        "https://例え.jp/パス?q=東京",
        "https://xn--r8jz45g.jp/a",
        "https://bücher.de/straße",
        "https://exemple.fr/é",
        "https://example.com/quoted",
        "https://bücher.de/über?x=1&y=2",
        "https://中国.cn/页面",
    ]


# -- envelope and limits --------------------------------------------------------


@pytest.mark.smtpd(enable_SMTPUTF8=False, enable_ENHANCEDSTATUSCODES=True)
def test_a_utf8_address_without_smtputf8_is_refused_553_5_6_7(smtpd: FixtureServer) -> None:
    with Wire(smtpd.address) as wire:
        assert "SMTPUTF8" not in wire.exchange("EHLO client.test")[1]
        assert wire.exchange(f"MAIL FROM:<{SENDER}>") == (553, "5.6.7 Error: non-ASCII address requires SMTPUTF8")
        assert wire.command("MAIL FROM:<a@example.com>") == 250
        assert wire.exchange("RCPT TO:<jürgen@bücher.de>") == (553, "5.6.7 Error: non-ASCII address requires SMTPUTF8")
        # SMTPUTF8 is not offered: the parameter is unknown here.
        assert wire.command("RSET") == 250
        assert wire.exchange(f"MAIL FROM:<{SENDER}> SMTPUTF8")[0] == 555
    assert smtpd.messages == []


@pytest.mark.smtpd(enable_ENHANCEDSTATUSCODES=True)
def test_with_smtputf8_offered_it_is_still_needed_on_mail(smtpd: FixtureServer) -> None:
    with Wire(smtpd.address) as wire:
        assert "SMTPUTF8" in wire.exchange("EHLO client.test")[1]
        assert wire.exchange(f"MAIL FROM:<{SENDER}>") == (553, "5.6.7 Error: non-ASCII address requires SMTPUTF8")
        assert wire.command("MAIL FROM:<a@example.com>") == 250
        assert wire.exchange("RCPT TO:<jürgen@bücher.de>")[0] == 553
        assert wire.command("RSET") == 250
        assert wire.command(f"MAIL FROM:<{SENDER}> SMTPUTF8") == 250
        assert wire.command("RCPT TO:<jürgen@bücher.de>") == 250
        assert wire.command("DATA") == 354
        assert wire.command("Subject: ok\r\n\r\nhi\r\n.") == 250
    [message] = smtpd.messages
    assert message.mail_options == ["SMTPUTF8"]
    assert message.rcpt_tos == ["jürgen@bücher.de"]


LIMIT = 60
#: 40 characters, 78 octets in UTF-8.
STRADDLING = ("ü" * 38 + "\r\n").encode()


def test_the_straddling_message_has_fewer_characters_than_octets() -> None:
    assert len(STRADDLING.decode()) < LIMIT < len(STRADDLING)


@pytest.mark.smtpd(data_size_limit=LIMIT)
def test_size_counts_octets_not_characters_in_data(smtpd: FixtureServer) -> None:
    with smtplib.SMTP(smtpd.host, smtpd.port, timeout=TIMEOUT) as client:
        client.ehlo("client.test")
        assert client.mail("a@example.com", ["SMTPUTF8", "BODY=8BITMIME"])[0] == 250
        assert client.rcpt("b@example.com")[0] == 250
        code, text = client.data(STRADDLING)
    assert code == 552, text
    assert smtpd.messages == []


@pytest.mark.smtpd(data_size_limit=LIMIT)
def test_size_counts_octets_in_the_size_parameter_and_in_data_sent_raw(smtpd: FixtureServer) -> None:
    with Wire(smtpd.address) as wire:
        wire.exchange("EHLO client.test")
        assert wire.command(f"MAIL FROM:<a@example.com> SMTPUTF8 SIZE={len(STRADDLING)}") == 552
        assert wire.command(f"MAIL FROM:<a@example.com> SMTPUTF8 SIZE={len(STRADDLING.decode())}") == 250
        assert wire.command("RCPT TO:<b@example.com>") == 250
        assert wire.command("DATA") == 354
        assert wire.command(STRADDLING.decode() + ".") == 552
        # Exactly the limit in octets goes through.
        fits = ("ü" * 29 + "\r\n").encode()
        assert len(fits) == LIMIT
        assert wire.command("MAIL FROM:<a@example.com> SMTPUTF8") == 250
        assert wire.command("RCPT TO:<b@example.com>") == 250
        assert wire.command("DATA") == 354
        assert wire.command(fits.decode() + ".") == 250
    assert [message.data for message in smtpd.messages] == [("ü" * 29 + "\r\n").encode()]


@pytest.mark.smtpd(data_size_limit=LIMIT, enable_CHUNKING=True)
def test_size_counts_octets_in_bdat(smtpd: FixtureServer) -> None:
    with Wire(smtpd.address) as wire:
        wire.exchange("EHLO client.test")
        assert wire.command("MAIL FROM:<a@example.com> SMTPUTF8") == 250
        assert wire.command("RCPT TO:<b@example.com>") == 250
        wire.send(f"BDAT {len(STRADDLING)} LAST\r\n".encode() + STRADDLING)
        assert wire.reply()[0] == 552
    assert smtpd.messages == []


def test_idna_is_imported_only_when_a_domain_needs_it() -> None:
    check = (
        "import sys\n"
        "from pytest_smtpd.addresses import same_address\n"
        "import pytest_smtpd.plugin\n"
        "assert same_address('a@Example.com', 'a@example.COM')\n"
        "assert 'idna' not in sys.modules\n"
        "assert same_address('a@例え.jp', 'a@xn--r8jz45g.jp') and 'idna' in sys.modules\n"
    )
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
