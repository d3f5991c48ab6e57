"""Exim as the sending MTA, relaying to our server: the real client for
CHUNKING. Offered CHUNKING, Exim's smtp transport (``hosts_try_chunking``,
on for every host by default) sends the message with BDAT instead of DATA.

What Exim 4.96 does, which the tests pin down: MAIL, RCPT and the first
BDAT are pipelined; a message of at most 8 KiB goes as one ``BDAT n LAST``;
a larger one as a first chunk holding the header section and a LAST chunk
holding the body; a header section longer than Exim's 8 KiB output buffer
is flushed as chunks of its own, cut wherever the buffer filled, mid-line
included. MAIL carries SIZE (an estimate, at most 1024 over) and no BODY=,
whatever the content: Exim ignores sendmail's -B, and never sends
BINARYMIME. It refuses a line over 998 octets itself, BDAT or not. Exim
logs ``K`` on a delivery made with CHUNKING and the reply that took the
message as ``C="..."``.

Each test runs its own Exim (no daemon: ``exim4 -C``, delivering in the
foreground) against the ``smtpd`` fixture; see tests/exim.py.
"""

from __future__ import annotations

import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from exim import SENDER_DOMAIN, UNDERSTATEMENT, Exim, exim_base

from pytest_smtpd import Fault, FixtureServer, Message
from pytest_smtpd.sessions import Session
from pytest_smtpd.tls import test_ca

SENDER = f"app@{SENDER_DOMAIN}"
#: The size of Exim's output buffer (DELIVER_OUT_BUFFER_SIZE): a message
#: larger than this goes in more than one chunk.
EXIM_BUFFER = 8192


@pytest.fixture
def exim_dir() -> Iterator[Path]:
    """A directory for this test's Exim; skipped (failed under CI) when
    Exim cannot run here. The tests ask for ``exim`` before ``smtpd``, so
    that no server starts for a test that is skipped."""
    base = exim_base()
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def exim(exim_dir: Path, smtpd: FixtureServer) -> Exim:
    """An Exim relaying to the ``smtpd`` server (see ``exim.ROUTES``)."""
    # The process's test CA, which a TLS server presents a certificate of.
    instance = Exim(exim_dir, smtpd.port, test_ca().ca_path)
    instance.configure()
    return instance


def compose(subject: str, body: bytes, headers: bytes = b"", to: str = "bob@plain.test") -> bytes:
    """A message with every header Exim would otherwise add but Received
    (From, Date, Message-ID), CRLF line endings as on the wire. Exim keeps
    them as CRLF (and would make a bare CR a line break of its own)."""
    fields = (
        f"From: {SENDER}\r\nTo: {to}\r\nDate: Thu, 01 Jan 2026 00:00:00 +0000\r\n"
        f"Message-ID: <{uuid.uuid4().hex}@{SENDER_DOMAIN}>\r\nSubject: {subject}\r\n"
    )
    return fields.encode() + headers + b"\r\n" + body


#: Lines a transfer could change: leading dots (DATA stuffs them, BDAT must
#: not), a line of 998 octets (RFC 5321's limit, and Exim's: it refuses a
#: longer one itself, BDAT or not), 8-bit bytes that are not UTF-8, a NUL.
AWKWARD = (
    b".a leading dot\r\n..two of them\r\n.\r\n"
    + b"L" * 998
    + b"\r\n"
    + "Grüße, déjà vu: 8-bit\r\n".encode()
    + b"raw \xff\xfe\x80 bytes and a \x00 NUL\r\n"
    + b"  trailing spaces and a\ttab  \r\n"
)
#: Over Exim's buffer: sent as a header chunk and a body chunk.
LARGE = AWKWARD + b"".join(b"line %05d: .dots. and more\r\n" % n for n in range(3000)) + AWKWARD
#: A header section longer than Exim's buffer, each line under 998 octets.
LONG_HEADERS = b"".join(b"X-Padding-%02d: " % n + b"p" * 900 + b"\r\n" for n in range(20))

SHAPES = {
    "small": (AWKWARD, b""),
    "large": (LARGE, b""),
    "long-headers": (LARGE, LONG_HEADERS),
}


def arrived(smtpd: FixtureServer, subject: str, exim: Exim) -> Message:
    try:
        [message] = smtpd.messages.wait_for(1, where=lambda m: m.subject == subject)
    except TimeoutError as exc:
        raise AssertionError(f"{exc}\nExim log:\n{exim.log()}") from None
    return message


