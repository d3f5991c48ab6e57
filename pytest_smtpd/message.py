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

from .addresses import same_address
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


#: Quotes, brackets and CJK punctuation that surround or follow a URL in
#: text and are never part of one (an IDN URL is written in Unicode too).
_NOT_IN_URL = (
    "\"'<>[]"
    "\u00ab\u00bb\u201c\u201d\u2018\u2019"  # guillemets and curly quotes
    "\u300c\u300d\u300e\u300f\uff08\uff09\u3010\u3011\u3008\u3009\u300a\u300b"  # CJK brackets
    "\u3002\u3001\uff0c\uff01\uff1f\uff1b\uff1a"  # ideographic full stop, comma; full-width punctuation
)
#: A URL in a text body: up to whitespace or a character that cannot be in one.
_URL = re.compile(f"https?://[^\\s{re.escape(_NOT_IN_URL)}]+", re.IGNORECASE)
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


def _sanitized(value: str) -> str:
    """A header value parsed from bytes (non-ASCII bytes as surrogate
    escapes) read as UTF-8, invalid bytes replaced."""
    return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


class _UTF8HeaderPolicy(email.policy.EmailPolicy):
    """``email.policy.SMTPUTF8`` whose parser reads 8-bit header bytes as
    UTF-8 (RFC 6532) instead of keeping them as surrogate escapes, which the
    address parser would hand on as they are (``jos\\udcc3\\udca9@...``)."""

    def header_source_parse(self, sourcelines: list[str]) -> tuple[str, str]:
        """The header's name and value, 8-bit bytes decoded as UTF-8."""
        name, value = super().header_source_parse(sourcelines)
        if not value.isascii():
            value = _sanitized(value)
        if not name.isascii():
            name = _sanitized(name)
        return name, value


#: The policy ``Message.email`` is parsed with.
UTF8_HEADERS = _UTF8HeaderPolicy(utf8=True)


def _decoded(part: EmailMessage) -> str:
    """A text part's content as str, charset and transfer encoding undone,
    lines ending in ``\\n``; a missing or unknown charset is read as UTF-8
    (of which ASCII is a part) with replacement characters."""
    content: object = None
    # A declared us-ascii body with 8-bit bytes is mislabelled UTF-8 more often than not.
    if part.get_content_charset() not in (None, "us-ascii", "ascii"):
        try:
            content = part.get_content()
        except Exception:  # an unknown charset (LookupError) or a part the stdlib cannot read
            content = None
    if not isinstance(content, str):
        try:
            payload = part.get_payload(decode=True)
        except Exception:  # a broken transfer encoding: show what is there
            payload = None
        if not isinstance(payload, bytes):
            raw = part.get_payload()
            payload = raw.encode("utf-8", "surrogateescape") if isinstance(raw, str) else b""
        content = payload.decode("utf-8", "replace")
    assert isinstance(content, str)
    return content.replace("\r\n", "\n")


class Message:
    """One message as the server accepted it: the envelope, the bytes, and a
    parsed view built only when first asked for, so that holding thousands
    of messages stays cheap."""

    __slots__ = (
        "_email",
        "_mail_options",
        "_options_per_rcpt",
        "_rcpt_options",
        "_views",
        "auth_identity",
        "data",
        "helo",
        "mail_from",
        "peer",
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
        # The option lists are made when first read if none were given (most
        # messages have none): a held message costs less.
        self._mail_options = mail_options or None
        self._rcpt_options = rcpt_options or None
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
        self._options_per_rcpt = options_per_rcpt if options_per_rcpt and any(options_per_rcpt) else None
        self._email: EmailMessage | None = None
        #: The views below, computed on first use.
        self._views: dict[str, Any] | None = None

    @property
    def test(self) -> str | None:
        """Its session's ``test``: the node id of the test running when the
        session began (under pytest), or None."""
        return self.session.test if self.session is not None else None

    @property
    def mail_options(self) -> list[str]:
        """The ESMTP parameters of MAIL FROM, e.g. ``["SIZE=1000", "BODY=8BITMIME"]``."""
        if self._mail_options is None:
            self._mail_options = []
        return self._mail_options

    @mail_options.setter
    def mail_options(self, value: list[str]) -> None:
        self._mail_options = value

    @property
    def rcpt_options(self) -> list[str]:
        """The ESMTP parameters of every RCPT TO, in one list."""
        if self._rcpt_options is None:
            self._rcpt_options = []
        return self._rcpt_options

    @rcpt_options.setter
    def rcpt_options(self, value: list[str]) -> None:
        self._rcpt_options = value

    @property
    def options_per_rcpt(self) -> list[list[str]]:
        """The parameters of each RCPT, one list per recipient in ``rcpt_tos``."""
        if self._options_per_rcpt is None:
            self._options_per_rcpt = [[] for _ in self.rcpt_tos]
        return self._options_per_rcpt

    @options_per_rcpt.setter
    def options_per_rcpt(self, value: list[list[str]]) -> None:
        self._options_per_rcpt = value

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
        """The message parsed with ``email.policy.SMTPUTF8`` (``default``
        that writes UTF-8 headers back as UTF-8), header values read as
        UTF-8 (RFC 6532) with replacement characters for invalid bytes."""
        if self._email is None:
            parsed = email.message_from_bytes(self.data, policy=UTF8_HEADERS)
            assert isinstance(parsed, EmailMessage)
            self._email = parsed
        return self._email

    def _view(self, name: str, compute: Callable[[], Any]) -> Any:
        if self._views is None:
            self._views = {}
        if name not in self._views:
            self._views[name] = compute()
        return self._views[name]

    def _fields(self, name: str) -> list[tuple[str, Any]]:
        """Each header field ``name``: its value as it came (unfolded) and
        the stdlib's parsed header object, or None where the parser raised
        (it has, on some malformed address lists)."""
        fields: list[tuple[str, Any]] = []
        message = self.email
        for key, raw in message.raw_items():
            if key.lower() != name.lower():
                continue
            unfolded = re.sub(r"\r?\n(?=[ \t])", "", str(raw))
            try:
                parsed = message.policy.header_fetch_parse(key, raw)
                str(parsed)  # the parse is finished here: let it fail now, not in a view
            except Exception:
                parsed = None
            fields.append((unfolded, parsed))
        return fields

    def _header_addresses(self, name: str) -> list[str]:
        addresses: list[str] = []
        for _, parsed in self._fields(name):
            try:
                addresses += [a.addr_spec for a in getattr(parsed, "addresses", ()) if a.addr_spec]
            except Exception:  # as in _fields
                continue
        return addresses

    @property
    def subject(self) -> str | None:
        """The Subject header, decoded (RFC 2047 words, raw UTF-8), or None."""
        values = self.header_values("Subject")
        return values[0] if values else None

    def header_values(self, name: str) -> list[str]:
        """The decoded value of each header field ``name``, in order (what
        the ``header`` criterion compares); a field the stdlib's parser
        cannot read is given as it came, unfolded."""
        return [raw if parsed is None else str(parsed) for raw, parsed in self._fields(name)]

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
    def reply_to(self) -> list[str]:
        """The addresses in the Reply-To header(s)."""
        return list(self._view("reply_to", lambda: self._header_addresses("Reply-To")))

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
