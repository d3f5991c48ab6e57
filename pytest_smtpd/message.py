"""The message model: one accepted message, its envelope, and the parsed
views (addresses, subject, bodies, attachments, links) built on first use."""

from __future__ import annotations

import email
import email.policy
import html as html_module
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage
from typing import TYPE_CHECKING, Any

from .dsn import DSN, dsn_from

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from .dkim import DKIMKey, DKIMResult
    from .lint import LintFinding
    from .sessions import Session

__all__ = ["Attachment", "Message", "Peer", "TLSInfo", "same_address"]

Peer = tuple[str, int]


@dataclass(frozen=True, slots=True)
class TLSInfo:
    """How a session was encrypted."""

    #: The protocol, e.g. ``"TLSv1.3"``.
    version: str
    #: The cipher suite name.
    cipher: str
    #: ``"starttls"`` or ``"implicit"``.
    mode: str


@dataclass(frozen=True, slots=True)
class Attachment:
    """One attachment of a message, decoded."""

    #: The file name the sender gave (RFC 2231/2047 decoded), or None.
    filename: str | None
    #: The MIME type, e.g. ``"application/pdf"``.
    content_type: str
    #: The content, transfer encoding undone.
    content: bytes


#: A URL in a text body: up to whitespace or a character that cannot end one.
_URL = re.compile(r"""https?://[^\s<>"'\]\[]+""", re.IGNORECASE)
#: Characters that end a sentence rather than a URL (``see https://x.test/a.``).
_URL_TRAILING = ".,;:!?)'\""
_HREF = re.compile(r"""\bhref\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+))""", re.IGNORECASE)


def _text_links(text: str) -> list[str]:
    links = []
    for match in _URL.finditer(text):
        url = match.group(0)
        while url and url[-1] in _URL_TRAILING and not (url[-1] == ")" and "(" in url):
            url = url[:-1]
        links.append(url)
    return links


def _html_links(markup: str) -> list[str]:
    """The ``href`` targets of an HTML body, then any other URL in its text."""
    links = [html_module.unescape(next(g for g in match.groups() if g is not None)) for match in _HREF.finditer(markup)]
    links += [html_module.unescape(url) for url in _text_links(_HREF.sub(" ", markup))]
    return [link for link in links if link.lower().startswith(("http://", "https://"))]


def _decoded(part: EmailMessage) -> str:
    """A text part's content as str, charset and transfer encoding undone,
    lines ending in ``\\n``; an unknown charset is read as UTF-8 with
    replacement characters."""
    try:
        content = part.get_content()
    except (LookupError, UnicodeError):
        payload = part.get_payload(decode=True)
        content = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
    text = content if isinstance(content, str) else content.decode("utf-8", "replace")
    return text.replace("\r\n", "\n")


def same_address(one: str, other: str) -> bool:
    """Addresses compare with the local part as written and the domain in any case."""
    local, _, domain = one.rpartition("@")
    other_local, _, other_domain = other.rpartition("@")
    return local == other_local and domain.lower() == other_domain.lower()