def added_by_exim(message: Message, sent: bytes) -> bytes:
    """What Exim put before the message as submitted, which must end the
    data unchanged."""
    assert message.data.endswith(sent), "the message did not arrive bit-exact"
    return message.data[: -len(sent)]


def assert_only_received(added: bytes) -> None:
    """``added`` is one Received header (its first line and folded lines)."""
    lines = added.split(b"\r\n")
    assert lines[0].startswith(b"Received: from root by sender.test with local (Exim "), added
    assert lines[-1] == b"" and all(line[:1] in (b" ", b"\t") for line in lines[1:-1]), added


def chunks(session: Session) -> list[tuple[int, bool]]:
    """``(size, last)`` of each BDAT the client sent."""
    found = []
    for entry in session.transcript:
        match = re.fullmatch(r"BDAT (\d+)( LAST)?", entry.line)
        if entry.direction == "client" and match:
            found.append((int(match.group(1)), bool(match.group(2))))
    return found


@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize(
    "chunking",
    [
        pytest.param(False, marks=pytest.mark.smtpd(enable_CHUNKING=False), id="data"),
        pytest.param(True, marks=pytest.mark.smtpd(enable_CHUNKING=True), id="chunking"),
    ],
)
def test_exim_relays_bit_exact_with_bdat_when_chunking_is_offered(
    exim: Exim, smtpd: FixtureServer, chunking: bool, shape: str
) -> None:
    body, extra_headers = SHAPES[shape]
    subject = f"relay {shape} {uuid.uuid4()}"
    sent = compose(subject, body, extra_headers)
    message_id = exim.send(sent, SENDER, ["bob@plain.test", "carol@plain.test"])
    message = arrived(smtpd, subject, exim)

    assert message.mail_from == SENDER
    assert message.rcpt_tos == ["bob@plain.test", "carol@plain.test"]
    assert_only_received(added_by_exim(message, sent))
    # SIZE, Exim's estimate with room to spare (size_addition, 1024), and no
    # BODY=: not 8BITMIME for the 8-bit bytes, not BINARYMIME, which Exim
    # does not send.
    [size_option] = message.mail_options
    assert size_option.startswith("SIZE=")
    assert 0 < int(size_option.removeprefix("SIZE=")) - len(message.data) <= 1024
    session = message.session
    assert session is not None and session.helo == SENDER_DOMAIN
    assert session.pipelined  # MAIL, RCPT and the first BDAT (or DATA) together
    delivered = exim.wait_for_log(message_id, "=> bob@plain.test")
    if not chunking:
        assert message.transfer == "DATA"
        assert session.commands == ["EHLO", "MAIL", "RCPT", "RCPT", "DATA", "QUIT"]
        assert " K " not in delivered
        return

    assert message.transfer == "BDAT"
    sizes = chunks(session)
    assert session.commands == ["EHLO", "MAIL", "RCPT", "RCPT", *["BDAT"] * len(sizes), "QUIT"]
    assert sum(size for size, _ in sizes) == len(message.data)
    assert [last for _, last in sizes] == [False] * (len(sizes) - 1) + [True]
    header_section = message.data.index(b"\r\n\r\n") + 4
    if shape == "small":
        assert len(message.data) <= EXIM_BUFFER
        assert sizes == [(len(message.data), True)]
    elif shape == "large":
        # The header section first, so that a refusal comes before the body.
        assert sizes == [(header_section, False), (len(message.data) - header_section, True)]
    else:
        # The header section as Exim's buffer filled (equal chunks, cut
        # mid-line) and the rest of it; then the body.
        assert len(sizes) >= 4
        assert sum(size for size, _ in sizes[:-1]) == header_section
        assert sizes[-1] == (len(message.data) - header_section, True)
        full = [size for size, _ in sizes[:-2]]
        assert len(set(full)) == 1 and full[0] < EXIM_BUFFER
        ends = [sum(full[: n + 1]) for n in range(len(full))]
        assert any(message.data[end - 2 : end] != b"\r\n" for end in ends), "no chunk was cut mid-line"
    assert " K " in delivered  # Exim's own word that it used CHUNKING


#: The server's data_size_limit in the size tests: under the message sent.
LIMIT = 50_000


