"""The PyMOTW examples in examples/, run as programs the way the article runs
them (a server in one terminal, smtpd_senddata.py in another), must print
what the article shows, ports aside. The examples are the article's code
with Python 3's print() and our imports; example_runner.py maps their fixed
addresses to free ports."""

from __future__ import annotations

import email.utils
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from email.mime.text import MIMEText
from pathlib import Path

import pytest
from peers import TIMEOUT, Spawned, free_port, wait_for_listener

from pytest_smtpd import Server

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
#: Runs an example unchanged, its fixed addresses mapped to free ports.
RUNNER = Path(__file__).resolve().parent / "example_runner.py"

#: What the article shows smtpd_custom.py printing (the peer's port varies).
CUSTOM_OUTPUT = [
    "Message addressed from: author@example.com",
    "Message addressed to  : ['recipient@example.com']",
    "Message length        : 229",
]
#: What it shows smtpd_debug.py printing.
DEBUG_OUTPUT = [
    "---------- MESSAGE FOLLOWS ----------",
    'Content-Type: text/plain; charset="us-ascii"',
    "MIME-Version: 1.0",
    "Content-Transfer-Encoding: 7bit",
    "To: Recipient <recipient@example.com>",
    "From: Author <author@example.com>",
    "Subject: Simple test message",
    "X-Peer: 127.0.0.1",
    "",
    "This is the body of the message.",
    "------------ END MESSAGE ------------",
]


@pytest.fixture
def port() -> int:
    return free_port()


def example_env(port: int, upstream: tuple[str, int] | None = None) -> dict[str, str]:
    """The article's 127.0.0.1:1025 is ``port``; its upstream mail:25 is ``upstream``."""
    addresses = {"127.0.0.1:1025": f"127.0.0.1:{port}"}
    if upstream is not None:
        addresses["mail:25"] = f"{upstream[0]}:{upstream[1]}"
    return {**os.environ, "EXAMPLE_ADDRESSES": json.dumps(addresses)}


StartServer = Callable[..., Spawned]


@pytest.fixture
def start_server(port: int) -> Iterator[StartServer]:
    """``start_server(name, upstream=None)``: run example ``name`` as a server
    on ``port`` and wait until it listens; it is killed at the end of the test."""
    started: list[Spawned] = []

    def start(name: str, upstream: tuple[str, int] | None = None) -> Spawned:
        process = Spawned.python(str(RUNNER), str(EXAMPLES / name), env=example_env(port, upstream))
        started.append(process)
        wait_for_listener(("127.0.0.1", port), process)
        return process

    yield start
    for process in started:
        process.close()


def send_data(port: int) -> subprocess.CompletedProcess[str]:
    """Run smtpd_senddata.py against ``port``; it must succeed."""
    result = subprocess.run(
        [sys.executable, str(RUNNER), str(EXAMPLES / "smtpd_senddata.py")],
        env=example_env(port),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def test_the_seed_length_is_the_length_of_the_sent_message() -> None:
    # The message smtpd_senddata.py builds, as the server hands it to
    # process_message: lines joined by "\n", without the last line ending.
    msg = MIMEText("This is the body of the message.")
    msg["To"] = email.utils.formataddr(("Recipient", "recipient@example.com"))
    msg["From"] = email.utils.formataddr(("Author", "author@example.com"))
    msg["Subject"] = "Simple test message"
    assert f"Message length        : {len(msg.as_string())}" == CUSTOM_OUTPUT[-1]


def test_custom_server(start_server: StartServer, port: int) -> None:
    server = start_server("smtpd_custom.py")
    send_data(port)
    server.expect(r"^Receiving message from: \('127\.0\.0\.1', \d+\)$")
    assert [server.next_line() for _ in CUSTOM_OUTPUT] == CUSTOM_OUTPUT


def test_senddata_shows_the_conversation(start_server: StartServer, port: int) -> None:
    start_server("smtpd_custom.py")
    # Python 3's smtplib shows bytes where Python 2 showed str, 3.13's sends
    # "mail from:" where older ones send "mail FROM:", and our server answers
    # EHLO, which the article's Python 2 smtpd did not.
    debug = send_data(port).stderr.lower().splitlines()
    assert any(line.startswith("send: 'ehlo ") for line in debug), debug
    assert any(line.startswith("send: 'mail from:<author@example.com>") for line in debug), debug
    expected_in_order = [
        "send: 'rcpt TO:<recipient@example.com>\\r\\n'",
        "send: 'data\\r\\n'",
        "reply: b'354 End data with <CR><LF>.<CR><LF>\\r\\n'",
        "data: (354, b'End data with <CR><LF>.<CR><LF>')",
        'send: b\'Content-Type: text/plain; charset="us-ascii"\\r\\nMIME-Version: 1.0\\r\\n'
        "Content-Transfer-Encoding: 7bit\\r\\nTo: Recipient <recipient@example.com>\\r\\n"
        "From: Author <author@example.com>\\r\\nSubject: Simple test message\\r\\n\\r\\n"
        "This is the body of the message.\\r\\n.\\r\\n'",
        "data: (250, b'OK')",
        "send: 'quit\\r\\n'",
        "reply: b'221 Bye\\r\\n'",
    ]
    positions = [debug.index(line.lower()) for line in expected_in_order]
    assert positions == sorted(positions)


def test_debugging_server(start_server: StartServer, port: int) -> None:
    server = start_server("smtpd_debug.py")
    send_data(port)
    server.expect("^---------- MESSAGE FOLLOWS ----------$")
    lines = [DEBUG_OUTPUT[0]]
    line = server.next_line()
    # Python 3's DebuggingServer also shows the MAIL parameters smtplib sent
    # (SIZE); the article's Python 2 server had none to show.
    if line.startswith("mail options: "):
        assert line == "mail options: ['SIZE=236']"
        line = server.next_line()
    lines.append(line)
    lines += [server.next_line() for _ in DEBUG_OUTPUT[2:]]
    assert lines == DEBUG_OUTPUT


def test_proxy(start_server: StartServer, port: int, smtpd: Server) -> None:
    proxy = start_server("smtpd_proxy.py", upstream=(smtpd.host, smtpd.port))
    send_data(port)
    # The proxy answers 250 only once the upstream has the message.
    [message] = smtpd.messages
    assert message.mail_from == "author@example.com"
    assert message.rcpt_tos == ["recipient@example.com"]
    assert message.data.endswith(
        b"Subject: Simple test message\r\nX-Peer: 127.0.0.1\r\n\r\nThis is the body of the message.\r\n"
    )
    proxy.close()
    assert proxy.output() == ""  # "It prints no output"


@pytest.mark.parametrize("name", ["smtpd_custom.py", "smtpd_debug.py", "smtpd_proxy.py"])
def test_examples_import_from_pytest_smtpd_and_keep_the_articles_addresses(name: str) -> None:
    source = (EXAMPLES / name).read_text()
    assert source.startswith("from pytest_smtpd import smtpd\nfrom pytest_smtpd import asyncore\n")
    assert "('127.0.0.1', 1025)" in source
