"""Linting one received message: what RFC 5321, 5322 and 2045 to 2049 make
checkable from its bytes, its envelope and its session, each finding with a
stable code (``CODES``). Pure functions over a ``Message``; no I/O."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from email import errors
from email.message import Message as EmailPart
from email.utils import getaddresses, parsedate_tz
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from .message import Message

__all__ = ["CODES", "Code", "LintFinding", "Severity", "check_messages", "failing", "format_findings", "lint"]

Severity = Literal["error", "warning"]


@dataclass(frozen=True, slots=True)
class LintFinding:
    """One problem found in a message."""

    #: The stable code, e.g. ``"missing-date"`` (see ``CODES``).
    code: str
    #: ``"error"`` or ``"warning"``.
    severity: Severity
    #: What exactly is wrong in this message.
    detail: str
    #: Where the rule is written, e.g. ``"RFC 5322 section 3.6"``.
    reference: str

    def __str__(self) -> str:
        return f"{self.severity} {self.code}: {self.detail} ({self.reference})"


@dataclass(frozen=True, slots=True)
class Code:
    """What a finding code means."""

    severity: Severity
    reference: str
    #: One line for the documentation's table.
    summary: str


#: Every finding code, in the order the checks run.
CODES: dict[str, Code] = {
    "bare-lf": Code("error", "RFC 5321 section 2.3.8", "a LF not preceded by CR in the message data"),
    "bare-cr": Code("error", "RFC 5321 section 2.3.8", "a CR not followed by LF in the message data"),
    "line-too-long": Code("error", "RFC 5322 section 2.1.1", "a line over 998 octets, CRLF excluded"),
    "nul-byte": Code("error", "RFC 2045 section 2.8", "a NUL octet in the message data"),
    "8bit-without-8bitmime": Code(
        "error", "RFC 6152 section 3", "8-bit octets while MAIL had no BODY=8BITMIME, or the server did not offer it"
    ),
    "utf8-without-smtputf8": Code(
        "error", "RFC 6531 section 3.4", "non-ASCII in headers or envelope while MAIL had no SMTPUTF8"
    ),
    "size-mismatch": Code("error", "RFC 1870", "MAIL's SIZE= declared fewer octets than were sent"),
    "malformed-header": Code(
        "error", "RFC 5322 section 2.2", "a line in the header section that is neither a field nor a continuation"
    ),
    "missing-date": Code("error", "RFC 5322 section 3.6", "no Date header"),
    "bad-date": Code("error", "RFC 5322 section 3.3", "a Date header that is not an RFC 5322 date"),
    "missing-from": Code("error", "RFC 5322 section 3.6", "no From header"),
    "sender-required": Code("error", "RFC 5322 section 3.6.2", "several From mailboxes and no Sender header"),
    "missing-message-id": Code("warning", "RFC 5322 section 3.6.4", "no Message-ID header"),
    "duplicate-header": Code(
        "error", "RFC 5322 section 3.6", "a field allowed once (Date, From, Subject, Content-Type...) given twice"
    ),
    "bcc-leaked": Code("error", "RFC 5322 section 3.6.3", "a Bcc header in the transmitted data"),
    "missing-mime-version": Code("warning", "RFC 2045 section 4", "MIME headers without MIME-Version"),
    "mime-no-boundary": Code("error", "RFC 2046 section 5.1.1", "a multipart part with no boundary parameter"),
    "mime-bad-boundary": Code(
        "error", "RFC 2046 section 5.1.1", "a boundary not found in the body, not closed, or not a valid boundary"
    ),
    "mime-bad-encoding": Code(
        "error", "RFC 2045 section 6.4", "an unknown transfer encoding, or one other than 7bit/8bit/binary on multipart"
    ),
    "mime-8bit-in-7bit": Code(
        "error", "RFC 2045 section 6.2", "a part declared 7bit, or with no transfer encoding, that has 8-bit octets"
    ),
    "mime-bad-base64": Code("error", "RFC 2045 section 6.8", "a base64 part with characters or padding base64 lacks"),
    "charset-missing": Code("error", "RFC 2046 section 4.1.2", "a non-ASCII text part with no charset parameter"),
    "no-text-alternative": Code("warning", "RFC 2046 section 5.1.4", "an HTML body without a text/plain alternative"),
    "envelope-from-mismatch": Code(
        "warning", "RFC 7489 section 3.1", "the envelope sender's domain is not aligned with the From header's"
    ),
    "auth-without-tls": Code("warning", "RFC 4954 section 4", "the session authenticated without TLS"),
}

#: Fields a message may have once (RFC 5322 section 3.6's table).
ONCE = ("Date", "From", "Sender", "Reply-To", "To", "Cc", "Bcc", "Message-ID", "In-Reply-To", "References", "Subject")
#: Fields each MIME entity may have once (RFC 2045).
ONCE_PER_PART = ("MIME-Version", "Content-Type", "Content-Transfer-Encoding", "Content-ID", "Content-Disposition")
#: RFC 5322 section 2.1.1: at most 998 characters per line, CRLF excluded.
MAX_LINE = 998
_ENCODINGS = ("7bit", "8bit", "binary", "quoted-printable", "base64")
_BOUNDARY = re.compile(r"[0-9A-Za-z'()+_,./:=? -]{0,69}[0-9A-Za-z'()+_,./:=?-]\Z")


def _finding(code: str, detail: str) -> LintFinding:
    spec = CODES[code]
    return LintFinding(code, spec.severity, detail, spec.reference)


def _line_of(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


def _option(options: Iterable[str], name: str) -> str | None:
    """The value of ``NAME=value`` among MAIL's parameters ("" for a bare keyword)."""
    for option in options:
        key, _, value = option.partition("=")
        if key.upper() == name:
            return value
    return None


