"""The server options, declared once: for each, its name, its default (and
why, where that is not obvious), one line of help, and the layers that take
it: ``Server``, the stdlib-compatible ``SMTPServer``, the ``smtpd_<name>``
ini option and the command line's flag. ``Server``'s signature, the ini
options, the flags and the docs' options tables are made from it or checked
against it (tests/test_options_table.py)."""

from __future__ import annotations

import argparse
import dataclasses
import socket
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from .limits import (
    DEFAULT_COMMAND_SIZE_LIMIT,
    DEFAULT_DATA_SIZE_LIMIT,
    DEFAULT_MAX_RECIPIENTS,
    DEFAULT_MAX_TRANSCRIPT_LINES,
)

if TYPE_CHECKING:  # the plugin reads this table at start-up: nothing of the server loads with it
    import ssl

    from .auth import Authenticator
    from .faults import Fault
    from .tls import Certificate

__all__ = [
    "DEFAULTS",
    "DEFAULT_AUTH_MECHANISMS",
    "DEFAULT_COMMAND_SIZE_LIMIT",
    "DEFAULT_DATA_SIZE_LIMIT",
    "DEFAULT_MAX_RECIPIENTS",
    "DEFAULT_MAX_TRANSCRIPT_LINES",
    "DEFAULT_TIMEOUT",
    "OPTIONS",
    "TLS_MODES",
    "Flag",
    "Ini",
    "Invalid",
    "Option",
    "ServerOptions",
    "TLSMode",
    "boolean",
    "check",
    "given_flags",
    "whole",
]

T = TypeVar("T")

#: RFC 5321 4.5.3.2.7: a server should wait at least 5 minutes for a command.
DEFAULT_TIMEOUT = 300.0
#: AUTH mechanisms offered when ``auth`` is given.
DEFAULT_AUTH_MECHANISMS = ("PLAIN", "LOGIN", "CRAM-MD5", "XOAUTH2")
TLSMode = Literal["starttls", "implicit"]
TLS_MODES: tuple[TLSMode, ...] = ("starttls", "implicit")


# -- reading an option's text ---------------------------------------------------


class Invalid(ValueError):
    """A text that is no value of the option; the message says what is
    expected ("true or false"), for the layer to put after the text."""


def whole(low: int, high: int | None = None) -> Callable[[str], int]:
    """A parser of whole numbers from ``low`` (to ``high``)."""

    def parse(text: str) -> int:
        try:
            number = int(text)
        except ValueError:
            number = low - 1
        if number < low or (high is not None and number > high):
            raise Invalid(f"a whole number from {low}" + (f" to {high}" if high is not None else " up"))
        return number

    return parse


_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")


def boolean(text: str) -> bool:
    """``true``/``false`` (also ``1``/``0``, ``yes``/``no``, ``on``/``off``)."""
    if text.lower() not in (*_TRUE, *_FALSE):
        raise Invalid("true or false")
    return text.lower() in _TRUE