@pytest.mark.parametrize(
    ("domain", "refused"),
    [
        pytest.param(
            "understated.test",
            "BDAT",
            marks=pytest.mark.smtpd(data_size_limit=LIMIT, enable_CHUNKING=True),
            id="bdat",
        ),
        pytest.param("understated.test", "DATA", marks=pytest.mark.smtpd(data_size_limit=LIMIT), id="data"),
        pytest.param(
            "plain.test",
            "MAIL",
            marks=pytest.mark.smtpd(data_size_limit=LIMIT, enable_CHUNKING=True),
            id="declared-size",
        ),
    ],
)
def test_a_message_over_the_size_limit_is_refused_and_exim_bounces_it(
    exim: Exim, smtpd: FixtureServer, domain: str, refused: str
) -> None:
    """``data_size_limit`` smaller than the message. Exim declares SIZE
    whenever it is offered: declared truly, the MAIL is refused; understated
    (a client that got it wrong), the limit is met by the data: the chunk
    that passes it is read and answered 552, or the message after DATA.
    Either way Exim fails the message and bounces it to the sender."""
    subject = f"too big {uuid.uuid4()}"
    sent = compose(subject, LARGE, to=f"bob@{domain}")
    # Over the limit, and declared (less the understatement) under it.
    assert len(sent) > LIMIT and len(sent) + 1024 - UNDERSTATEMENT < LIMIT
    message_id = exim.send(sent, SENDER, [f"bob@{domain}"])

    failed = exim.wait_for_log(message_id, f"** bob@{domain}")
    assert smtpd.messages == []
    [session] = smtpd.sessions
    transcript = session.format_transcript()
    if refused == "MAIL":
        expected = "552 Error: message size exceeds fixed maximum message size"
        # Pipelined after the refused MAIL: the RCPT and the header chunk,
        # which is read and refused too, so that client and server stay in step.
        assert re.search(
            r"C: MAIL FROM:<app@sender\.test> SIZE=\d+\nS: 552 .*\nC: RCPT .*\nS: 503 .*\n"
            r"C: BDAT \d+\nC: <\d+ bytes of message data>\nS: 503 Error: need RCPT command\nC: QUIT",
            transcript,
        ), transcript
    else:
        expected = "552 Error: Too much mail data"
        if refused == "BDAT":
            # The header chunk is taken; the body chunk passes the limit.
            assert chunks(session)[0][0] < LIMIT
            assert re.search(r"C: BDAT \d+ LAST\nC: <\d+ bytes of message data>\nS: 552 ", transcript), transcript
        else:
            assert "C: DATA\n" in transcript and "BDAT" not in transcript
        assert session.last_error() == expected
    assert expected in failed
    assert exim.queued() == []  # a 5xx is final: no retry
    bounce = exim.wait_for_bounce(subject)
    assert expected in bounce


@pytest.mark.smtpd(enable_CHUNKING=True)
@pytest.mark.parametrize(
    ("fault", "body", "logged"),
    [
        pytest.param(
            Fault.reply("BDAT", "451 4.3.0 Try again", times=1),
            AWKWARD,
            r"after pipelined end of data: 451 4\.3\.0 Try again",
            id="only-chunk-451",
        ),
        pytest.param(
            Fault.reply("BDAT", "451 4.3.0 Try again", match="LAST", times=1),
            LARGE,
            r"after end of data: 451 4\.3\.0 Try again",
            id="last-chunk-451",
        ),
        pytest.param(
            Fault.disconnect("BDAT", after_bytes=1000, match="LAST", times=1),
            LARGE,
            # As Exim was still writing the chunk, or waiting for its reply.
            r"defer \(32\): Broken pipe|defer \(104\): Connection reset by peer|Remote host closed connection",
            id="cut-off-in-chunk",
        ),
    ],
)
def test_a_4xx_or_a_hang_up_on_bdat_makes_exim_defer_and_a_queue_run_delivers(
    exim: Exim, smtpd: FixtureServer, fault: Fault, body: bytes, logged: str
) -> None:
    """A refused or cut-off chunk leaves nothing behind (a first chunk taken
    with 250 included); Exim keeps the message and delivers it whole on the
    next try: two sessions, one message."""
    smtpd.faults.extend([fault])
    subject = f"defer {uuid.uuid4()}"
    sent = compose(subject, body)
    message_id = exim.send(sent, SENDER, ["bob@plain.test"])

    deferred = exim.wait_for_log(message_id, "== bob@plain.test")
    assert re.search(logged, deferred) and " defer (" in deferred, deferred
    assert smtpd.messages == []
    assert exim.queued() == [message_id]
    [first] = smtpd.sessions
    assert first.faults_fired and "BDAT" in first.commands
    if body is LARGE:  # the header chunk went first, and was taken
        assert "S: 250 " + f"{chunks(first)[0][0]} octets received" in first.format_transcript()

    exim.deliver(message_id)
    message = arrived(smtpd, subject, exim)
    assert len(smtpd.sessions) == 2 and len(smtpd.messages) == 1
    assert message.session is smtpd.sessions[1]
    assert message.transfer == "BDAT"
    assert_only_received(added_by_exim(message, sent))
    assert " K " in exim.wait_for_log(message_id, "=> bob@plain.test")
    assert exim.queued() == []


