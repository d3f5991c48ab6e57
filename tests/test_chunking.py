"""CHUNKING and BINARYMIME (RFC 3030) through a socket: BDAT chunks taken
as exact octet counts, pipelined, refused after being read, and the same
message whether it came by DATA or BDAT."""

from __future__ import annotations

import smtplib

import pytest

from conftest import TIMEOUT, Wire
from pytest_smtpd import Fault, Server

MESSAGE = b"Subject: chunks\r\n\r\nline one\r\n.leading dot\r\nbare\rCR and bare\nLF and NUL\x00\r\n"


def transaction(wire: Wire, recipients: int = 1) -> None:
    assert wire.command("EHLO client.test") == 250
    assert wire.command("MAIL FROM:<a@example.com>") == 250
    for n in range(recipients):
        assert wire.command(f"RCPT TO:<r{n}@example.com>") == 250


def bdat(wire: Wire, chunk: bytes, last: bool = False) -> tuple[int, str]:
    wire.send(f"BDAT {len(chunk)}{' LAST' if last else ''}\r\n".encode() + chunk)
    return wire.reply()


def test_chunking_is_offered_only_when_enabled() -> None:
    with Server() as plain, smtplib.SMTP(*plain.address, timeout=TIMEOUT) as client:
        client.ehlo()
        assert not client.has_extn("chunking")
        assert client.docmd("BDAT 1 LAST")[0] == 500
    with Server(enable_CHUNKING=True) as server, smtplib.SMTP(*server.address, timeout=TIMEOUT) as client:
        client.ehlo()
        assert client.has_extn("chunking") and client.has_extn("binarymime")
    with Server(enable_CHUNKING=True, decode_data=True) as server, smtplib.SMTP(*server.address) as client:
        client.ehlo()
        assert client.has_extn("chunking") and not client.has_extn("binarymime")


def test_chunks_are_taken_as_exact_octets_and_the_message_is_what_data_gives() -> None:
    with Server(enable_CHUNKING=True) as server:
        with Wire(server.address) as wire:
            transaction(wire)
            assert bdat(wire, MESSAGE[:20]) == (250, "20 octets received")
            assert bdat(wire, MESSAGE[20:]) == (250, f"{len(MESSAGE) - 20} octets received")
            assert bdat(wire, b"", last=True) == (250, "OK")
            assert wire.command("QUIT") == 221
        with smtplib.SMTP(*server.address, timeout=TIMEOUT) as client:
            client.sendmail("a@example.com", ["r0@example.com"], MESSAGE)
        by_bdat, by_data = server.messages
    assert by_bdat.data == MESSAGE  # CR, LF, NUL and a leading dot are data
    assert (by_bdat.transfer, by_data.transfer) == ("BDAT", "DATA")
    assert by_data.data == MESSAGE.replace(b"\rCR", b"\rCR")  # smtplib normalises bare CR/LF; the body is the same
    assert by_bdat.email["Subject"] == by_data.email["Subject"] == "chunks"
    transcript = [entry.line for entry in by_bdat.session.transcript]  # type: ignore[union-attr]
    assert "<20 bytes of message data>" in transcript and "BDAT 0 LAST" in transcript
    assert "line one" not in "\n".join(transcript)


def test_pipelined_chunks_are_answered_in_order() -> None:
    with Server(enable_CHUNKING=True) as server, Wire(server.address) as wire:
        assert wire.command("EHLO client.test") == 250
        wire.send(
            b"MAIL FROM:<a@example.com> BODY=BINARYMIME\r\nRCPT TO:<b@example.com>\r\n"
            b"BDAT 5\r\n\x00\x01\x02\r\nBDAT 3 LAST\r\nend"
        )
        assert [wire.reply()[0] for _ in range(4)] == [250, 250, 250, 250]
        [message] = server.messages
        assert message.data == b"\x00\x01\x02\r\nend"
        assert message.mail_options == ["BODY=BINARYMIME"]
        assert message.session is not None and message.session.pipelined


def test_a_chunk_out_of_sequence_is_read_before_its_503() -> None:
    with Server(enable_CHUNKING=True) as server, Wire(server.address) as wire:
        assert wire.command("EHLO client.test") == 250
        assert bdat(wire, b"NOOP\r\n", last=True)[0] == 503  # the chunk is not a command
        assert wire.command("MAIL FROM:<a@example.com>") == 250
        assert bdat(wire, b"QUIT\r\n")[0] == 503  # no recipient yet
        assert wire.command("NOOP") == 250
        assert server.messages == []


def test_an_unreadable_chunk_size_is_501_and_the_session_goes_on() -> None:
    with Server(enable_CHUNKING=True) as server, Wire(server.address) as wire:
        transaction(wire)
        for line in ("BDAT", "BDAT ten", "BDAT -1", "BDAT 10 FIRST", "BDAT 1x LAST"):
            assert wire.exchange(line) == (501, "Syntax: BDAT chunk-size [LAST]"), line
        assert bdat(wire, b"hi\r\n", last=True)[0] == 250
        assert [m.data for m in server.messages] == [b"hi\r\n"]