def _offered(message: Message, keyword: str) -> bool:
    """Whether an EHLO reply of the message's session listed ``keyword``;
    True when the message has no session to tell (built by hand)."""
    if message.session is None:
        return True
    for entry in message.session.transcript:
        if (
            entry.direction == "server"
            and entry.line[:4] in ("250-", "250 ")
            and entry.line[4:].split(" ", 1)[0].upper() == keyword
        ):
            return True
    return False


def _has_non_ascii(text: str) -> bool:
    # Undecodable octets come out of the parser as surrogates, above 127 too.
    return any(ord(char) > 127 for char in text)


def _data_findings(message: Message, binary: bool) -> Iterator[LintFinding]:
    data = message.data
    if not binary:
        bare_lf = [m.start() for m in re.finditer(rb"(?<!\r)\n", data)]
        if bare_lf:
            yield _finding("bare-lf", f"{len(bare_lf)} bare LF(s), the first on line {_line_of(data, bare_lf[0])}")
        bare_cr = [m.start() for m in re.finditer(rb"\r(?!\n)", data)]
        if bare_cr:
            yield _finding("bare-cr", f"{len(bare_cr)} bare CR(s), the first on line {_line_of(data, bare_cr[0])}")
        long_lines = [
            (number, len(line)) for number, line in enumerate(re.split(rb"\r\n|\n|\r", data), 1) if len(line) > MAX_LINE
        ]
        if long_lines:
            number, length = long_lines[0]
            yield _finding(
                "line-too-long",
                f"{len(long_lines)} line(s) over {MAX_LINE} octets, the first is line {number} ({length} octets)",
            )
        if b"\x00" in data:
            yield _finding("nul-byte", f"a NUL octet on line {_line_of(data, data.index(0))}")
    eight_bit = re.search(rb"[\x80-\xff]", data)
    if eight_bit is not None:
        where = f"8-bit octets (the first on line {_line_of(data, eight_bit.start())})"
        body = (_option(message.mail_options, "BODY") or "7BIT").upper()
        if body not in ("8BITMIME", "BINARYMIME"):
            offered = "" if _offered(message, "8BITMIME") else " (the server did not offer 8BITMIME)"
            yield _finding("8bit-without-8bitmime", f"{where}, and MAIL FROM had no BODY=8BITMIME{offered}")
        elif not _offered(message, body):
            yield _finding("8bit-without-8bitmime", f"{where} with BODY={body}, which the server did not offer")


def _envelope_findings(message: Message, head: bytes) -> Iterator[LintFinding]:
    if _option(message.mail_options, "SMTPUTF8") is None:
        places = [
            name
            for name, text in (
                ("MAIL FROM", message.mail_from),
                ("RCPT TO", " ".join(message.rcpt_tos)),
                ("the header section", head.decode("ascii", "surrogateescape")),
            )
            if _has_non_ascii(text)
        ]
        places += ["a MIME part's headers"] if _part_headers_non_ascii(message) else []
        if places:
            yield _finding("utf8-without-smtputf8", f"non-ASCII in {', '.join(places)} without SMTPUTF8")
    size = _option(message.mail_options, "SIZE")
    # The CRLF ending the last line may go uncounted: smtplib declares the
    # size of a message before it adds the CRLF that data without one needs.
    last_crlf = 2 if message.data.endswith(b"\r\n") else 0
    if size is not None and size.isdigit() and int(size) < len(message.data) - last_crlf:
        yield _finding("size-mismatch", f"MAIL declared SIZE={size}, the message has {len(message.data)} octets")