@pytest.mark.parametrize(
    "enhanced",
    [
        pytest.param(False, marks=pytest.mark.smtpd(enable_CHUNKING=True), id="bare"),
        pytest.param(
            True, marks=pytest.mark.smtpd(enable_CHUNKING=True, enable_ENHANCEDSTATUSCODES=True), id="enhanced"
        ),
    ],
)
def test_exim_logs_our_enhanced_status_codes(exim: Exim, smtpd: FixtureServer, enhanced: bool) -> None:
    """Exim logs the reply to the LAST chunk: with ENHANCEDSTATUSCODES it
    carries our code (``250 2.0.0`` for a message, replies.py)."""
    subject = f"enhanced {uuid.uuid4()}"
    message_id = exim.send(compose(subject, b"Hello.\r\n"), SENDER, ["bob@plain.test"])
    message = arrived(smtpd, subject, exim)
    session = message.session
    assert session is not None
    assert ("S: 250-ENHANCEDSTATUSCODES" in session.format_transcript()) is enhanced
    delivered = exim.wait_for_log(message_id, "=> bob@plain.test")
    assert (' K C="250 2.0.0 OK"' if enhanced else ' K C="250 OK"') in delivered, delivered


@pytest.mark.smtpd(tls="starttls", require_starttls=True, enable_CHUNKING=True)
def test_exim_verifies_our_certificate_and_sends_bdat_over_starttls(exim: Exim, smtpd: FixtureServer) -> None:
    """STARTTLS, our certificate verified against the test CA (Exim's
    ``CV=yes``), then the header chunk and the body chunk inside TLS."""
    subject = f"tls {uuid.uuid4()}"
    sent = compose(subject, LARGE, to="bob@tls.test")
    message_id = exim.send(sent, SENDER, ["bob@tls.test"])
    message = arrived(smtpd, subject, exim)
    assert message.tls is not None and message.tls.mode == "starttls"
    assert message.transfer == "BDAT"
    assert_only_received(added_by_exim(message, sent))
    session = message.session
    assert session is not None
    assert session.commands == ["EHLO", "STARTTLS", "EHLO", "MAIL", "RCPT", "BDAT", "BDAT", "QUIT"]
    delivered = exim.wait_for_log(message_id, "=> bob@tls.test")
    assert " X=TLS" in delivered and " CV=yes " in delivered and " K " in delivered, delivered


@pytest.mark.parametrize(
    "certificate",
    [
        pytest.param(name, marks=pytest.mark.smtpd(tls="starttls", enable_CHUNKING=True, tls_certificate=name), id=name)
        for name in ("untrusted", "wrong-host", "expired")
    ],
)
def test_exim_refuses_a_bad_certificate_and_defers(exim: Exim, smtpd: FixtureServer, certificate: str) -> None:
    """Each certificate a verifying client must refuse: Exim gives up after
    STARTTLS, sends nothing, and keeps the message for a later try."""
    subject = f"bad tls {uuid.uuid4()}"
    message_id = exim.send(compose(subject, b"Hello.\r\n", to="bob@tls.test"), SENDER, ["bob@tls.test"])
    deferred = exim.wait_for_log(message_id, "== bob@tls.test")
    assert "TLS session: (certificate verification failed)" in deferred, deferred
    assert smtpd.messages == []
    assert exim.queued() == [message_id]
    [session] = smtpd.sessions
    assert session.commands == ["EHLO", "STARTTLS"]
