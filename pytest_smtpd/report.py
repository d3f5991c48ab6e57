"""What a failing test's report shows of its server (the "smtpd" section),
and the ``.eml``/``mbox`` files ``--smtpd-save-dir`` keeps for CI."""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .addresses import ascii_address
from .config import DEFAULT_REPORT_LINES
from .matching import (
    LISTED_AT_EACH_END,
    at_each_end,
    describe_session_end,
    last_error_reply,
    listing,
    sessions_without_message,
)
from .message import Message

__all__ = ["MAX_SECTION_LINES", "describe", "mbox_entry", "safe_name", "save_artifacts", "section"]

#: The section is cut after this many lines unless ``smtpd_report_lines`` says otherwise.
MAX_SECTION_LINES = DEFAULT_REPORT_LINES

#: Transcript lines shown per session (``full``).
MAX_TRANSCRIPT_LINES = 40
#: What ``full`` adds: how to get it, for the ``summary``.
FULL_HINT = "transcripts: smtpd_report = full, or @pytest.mark.smtpd(report='full')"


def _message_lines(index: int, message: Message) -> list[str]:
    tls = f"{message.tls.version} ({message.tls.mode})" if message.tls is not None else "none"
    auth = message.auth_identity if message.auth_identity is not None else "none"
    return [
        f"message #{index}: MAIL FROM:<{message.mail_from}> RCPT TO:{', '.join(f'<{r}>' for r in message.rcpt_tos)}",
        f"  subject {message.subject!r}, {len(message.data)} bytes, TLS {tls}, AUTH {auth}",
    ]


def _messages_lines(messages: Sequence[Message]) -> list[str]:
    """Each message's two lines; of a long list, the first and last few
    around a count of those left out."""
    lines: list[str] = []
    for index in at_each_end(len(messages), all_up_to=2 * LISTED_AT_EACH_END + 2):
        if index is None:
            lines.append(f"... {len(messages) - 2 * LISTED_AT_EACH_END} more message(s) ...")
        else:
            lines += _message_lines(index + 1, messages[index])
    return lines


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


def _last_error_line(sessions: Sequence[Any]) -> str | None:
    """The newest session's last error reply, told with the command it
    answered (the server's own 421 at a stop is no such reply)."""
    for index in range(len(sessions), 0, -1):
        error = last_error_reply(sessions[index - 1])
        if error is not None:
            peer = getattr(sessions[index - 1], "peer", ("?", 0))
            return f"last error reply: {error}, in session #{index} from {peer[0]}:{peer[1]}"
    return None


def describe(
    messages: Sequence[Message],
    sessions: Sequence[Any],
    *,
    mode: str = "full",
    max_lines: int = DEFAULT_REPORT_LINES,
    near_miss: Sequence[str] = (),
) -> str:
    """The report section. ``summary``: each message's envelope, subject,
    size, TLS and AUTH (the first and last few of a long list), the near
    miss of the last failed ``assert_sent``, the last error reply a client
    got, and how each session without a message ended. ``full`` adds each session's commands and replies (the
    transcript masks AUTH secrets and shows data as sizes). Cut to
    ``max_lines`` (0: no limit)."""
    lines = [f"{len(messages)} message(s), {len(sessions)} session(s)"]
    lines += _messages_lines(messages)
    lines += near_miss
    if mode == "full":
        for index, session in enumerate(sessions, 1):
            lines += _session_lines(index, session)
    else:
        error = _last_error_line(sessions)
        if error is not None:
            lines.append(error)
        quiet = sessions_without_message(sessions)
        if quiet:
            lines.append(f"{len(quiet)} session(s) ended without a message:")
            lines += listing(quiet, lambda _, session: describe_session_end(session))
        if sessions:
            lines.append(FULL_HINT)
    if max_lines and len(lines) > max_lines:
        cut = len(lines) - max_lines
        lines = [*lines[:max_lines], f"... {cut} more line(s) cut (smtpd_report_lines = {max_lines})"]
    return "\n".join(lines)


def section(server: Any, messages: Sequence[Message], *, mode: str, max_lines: int) -> str | None:
    """The "smtpd" section of a failing test's report on ``server`` in
    ``mode`` (``full``, ``summary``, or ``off``: None)."""
    if mode == "off":
        return None
    near_miss = list(getattr(server, "near_miss", ()) or ())
    return describe(messages, list(server.sessions), mode=mode, max_lines=max_lines, near_miss=near_miss)


#: The longest file name stem (before ``-<n>.eml``), hash suffix included.
MAX_NAME = 150


def safe_name(nodeid: str) -> str:
    """A file name made from a test's node id, readable and unique per test:
    ``tests/test_a.py::test_b`` becomes ``tests_test_a.py__test_b-<hash>``.
    A name that the replacements changed beyond ``::`` -> ``__``, or that is
    cut at ``MAX_NAME``, ends in a hash of the node id, so that ``[a/b]``
    and ``[a b]`` do not share one name."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", nodeid.replace("::", "__")).strip("._") or "test"
    if name.replace("__", "::") == nodeid and len(name) <= MAX_NAME:
        return name
    digest = hashlib.sha256(nodeid.encode("utf-8", "surrogatepass")).hexdigest()[:10]
    return f"{name[: MAX_NAME - len(digest) - 1]}-{digest}"


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
