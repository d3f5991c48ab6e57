"""STARTTLS and implicit TLS through real sockets on loopback, with smtplib,
aiosmtplib and raw sockets, certificate verification on everywhere except
where a test shows that a client which does not trust the server fails."""

from __future__ import annotations

import asyncio
import logging
import os
import smtplib
import socket
import ssl
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

import aiosmtplib
import pytest
import trustme
from pytester_helpers import INI

from conftest import Wire, aiosmtplib_send
from pytest_smtpd import Server
from pytest_smtpd.message import Message
from pytest_smtpd.server import STOP_GRACE, TLSMode

#: Seconds any single wait may take before it counts as a hang.
TIMEOUT = 10.0
#: What a message looks like on the wire.
BODY = b"Subject: tls\r\n\r\nover TLS\r\n"


# -- helpers ----------------------------------------------------------------


class LogWatch(logging.Handler):
    """Collects the records that reach the root logger and lets a test wait
    for one: the server logs from its own thread, after the client has
    already seen the outcome.

    Enter it inside the test, after pytest has put caplog's handler on the
    root logger: it then comes after that handler, so a record it has seen
    is in ``caplog.records`` too."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self._changed = threading.Condition()

    def emit(self, record: logging.LogRecord) -> None:
        with self._changed:
            self.records.append(record)
            self._changed.notify_all()

    def wait_for(self, predicate: Callable[[logging.LogRecord], bool], what: str) -> logging.LogRecord:
        def found() -> logging.LogRecord | None:
            return next((record for record in self.records if predicate(record)), None)

        with self._changed:
            if not self._changed.wait_for(lambda: found() is not None, TIMEOUT):
                messages = [r.getMessage() for r in self.records]
                raise AssertionError(f"no log record {what} within {TIMEOUT}s: {messages}")
            record = found()
            assert record is not None
            return record

    def __enter__(self) -> LogWatch:
        logging.getLogger().addHandler(self)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        logging.getLogger().removeHandler(self)


def handshake_failed(record: logging.LogRecord) -> bool:
    message = record.getMessage()
    return record.name == "pytest_smtpd" and record.levelno == logging.WARNING and "TLS handshake" in message


def untrusting_context() -> ssl.SSLContext:
    """A client context with verification on that does not trust the test CA."""
    return ssl.create_default_context(cadata=trustme.CA().cert_pem.bytes().decode("ascii"))


def assert_tls_matches(message: Message, sock: socket.socket, mode: str) -> None:
    """``message.tls`` says what the client's own socket negotiated."""
    assert isinstance(sock, ssl.SSLSocket)
    cipher = sock.cipher()
    assert message.tls is not None
    assert cipher is not None
    assert (message.tls.version, message.tls.cipher, message.tls.mode) == (sock.version(), cipher[0], mode)
    assert message.tls.version in ("TLSv1.2", "TLSv1.3")


def ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


# -- STARTTLS with smtplib --------------------------------------------------


@pytest.mark.smtpd(tls="starttls")
def test_smtplib_starttls_and_message_tls_info(smtpd: Server) -> None:
    with smtplib.SMTP(smtpd.host, smtpd.port, timeout=TIMEOUT) as client:
        client.ehlo()
        assert client.has_extn("starttls")
        code, _ = client.starttls(context=smtpd.client_context())
        assert code == 220
        client.ehlo()
        assert not client.has_extn("starttls"), "STARTTLS must not be offered inside TLS"
        client.sendmail("a@example.com", ["b@example.com"], BODY)
        assert client.sock is not None
        (message,) = smtpd.messages
        assert_tls_matches(message, client.sock, "starttls")
    assert message.data == BODY


@pytest.mark.smtpd(tls="starttls")
def test_plaintext_session_has_no_tls_info(smtpd: Server) -> None:
    # Twin of the test above: the same server without STARTTLS records no TLS.
    with smtplib.SMTP(smtpd.host, smtpd.port, timeout=TIMEOUT) as client:
        client.sendmail("a@example.com", ["b@example.com"], BODY)
    (message,) = smtpd.messages
    assert message.tls is None


