"""SMTP replies and the one table of the texts the server sends.

Texts follow the stdlib ``smtpd`` module wherever it was RFC-correct, so
that code and tests ported from it see the replies they expect.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache

__all__ = ["Reply", "with_enhanced_code"]

#: An RFC 3463 status code, class.subject.detail.
_ENHANCED_CODE = re.compile(r"[245]\.\d{1,3}\.\d{1,3}")
_LEADING_CODE = re.compile(r"[245]\.\d{1,3}\.\d{1,3}(?: |$)")


@dataclass(frozen=True, slots=True)
class Reply:
    """One SMTP reply: a three-digit code and one or more lines of text."""

    code: int
    text: str = ""
    #: The RFC 3463 status code (``"5.5.1"``) the reply carries when the
    #: session uses ENHANCEDSTATUSCODES; empty: the one for its verb or code
    #: (``with_enhanced_code()``). Not sent otherwise, and not compared.
    enhanced: str = field(default="", compare=False, kw_only=True)
    _wire: bytes = field(init=False, repr=False, compare=False, default=b"")
    #: The reply as transcript entries, one per line on the wire.
    _transcript: tuple[tuple[str, str], ...] = field(init=False, repr=False, compare=False, default=())

    def __post_init__(self) -> None:
        if not 200 <= self.code <= 599:
            raise ValueError(f"SMTP reply code must be 200-599, got {self.code}")
        if "\r" in self.text or "\0" in self.text:
            raise ValueError("SMTP reply text must not contain CR or NUL")
        if self.enhanced and not _ENHANCED_CODE.fullmatch(self.enhanced):
            raise ValueError(f"not an enhanced status code (RFC 3463): {self.enhanced!r}")
        # Replies are sent far more often than made: encode once.
        lines = self.text.split("\n")
        last = len(lines) - 1
        on_wire = [f"{self.code}{' ' if i == last else '-'}{line}" for i, line in enumerate(lines)]
        object.__setattr__(self, "_wire", "".join(f"{line}\r\n" for line in on_wire).encode("utf-8"))
        object.__setattr__(self, "_transcript", tuple(("server", line) for line in on_wire))

    @property
    def lines(self) -> list[str]:
        """The text's lines, one per reply line (a multiline reply has several)."""
        return self.text.split("\n")

    @property
    def is_success(self) -> bool:
        """True for a 2xx or 3xx reply."""
        return self.code < 400

    def to_bytes(self) -> bytes:
        """The reply as sent on the wire: each line with its code and CRLF."""
        return self._wire

    def transcript_lines(self) -> tuple[tuple[str, str], ...]:
        """``("server", line)`` for each line as sent."""
        return self._transcript

    @classmethod
    def parse(cls, text: str) -> Reply:
        """Build a reply from a line like ``"550 No such user"``, the form in
        which ``process_message`` returns its verdict."""
        text = text.rstrip("\r\n")
        code, sep, rest = text.partition(" ")
        if not (len(code) == 3 and code.isdigit()):
            raise ValueError(f"not an SMTP reply: {text!r}")
        return cls(int(code), rest if sep else "")

    def __str__(self) -> str:
        return "\n".join(f"{self.code} {line}" for line in self.lines)


