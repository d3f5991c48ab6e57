"""What a failing test's report shows of its server (the "smtpd" section),
and the ``.eml``/``mbox`` files ``--smtpd-save-dir`` keeps for CI."""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .addresses import ascii_address
from .matching import describe_session_end
from .message import Message

__all__ = ["MAX_SECTION_LINES", "describe", "mbox_entry", "safe_name", "save_artifacts"]

#: The section is cut after this many lines (a test that sent thousands of
#: messages should not bury its own failure).
MAX_SECTION_LINES = 200
#: Transcript lines shown per session.
MAX_TRANSCRIPT_LINES = 40


def _message_lines(index: int, message: Message) -> list[str]:
    tls = f"{message.tls.version} ({message.tls.mode})" if message.tls is not None else "none"
    auth = message.auth_identity if message.auth_identity is not None else "none"
    return [
        f"message #{index}: MAIL FROM:<{message.mail_from}> RCPT TO:{', '.join(f'<{r}>' for r in message.rcpt_tos)}",
        f"  subject {message.subject!r}, {len(message.data)} bytes, TLS {tls}, AUTH {auth}",
    ]


def _session_lines(index: int, session: Any) -> list[str]:
    lines = [f"session #{index}: {describe_session_end(session)}"]
    transcript = list(getattr(session, "transcript", ()) or ())
    shown = transcript[:MAX_TRANSCRIPT_LINES]
    for entry in shown:
        arrow = ">" if getattr(entry, "direction", "") == "client" else "<"
        lines.append(f"  {getattr(entry, 'time', 0.0):7.3f} {arrow} {getattr(entry, 'line', '')}")
    if len(transcript) > len(shown):
        lines.append(f"  ... {len(transcript) - len(shown)} more line(s)")
    return lines


def describe(messages: Sequence[Message], sessions: Sequence[Any]) -> str:
    """The report section: each message's envelope, subject, size, TLS and
    AUTH, then each session's commands and replies (the transcript masks
    AUTH secrets and shows data as sizes), cut to ``MAX_SECTION_LINES``."""
    lines = [f"{len(messages)} message(s), {len(sessions)} session(s)"]
    for index, message in enumerate(messages, 1):
        lines += _message_lines(index, message)
    for index, session in enumerate(sessions, 1):
        lines += _session_lines(index, session)
    if len(lines) > MAX_SECTION_LINES:
        cut = len(lines) - MAX_SECTION_LINES
        lines = [*lines[:MAX_SECTION_LINES], f"... {cut} more line(s) cut"]
    return "\n".join(lines)


def safe_name(nodeid: str) -> str:
    """A file name made from a test's node id: ``tests/test_a.py::test_b[1]``
    becomes ``tests_test_a.py__test_b_1``."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", nodeid.replace("::", "__")).strip("._")
    return name[:150] or "test"


_LINE_ENDING = re.compile(rb"\r\n|\r|\n")
#: Body lines an mbox reader would take for a new message's ``From_`` line
#: (or a quoted one): quoted by one more ``>`` (the mboxrd convention).
_FROM_LINE = re.compile(rb"^(>*From )", re.MULTILINE)


def mbox_entry(message: Message) -> bytes:
    """One message in mbox form: a ``From_`` line with the envelope sender
    and the time received, then the data with LF line endings and
    ``From`` lines quoted (mboxrd), then an empty line.

    The line is ASCII, as mbox readers (the stdlib's ``mailbox`` among
    them) require: an SMTPUTF8 sender's domain is written as A-labels and
    other non-ASCII characters as ``\\x{HEX}`` (``ascii_address()``); a
    space or a control character (a quoted local part) becomes ``_`` so that
    the line stays one sender and one date. The message itself is as
    received."""
    sender = re.sub(r"[\s\x00-\x1f\x7f]", "_", ascii_address(message.mail_from)) or "MAILER-DAEMON"
    stamp = time.asctime(time.gmtime(message.received_at))
    body = _FROM_LINE.sub(rb">\1", _LINE_ENDING.sub(b"\n", message.data))
    if body and not body.endswith(b"\n"):
        body += b"\n"
    return b"From " + sender.encode("ascii", "backslashreplace") + b" " + stamp.encode("ascii") + b"\n" + body + b"\n"


def save_artifacts(messages: Sequence[Message], directory: Path, nodeid: str) -> list[Path]:
    """Write each message as ``<test>-<n>.eml`` (the bytes as received; an
    HTML one also as a ``<test>-<n>.html`` preview) and all of them as one
    ``<test>.mbox`` in ``directory``; return the paths written."""
    if not messages:
        return []
    directory.mkdir(parents=True, exist_ok=True)
    stem = safe_name(nodeid)
    written = []
    for index, message in enumerate(messages, 1):
        path = directory / f"{stem}-{index}.eml"
        message.write_eml(path)
        written.append(path)
        if message.html is not None:  # beside it, a page to open in a browser
            from .preview import write_preview

            if write_preview(message, path.with_suffix(".html")):
                written.append(path.with_suffix(".html"))
    mbox_path = directory / f"{stem}.mbox"
    mbox_path.write_bytes(b"".join(mbox_entry(message) for message in messages))
    written.append(mbox_path)
    return written
