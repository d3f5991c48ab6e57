"""Parsing of command lines, paths and ESMTP parameters (RFC 5321 4.1)."""

from __future__ import annotations

import re

__all__ = ["ParseError", "parse_params", "parse_path", "split_command", "strip_keyword"]


class ParseError(ValueError):
    """Input that does not parse; ``code`` is the SMTP reply code to use."""

    def __init__(self, message: str, code: int = 501) -> None:
        super().__init__(message)
        self.code = code


_KEYWORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*\Z")
# esmtp-value: any CHAR except "=", SP and control characters (RFC 5321 4.1.2).
_VALUE = re.compile(r"[^\x00-\x20=\x7f]+\Z")
_FORBIDDEN_IN_PATH = re.compile(r"[\x00-\x1f\x7f]")


def split_command(line: str) -> tuple[str, str | None]:
    """``"mail FROM:<a>"`` -> ``("MAIL", "FROM:<a>")``; no argument gives None.

    Only spaces are trimmed: a bare CR or LF at the end of a line is part of
    it, never a line end in disguise (SMTP smuggling)."""
    verb, sep, argument = line.partition(" ")
    if not sep:
        return verb.upper(), None
    return verb.upper(), argument.strip(" ")


def strip_keyword(keyword: str, argument: str) -> str | None:
    """Remove ``FROM:`` / ``TO:`` (case-insensitive) from a MAIL/RCPT argument."""
    if argument[: len(keyword)].upper() != keyword:
        return None
    return argument[len(keyword) :].lstrip(" ")


def _first_unquoted(text: str, chars: str, start: int = 0) -> tuple[int, bool]:
    """The index of the first of ``chars`` in ``text[start:]`` outside a quoted
    string (-1 if none), and whether a quoted string was left open."""
    in_quotes = False
    escaped = False
    for index in range(start, len(text)):
        char = text[index]
        if escaped:
            escaped = False
        elif char == "\\" and in_quotes:
            escaped = True
        elif char == '"':
            in_quotes = not in_quotes
        elif char in chars and not in_quotes:
            return index, False
    return -1, in_quotes


def _closing_bracket(text: str) -> int:
    """Index of the ``>`` that closes the path opened at ``text[0]``, skipping
    quoted strings; -1 if the path is never closed."""
    if '"' not in text:
        return text.find(">")
    return _first_unquoted(text, ">", 1)[0]


def _has_unquoted_space(address: str) -> bool:
    if '"' not in address:
        return " " in address or "\t" in address
    index, open_quote = _first_unquoted(address, " \t")
    return index >= 0 or open_quote  # an unterminated quote is as bad as a stray space


def _split_bare_address(text: str) -> tuple[str, str]:
    """An address without angle brackets ends at the first space outside a
    quoted local part (``"Fred Blogs"@example.org SIZE=10``)."""
    end = text.find(" ") if '"' not in text else _first_unquoted(text, " ")[0]
    if end < 0:
        return text, ""
    return text[:end], text[end + 1 :]


def parse_path(text: str) -> tuple[str, str]:
    """Split ``"<user@example.com> SIZE=10"`` into the address and the rest.

    The address comes back without its angle brackets and without a source
    route; ``"<>"`` gives ``""``. A bare address without brackets is accepted,
    as the stdlib ``smtpd`` did.
    """
    if _FORBIDDEN_IN_PATH.search(text):
        raise ParseError("control character in address")
    if text.startswith("<"):
        end = _closing_bracket(text)
        if end < 0:
            raise ParseError("unterminated <address>")
        address, rest = text[1:end], text[end + 1 :]
        if rest and not rest.startswith(" "):
            raise ParseError("text after >")
        rest = rest.strip(" ")
    else:
        address, rest = _split_bare_address(text)
        if not address or "<" in address or ">" in address:
            raise ParseError("malformed address")
        rest = rest.strip(" ")
    if address.startswith("@"):
        # A source route (RFC 5321 4.1.2 A-d-l): accept and ignore it.
        _route, colon, address = address.partition(":")
        if not colon or not address:
            raise ParseError("malformed source route")
    if _has_unquoted_space(address):
        raise ParseError("malformed address")
    if address and not _is_mailbox(address):
        raise ParseError("malformed address", code=553)
    return address, rest


# RFC 5321 4.1.2 Mailbox, with the UTF-8 of RFC 6531 3.3 allowed in atext and
# labels (whether UTF-8 may be used at all is the caller's check), and a bare
# local part accepted as the stdlib did.
# Written as negated classes: the equivalent \u0080-\U0010ffff ranges take
# tens of milliseconds to compile, at every import of the plugin.
_ATEXT = r"[^\x00-\x20\"(),.:;<>@\[\\\]\x7f]"
_DOT_STRING = re.compile(rf"{_ATEXT}+(?:\.{_ATEXT}+)*\Z")
_QUOTED_STRING = re.compile(r'"(?:[^"\\\x00-\x1f\x7f]|\\[\x20-\x7e])*"\Z')
# A label character: a letter, digit or underscore, or any non-ASCII.
_LABEL_CHAR = r"[^\x00-\x2f:-@\[-\^`{-\x7f]"
_LABEL_OR_HYPHEN = r"[^\x00-\x2c./:-@\[-\^`{-\x7f]"
_LABEL = rf"{_LABEL_CHAR}(?:{_LABEL_OR_HYPHEN}*{_LABEL_CHAR})?"
_DOMAIN = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\Z")
_ADDRESS_LITERAL = re.compile(r"\[[^\[\]\\\s]+\]\Z")


def _is_mailbox(address: str) -> bool:
    local, at, domain = address.rpartition("@")
    if not at:
        local, domain = address, ""
    elif not (_DOMAIN.match(domain) or _ADDRESS_LITERAL.match(domain)):
        return False
    return bool(_DOT_STRING.match(local) or _QUOTED_STRING.match(local))


def parse_params(text: str) -> list[tuple[str, str | None]]:
    """``"SIZE=10 smtputf8"`` -> ``[("SIZE", "10"), ("SMTPUTF8", None)]``."""
    params: list[tuple[str, str | None]] = []
    for item in text.split():
        keyword, eq, value = item.partition("=")
        if not _KEYWORD.match(keyword):
            raise ParseError(f"bad parameter keyword {keyword!r}")
        if eq and not _VALUE.match(value):
            raise ParseError(f"bad value for parameter {keyword!r}")
        params.append((keyword.upper(), value if eq else None))
    return params