def _part_headers_non_ascii(message: Message) -> bool:
    parts = list(message.email.walk())[1:]
    return any(_has_non_ascii(f"{name}{value}") for part in parts for name, value in part.raw_items())


def _header_findings(message: Message) -> Iterator[LintFinding]:
    parsed = message.email
    if any(
        isinstance(defect, errors.MissingHeaderBodySeparatorDefect | errors.FirstHeaderLineIsContinuationDefect)
        for defect in parsed.defects
    ):
        yield _finding("malformed-header", "the header section has a line that is no field (the body starts there)")
    names = [name.lower() for name in parsed]
    raw = dict((name.lower(), str(value)) for name, value in reversed(list(parsed.raw_items())))
    if "date" not in names:
        yield _finding("missing-date", "the message has no Date header")
    elif parsedate_tz(raw["date"]) is None:
        yield _finding("bad-date", f"Date: {raw['date']!r} is not an RFC 5322 date")
    if "from" not in names:
        yield _finding("missing-from", "the message has no From header")
    elif len(getaddresses([raw["from"]])) > 1 and "sender" not in names:
        yield _finding("sender-required", f"From: {raw['from']!r} names several mailboxes and there is no Sender")
    if "message-id" not in names:
        yield _finding("missing-message-id", "the message has no Message-ID header")
    twice = [field for field in (*ONCE, *ONCE_PER_PART) if names.count(field.lower()) > 1]
    if twice:
        yield _finding("duplicate-header", ", ".join(f"{field} {names.count(field.lower())} times" for field in twice))
    if "bcc" in names:
        yield _finding("bcc-leaked", f"Bcc: {raw['bcc']!r} was sent to every recipient")
    if "mime-version" not in names and ({"content-type", "content-transfer-encoding"} & set(names)):
        yield _finding("missing-mime-version", "Content-Type or Content-Transfer-Encoding without MIME-Version")


def _part_name(index: int, part: EmailPart) -> str:
    return f"part {index} ({part.get_content_type()})" if index else f"the message ({part.get_content_type()})"


def _multipart_findings(name: str, part: EmailPart, encoding: str) -> Iterator[LintFinding]:
    boundary = part.get_boundary()
    if boundary is None:
        yield _finding("mime-no-boundary", f"{name} has no boundary parameter")
        return
    if any(
        isinstance(d, errors.NoBoundaryInMultipartDefect | errors.StartBoundaryNotFoundDefect) for d in part.defects
    ):
        yield _finding("mime-bad-boundary", f"{name}: boundary {boundary!r} not found in its body")
    elif any(isinstance(d, errors.CloseBoundaryNotFoundDefect) for d in part.defects):
        yield _finding("mime-bad-boundary", f"{name}: boundary {boundary!r} is never closed (--{boundary}--)")
    elif not _BOUNDARY.match(boundary):
        yield _finding("mime-bad-boundary", f"{name}: {boundary!r} is not a valid boundary (1 to 70 characters)")
    if encoding not in ("7bit", "8bit", "binary"):
        yield _finding("mime-bad-encoding", f"{name} has Content-Transfer-Encoding {encoding!r}")


def _leaf_findings(name: str, part: EmailPart, encoding: str) -> Iterator[LintFinding]:
    if encoding not in _ENCODINGS:
        yield _finding("mime-bad-encoding", f"{name} has the unknown Content-Transfer-Encoding {encoding!r}")
        return
    payload = part.get_payload()
    if not isinstance(payload, str):
        return  # message/rfc822: its parts are walked on their own
    if encoding == "7bit" and _has_non_ascii(payload):
        declared = "declares 7bit" if part.get("Content-Transfer-Encoding") else "has no transfer encoding"
        yield _finding("mime-8bit-in-7bit", f"{name} {declared} and has 8-bit octets")
    decoded = part.get_payload(decode=True)  # notes base64 defects on the part
    if encoding == "base64" and any(
        isinstance(d, errors.InvalidBase64CharactersDefect | errors.InvalidBase64PaddingDefect) for d in part.defects
    ):
        yield _finding("mime-bad-base64", f"{name} is not valid base64")
    if (
        part.get_content_maintype() == "text"
        and part.get_param("charset") is None
        and isinstance(decoded, bytes)
        and re.search(rb"[\x80-\xff]", decoded)
    ):
        yield _finding("charset-missing", f"{name} has non-ASCII text and no charset")


