"""What a failing test's report shows of its server (the "smtpd" section),
and the ``.eml``/``mbox`` files ``--smtpd-save-dir`` keeps for CI."""

from __future__ import annotations

import mailbox
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .matching import describe_session_end
from .message import Message

__all__ = ["MAX_SECTION_LINES", "describe", "safe_name", "save_artifacts"]

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


def save_artifacts(messages: Sequence[Message], directory: Path, nodeid: str) -> list[Path]:
    """Write each message as ``<test>-<n>.eml`` (an HTML one also as a
    ``<test>-<n>.html`` preview) and all of them as one ``<test>.mbox`` in
    ``directory``; return the paths written."""
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
    mbox_path.unlink(missing_ok=True)
    box = mailbox.mbox(mbox_path, create=True)
    try:
        for message in messages:
            entry = mailbox.mboxMessage(message.data)
            entry.set_from(message.mail_from or "MAILER-DAEMON", time.gmtime(message.received_at))
            box.add(entry)
        box.flush()
    finally:
        box.close()
    written.append(mbox_path)
    return written
