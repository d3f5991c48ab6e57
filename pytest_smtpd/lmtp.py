"""A small LMTP client (RFC 2033) for handing messages to Mailman 3, which
takes mail on LMTP (port 8024 by default). aiosmtplib speaks SMTP only, and
LMTP's one-reply-per-recipient after DATA is the part that matters here."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["LMTPResult", "deliver_lmtp"]

#: A reply line: the code, then "-" (more lines follow) or " " and the text;
#: a last line may be the code alone (RFC 5321 4.2).
_REPLY_LINE = re.compile(rb"([2-5][0-9][0-9])(?:([ -])(.*))?\Z")
#: Longest reply line we read; a server sending more is broken.
_LINE_LIMIT = 8192


class _LMTPError(Exception):
    """The conversation broke down; no recipient got the message."""


@dataclass
class LMTPResult:
    """What the LMTP server said for each recipient."""

    delivered: list[str] = field(default_factory=list)
    #: recipient -> (code, text); code -1 when the server could not be reached.
    refused: dict[str, tuple[int, str]] = field(default_factory=dict)


async def _read_reply(reader: asyncio.StreamReader) -> tuple[int, str]:
    lines: list[str] = []
    while True:
        raw = await reader.readuntil(b"\n")
        match = _REPLY_LINE.match(raw.rstrip(b"\r\n"))
        if match is None:
            raise _LMTPError(f"not an LMTP reply: {raw[:80]!r}")
        lines.append((match.group(3) or b"").decode("utf-8", errors="replace"))
        if match.group(2) != b"-":
            return int(match.group(1)), "\n".join(lines)


def _extension_needed(option: str) -> str:
    """The extension the server must offer for MAIL parameter ``option``:
    ``8BITMIME`` for ``BODY=``, else the parameter's own keyword."""
    keyword = option.split("=", 1)[0].upper()
    return "8BITMIME" if keyword == "BODY" else keyword


def _options_for(
    mail_options: Sequence[str], extensions: set[str], addresses: Sequence[str], data: bytes
) -> tuple[list[str], tuple[int, str] | None]:
    """The MAIL parameters of ``mail_options`` the server offers, or the
    refusal for every recipient when the message was sent with SMTPUTF8,
    needs it (a non-ASCII address, UTF-8 headers) and the server does not
    offer it. Relayed without SMTPUTF8, an 8-bit body gets BODY=8BITMIME."""
    options = [option for option in mail_options if _extension_needed(option) in extensions]
    if "SMTPUTF8" not in (option.upper() for option in mail_options) or "SMTPUTF8" in extensions:
        return options, None
    if not all(address.isascii() for address in addresses):
        return options, (553, "5.6.7 LMTP server does not offer SMTPUTF8, needed for a non-ASCII address")
    end = data.find(b"\r\n\r\n")
    if not data[: end if end >= 0 else len(data)].isascii():
        return options, (550, "5.6.7 LMTP server does not offer SMTPUTF8, needed for this message's UTF-8 headers")
    if not data.isascii() and "8BITMIME" in extensions and not any(o.upper().startswith("BODY=") for o in options):
        options.append("BODY=8BITMIME")
    return options, None


def _dot_stuffed(data: bytes) -> bytes:
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    stuffed = (b"\r\n" + data).replace(b"\r\n.", b"\r\n..")[2:]
    return stuffed + b".\r\n"


