"""Our server against the stdlib ``smtpd`` module of Python 3.11, both on
loopback, both given the same bytes by the same raw client.

Where the stdlib was RFC-correct, both must answer a command sequence with
the same reply codes, and hand ``process_message`` the same arguments.

Where the stdlib departed from RFC 5321 or had a bug, we deliberately differ,
and each difference is tested below against both servers (see
docs/migration.rst):

- A second ``HELO``/``EHLO``: ours ``250``, resetting the transaction
  (RFC 5321 4.1.4); the stdlib ``503 Duplicate HELO/EHLO``.
- ``NOOP`` with an argument: ours ``250`` (4.1.1.9); the stdlib ``501``.
- ``HELP``: ours ``214`` (4.1.1.8); the stdlib ``250``.
- A malformed address (``MAIL FROM:<a@>``): ours a 5xx reply and the session
  goes on; the stdlib's address parser raises and the connection is dropped.
- An empty message (``DATA`` then ``.``): ours accepts it; the stdlib misses
  the end of the data and takes the following lines as the message.
- After ``552`` for too much data: ours is back in command state; the stdlib
  stays in DATA and takes the next commands as the next message.
- The size limit is exact and counts the message after dot-unstuffing: ours
  accepts ``data_size_limit`` octets and refuses one more; the stdlib counted
  stuffed dots but not the final CRLF, so it refused a dotted message of
  exactly the limit and accepted one octet over.
- A non-ASCII address without ``SMTPUTF8``: ours ``553`` (RFC 6531 3.2); the
  stdlib ``250``.
"""

from __future__ import annotations

import smtplib
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from conftest import TIMEOUT, Wire
from pytest_smtpd import SMTPServer

LOCAL = ("127.0.0.1", 0)
#: (mailfrom, rcpttos, data, kwargs) as process_message received them.
Call = tuple[str, list[str], "bytes | str", dict[str, Any]]
Address = tuple[str, int]
CLOSED = "closed"


def message_item(message: bytes) -> str:
    """``message`` (ending with CRLF) as one ``Wire.command`` item: dots stuffed, ending with the lone dot."""
    stuffed = message.replace(b"\r\n.", b"\r\n..")
    if stuffed.startswith(b"."):
        stuffed = b"." + stuffed
    return stuffed.decode("ascii") + "."


def message_of(size: int, *, dotted_lines: int = 0) -> bytes:
    head = b"Subject: size\r\n\r\n" + b".dot\r\n" * dotted_lines
    return head + b"x" * (size - len(head) - 2) + b"\r\n"


MESSAGE = message_item(b"Subject: hi\r\n\r\n.leading dot\r\nbody\r\n")


class StdlibServer:
    """The stdlib ``smtpd.SMTPServer`` on its own asyncore map, polled by a thread."""

    def __init__(self, smtpd: Any, asyncore: Any, **options: Any) -> None:
        self._asyncore = asyncore
        self._map: dict[int, Any] = {}
        self.calls: list[Call] = []
        self._server = smtpd.SMTPServer(LOCAL, None, map=self._map, **options)
        self._server.process_message = self._record
        self.address: Address = self._server.socket.getsockname()[:2]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="stdlib-smtpd")
        self._thread.start()

    def _record(self, peer: Address, mailfrom: str, rcpttos: list[str], data: bytes | str, **kwargs: Any) -> None:
        self.calls.append((mailfrom, rcpttos, data, kwargs))

    def _serve(self) -> None:
        deadline = time.monotonic() + 60
        while not self._stop.is_set() and time.monotonic() < deadline:
            self._asyncore.loop(timeout=0.05, count=1, map=self._map)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(TIMEOUT)
        self._asyncore.close_all(map=self._map)