class Message:
    """One message as the server accepted it: the envelope, the bytes, and a
    parsed view built only when first asked for, so that holding thousands
    of messages stays cheap."""

    __slots__ = (
        "_email",
        "_views",
        "auth_identity",
        "data",
        "helo",
        "mail_from",
        "mail_options",
        "options_per_rcpt",
        "peer",
        "rcpt_options",
        "rcpt_tos",
        "received_at",
        "session",
        "tls",
        "transfer",
    )

    def __init__(
        self,
        *,
        peer: Peer,
        mail_from: str,
        rcpt_tos: list[str],
        data: bytes,
        mail_options: list[str] | None = None,
        rcpt_options: list[str] | None = None,
        helo: str = "",
        received_at: float | None = None,
        tls: TLSInfo | None = None,
        auth_identity: str | None = None,
        session: Session | None = None,
        transfer: str = "DATA",
        options_per_rcpt: list[list[str]] | None = None,
    ) -> None:
        #: The client's address, ``(host, port)``.
        self.peer = peer
        #: The envelope sender; ``""`` for the null sender ``<>``.
        self.mail_from = mail_from
        #: The envelope recipients, in the order given.
        self.rcpt_tos = rcpt_tos
        #: The message as received, dot-unstuffed, CRLF line endings kept.
        self.data = data
        self.mail_options = mail_options if mail_options is not None else []
        self.rcpt_options = rcpt_options if rcpt_options is not None else []
        #: The name the client gave in HELO/EHLO.
        self.helo = helo
        self.received_at = time.time() if received_at is None else received_at
        #: How the session was encrypted, or None for plaintext.
        self.tls = tls
        #: The identity the client logged in as with AUTH, or None.
        self.auth_identity = auth_identity
        #: The session that delivered it (its transcript, its other messages).
        self.session = session
        #: How the message came: ``"DATA"``, or ``"BDAT"`` (CHUNKING).
        self.transfer = transfer
        #: The parameters of each RCPT, one list per recipient in ``rcpt_tos``.
        self.options_per_rcpt = options_per_rcpt if options_per_rcpt is not None else [[] for _ in rcpt_tos]
        self._email: EmailMessage | None = None
        #: The views below, computed on first use.
        self._views: dict[str, Any] | None = None

    # The stdlib ``smtpd`` names for the envelope.
    @property
    def mailfrom(self) -> str:
        """``mail_from`` under the stdlib's name."""
        return self.mail_from

    @property
    def rcpttos(self) -> list[str]:
        """``rcpt_tos`` under the stdlib's name."""
        return self.rcpt_tos

    @property
    def dsn(self) -> DSN:
        """The DSN request (RFC 3461): ``ret`` and ``envid`` from MAIL, and
        for each recipient ``notify`` and ``orcpt``, xtext decoded. Empty
        (all None) for a message that asked for none."""
        return dsn_from(self.mail_options, self.rcpt_tos, self.options_per_rcpt)

    @property
    def email(self) -> EmailMessage:
        """The message parsed with ``email.policy.default``."""
        if self._email is None:
            parsed = email.message_from_bytes(self.data, policy=email.policy.default)
            assert isinstance(parsed, EmailMessage)
            self._email = parsed
        return self._email

    def _view(self, name: str, compute: Callable[[], Any]) -> Any:
        if self._views is None:
            self._views = {}
        if name not in self._views:
            self._views[name] = compute()
        return self._views[name]

    def _header_addresses(self, name: str) -> list[str]:
        addresses: list[str] = []
        for value in self.email.get_all(name) or []:
            addresses += [address.addr_spec for address in getattr(value, "addresses", ()) if address.addr_spec]
        return addresses

    @property
    def subject(self) -> str | None:
        """The Subject header, RFC 2047 decoded, or None."""
        value = self.email["Subject"]
        return None if value is None else str(value)

    @property
    def from_(self) -> str | None:
        """The address in the From header (not the envelope's ``mail_from``), or None."""
        found: list[str] = self._view("from_", lambda: self._header_addresses("From"))
        return found[0] if found else None

    @property
    def to(self) -> list[str]:
        """The addresses in the To header(s)."""
        return list(self._view("to", lambda: self._header_addresses("To")))

    @property
    def cc(self) -> list[str]:
        """The addresses in the Cc header(s)."""
        return list(self._view("cc", lambda: self._header_addresses("Cc")))

    @property
    def bcc(self) -> list[str]:
        """The envelope recipients in neither To nor Cc: those sent a blind copy."""
        shown = self.to + self.cc
        return [rcpt for rcpt in self.rcpt_tos if not any(same_address(rcpt, address) for address in shown)]

    def _body(self, subtype: str) -> str | None:
        part = self.email.get_body(preferencelist=(subtype,))
        if not isinstance(part, EmailMessage) or part.get_content_type() != f"text/{subtype}":
            return None
        return _decoded(part)

    @property
    def text(self) -> str | None:
        """The text/plain body, decoded, or None if there is none."""
        found: str | None = self._view("text", lambda: self._body("plain"))
        return found

    @property
    def html(self) -> str | None:
        """The text/html body, decoded, or None if there is none."""
        found: str | None = self._view("html", lambda: self._body("html"))
        return found

    @property
    def attachments(self) -> list[Attachment]:
        """The attachments, in order (parts other than the bodies)."""

        def compute() -> list[Attachment]:
            found = []
            for part in self.email.iter_attachments():
                payload = part.get_payload(decode=True)
                content = payload if isinstance(payload, bytes) else part.as_bytes()
                found.append(Attachment(part.get_filename(), part.get_content_type(), content))
            return found

        return list(self._view("attachments", compute))

    @property
    def links(self) -> list[str]:
        """The http(s) URLs in the text body, then in the html body, in
        order, each once: for "click the link in the email" tests."""

        def compute() -> list[str]:
            found = _text_links(self.text or "") + _html_links(self.html or "")
            return list(dict.fromkeys(found))

        return list(self._view("links", compute))

    def write_eml(self, path: str | os.PathLike[str]) -> None:
        """Save the message as an ``.eml`` file."""
        with open(path, "wb") as file:
            file.write(self.data)

    def __repr__(self) -> str:
        return (
            f"<Message from {self.mail_from!r} to {self.rcpt_tos!r}, {len(self.data)} bytes, subject {self.subject!r}>"
        )

    def lint(self) -> list[LintFinding]:
        """The problems in this message and how it was sent: a list of
        ``LintFinding`` (see ``pytest_smtpd.lint.CODES``), empty if none."""
        from .lint import lint

        return lint(self)

    def verify_dkim(self, keys: DKIMKey | Iterable[DKIMKey] | Mapping[str, str] | None = None) -> DKIMResult:
        """Verify the DKIM signature against the ``smtpd_dkim`` keys, or
        ``keys`` (a ``DKIMKey``, several, or ``{"sel._domainkey.domain":
        txt}``), with no DNS look-up. Needs ``pytest-smtpd[dkim]``."""
        from .dkim import verify

        return verify(self.data, keys)
