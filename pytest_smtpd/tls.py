"""Certificates for TLS tests: one trustme CA per process, made only when a
server first needs TLS (importing this module does not import trustme or
cryptography), and the SSL contexts built from it."""

from __future__ import annotations

import atexit
import os
import shutil
import ssl
import tempfile
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import trustme

__all__ = ["TestCA", "server_context_from_files", "test_ca"]

#: The names the server certificate is valid for: every way a test reaches
#: a loopback server.
SERVER_NAMES = ("localhost", "127.0.0.1", "::1")


class TestCA:
    """A certificate authority for tests and a server certificate it signed.

    ``ca_path`` is the CA as a PEM file for clients (``--cacert``,
    ``SSL_CERT_FILE``); ``client_context()`` trusts it with verification on.
    This type has no public constructor: use ``test_ca()``.
    """

    __test__ = False  # not a pytest test class

    def __init__(self, ca: trustme.CA, directory: str) -> None:
        self._ca = ca
        self._leaf = ca.issue_cert(*SERVER_NAMES)
        self.directory = directory
        self.ca_path = os.path.join(directory, "ca.pem")
        self.cert_path = os.path.join(directory, "server-chain.pem")
        self.key_path = os.path.join(directory, "server-key.pem")
        ca.cert_pem.write_to_path(self.ca_path)
        with open(self.cert_path, "wb") as chain:
            for blob in self._leaf.cert_chain_pems:
                chain.write(blob.bytes())
        self._leaf.private_key_pem.write_to_path(self.key_path)

    @property
    def ca_pem(self) -> bytes:
        return self._ca.cert_pem.bytes()

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._leaf.configure_cert(context)
        return context

    def client_context(self) -> ssl.SSLContext:
        """A client context that verifies the server against this CA."""
        context = ssl.create_default_context()
        self._ca.configure_trust(context)
        return context

    def client_env(self) -> dict[str, str]:
        """Environment variables that make common clients in a subprocess
        trust this CA (OpenSSL-based tools, Python, requests, curl)."""
        return {"SSL_CERT_FILE": self.ca_path, "REQUESTS_CA_BUNDLE": self.ca_path, "CURL_CA_BUNDLE": self.ca_path}

    def write_ca(self, path: str | os.PathLike[str]) -> None:
        with open(path, "wb") as file:
            file.write(self.ca_pem)


_lock = threading.Lock()
_ca: TestCA | None = None


def test_ca() -> TestCA:
    """The process's test CA, created on first use (an ECDSA CA is quick)."""
    global _ca
    with _lock:
        if _ca is None:
            import trustme

            directory = tempfile.mkdtemp(prefix="pytest-smtpd-tls-")
            atexit.register(shutil.rmtree, directory, True)
            _ca = TestCA(trustme.CA(), directory)
        return _ca


test_ca.__test__ = False  # type: ignore[attr-defined]


def server_context_from_files(certfile: str, keyfile: str | None = None) -> ssl.SSLContext:
    """A server context from the user's own certificate and key files."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certfile, keyfile)
    return context