OK = Reply(250, "OK")
BYE = Reply(221, "Bye")
START_DATA = Reply(354, "End data with <CR><LF>.<CR><LF>")
BAD_SYNTAX = Reply(500, "Error: bad syntax", enhanced="5.5.2")
LINE_TOO_LONG = Reply(500, "Error: line too long", enhanced="5.5.2")
NOT_UTF8 = Reply(500, "Error: command is not valid UTF-8", enhanced="5.5.2")
SEND_HELO_FIRST = Reply(503, "Error: send HELO first")
NESTED_MAIL = Reply(503, "Error: nested MAIL command")
NEED_MAIL = Reply(503, "Error: need MAIL command")
NEED_RCPT = Reply(503, "Error: need RCPT command")
MESSAGE_TOO_BIG = Reply(552, "Error: message size exceeds fixed maximum message size", enhanced="5.3.4")
TOO_MUCH_DATA = Reply(552, "Error: Too much mail data", enhanced="5.3.4")
MAIL_PARAMS_UNKNOWN = Reply(555, "MAIL FROM parameters not recognized or not implemented")
RCPT_PARAMS_UNKNOWN = Reply(555, "RCPT TO parameters not recognized or not implemented")
BAD_BODY = Reply(501, "Error: BODY can only be one of 7BIT, 8BITMIME", enhanced="5.5.4")
BAD_BODY_CHUNKING = Reply(501, "Error: BODY can only be one of 7BIT, 8BITMIME, BINARYMIME")
BINARYMIME_NEEDS_BDAT = Reply(503, "Error: BODY=BINARYMIME needs BDAT, not DATA")
DATA_AFTER_BDAT = Reply(503, "Error: DATA after BDAT in one transaction")
#: RFC 5321 3.1: after a 554 greeting every command but QUIT gets a 503.
NO_SERVICE = Reply(503, "Error: no SMTP service here, only QUIT", enhanced="5.5.1")
SMTPUTF8_NO_ARGS = Reply(501, "Error: SMTPUTF8 takes no arguments", enhanced="5.5.4")
NEEDS_SMTPUTF8 = Reply(553, "Error: non-ASCII address requires SMTPUTF8", enhanced="5.6.7")
VRFY_REPLY = Reply(252, "Cannot VRFY user, but will accept message and attempt delivery")
EXPN_REPLY = Reply(502, "EXPN not implemented", enhanced="5.5.1")
PROCESSING_ERROR = Reply(451, "Requested action aborted: error in processing", enhanced="4.3.0")
SEND_EHLO_FIRST = Reply(503, "Error: send EHLO first")
NOT_IN_TRANSACTION = Reply(503, "Error: not permitted during a mail transaction")
NOT_OFFERED = Reply(502, "Error: command not implemented")
# STARTTLS (RFC 3207)
READY_FOR_TLS = Reply(220, "Ready to start TLS")
TLS_ALREADY_ACTIVE = Reply(503, "Error: TLS already active")
STARTTLS_FIRST = Reply(530, "5.7.0 Must issue a STARTTLS command first")
# AUTH (RFC 4954)
AUTH_OK = Reply(235, "2.7.0 Authentication successful")
AUTH_FIRST = Reply(530, "5.7.0 Authentication required")
TOO_MANY_RECIPIENTS = Reply(452, "4.5.3 Too many recipients")
AUTH_FAILED = Reply(535, "5.7.8 Authentication credentials invalid")
AUTH_CANCELLED = Reply(501, "5.0.0 Authentication cancelled")
AUTH_TWICE = Reply(503, "5.5.1 Error: already authenticated")
AUTH_UNKNOWN_MECHANISM = Reply(504, "5.5.4 Unrecognized authentication type")
AUTH_NEEDS_TLS = Reply(538, "5.7.11 Encryption required for requested authentication mechanism")
AUTH_TEMPORARY_FAILURE = Reply(454, "4.7.0 Temporary authentication failure")
SHUTTING_DOWN = Reply(421, "Service not available, closing transmission channel", enhanced="4.3.2")
IDLE_TIMEOUT = Reply(421, "Error: timeout exceeded", enhanced="4.4.2")
# Limits (max_messages_per_connection, max_connections)
TOO_MANY_MESSAGES = Reply(421, "4.7.0 Too many messages in this connection, closing")
TOO_MANY_CONNECTIONS = Reply(421, "4.7.0 Too many connections, try again later")


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def unknown_command(verb: str) -> Reply:
    # The verb comes from the peer and may hold a bare CR, LF or NUL (only CRLF
    # ends a line): mask them, so the reply stays one well-formed line.
    shown = _CONTROL.sub("?", verb)
    if shown.startswith("AUTH"):
        # "AUTH\t<secret>" or "AUTH<secret>": the "verb" holds a credential,
        # which the reply (and so the transcript and trace) must not repeat.
        return Reply(500, 'Error: command "AUTH..." not recognized', enhanced="5.5.1")
    return Reply(500, f'Error: command "{shown}" not recognized', enhanced="5.5.1")


# -- ENHANCEDSTATUSCODES (RFC 2034, codes from RFC 3463) ----------------------


#: The code of a reply whose meaning depends on the command it answers,
#: where the reply itself names none: (verb, reply code) -> status code.
ENHANCED_BY_VERB: dict[tuple[str, int], str] = {
    ("MAIL", 250): "2.1.0",  # sender ok
    ("RCPT", 250): "2.1.5",  # destination ok
    ("MAIL", 553): "5.1.7",  # bad sender address syntax
    ("RCPT", 553): "5.1.3",  # bad destination address syntax
    ("MAIL", 501): "5.5.2",
    ("RCPT", 501): "5.5.2",
}

#: The code for the rest, by reply code; any other code gets ``X.0.0``.
ENHANCED_BY_CODE: dict[int, str] = {
    421: "4.3.2",  # system not accepting network messages
    450: "4.2.0",
    451: "4.3.0",
    452: "4.3.1",
    454: "4.7.0",
    500: "5.5.2",  # syntax error
    501: "5.5.2",
    502: "5.5.1",  # invalid command
    503: "5.5.1",
    504: "5.5.4",  # invalid command arguments
    530: "5.7.0",
    535: "5.7.8",
    538: "5.7.11",
    550: "5.0.0",
    552: "5.3.4",  # message too big
    553: "5.1.0",
    554: "5.0.0",
    555: "5.5.4",
}


def with_enhanced_code(reply: Reply, verb: str = "") -> Reply:
    """``reply`` with its RFC 3463 status code before the text of each line,
    as a session that agreed on ENHANCEDSTATUSCODES gets it (RFC 2034 3).

    3xx replies carry none, and lines that already start with a code keep
    theirs (an application's ``"550 5.1.1 No such user"``, whose code then
    goes to its other lines too)."""
    if 300 <= reply.code < 400:
        return reply
    given = _LEADING_CODE.match(reply.text)
    if given is not None:
        # The application chose the code: its other lines get the same one.
        return _enhanced(reply.code, reply.text, given.group().rstrip(" "))
    code = reply.enhanced or ENHANCED_BY_VERB.get((verb, reply.code)) or ENHANCED_BY_CODE.get(reply.code)
    return _enhanced(reply.code, reply.text, code or f"{reply.code // 100}.0.0")


@lru_cache(maxsize=512)
def _enhanced(code: int, text: str, status: str) -> Reply:
    # Replies are built once per distinct (reply, status): most are constants.
    lines = [
        line if _LEADING_CODE.match(line) else (f"{status} {line}" if line else status) for line in text.split("\n")
    ]
    return Reply(code, "\n".join(lines), enhanced=status)