@pytest.mark.smtpd(tls="starttls")
def test_client_must_ehlo_again_after_starttls(smtpd: Server) -> None:
    with Wire(smtpd.address) as raw:
        assert raw.command("EHLO client.test") == 250
        assert raw.command("MAIL FROM:<a@example.com>") == 250
        assert raw.command("RSET") == 250
        raw.start_tls(smtpd.client_context())
        # RFC 3207 4.2: the server forgets the EHLO given in plaintext.
        code, text = raw.exchange("MAIL FROM:<a@example.com>")
        assert (code, text) == (503, "Error: send HELO first")
        code, text = raw.exchange("EHLO client.test")
        assert code == 250 and "STARTTLS" not in text.splitlines()
        assert raw.command("MAIL FROM:<a@example.com>") == 250
        assert raw.command("RSET") == 250
        assert raw.exchange("STARTTLS") == (503, "Error: TLS already active")


@pytest.mark.smtpd(tls="starttls", require_starttls=True, auth={"alice": "s3cret"})
@pytest.mark.parametrize("command", ["MAIL FROM:<a@example.com>", "RCPT TO:<b@example.com>", "DATA", "AUTH PLAIN"])
def test_require_starttls_answers_530_before_tls(smtpd: Server, command: str) -> None:
    with Wire(smtpd.address) as raw:
        assert raw.command("EHLO client.test") == 250
        assert raw.exchange(command) == (530, "5.7.0 Must issue a STARTTLS command first")
        assert raw.command("NOOP") == 250
        raw.start_tls(smtpd.client_context())
        assert raw.command("EHLO client.test") == 250
        # Twin: the same commands go through inside TLS.
        assert raw.command("MAIL FROM:<a@example.com>") == 250
        assert raw.command("RCPT TO:<b@example.com>") == 250
        assert raw.command("DATA") == 354


@pytest.mark.smtpd(tls="starttls", require_starttls=True)
def test_require_starttls_refuses_smtplib_without_tls(smtpd: Server) -> None:
    with smtplib.SMTP(smtpd.host, smtpd.port, timeout=TIMEOUT) as client:
        with pytest.raises(smtplib.SMTPSenderRefused) as refused:
            client.sendmail("a@example.com", ["b@example.com"], BODY)
        assert refused.value.smtp_code == 530
        client.starttls(context=smtpd.client_context())
        assert client.sendmail("a@example.com", ["b@example.com"], BODY) == {}
    assert len(smtpd.messages) == 1


# -- implicit TLS -----------------------------------------------------------


@pytest.mark.smtpd(tls="implicit")
def test_smtplib_implicit_tls(smtpd: Server) -> None:
    with smtplib.SMTP_SSL(smtpd.host, smtpd.port, timeout=TIMEOUT, context=smtpd.client_context()) as client:
        client.ehlo()
        assert not client.has_extn("starttls")
        assert client.docmd("STARTTLS") == (502, b"Error: command not implemented")
        client.sendmail("a@example.com", ["b@example.com"], BODY)
        assert client.sock is not None
        (message,) = smtpd.messages
        assert_tls_matches(message, client.sock, "implicit")


@pytest.mark.smtpd(tls="implicit")
def test_implicit_tls_plaintext_client_gets_no_greeting(smtpd: Server) -> None:
    # Twin: the port really speaks TLS first. A plaintext client's EHLO is a
    # broken ClientHello: the server hangs up without a word of SMTP.
    with socket.create_connection(smtpd.address, timeout=TIMEOUT) as sock:
        sock.sendall(b"EHLO client.test\r\n")
        received = b""
        for _ in range(100):
            chunk = sock.recv(4096)
            if not chunk:
                break
            received += chunk
        assert b"220" not in received and b"250" not in received
    assert len(smtpd.messages) == 0


# -- aiosmtplib -------------------------------------------------------------


async def aiosmtplib_starttls(server: Server) -> tuple[bool, bool, str]:
    """STARTTLS by hand; returns (offered before, offered after, cipher)."""
    client = aiosmtplib.SMTP(
        hostname=server.host, port=server.port, start_tls=False, tls_context=server.client_context(), timeout=TIMEOUT
    )
    async with client:
        await client.ehlo()
        before = client.supports_extension("starttls")
        await client.starttls(tls_context=server.client_context())
        await client.ehlo()
        after = client.supports_extension("starttls")
        await client.sendmail("a@example.com", ["b@example.com"], BODY)
        ssl_object = client.get_transport_info("ssl_object")
        return before, after, ssl_object.cipher()[0]