async def deliver_lmtp(
    address: tuple[str, int],
    mailfrom: str,
    rcpttos: Sequence[str],
    data: bytes,
    *,
    local_hostname: str,
    mail_options: Sequence[str] = (),
    timeout: float = 60.0,
) -> LMTPResult:
    """Deliver ``data`` (CRLF line endings) to ``rcpttos`` over LMTP. Never
    raises for a server problem: a recipient the server did not take is in
    ``refused``."""
    outcome = _Outcome()
    try:
        await asyncio.wait_for(
            _transaction(address, mailfrom, list(rcpttos), data, local_hostname, list(mail_options), outcome),
            timeout,
        )
    except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, _LMTPError) as exc:
        result = outcome.result
        if outcome.settled:
            # Only the goodbye failed: every recipient's fate is already known,
            # and calling the delivered ones refused would make them duplicates.
            return result
        reason = f"LMTP delivery to {address[0]}:{address[1]} failed: {_what_failed(exc, outcome.waiting_for)}"
        # RFC 2033 4.2: each recipient's fate is its own reply. Those whose
        # reply came keep it; only the others share the failure.
        for recipient in rcpttos:
            if recipient not in result.refused and recipient not in result.delivered:
                result.refused[recipient] = (-1, reason)
        return result
    return outcome.result


def _what_failed(exc: BaseException, waiting_for: str) -> str:
    """The failure in words: what went wrong, and what we were waiting for."""
    if isinstance(exc, asyncio.IncompleteReadError):
        what = "the server closed the connection"
    elif isinstance(exc, asyncio.TimeoutError):
        what = "no answer in time"
    elif isinstance(exc, asyncio.LimitOverrunError):
        what = f"a reply line longer than {_LINE_LIMIT} bytes"
    else:
        what = str(exc) or type(exc).__name__
    return f"{what} (waiting for {waiting_for})" if waiting_for else what


@dataclass
class _Outcome:
    result: LMTPResult = field(default_factory=LMTPResult)
    #: Whether the server has said what became of every recipient.
    settled: bool = False
    #: What the conversation waits for, for the error text if it breaks.
    waiting_for: str = ""


async def _transaction(
    address: tuple[str, int],
    mailfrom: str,
    rcpttos: list[str],
    data: bytes,
    local_hostname: str,
    mail_options: list[str],
    outcome: _Outcome,
) -> None:
    reader, writer = await asyncio.open_connection(address[0], address[1], limit=_LINE_LIMIT)
    result = outcome.result

    async def command(line: str) -> tuple[int, str]:
        outcome.waiting_for = f"the reply to {line}"
        writer.write(line.encode("utf-8") + b"\r\n")
        await writer.drain()
        return await _read_reply(reader)

    try:
        outcome.waiting_for = "the greeting"
        code, text = await _read_reply(reader)
        if code != 220:
            raise _LMTPError(f"greeting {code} {text}")
        code, text = await command(f"LHLO {local_hostname}")
        if code != 250:
            raise _LMTPError(f"LHLO refused: {code} {text}")
        extensions = {line.split(" ", 1)[0].upper() for line in text.split("\n")[1:]}
        options, refusal = _options_for(mail_options, extensions, [mailfrom, *rcpttos], data)
        if refusal is not None:
            result.refused = dict.fromkeys(rcpttos, refusal)
            outcome.settled = True
            await command("QUIT")
            return
        code, text = await command(" ".join([f"MAIL FROM:<{mailfrom}>", *options]))
        if code != 250:
            result.refused = dict.fromkeys(rcpttos, (code, text))
            outcome.settled = True
            return
        accepted: list[str] = []
        for recipient in rcpttos:
            code, text = await command(f"RCPT TO:<{recipient}>")
            if code == 250:
                accepted.append(recipient)
            else:
                result.refused[recipient] = (code, text)
        if accepted:
            code, text = await command("DATA")
            if code != 354:
                result.refused.update(dict.fromkeys(accepted, (code, text)))
            else:
                outcome.waiting_for = "the end of the message to be sent"
                writer.write(_dot_stuffed(data))
                await writer.drain()
                for number, recipient in enumerate(accepted, 1):  # one reply per accepted recipient, in order
                    outcome.waiting_for = f"the reply for <{recipient}> after the message, {number} of {len(accepted)}"
                    code, text = await _read_reply(reader)
                    if code == 250:
                        result.delivered.append(recipient)
                    else:
                        result.refused[recipient] = (code, text)
        outcome.settled = True
        await command("QUIT")
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