def _mime_findings(message: Message) -> Iterator[LintFinding]:
    html = text = False
    for index, part in enumerate(message.email.walk()):
        name = _part_name(index, part)
        encoding = str(part.get("Content-Transfer-Encoding", "7bit")).strip().lower()
        if index:  # the message's own fields are checked with its headers
            yield from _duplicates_in_part(name, part)
        if part.get_content_maintype() == "multipart":
            yield from _multipart_findings(name, part, encoding)
            continue
        yield from _leaf_findings(name, part, encoding)
        if part.get_content_disposition() != "attachment":
            html = html or part.get_content_type() == "text/html"
            text = text or part.get_content_type() == "text/plain"
    if html and not text:
        yield _finding("no-text-alternative", "an HTML body and no text/plain part")


def _duplicates_in_part(name: str, part: EmailPart) -> Iterator[LintFinding]:
    names = [key.lower() for key in part]
    twice = [field for field in ONCE_PER_PART if names.count(field.lower()) > 1]
    if twice:
        yield _finding("duplicate-header", f"{name}: " + ", ".join(f"{field} given twice" for field in twice))


def _domain(address: str) -> str:
    return address.rpartition("@")[2].lower().rstrip(".")


def _session_findings(message: Message) -> Iterator[LintFinding]:
    header_from = message.from_
    if message.mail_from and header_from:
        envelope, shown = _domain(message.mail_from), _domain(header_from)
        # Relaxed alignment, approximated without the public suffix list:
        # the same domain, or one a subdomain of the other.
        if not (envelope == shown or envelope.endswith("." + shown) or shown.endswith("." + envelope)):
            yield _finding(
                "envelope-from-mismatch", f"MAIL FROM domain {envelope!r} is not aligned with From's {shown!r}"
            )
    if message.auth_identity is not None and message.tls is None:
        yield _finding("auth-without-tls", f"AUTH as {message.auth_identity!r} on a session without TLS")


def lint(message: Message) -> list[LintFinding]:
    """Every finding for ``message``, in ``CODES`` order per check."""
    binary = (_option(message.mail_options, "BODY") or "").upper() == "BINARYMIME"
    head = re.split(rb"\r?\n\r?\n", message.data, maxsplit=1)[0]
    return [
        *_data_findings(message, binary),
        *_envelope_findings(message, head),
        *_header_findings(message),
        *_mime_findings(message),
        *_session_findings(message),
    ]


def failing(findings: Iterable[LintFinding], level: str, ignore: Iterable[str] = ()) -> list[LintFinding]:
    """The findings that fail at ``level`` (``"error"``: errors only;
    ``"warning"``: warnings too), less the ``ignore``\\ d codes."""
    if level not in ("error", "warning"):
        raise ValueError(f"lint level must be 'error' or 'warning', got {level!r}")
    ignored = set(ignore)
    unknown = ignored - set(CODES)
    if unknown:
        raise ValueError(f"unknown lint code(s) {sorted(unknown)}; the codes are: {', '.join(CODES)}")
    return [f for f in findings if f.code not in ignored and (level == "warning" or f.severity == "error")]


def format_findings(found: Iterable[tuple[int, Message, list[LintFinding]]]) -> str:
    """The findings of each message, numbered as the server received them."""
    lines = []
    for index, message, findings in found:
        lines.append(f"  #{index} from {message.mail_from!r} to {message.rcpt_tos!r}, subject {message.subject!r}:")
        lines += [f"    {finding}" for finding in findings]
    return "\n".join(lines)


def check_messages(messages: Iterable[Message], level: str = "error", ignore: Iterable[str] = ()) -> None:
    """An ``AssertionError`` listing, message by message, the findings that
    fail at ``level`` (``assert_well_formed`` and the ``smtpd_lint`` check)."""
    __tracebackhide__ = True
    ignore = tuple(ignore)
    checked = list(messages)
    found = [(index, message, failing(message.lint(), level, ignore)) for index, message in enumerate(checked, 1)]
    found = [entry for entry in found if entry[2]]
    if found:
        count = sum(len(entry[2]) for entry in found)
        raise AssertionError(
            f"{len(found)} of {len(checked)} message(s) not well formed ({count} finding(s) at level {level!r}"
            + (f", ignoring {', '.join(ignore)}" if ignore else "")
            + "):\n"
            + format_findings(found)
        )