def test_the_size_limit_counts_across_chunks() -> None:
    with Server(enable_CHUNKING=True, data_size_limit=10) as server, Wire(server.address) as wire:
        transaction(wire)
        assert bdat(wire, b"123456")[0] == 250
        assert bdat(wire, b"7890X") == (552, "Error: Too much mail data")  # read, discarded, cleared
        assert bdat(wire, b"more", last=True)[0] == 503  # the transaction is gone
        transaction(wire)
        assert bdat(wire, b"1234567890", last=True)[0] == 250  # exactly the limit
        assert [m.data for m in server.messages] == [b"1234567890"]


def test_data_after_bdat_and_binarymime_with_data_are_503() -> None:
    with Server(enable_CHUNKING=True) as server, Wire(server.address) as wire:
        transaction(wire)
        assert bdat(wire, b"part")[0] == 250
        assert wire.exchange("DATA") == (503, "Error: DATA after BDAT in one transaction")
        assert wire.command("RSET") == 250
        assert wire.command("MAIL FROM:<a@example.com> BODY=BINARYMIME") == 250
        assert wire.command("RCPT TO:<b@example.com>") == 250
        assert wire.exchange("DATA") == (503, "Error: BODY=BINARYMIME needs BDAT, not DATA")
        assert wire.command("RSET") == 250
    with Server() as server, Wire(server.address) as wire:
        assert wire.command("EHLO client.test") == 250
        assert wire.command("MAIL FROM:<a@example.com> BODY=BINARYMIME") == 501  # not offered


def test_a_client_that_hangs_up_mid_chunk_leaves_no_message() -> None:
    with Server(enable_CHUNKING=True) as server:
        with Wire(server.address) as wire:
            transaction(wire)
            wire.send(b"BDAT 100 LAST\r\nonly part of it")
        # The grace lets the session read what was sent and see the hang-up
        # (TCP delivers them in that order) rather than be cut off first.
        server.stop(grace=TIMEOUT)
        assert server.messages == []
        [session] = server.sessions
        assert session.ended_by == "client"
        lines = [entry.line for entry in session.transcript]
        assert "<15 of 100 bytes of a chunk, unfinished>" in lines
        assert "only part" not in "\n".join(lines)


@pytest.mark.parametrize("lmtp", [False, True])
def test_lmtp_gets_one_reply_per_recipient_after_the_last_chunk(lmtp: bool) -> None:
    with Server(enable_CHUNKING=True, lmtp=lmtp) as server, Wire(server.address) as wire:
        assert wire.command(("LHLO" if lmtp else "EHLO") + " client.test") == 250
        assert wire.command("MAIL FROM:<a@example.com>") == 250
        assert wire.command("RCPT TO:<b@example.com>") == 250
        assert wire.command("RCPT TO:<c@example.com>") == 250
        wire.send(b"BDAT 4 LAST\r\nhi\r\n")
        codes = [wire.reply()[0] for _ in range(2 if lmtp else 1)]
        assert codes == [250] * len(codes)
        assert wire.command("NOOP") == 250


# -- faults on BDAT: the chunk is read first, then the fault's answer ------------------


def test_a_reply_fault_on_bdat_is_given_after_the_chunk_and_clears_the_transaction() -> None:
    busy = Fault.reply("BDAT", "452 4.3.1 Insufficient system storage", match="LAST", times=1)
    with Server(enable_CHUNKING=True, faults=[busy]) as server, Wire(server.address) as wire:
        transaction(wire)
        assert bdat(wire, b"first ")[0] == 250  # the rule matches only the LAST chunk
        # The refused chunk holds what would be a command: it is read as data, not run.
        assert bdat(wire, b"QUIT\r\n", last=True) == (452, "4.3.1 Insufficient system storage")
        assert bdat(wire, b"x", last=True)[0] == 503  # the transaction is gone
        transaction(wire)
        assert bdat(wire, b"again\r\n", last=True)[0] == 250  # times=1: the retry goes through
        assert [m.data for m in server.messages] == [b"again\r\n"]
        assert [m.transfer for m in server.messages] == ["BDAT"]


def test_a_disconnect_fault_on_bdat_hangs_up_after_that_many_octets_of_the_chunk() -> None:
    cut = Fault.disconnect("BDAT", after_bytes=4)
    with Server(enable_CHUNKING=True, faults=[cut]) as server, Wire(server.address) as wire:
        transaction(wire)
        wire.send(b"BDAT 10 LAST\r\n0123456789")
        with pytest.raises(ConnectionError, match="closed mid-reply"):
            wire.reply()
    assert server.messages == []


def test_a_bdat_fault_with_an_unreadable_size_keeps_the_501() -> None:
    refuse = Fault.reply("BDAT", "554 5.3.0 no")
    with Server(enable_CHUNKING=True, faults=[refuse]) as server, Wire(server.address) as wire:
        transaction(wire)
        assert wire.exchange("BDAT ten LAST") == (501, "Syntax: BDAT chunk-size [LAST]")
        assert wire.command("NOOP") == 250