def _address(text: str) -> str:
    try:
        socket.getaddrinfo(text, None, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise Invalid("an address to listen on, such as 127.0.0.1 or ::1") from None
    return text


def _hostname(text: str) -> str:
    if any(char.isspace() or not char.isprintable() for char in text):
        raise Invalid("a host name without spaces")
    return text


def _tls_mode(text: str) -> str:
    if text not in TLS_MODES:
        raise Invalid(" or ".join(TLS_MODES))
    return text


def _users(text: str) -> dict[str, str]:
    users: dict[str, str] = {}
    for pair in text.split():
        user, colon, password = pair.partition(":")
        if not colon or not user:
            raise Invalid("user:password pairs separated by spaces")
        users[user] = password
    return users


def _size(text: str) -> int:
    try:
        size = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid size: {text!r} (expected a number of bytes)") from None
    if size < 0:
        raise argparse.ArgumentTypeError(f"invalid size: {text!r} (0 means no limit; negative is meaningless)")
    return size


def _credentials(text: str) -> tuple[str, str]:
    user, colon, password = text.partition(":")
    if not colon:
        # The value is not repeated: it may be a password typed alone.
        raise argparse.ArgumentTypeError("expected USER:PASSWORD (no colon in the value)")
    if not user:
        raise argparse.ArgumentTypeError("expected USER:PASSWORD (the user name is empty)")
    return user, password


def _fault(text: str) -> Fault:
    from .faults import Fault

    try:
        return Fault.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


# -- the layers' columns --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ini:
    """The option as the ini key ``smtpd_<name>``: ``parse`` turns its text
    into the value or raises ``Invalid``; ``help`` replaces the option's
    help (``(default ...)`` is added to either)."""

    parse: Callable[[str], object]
    help: str | None = None
    #: The default in the ini file's words, where the value's would not do.
    shown: str | None = None


@dataclass(frozen=True, slots=True)
class Flag:
    """The option as a command-line flag: argparse's ``add_argument()``
    arguments. ``help`` replaces the option's help."""

    flags: tuple[str, ...]
    action: Literal["store_true", "append"] | None = None
    type: Callable[[str], object] | None = None
    choices: tuple[str, ...] | None = None
    metavar: str | None = None
    dest: str | None = None
    help: str | None = None

    @property
    def name(self) -> str:
        """The attribute of argparse's namespace that holds the value."""
        return self.dest or self.flags[-1].lstrip("-").replace("-", "_")

    def default(self, option: Option) -> object:
        """The value when the flag is not given."""
        if self.action == "store_true":
            return False
        if self.action == "append" and isinstance(option.default, tuple):
            # argparse appends to a copy of a list default, not to a tuple.
            return list(option.default)
        return option.default

    def add_to(self, parser: argparse._ActionsContainer, option: Option) -> argparse.Action:
        """Add the flag to ``parser`` (or one of its argument groups)."""
        kwargs: dict[str, Any] = {"help": self.help or option.help}
        for name in ("action", "type", "choices", "metavar", "dest"):
            if getattr(self, name) is not None:
                kwargs[name] = getattr(self, name)
        if self.action != "store_true":
            kwargs["default"] = self.default(option)
        return parser.add_argument(*self.flags, **kwargs)


@dataclass(frozen=True, slots=True)
class Option:
    """One row of the table: a ``Server`` option and where else it is taken."""

    name: str
    default: object
    #: One line: what the option does.
    help: str
    #: Why the default is what it is, where that is not obvious.
    why: str = ""
    #: The default as the docs show it, where ``repr()`` would not do.
    shown: str | None = None
    #: How ``SMTPServer`` takes it: ``"ours"`` (keyword-only, this default),
    #: ``"stdlib"`` (positional, with the stdlib's own default), or None.
    compat: Literal["ours", "stdlib"] | None = None
    ini: Ini | None = None
    flag: Flag | None = None

    @property
    def ini_name(self) -> str:
        """The ini key: ``smtpd_<name>``."""
        return f"smtpd_{self.name}"

    @property
    def default_text(self) -> str:
        """The default as the docs and the help show it."""
        if self.shown is not None:
            return self.shown
        return f'"{self.default}"' if isinstance(self.default, str) else repr(self.default)

    @property
    def ini_help(self) -> str:
        """The help of ``smtpd_<name>``, with the default in ini words
        (``false``, not ``False``); None goes unsaid unless ``Ini.shown``."""
        assert self.ini is not None
        shown = self.ini.shown
        if shown is None and self.default is not None:
            shown = str(self.default).lower() if isinstance(self.default, bool) else str(self.default)
        text = self.ini.help or self.help
        return text if shown is None else f"{text} (default {shown})"


def option(
    default: T,
    help: str,
    *,
    why: str = "",
    shown: str | None = None,
    compat: Literal["ours", "stdlib"] | None = None,
    ini: Ini | None = None,
    flag: Flag | None = None,
) -> T:
    """A row of ``ServerOptions``: its default, typed as the field is."""
    row = {"help": help, "why": why, "shown": shown, "compat": compat, "ini": ini, "flag": flag}
    return field(default=default, metadata={"option": row})


# -- the table -------------------------------------------------------------------


@dataclass(frozen=True)
class ServerOptions:
    """The table: a field per ``Server`` option, in ``Server``'s order, each
    with its default and its row (``OPTIONS[name]``). ``DEFAULTS`` is the
    one set of defaults the layers use."""

    host: str = option(
        "127.0.0.1",
        'address to listen on; "::1" for IPv6',
        ini=Ini(_address, "address the smtpd fixture's server listens on"),
    )
    port: int = option(
        0,
        "port; 0 picks a free one, read back as server.port",
        ini=Ini(whole(0, 65535), "port of the smtpd fixture's server; 0 picks a free one"),
    )
    handler: None = option(None, "decides each accepted message: None (250 OK), a reply line or a Reply")
    hostname: str | None = option(
        None,
        "name in the greeting and the EHLO reply",
        shown="getfqdn()",
        why="socket.getfqdn(), looked up once per process",
        compat="ours",
        ini=Ini(_hostname, shown="the machine's FQDN"),
    )
    data_size_limit: int = option(
        DEFAULT_DATA_SIZE_LIMIT,
        "largest message in octets, offered with SIZE; 0 for no limit",
        why="32 MiB, the stdlib smtpd default",
        compat="stdlib",
        ini=Ini(whole(0), "largest message in octets, 0 for no limit"),
        flag=Flag(
            ("-s", "--size"),
            type=_size,
            metavar="LIMIT",
            help="largest message accepted, in bytes, offered with SIZE (default %(default)s; 0: no limit)",
        ),
    )
    enable_SMTPUTF8: bool = option(
        False,
        "offer SMTPUTF8 (RFC 6531)",
        compat="stdlib",
        ini=Ini(boolean, "offer SMTPUTF8: true or false"),
        flag=Flag(("-u", "--smtputf8"), action="store_true", help="offer the SMTPUTF8 extension (RFC 6531)"),
    )
    decode_data: bool = option(False, "do not offer 8BITMIME (the stdlib's meaning)", compat="stdlib")
    enable_DSN: bool = option(
        False,
        "accept the DSN parameters RET, ENVID, NOTIFY and ORCPT (RFC 3461)",
        compat="ours",
        flag=Flag(("--dsn",), action="store_true", help="offer DSN and record its parameters (RFC 3461)"),
    )
    command_size_limit: int = option(
        DEFAULT_COMMAND_SIZE_LIMIT,
        "longest command line, CRLF included; a longer one gets 500",
        why="RFC 5321 4.5.3.1.4: at least 512",
    )
    timeout: float | None = option(
        DEFAULT_TIMEOUT,
        "seconds of client silence (and the longest TLS handshake) before 421; None for no limit",
        why="RFC 5321 4.5.3.2.7: a server should wait at least 5 minutes for a command",
        compat="ours",
    )
    keep_messages: bool = option(True, "record accepted messages in server.messages")
    backlog: int = option(128, "the listen backlog", why="socket.listen()'s own default on most systems")
    tls: TLSMode | None = option(
        None,
        '"starttls" (offer STARTTLS) or "implicit" (TLS from the first byte, SMTPS); None: no TLS',
        compat="ours",
        ini=Ini(_tls_mode, "starttls or implicit", shown="no TLS"),
        flag=Flag(
            ("--tls",),
            choices=TLS_MODES,
            help="starttls: offer STARTTLS (RFC 3207); implicit: TLS from the first byte (SMTPS, RFC 8314)",
        ),
    )
    tls_context: ssl.SSLContext | None = option(
        None, "a server ssl.SSLContext of your own; needs tls", shown="test CA", compat="ours"
    )
    require_starttls: bool = option(
        False,
        "530 to every command but NOOP, EHLO, STARTTLS and QUIT until STARTTLS (RFC 3207 4); needs tls",
        compat="ours",
        flag=Flag(
            ("--require-starttls",),
            action="store_true",
            help="with --tls starttls: refuse MAIL, RCPT, DATA and AUTH (530) until STARTTLS",
        ),
    )
    auth: Mapping[str, str] | Authenticator | None = option(
        None,
        'offer AUTH (RFC 4954) and accept these logins: {"user": "password"} or a callable',
        compat="ours",
        ini=Ini(_users, "offer AUTH to these users: user:password, space-separated for several"),
        flag=Flag(
            ("--auth",),
            dest="users",
            action="append",
            type=_credentials,
            metavar="USER:PASSWORD",
            help="offer SMTP AUTH and accept this login (repeat for more users; split at the first colon)",
        ),
    )
    auth_mechanisms: Sequence[str] = option(
        DEFAULT_AUTH_MECHANISMS,
        "which of PLAIN, LOGIN, CRAM-MD5 and XOAUTH2 to offer",
        shown="all four",
        compat="ours",
    )
    auth_required: bool = option(
        False,
        "530 to every command but AUTH, EHLO, HELO, NOOP, RSET, QUIT and STARTTLS until AUTH; needs auth",
        compat="ours",
        flag=Flag(
            ("--require-auth",),
            action="store_true",
            help="with --auth: refuse MAIL, RCPT and DATA (530) until the client has logged in",
        ),
    )
    auth_requires_tls: bool = option(
        False, "538 to AUTH until TLS is active; needs tls", why="so that plaintext tests can log in", compat="ours"
    )
    lmtp: bool = option(False, "speak LMTP (RFC 2033): LHLO, and one reply per recipient after the data")
    max_recipients: int = option(
        DEFAULT_MAX_RECIPIENTS,
        "recipients per transaction; each one over it gets 452 4.5.3; 0 for no limit",
        why="Postfix's smtpd_recipient_limit",
    )
    enable_CHUNKING: bool = option(
        False,
        "offer CHUNKING (RFC 3030: BDAT), and BINARYMIME where 8-bit data is taken",
        compat="ours",
        flag=Flag(
            ("--chunking",),
            action="store_true",
            help="offer CHUNKING (BDAT) and, unless data is decoded, BINARYMIME (RFC 3030)",
        ),
    )
    enable_ENHANCEDSTATUSCODES: bool | None = option(
        None,
        "offer ENHANCEDSTATUSCODES (RFC 2034): replies carry RFC 3463 codes",
        why="None: on in LMTP mode (whose clients expect them), off otherwise, so that stdlib-style replies "
        "stay as they were",
        compat="ours",
        flag=Flag(
            ("--enhanced-status-codes",),
            action="store_true",
            help="offer ENHANCEDSTATUSCODES: replies carry codes such as 2.1.5 (RFC 2034, RFC 3463)",
        ),
    )
    faults: Iterable[Fault | str] = option(
        (),
        'fault rules to start with (Fault objects or "STEP=WHAT" strings)',
        shown="[]",
        flag=Flag(
            ("--fault",),
            dest="faults",
            action="append",
            type=_fault,
            metavar="STEP=WHAT",
            help="WHAT is a reply ('RCPT=450 4.2.1 Mailbox busy'; a 421 also hangs up), disconnect "
            "(hang up instead of replying), disconnect:OCTETS (DATA: hang up that far into the message), "
            "delay:SECONDS (reply late) or stall (never reply); limits go in brackets after STEP: "
            "'RCPT[times=1,match=ghost@]=450 4.2.1 Mailbox busy' (times, after, session, match, probability, "
            "seed); repeat for more rules",
        ),
    )
    tls_certificate: Certificate = option(
        "valid", 'with tls: "expired", "wrong-host", "untrusted" or "self-signed", one clients must refuse'
    )
    tls_versions: str | ssl.TLSVersion | Sequence[str | ssl.TLSVersion] | None = option(
        None, 'with tls: offer only these TLS versions, e.g. "TLSv1.2"', shown="all"
    )
    max_messages_per_connection: int = option(
        0, "after this many messages in one connection the next MAIL gets 421 4.7.0; 0 for no limit"
    )
    max_connections: int = option(0, "concurrent sessions beyond this get 421 4.7.0; 0 for no limit")
    max_transcript_lines: int = option(
        DEFAULT_MAX_TRANSCRIPT_LINES,
        "lines a session's transcript keeps; 0 for no limit",
        why="12,000 messages' worth; a client sending bad commands for ever costs at most about 16 MiB",
    )


#: The one set of defaults: ``Server``'s signature reads them from here.
DEFAULTS = ServerOptions()
#: The rows, by name, in ``Server``'s order.
OPTIONS: dict[str, Option] = {
    f.name: Option(name=f.name, default=f.default, **f.metadata["option"]) for f in dataclasses.fields(ServerOptions)
}


def given_flags(args: argparse.Namespace, names: Iterable[str]) -> dict[str, object]:
    """The options ``names`` whose flag was given on the command line, with
    the value parsed (a ``store_true`` flag gives True)."""
    given: dict[str, object] = {}
    for name in names:
        row = OPTIONS[name]
        assert row.flag is not None, f"{name} has no flag"
        value = getattr(args, row.flag.name)
        if value != row.flag.default(row):
            given[name] = value
    return given


def check(
    *,
    tls: str | None,
    tls_context: ssl.SSLContext | None,
    require_starttls: bool,
    auth_requires_tls: bool,
    tls_certificate: str,
    tls_versions: object,
    auth: object,
    auth_required: bool,
    max_connections: int,
    timeout: float | None,
) -> None:
    """``ValueError`` for a value, or a combination, that ``Server`` refuses
    (the protocol core checks the rest: sizes, limits, the hostname)."""
    if tls not in (None, *TLS_MODES):
        raise ValueError(f"tls must be None, 'starttls' or 'implicit', got {tls!r}")
    if tls is None and (tls_context is not None or require_starttls or auth_requires_tls):
        raise ValueError("tls_context, require_starttls and auth_requires_tls need tls='starttls' or 'implicit'")
    if tls is None and (tls_certificate != DEFAULTS.tls_certificate or tls_versions is not None):
        raise ValueError("tls_certificate and tls_versions need tls='starttls' or 'implicit'")
    if tls_context is not None and (tls_certificate != DEFAULTS.tls_certificate or tls_versions is not None):
        raise ValueError(
            "tls_certificate and tls_versions apply to the test CA's certificate, not to a tls_context "
            "of your own (set its minimum_version and maximum_version instead)"
        )
    if max_connections < 0:
        raise ValueError(f"max_connections must be 0 (no limit) or positive, got {max_connections}")
    if auth is None and auth_required:
        raise ValueError("auth_required needs auth: a {user: password} dict or an authenticator callable")
    if timeout is not None and timeout <= 0:
        raise ValueError(f"timeout must be positive or None, got {timeout}")
