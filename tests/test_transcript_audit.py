"""Audit of the session transcripts through real sockets: bounded for a
hostile client, and no secret in them."""

from __future__ import annotations

import socket

import pytest

from pytest_smtpd import Server
from pytest_smtpd.connection import DEFAULT_MAX_TRANSCRIPT_LINES


def _read_until(sock: socket.socket, marker: bytes, limit: int = 50_000_000) -> bytes:
    got = bytearray()
    while marker not in got and len(got) < limit:
        chunk = sock.recv(65536)
        if not chunk:
            break
        got += chunk
    return bytes(got)


def test_a_flood_of_bad_commands_does_not_grow_the_transcript_without_bound() -> None:
    bad_commands = 5_000
    with Server(max_transcript_lines=1_000) as server:
        with socket.create_connection(server.address, timeout=10) as sock:
            _read_until(sock, b"\r\n")
            sock.sendall(b"BOGUS\r\n" * bad_commands + b"NOOP\r\n")
            replies = _read_until(sock, b"250 ")
            assert replies.count(b"\r\n") == bad_commands + 1  # every command still answered
            sock.sendall(b"QUIT\r\n")
            _read_until(sock, b"221 ")
        session = server.sessions[0]
        server.stop()
    transcript = session.transcript
    assert len(transcript) == 1_000
    assert len(session.commands) <= 1_000
    assert transcript[-1].line == "<transcript limit of 1000 lines reached: the rest is not recorded>"
    assert session.ended_by == "quit"  # still known though QUIT was not recorded


def test_the_transcript_is_bounded_by_default() -> None:
    assert 0 < DEFAULT_MAX_TRANSCRIPT_LINES <= 100_000
    with Server() as server:
        assert server.session_config.max_transcript_lines == DEFAULT_MAX_TRANSCRIPT_LINES


@pytest.mark.parametrize(
    "line",
    [
        b"AUTH PLAIN\tAHVzZXIAczNjcmV0",  # a tab, not a space, before the secret: 504
        b"AUTH AHVzZXIAczNjcmV0",  # the mechanism left out: 504
        b"AUTH\tPLAIN AHVzZXIAczNjcmV0",  # a tab after AUTH: 500
        b"AUTH\tAHVzZXIAczNjcmV0",  # the secret in the "verb": 500, which must not repeat it
    ],
)
def test_a_malformed_auth_line_keeps_its_secret_out_of_the_transcript(line: bytes) -> None:
    with Server(auth={"user": "s3cret"}) as server:
        with socket.create_connection(server.address, timeout=10) as sock:
            _read_until(sock, b"\r\n")
            sock.sendall(b"EHLO x\r\n" + line + b"\r\nQUIT\r\n")
            replies = _read_until(sock, b"221 ")
        assert b"\r\n504 " in replies or b"\r\n500 " in replies
        session = server.sessions[0]
        server.stop()
    recorded = [entry.line for entry in session.transcript] + session.commands
    # Not in what the client sent, nor in a reply that repeats it.
    assert not [text for text in recorded if "AHVZ" in text.upper()], recorded
    assert "AUTH ****" in recorded


def test_max_transcript_lines_zero_is_no_limit_and_negative_is_an_error() -> None:
    with pytest.raises(ValueError, match="max_transcript_lines must be 0"):
        Server(max_transcript_lines=-1)
    with Server(max_transcript_lines=0) as server:
        with socket.create_connection(server.address, timeout=10) as sock:
            _read_until(sock, b"\r\n")
            sock.sendall(b"NOOP\r\n" * 200 + b"QUIT\r\n")
            _read_until(sock, b"221 ")
        session = server.sessions[0]
        server.stop()
    assert len(session.transcript) == 1 + 2 * 201