@pytest.mark.smtpd(tls="starttls")
def test_aiosmtplib_starttls(smtpd: Server) -> None:
    before, after, cipher = asyncio.run(aiosmtplib_starttls(smtpd))
    assert (before, after) == (True, False)
    (message,) = smtpd.messages
    assert message.tls is not None
    assert (message.tls.mode, message.tls.cipher) == ("starttls", cipher)


@pytest.mark.smtpd(tls="implicit")
def test_aiosmtplib_implicit_tls(smtpd: Server) -> None:
    aiosmtplib_send(smtpd.address, BODY, use_tls=True, tls_context=smtpd.client_context())
    (message,) = smtpd.messages
    assert message.tls is not None and message.tls.mode == "implicit"


@pytest.mark.smtpd(tls="implicit")
def test_aiosmtplib_refuses_an_untrusted_server(smtpd: Server) -> None:
    with pytest.raises(aiosmtplib.SMTPConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        aiosmtplib_send(smtpd.address, BODY, use_tls=True, tls_context=untrusting_context())
    assert len(smtpd.messages) == 0


@pytest.mark.smtpd(tls="starttls", require_starttls=True)
def test_aiosmtplib_without_tls_gets_530(smtpd: Server) -> None:
    with pytest.raises(aiosmtplib.SMTPSenderRefused) as refused:
        aiosmtplib_send(smtpd.address, BODY, start_tls=False)
    assert refused.value.code == 530


# -- STARTTLS command injection (CVE-2011-0411) ---------------------------


def injected_then(server: Server, injected: bytes, after_handshake: str) -> tuple[int, str]:
    """Send ``STARTTLS`` with ``injected`` in the same packet, do the
    handshake, send ``after_handshake``; return the first reply inside TLS."""
    with socket.create_connection(server.address, timeout=TIMEOUT) as plain:
        with plain.makefile("rb") as greeting:
            assert greeting.readline(4096).startswith(b"220 ")
        plain.sendall(b"STARTTLS\r\n" + injected)
        # Read the 220 byte by byte: nothing after it may be taken from the
        # socket, since the TLS handshake comes next.
        ready = b""
        for _ in range(200):
            byte = plain.recv(1)
            assert byte, f"closed after {ready!r}"
            ready += byte
            if ready.endswith(b"\r\n"):
                break
        assert ready == b"220 Ready to start TLS\r\n"
        # Had the server answered the injected command in plaintext, that
        # answer would now break the handshake.
        tls = server.client_context().wrap_socket(plain, server_hostname="localhost")
        with Wire(tls, greeting=False) as raw:
            return raw.exchange(after_handshake)


@pytest.mark.smtpd(tls="starttls")
def test_starttls_injection_noop_is_never_answered(smtpd: Server) -> None:
    code, text = injected_then(smtpd, b"NOOP\r\n", "HELP")
    assert code == 214, f"the first reply inside TLS answered something else: {code} {text}"


@pytest.mark.smtpd(tls="starttls")
def test_starttls_noop_after_the_handshake_is_answered(smtpd: Server) -> None:
    # Twin: the first reply inside TLS does tell which command was answered.
    assert injected_then(smtpd, b"", "NOOP") == (250, "OK")


@pytest.mark.smtpd(tls="starttls")
def test_starttls_injected_transaction_is_not_executed(smtpd: Server) -> None:
    injected = b"EHLO evil.test\r\nMAIL FROM:<evil@example.com>\r\nRCPT TO:<victim@example.com>\r\n"
    code, text = injected_then(smtpd, injected, "RCPT TO:<victim@example.com>")
    # No EHLO and no MAIL survived the handshake.
    assert (code, text) == (503, "Error: send HELO first")


# -- data that comes with the end of the handshake -------------------------


class MemoryTLS:
    """A client TLS session over a plain socket through memory BIOs, so that
    a test decides when each TLS record goes out."""

    def __init__(self, sock: socket.socket, context: ssl.SSLContext) -> None:
        self.sock = sock
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = context.wrap_bio(self.incoming, self.outgoing, server_hostname="localhost")

    def flush(self) -> None:
        if self.outgoing.pending:
            self.sock.sendall(self.outgoing.read())

    def receive(self) -> None:
        data = self.sock.recv(65536)
        assert data, "the server closed the connection"
        self.incoming.write(data)

    def hello(self) -> None:
        """Send the ClientHello and wait for the server's first answer: the
        server is then in the middle of its handshake."""
        with pytest.raises(ssl.SSLWantReadError):
            self.tls.do_handshake()
        self.flush()
        self.receive()

    def handshake(self) -> None:
        """Finish the handshake, but keep the client's last message unsent."""
        for _ in range(100):
            try:
                self.tls.do_handshake()
                return
            except ssl.SSLWantReadError:
                self.flush()
                self.receive()
        raise AssertionError("the handshake did not finish")

    def read_replies(self, count: int) -> list[bytes]:
        """The next ``count`` whole replies (a reply may have many lines)."""
        received = b""
        for _ in range(1000):
            lines = received.split(b"\r\n")[:-1]
            ends = [i for i, line in enumerate(lines) if line[3:4] == b" "]
            if len(ends) >= count:
                return [lines[i] for i in ends[:count]]
            try:
                received += self.tls.read(4096)
            except ssl.SSLWantReadError:
                self.receive()
        raise AssertionError(f"no {count} whole replies: {received!r}")


def starttls_on(sock: socket.socket) -> None:
    """Read the greeting, send STARTTLS, read the 220, byte by byte so that
    nothing after it is taken from the socket."""
    received = b""
    for _ in range(1000):
        byte = sock.recv(1)
        assert byte, f"closed after {received!r}"
        received += byte
        if received.endswith(b"\r\n"):
            if received.startswith(b"220 Ready"):
                return
            assert received.startswith(b"220 "), received
            received = b""
            sock.sendall(b"STARTTLS\r\n")
    raise AssertionError("no 220 Ready to start TLS")


@pytest.mark.parametrize("pipelined", [b"NOOP\r\n", b"EHLO client.test\r\nMAIL FROM:<a@example.com>\r\nNOOP\r\n"])
@pytest.mark.smtpd(tls="starttls")
def test_commands_sent_with_the_clients_finished_are_answered(smtpd: Server, pipelined: bytes) -> None:
    # Clients like msmtp (GnuTLS) send EHLO right behind their Finished
    # message: the server gets both in one read and must keep the EHLO.
    with socket.create_connection(smtpd.address, timeout=TIMEOUT) as sock:
        starttls_on(sock)
        client = MemoryTLS(sock, smtpd.client_context())
        client.handshake()
        client.tls.write(pipelined)
        client.flush()  # Finished and the commands, in one sendall
        replies = client.read_replies(pipelined.count(b"\r\n"))
        assert all(reply.startswith(b"250 ") for reply in replies), replies


# -- failed handshakes ------------------------------------------------------


@pytest.mark.parametrize("mode", ["starttls", "implicit"])
def test_failed_handshake_is_logged_and_the_server_goes_on(mode: TLSMode, caplog: pytest.LogCaptureFixture) -> None:
    with Server(tls=mode) as server, LogWatch() as watch:
        with pytest.raises(ssl.SSLCertVerificationError, match="unable to get local issuer certificate"):
            connect(server, mode, ssl.create_default_context())
        record = watch.wait_for(handshake_failed, "about the failed handshake")
        assert record.name == "pytest_smtpd" and mode in record.getMessage()
        assert record in caplog.records
        # The next client, trusting the test CA, is served.
        with connect(server, mode, server.client_context()) as client:
            client.sendmail("a@example.com", ["b@example.com"], BODY)
        assert len(server.messages) == 1


def connect(server: Server, mode: str, context: ssl.SSLContext) -> smtplib.SMTP:
    if mode == "implicit":
        return smtplib.SMTP_SSL(server.host, server.port, timeout=TIMEOUT, context=context)
    client = smtplib.SMTP(server.host, server.port, timeout=TIMEOUT)
    try:
        client.starttls(context=context)
    except BaseException:
        client.close()
        raise
    return client


@pytest.mark.smtpd(tls="implicit")
@pytest.mark.parametrize("name", ["localhost", "127.0.0.1"])
def test_server_certificate_names(smtpd: Server, name: str) -> None:
    with Wire(smtpd.address, context=smtpd.client_context(), server_hostname=name) as raw:
        assert raw.exchange("NOOP") == (250, "OK")


@pytest.mark.smtpd(tls="implicit")
def test_wrong_hostname_fails_verification(smtpd: Server) -> None:
    # Twin: the same trusted CA, a name the certificate is not for.
    with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
        Wire(smtpd.address, context=smtpd.client_context(), server_hostname="example.org")


@pytest.mark.smtpd(tls="starttls")
def test_wrong_hostname_fails_verification_after_starttls(smtpd: Server) -> None:
    with Wire(smtpd.address) as raw, pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
        raw.start_tls(smtpd.client_context(), server_hostname="example.org")


def test_client_context_verifies() -> None:
    with Server(tls="implicit") as server:
        context = server.client_context()
        assert context.verify_mode is ssl.CERT_REQUIRED
        assert context.check_hostname


# -- stopping a server while a handshake is under way -----------------------


@pytest.mark.parametrize("mode", ["starttls", "implicit"])
def test_stop_during_a_handshake_is_prompt_and_hangs_up(mode: TLSMode, caplog: pytest.LogCaptureFixture) -> None:
    server = Server(tls=mode)
    server.start()
    try:
        sock = socket.create_connection(server.address, timeout=TIMEOUT)
        if mode == "starttls":
            starttls_on(sock)
        # The server has answered the ClientHello and waits for the rest.
        MemoryTLS(sock, server.client_context()).hello()
    finally:
        started = time.monotonic()
        server.stop()
        took = time.monotonic() - started
    with sock:
        rest = b""
        for _ in range(100):
            chunk = sock.recv(4096)
            if not chunk:
                break
            rest += chunk
        else:
            raise AssertionError("the server did not hang up")
    # Nothing in plaintext in the middle of the handshake: no 421.
    assert b"421 " not in rest
    assert took < STOP_GRACE, f"stop() waited {took:.1f}s for a session in its handshake"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text


# -- IPv6 -------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["starttls", "implicit"])
def test_ipv6_loopback(mode: TLSMode) -> None:
    if not ipv6_loopback():
        pytest.skip("::1 is not available here")
    with Server(host="::1", tls=mode) as server:
        with connect(server, mode, server.client_context()) as client:
            client.sendmail("a@example.com", ["b@example.com"], BODY)
        (message,) = server.messages
    assert message.peer[0] == "::1"
    assert message.tls is not None and message.tls.mode == mode


# -- the test CA for clients ------------------------------------------------


def run_python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def clean_env() -> dict[str, str]:
    """This environment without anything that decides which CAs to trust."""
    env = dict(os.environ)
    for name in ("SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        env.pop(name, None)
    return env


LAZY_IMPORTS = """
    import sys
    {setup}
    print(sorted(name for name in ("trustme", "cryptography") if name in sys.modules))
"""


def test_importing_the_plugin_does_not_import_trustme() -> None:
    result = run_python(LAZY_IMPORTS.format(setup="import pytest_smtpd.plugin"), clean_env())
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_a_tls_server_does_import_trustme() -> None:
    # Twin: the check above does see trustme once a TLS server needs it.
    setup = "import pytest_smtpd.plugin; pytest_smtpd.plugin.Server(tls='starttls')"
    result = run_python(LAZY_IMPORTS.format(setup=setup), clean_env())
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['cryptography', 'trustme']"


@pytest.mark.smtpd(tls="implicit")
def test_ca_path_is_a_pem_file_clients_can_trust(smtpd: Server) -> None:
    pem = Path(smtpd.ca_path).read_bytes()
    assert pem.startswith(b"-----BEGIN CERTIFICATE-----") and pem.rstrip().endswith(b"-----END CERTIFICATE-----")
    assert pem.count(b"BEGIN CERTIFICATE") == 1
    context = ssl.create_default_context(cafile=smtpd.ca_path)
    with Wire(smtpd.address, context=context, server_hostname="127.0.0.1") as raw:
        assert raw.command("NOOP") == 250


def test_servers_share_the_test_ca() -> None:
    with Server(tls="starttls") as first, Server(tls="implicit") as second:
        assert first.ca_path == second.ca_path
    with pytest.raises(RuntimeError, match="no test CA"):
        Server().ca_path  # noqa: B018


SUBPROCESS_CLIENT = """
    import smtplib, ssl, sys
    host, port, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    context = ssl.create_default_context()
    if mode == "implicit":
        client = smtplib.SMTP_SSL(host, port, timeout=10, context=context)
    else:
        client = smtplib.SMTP(host, port, timeout=10)
        client.starttls(context=context)
    client.sendmail("a@example.com", ["b@example.com"], b"Subject: env\\r\\n\\r\\nhi\\r\\n")
    client.quit()
"""


def run_client(server: Server, mode: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(SUBPROCESS_CLIENT), server.host, str(server.port), mode],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("mode", ["starttls", "implicit"])
def test_client_env_makes_a_subprocess_trust_the_server(mode: TLSMode) -> None:
    with Server(tls=mode) as server:
        result = run_client(server, mode, {**clean_env(), **server.client_env})
        assert result.returncode == 0, result.stderr
        (message,) = server.messages
    assert message.tls is not None and message.tls.mode == mode


@pytest.mark.smtpd(tls="starttls")
def test_without_client_env_the_subprocess_refuses(smtpd: Server) -> None:
    result = run_client(smtpd, "starttls", clean_env())
    assert result.returncode != 0
    assert "CERTIFICATE_VERIFY_FAILED" in result.stderr
    assert len(smtpd.messages) == 0


@pytest.mark.smtpd(tls="starttls")
def test_client_env_in_this_process(smtpd: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    # What the Django recipe relies on: a library that builds its own
    # ssl.create_default_context() trusts the server once SSL_CERT_FILE is set.
    for name in ("SSL_CERT_FILE", "SSL_CERT_DIR"):
        monkeypatch.delenv(name, raising=False)
    with (
        smtplib.SMTP(smtpd.host, smtpd.port, timeout=TIMEOUT) as client,
        pytest.raises(ssl.SSLCertVerificationError),
    ):
        client.starttls(context=ssl.create_default_context())
    for name, value in smtpd.client_env.items():
        monkeypatch.setenv(name, value)
    with smtplib.SMTP(smtpd.host, smtpd.port, timeout=TIMEOUT) as client:
        client.starttls(context=ssl.create_default_context())
        client.sendmail("a@example.com", ["b@example.com"], BODY)
    assert len(smtpd.messages) == 1


def test_client_env_names_the_ca() -> None:
    with Server(tls="starttls") as server:
        assert server.client_env["SSL_CERT_FILE"] == server.ca_path


# -- the marker in a pytest run ---------------------------------------------


def test_marker_recipe_in_a_pytest_run(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI)
    pytester.makepyfile(
        """
        import smtplib
        import pytest

        @pytest.mark.smtpd(tls="implicit")
        def test_implicit(smtpd):
            with smtplib.SMTP_SSL(smtpd.host, smtpd.port, context=smtpd.client_context(), timeout=10) as client:
                client.sendmail("a@example.com", ["b@example.com"], b"Subject: hi\\r\\n\\r\\nbody\\r\\n")
            assert smtpd.messages[0].tls.mode == "implicit"

        @pytest.mark.smtpd(tls="starttls", auth={"alice": "s3cret"}, auth_requires_tls=True)
        def test_starttls_and_auth(smtpd):
            with smtplib.SMTP(smtpd.host, smtpd.port, timeout=10) as client:
                client.starttls(context=smtpd.client_context())
                client.login("alice", "s3cret")
                client.sendmail("a@example.com", ["b@example.com"], b"Subject: hi\\r\\n\\r\\nbody\\r\\n")
            message = smtpd.messages[0]
            assert (message.tls.mode, message.auth_identity) == ("starttls", "alice")

        @pytest.mark.smtpd(tls="implicit")
        def test_untrusted_fails(smtpd):
            import ssl
            with pytest.raises(ssl.SSLCertVerificationError):
                smtplib.SMTP_SSL(smtpd.host, smtpd.port, context=ssl.create_default_context(), timeout=10)
        """
    )
    pytester.runpytest_inprocess().assert_outcomes(passed=3)
