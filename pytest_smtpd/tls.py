"""Certificates for TLS tests: one trustme CA per process, made only when a
server first needs TLS (importing this module does not import trustme or
cryptography), and the SSL contexts built from it."""

from __future__ import annotations

import atexit
import datetime
import os
import shutil
import ssl
import tempfile
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import trustme

__all__ = ["CERTIFICATES", "Certificate", "TestCA", "parse_tls_versions", "server_context_from_files", "test_ca"]

#: The names the server certificate is valid for: every way a test reaches
#: a loopback server.
SERVER_NAMES = ("localhost", "127.0.0.1", "::1")
#: What ``tls_certificate=`` can ask for: a good certificate, or one that a
#: verifying client must refuse, each for its own reason.
Certificate = Literal["valid", "expired", "wrong-host", "untrusted", "self-signed"]
CERTIFICATES: tuple[Certificate, ...] = ("valid", "expired", "wrong-host", "untrusted", "self-signed")
#: The name a ``"wrong-host"`` certificate is for: under .invalid (RFC 2606),
#: so it can be nobody's.
WRONG_HOST = "wrong-host.invalid"
_TLS_VERSIONS = {
    "TLSV1": ssl.TLSVersion.TLSv1,
    "TLSV1.0": ssl.TLSVersion.TLSv1,
    "TLSV1.1": ssl.TLSVersion.TLSv1_1,
    "TLSV1.2": ssl.TLSVersion.TLSv1_2,
    "TLSV1.3": ssl.TLSVersion.TLSv1_3,
}


def parse_tls_versions(versions: str | ssl.TLSVersion | Sequence[str | ssl.TLSVersion]) -> list[ssl.TLSVersion]:
    """``"TLSv1.2"``, ``ssl.TLSVersion.TLSv1_2`` or a list of them, as
    TLSVersion values; a ValueError names what is not a TLS version."""
    items = [versions] if isinstance(versions, str | ssl.TLSVersion) else list(versions)
    if not items:
        raise ValueError("tls_versions must name at least one TLS version, e.g. 'TLSv1.2'")
    parsed = []
    for item in items:
        if isinstance(item, ssl.TLSVersion):
            parsed.append(item)
            continue
        # "TLSv1.2", "TLSv1_2", "TLS1.2" and "1.2" all name TLS 1.2.
        key = str(item).upper().replace("_", ".").replace(" ", "").removeprefix("TLS").removeprefix("V")
        key = "TLSV" + key
        if key not in _TLS_VERSIONS:
            raise ValueError(f"unknown TLS version {item!r}: use TLSv1.2 or TLSv1.3 (or TLSv1, TLSv1.1)")
        parsed.append(_TLS_VERSIONS[key])
    return parsed


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
        #: The temporary directory holding the files, removed at exit.
        self.directory = directory
        #: The CA certificate as a PEM file: what clients should trust.
        self.ca_path = os.path.join(directory, "ca.pem")
        #: The server certificate and its chain, PEM.
        self.cert_path = os.path.join(directory, "server-chain.pem")
        #: The server certificate's private key, PEM.
        self.key_path = os.path.join(directory, "server-key.pem")
        ca.cert_pem.write_to_path(self.ca_path)
        with open(self.cert_path, "wb") as chain:
            for blob in self._leaf.cert_chain_pems:
                chain.write(blob.bytes())
        self._leaf.private_key_pem.write_to_path(self.key_path)
        self._variants_lock = threading.Lock()
        #: (chain file, key file) of each certificate variant made so far.
        self._variants: dict[str, tuple[str, str]] = {"valid": (self.cert_path, self.key_path)}

    @property
    def ca_pem(self) -> bytes:
        """The CA certificate, PEM-encoded, for a client that takes bytes
        rather than a file."""
        return self._ca.cert_pem.bytes()

    def server_context(
        self,
        certificate: Certificate = "valid",
        versions: Sequence[ssl.TLSVersion] | None = None,
    ) -> ssl.SSLContext:
        """A server context with the ``certificate`` variant (see
        CERTIFICATES), offering only ``versions`` (the range from the lowest
        to the highest) if given."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        chain, key = self._certificate_files(certificate)
        context.load_cert_chain(chain, key)
        if versions:
            context.minimum_version = min(versions)
            context.maximum_version = max(versions)
        return context

    def _certificate_files(self, certificate: Certificate) -> tuple[str, str]:
        """The chain and key files of a certificate variant, made on first use."""
        if certificate not in CERTIFICATES:
            raise ValueError(f"unknown tls_certificate {certificate!r}: use one of {', '.join(CERTIFICATES)}")
        with self._variants_lock:
            files = self._variants.get(certificate)
            if files is None:
                chain_pem, key_pem = self._make_variant(certificate)
                files = (
                    os.path.join(self.directory, f"server-{certificate}-chain.pem"),
                    os.path.join(self.directory, f"server-{certificate}-key.pem"),
                )
                for path, pem in zip(files, (chain_pem, key_pem), strict=True):
                    with open(path, "wb") as file:
                        file.write(pem)
                self._variants[certificate] = files
            return files

    def _make_variant(self, certificate: Certificate) -> tuple[bytes, bytes]:
        import trustme

        if certificate == "self-signed":
            return _self_signed(SERVER_NAMES)
        if certificate == "expired":
            now = datetime.datetime.now(datetime.timezone.utc)
            leaf = self._ca.issue_cert(
                *SERVER_NAMES, not_before=now - datetime.timedelta(days=2), not_after=now - datetime.timedelta(days=1)
            )
        elif certificate == "wrong-host":
            leaf = self._ca.issue_cert(WRONG_HOST)
        else:  # "untrusted": a CA the clients of this test CA do not know
            leaf = trustme.CA().issue_cert(*SERVER_NAMES)
        return b"".join(blob.bytes() for blob in leaf.cert_chain_pems), leaf.private_key_pem.bytes()

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
        """Write the CA certificate (PEM) to ``path``, for a client that
        should find it somewhere of its own (the CLI's ``--tls-ca-out``)."""
        with open(path, "wb") as file:
            file.write(self.ca_pem)


def _self_signed(names: Sequence[str]) -> tuple[bytes, bytes]:
    """A certificate for ``names`` that signs itself (no CA: trustme only
    issues from one), and its key, both PEM."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    alt_names: list[x509.GeneralName] = []
    for entry in names:
        try:
            alt_names.append(x509.IPAddress(ipaddress.ip_address(entry)))
        except ValueError:
            alt_names.append(x509.DNSName(entry))
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


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
