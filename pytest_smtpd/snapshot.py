"""Email snapshots for syrupy: ``EmailSnapshotExtension`` stores a message
as a readable ``.eml`` (text parts decoded, volatile headers and MIME
boundaries normalised) and shows a failing comparison as a diff per header
block and part. Needs the optional extra ``pytest-smtpd[snapshot]``."""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import email
import re
from collections.abc import Iterable, Iterator
from email.header import decode_header, make_header
from email.message import Message as EmailPart
from email.policy import compat32
from typing import Any

try:
    from syrupy.assertion import SnapshotAssertion
    from syrupy.extensions.single_file import SingleFileSnapshotExtension, WriteMode
except ImportError as exc:  # pragma: no cover - the message is the point
    raise ModuleNotFoundError(
        "email snapshots need syrupy, the optional extra: pip install 'pytest-smtpd[snapshot]'", name="syrupy"
    ) from exc

__all__ = ["EmailSnapshotAssertion", "EmailSnapshotExtension", "email_diff", "email_snapshot_for", "normalise"]

#: Headers whose value changes at every send, and what they become.
VOLATILE = {"date": "<date>", "message-id": "<message-id>", "received": "<received>"}
#: The DKIM-Signature tags that change at every signing.
DKIM_VOLATILE = ("b", "bh", "t")


def _data(message: Any) -> bytes:
    """The bytes of a ``pytest_smtpd`` Message, an ``email`` message, or bytes."""
    if isinstance(message, bytes | bytearray | memoryview):
        return bytes(message)
    if isinstance(message, EmailPart):
        return message.as_bytes()
    data = getattr(message, "data", None)
    if isinstance(data, bytes):
        return data
    raise TypeError(f"an email snapshot compares a Message, an email.message.Message or bytes, not {message!r}")


def _readable(value: str) -> str:
    """A raw header value unfolded, 8-bit octets as UTF-8, RFC 2047 decoded."""
    value = re.sub(r"\r?\n(?=[ \t])", "", value).strip()
    value = value.encode("ascii", "surrogateescape").decode("utf-8", "replace")
    if "=?" in value:
        with contextlib.suppress(ValueError, LookupError, UnicodeError):
            value = str(make_header(decode_header(value)))
    return value


def _dkim(value: str) -> str:
    tags = []
    for tag in value.split(";"):
        name = tag.partition("=")[0].strip()
        tags.append(f" {name}=<{name}>" if name in DKIM_VOLATILE else tag)
    return ";".join(tags).strip()


def _header(name: str, value: str, part: EmailPart, boundaries: dict[str, str], ignored: set[str]) -> str:
    key = name.lower()
    if key in ignored:
        return "<ignored>"
    if key in VOLATILE:
        return VOLATILE[key]
    value = _readable(value)
    if key == "dkim-signature":
        return _dkim(value)
    if key == "content-type":
        boundary = part.get_boundary()
        if boundary is not None and boundary in boundaries:
            value = value.replace(boundary, boundaries[boundary])
        if _is_text_leaf(part):
            value = re.sub(r'charset\s*=\s*("[^"]*"|[^;\s]+)', 'charset="utf-8"', value, flags=re.IGNORECASE)
    if key == "content-transfer-encoding" and _is_text_leaf(part):
        return "8bit"
    return value


def _is_text_leaf(part: EmailPart) -> bool:
    return part.get_content_maintype() == "text" and not part.is_multipart()


def _text(part: EmailPart) -> str:
    payload = part.get_payload(decode=True)
    octets = payload if isinstance(payload, bytes) else b""
    try:
        text = octets.decode(part.get_content_charset() or "us-ascii", "replace")
    except LookupError:
        text = octets.decode("utf-8", "replace")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _write(part: EmailPart, out: list[str], boundaries: dict[str, str], ignored: set[str]) -> None:
    out += [f"{name}: {_header(name, value, part, boundaries, ignored)}" for name, value in part.raw_items()]
    out.append("")
    payload = part.get_payload()
    if isinstance(payload, list):
        boundary = boundaries.get(part.get_boundary() or "")
        for sub in payload:
            assert isinstance(sub, EmailPart)
            if boundary is not None:
                out.append(f"--{boundary}")
            _write(sub, out, boundaries, ignored)
        if boundary is not None:
            out.append(f"--{boundary}--")
    elif _is_text_leaf(part):
        out += _text(part).rstrip("\n").split("\n")
    else:
        out += str(payload).replace("\r\n", "\n").strip("\n").split("\n")