class OurServer(SMTPServer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.calls: list[Call] = []
        super().__init__(*args, **kwargs)

    def process_message(
        self, peer: Address, mailfrom: str, rcpttos: list[str], data: bytes | str, **kwargs: Any
    ) -> None:
        self.calls.append((mailfrom, rcpttos, data, kwargs))


Servers = Callable[..., tuple[StdlibServer, OurServer]]


@pytest.fixture(scope="module")
def stdlib_modules() -> tuple[Any, Any]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        smtpd = pytest.importorskip("smtpd")
        asyncore = pytest.importorskip("asyncore")
    return smtpd, asyncore


@pytest.fixture
def servers(stdlib_modules: tuple[Any, Any]) -> Iterator[Servers]:
    """Start the stdlib server and ours with the same options."""
    started: list[StdlibServer | OurServer] = []

    def start(**options: Any) -> tuple[StdlibServer, OurServer]:
        stdlib = StdlibServer(*stdlib_modules, **options)
        started.append(stdlib)
        ours = OurServer(LOCAL, None, **options)
        started.append(ours)
        return stdlib, ours

    yield start
    for server in reversed(started):
        server.close()


def codes(address: Address, script: list[str]) -> list[int | str]:
    """Send the script line by line, one reply each; ``"closed"`` where the server hung up."""
    found: list[int | str] = []
    with Wire(address) as wire:
        for line in script:
            try:
                found.append(wire.command(line))
            except ConnectionError:
                found.append(CLOSED)
                break
    return found


def converse(address: Address, stream: bytes) -> list[int]:
    """Send the whole stream at once (it ends with QUIT) and read every reply until the server closes."""
    found: list[int] = []
    with Wire(address) as wire:
        wire.send(stream)
        for _ in range(100):
            try:
                found.append(wire.reply()[0])
            except ConnectionError:
                return found
    raise AssertionError(f"no end of replies after {found}")


# -- same codes where the stdlib was right ---------------------------------------

SAME: dict[str, tuple[dict[str, Any], list[str], list[int]]] = {
    "HELO happy path": (
        {},
        [
            "HELO client.test",
            "MAIL FROM:<a@example.com>",
            "RCPT TO:<b@example.com>",
            "RCPT TO:<c@example.com>",
            "DATA",
            MESSAGE,
            "MAIL FROM:<a@example.com>",
            "RCPT TO:<b@example.com>",
            "DATA",
            MESSAGE,
            "QUIT",
        ],
        [250, 250, 250, 250, 354, 250, 250, 250, 354, 250, 221],
    ),
    "EHLO happy path with parameters": (
        {},
        [
            "EHLO client.test",
            "MAIL FROM:<a@example.com> SIZE=100 BODY=8BITMIME",
            "RCPT TO:<b@example.com>",
            "DATA",
            MESSAGE,
            "MAIL FROM:<a@example.com> BODY=7BIT",
            "RCPT TO:<b@example.com>",
            "DATA",
            MESSAGE,
            "QUIT",
        ],
        [250, 250, 250, 354, 250, 250, 250, 354, 250, 221],
    ),
    "lenient forms": (
        {},
        [
            "helo client.test",
            "mail from:<a@example.com>",
            "rcpt to: <b@example.com>",
            "Rcpt To:c@example.com",
            "data",
            MESSAGE,
            "MAIL FROM: a@example.com",
            "quit",
        ],
        [250, 250, 250, 250, 354, 250, 250, 221],
    ),
    "503 sequence errors": (
        {},
        [
            "MAIL FROM:<a@example.com>",
            "RCPT TO:<b@example.com>",
            "DATA",
            "HELO client.test",
            "RCPT TO:<b@example.com>",
            "DATA",
            "MAIL FROM:<a@example.com>",
            "DATA",
            "MAIL FROM:<a@example.com>",
            "RCPT TO:<b@example.com>",
            "MAIL FROM:<c@example.com>",
            "QUIT",
        ],
        [503, 503, 503, 250, 503, 503, 250, 503, 503, 250, 503, 221],
    ),
    "501 syntax errors": (
        {},
        [
            "HELO",
            "EHLO",
            "HELO client.test",
            "MAIL",
            "MAIL FROM:",
            "MAIL TO:<a@example.com>",
            "MAIL FROM:<a@example.com> SIZE=10",  # parameters need EHLO
            "MAIL FROM:<a@example.com>",
            "RCPT",
            "RCPT TO:",
            "RCPT FROM:<b@example.com>",
            "RCPT TO:<b@example.com> NOTIFY=NEVER",
            "RCPT TO:<b@example.com>",
            "DATA now",
            "RSET now",
            "VRFY",
            "HELP BOGUS",
            "QUIT",
        ],
        [501, 501, 250, 501, 501, 501, 501, 250, 501, 501, 501, 501, 250, 501, 501, 501, 501, 221],
    ),
    "ESMTP parameter errors": (
        {},
        [
            "EHLO client.test",
            "MAIL FROM:<a@example.com> SIZE=abc",
            "MAIL FROM:<a@example.com> BODY=BINARYMIME",
            "MAIL FROM:<a@example.com> FOO=bar",
            "MAIL FROM:<a@example.com> SMTPUTF8",  # not offered
            "MAIL FROM:<a@example.com>",
            "RCPT TO:<b@example.com> FOO=bar",
            "RCPT TO:<b@example.com> NOTIFY=NEVER",
            "RCPT TO:<b@example.com>",
            "QUIT",
        ],
        [250, 501, 501, 555, 555, 250, 555, 555, 250, 221],
    ),
    "SIZE limit": (
        {"data_size_limit": 100},
        [
            "EHLO client.test",
            "MAIL FROM:<a@example.com> SIZE=101",
            "MAIL FROM:<a@example.com> SIZE=100",
            "RCPT TO:<b@example.com>",
            "DATA",
            message_item(message_of(100)),
            "MAIL FROM:<a@example.com>",
            "RCPT TO:<b@example.com>",
            "DATA",
            message_item(message_of(1000)),
        ],
        [250, 552, 250, 250, 354, 250, 250, 250, 354, 552],
    ),
    "RSET": (
        {},
        [
            "RSET",
            "HELO client.test",
            "MAIL FROM:<a@example.com>",
            "RCPT TO:<b@example.com>",
            "RSET",
            "RCPT TO:<b@example.com>",
            "DATA",
            "MAIL FROM:<a@example.com>",
            "RSET",
            "QUIT",
        ],
        [250, 250, 250, 250, 250, 503, 503, 250, 250, 221],
    ),
    "VRFY, EXPN, NOOP, unknown": (
        {},
        [
            "NOOP",
            "VRFY <a@example.com>",
            "VRFY a@example.com",
            "EXPN staff",
            "EXPN",
            "XYZZY",
            "",
            "HELO client.test",
            "NOOP",
            "QUIT",
        ],
        [250, 252, 252, 502, 502, 500, 500, 250, 250, 221],
    ),
}


@pytest.mark.parametrize(("options", "script", "expected"), list(SAME.values()), ids=list(SAME))
def test_same_reply_codes(servers: Servers, options: dict[str, Any], script: list[str], expected: list[int]) -> None:
    stdlib, ours = servers(**options)
    assert codes(stdlib.address, script) == expected
    assert codes(ours.address, script) == expected


@pytest.mark.parametrize("decode_data", [False, True])
def test_same_process_message_arguments(servers: Servers, decode_data: bool) -> None:
    data = "Subject: sämple\r\n\r\n.leading dot\r\nbare\nlf, bare\rcr\r\n\r\nlast line\r\n".encode()
    stdlib, ours = servers(decode_data=decode_data)
    for server in (stdlib, ours):
        with smtplib.SMTP(*server.address, timeout=TIMEOUT) as client:
            options = [] if decode_data else ["BODY=8BITMIME"]
            client.sendmail("a@example.com", ["b@example.com", "c@example.com"], data, mail_options=options)
            client.sendmail("a@example.com", ["d@example.com"], b"one line\r\n")
    assert len(ours.calls) == 2
    assert ours.calls == stdlib.calls
    (_, _, first, kwargs), _ = ours.calls
    if decode_data:
        assert first == "Subject: sämple\n\n.leading dot\nbare\nlf, bare\rcr\n\nlast line"
        assert kwargs == {}
    else:
        assert first == "Subject: sämple\n\n.leading dot\nbare\nlf, bare\rcr\n\nlast line".encode()
        assert kwargs == {"mail_options": [f"SIZE={len(data)}", "BODY=8BITMIME"], "rcpt_options": []}


def test_same_null_sender(servers: Servers) -> None:
    # Ported bounce handling checks mailfrom == "<>": the stdlib's value.
    stdlib, ours = servers()
    for server in (stdlib, ours):
        with smtplib.SMTP(*server.address, timeout=TIMEOUT) as client:
            client.sendmail("<>", ["postmaster@example.com"], b"Subject: bounce\r\n\r\nbody\r\n")
    assert [call[0] for call in ours.calls] == ["<>"]
    assert ours.calls == stdlib.calls


# -- where we deliberately differ ------------------------------------------------


def test_second_helo_is_accepted(servers: Servers) -> None:
    stdlib, ours = servers()
    script = ["HELO a.test", "MAIL FROM:<a@example.com>", "EHLO b.test", "RCPT TO:<b@example.com>", "HELO c.test"]
    assert codes(stdlib.address, script) == [250, 250, 503, 250, 503]
    # The second greeting also reset the transaction: RCPT needs a new MAIL.
    assert codes(ours.address, script) == [250, 250, 250, 503, 250]


def test_noop_with_an_argument_is_accepted(servers: Servers) -> None:
    stdlib, ours = servers()
    assert codes(stdlib.address, ["NOOP hello", "NOOP"]) == [501, 250]
    assert codes(ours.address, ["NOOP hello", "NOOP"]) == [250, 250]


def test_help_answers_214(servers: Servers) -> None:
    stdlib, ours = servers()
    assert codes(stdlib.address, ["HELP", "HELP MAIL"]) == [250, 250]
    assert codes(ours.address, ["HELP", "HELP MAIL"]) == [214, 214]


@pytest.mark.parametrize(("address", "code"), [("<a@>", 553), ("<@>", 501), ("a@", 553)])
def test_malformed_address_does_not_drop_the_connection(servers: Servers, address: str, code: int) -> None:
    stdlib, ours = servers()
    script = ["HELO client.test", f"MAIL FROM:{address}", "NOOP"]
    assert codes(stdlib.address, script) == [250, CLOSED]
    assert codes(ours.address, script) == [250, code, 250]


def test_empty_message_is_accepted(servers: Servers) -> None:
    stdlib, ours = servers()
    stream = (
        b"HELO client.test\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n.\r\n"
        b"NOOP\r\n.\r\nQUIT\r\n"
    )
    # The stdlib misses the end of the empty message and swallows NOOP into it.
    assert converse(stdlib.address, stream) == [250, 250, 250, 354, 250, 221]
    assert [data for _, _, data, _ in stdlib.calls] == [b"\nNOOP"]
    # Ours ends the message at the dot; the lone dot after NOOP is then a bad command.
    assert converse(ours.address, stream) == [250, 250, 250, 354, 250, 250, 500, 221]
    assert [data for _, _, data, _ in ours.calls] == [b""]


def test_no_stuck_data_state_after_552(servers: Servers) -> None:
    stdlib, ours = servers(data_size_limit=100)
    big = message_item(message_of(1000)).encode() + b"\r\n"
    stream = (
        b"EHLO client.test\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n"
        + big
        + b"NOOP\r\n.\r\nQUIT\r\n"
    )
    # The stdlib stays in DATA: NOOP becomes a message of its own.
    assert converse(stdlib.address, stream) == [250, 250, 250, 354, 552, 250, 221]
    assert [data for _, _, data, _ in stdlib.calls] == [b"NOOP"]
    assert converse(ours.address, stream) == [250, 250, 250, 354, 552, 250, 500, 221]
    assert ours.calls == []


@pytest.mark.parametrize(
    ("message", "stdlib_code", "our_code"),
    [
        (message_of(100, dotted_lines=3), 552, 250),  # exactly the limit once unstuffed
        (message_of(101), 250, 552),  # one octet over
    ],
    ids=["dotted-exact-limit", "limit-plus-one"],
)
def test_size_limit_is_exact(servers: Servers, message: bytes, stdlib_code: int, our_code: int) -> None:
    stdlib, ours = servers(data_size_limit=100)
    script = ["EHLO client.test", "MAIL FROM:<a@example.com>", "RCPT TO:<b@example.com>", "DATA", message_item(message)]
    assert codes(stdlib.address, script) == [250, 250, 250, 354, stdlib_code]
    assert codes(ours.address, script) == [250, 250, 250, 354, our_code]


def test_non_ascii_address_needs_smtputf8(servers: Servers) -> None:
    stdlib, ours = servers()
    script = ["EHLO client.test", "MAIL FROM:<jörg@example.com>"]
    assert codes(stdlib.address, script) == [250, 250]
    assert codes(ours.address, script) == [250, 553]