def normalise(message: Any, ignore_headers: Iterable[str] = ()) -> str:
    """The snapshot text of ``message``: an ``.eml`` with ``\\n`` line ends,
    text parts decoded to UTF-8 (8bit), ``Date``, ``Message-ID``,
    ``Received``, the ``ignore_headers`` and DKIM's ``b=``/``bh=``/``t=``
    replaced by placeholders, boundaries renamed ``boundary-1``... in order."""
    parsed = email.message_from_bytes(_data(message), policy=compat32)
    boundaries: dict[str, str] = {}
    for part in parsed.walk():
        boundary = part.get_boundary()
        if boundary is not None and boundary not in boundaries:
            boundaries[boundary] = f"boundary-{len(boundaries) + 1}"
    out: list[str] = []
    _write(parsed, out, boundaries, {name.lower() for name in ignore_headers})
    return "\n".join(out) + "\n"


def _sections(text: str) -> list[tuple[str, list[str]]]:
    """A snapshot text as ("headers", lines) and ("part N (type)", lines)."""
    parsed = email.message_from_string(text, policy=compat32)
    sections: list[tuple[str, list[str]]] = []
    for index, part in enumerate(parsed.walk()):
        kind = part.get_content_type()
        headers = [f"{name}: {value}" for name, value in part.raw_items()]
        body = [] if part.is_multipart() else str(part.get_payload()).split("\n")
        if index == 0:
            sections.append(("headers", headers))
            if body:
                sections.append((f"body ({kind})", body))
        else:
            sections.append((f"part {index} ({kind})", [*headers, "", *body] if body else headers))
    return sections


def email_diff(snapshot: str, received: str) -> Iterator[str]:
    """A unified diff of two snapshot texts (``-`` snapshot, ``+``
    received), one per differing section: the headers, then each part
    named by number and type."""
    old, new = dict(_sections(snapshot)), dict(_sections(received))
    for name in dict.fromkeys([*old, *new]):
        before, after = old.get(name, []), new.get(name, [])
        if before != after:
            yield f"{name}:"
            # Without the ---/+++ lines: the section's name says what is compared.
            diff = list(difflib.unified_diff(before, after, n=1, lineterm=""))[2:]
            yield from (f"  {line}" for line in diff)


class EmailSnapshotExtension(SingleFileSnapshotExtension):
    """syrupy extension: one ``.eml`` file per snapshot, normalised by
    ``normalise`` (a subclass's ``ignore_headers`` normalised too)."""

    file_extension = "eml"
    _file_extension = "eml"  # syrupy before 4.1
    _write_mode = WriteMode.TEXT
    #: Further headers replaced by ``<ignored>``.
    ignore_headers: tuple[str, ...] = ()

    def serialize(self, data: Any, **kwargs: Any) -> str:
        """The snapshot text of a message (see ``normalise``)."""
        return normalise(data, self.ignore_headers)

    def diff_lines(self, serialized_data: Any, snapshot_data: Any) -> Iterator[str]:
        """The diff shown when a comparison fails (see ``email_diff``)."""
        yield from email_diff(str(snapshot_data), str(serialized_data))


class EmailSnapshotAssertion(SnapshotAssertion):
    """syrupy's ``snapshot`` with ``EmailSnapshotExtension``; calling it
    with ``ignore_headers=[...]`` normalises those headers too."""

    def __call__(self, *, ignore_headers: Iterable[str] = (), **options: Any) -> SnapshotAssertion:
        """``snapshot(...)``'s options, and ``ignore_headers``."""
        names = tuple(ignore_headers)
        if names:
            options["extension_class"] = type(
                "EmailSnapshotExtension", (EmailSnapshotExtension,), {"ignore_headers": names}
            )
        return super().__call__(**options)


def email_snapshot_for(snapshot: SnapshotAssertion) -> EmailSnapshotAssertion:
    """The ``email_snapshot`` fixture's value, made from syrupy's ``snapshot``."""
    fields = {field.name: getattr(snapshot, field.name) for field in dataclasses.fields(snapshot) if field.init}
    fields["extension_class"] = EmailSnapshotExtension
    return EmailSnapshotAssertion(**fields)
