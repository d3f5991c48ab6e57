"""``python -m pytest_smtpd`` (or ``pytest-smtpd``): a local SMTP server,
like the stdlib's ``python -m smtpd``."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from . import __version__, compat, mailman, proxy
from .compat import DebuggingServer, SMTPServer

__all__ = ["build_parser", "main", "parse_address", "resolve_class", "should_drop_privileges"]

DEFAULT_LOCAL = "localhost:8025"
DEFAULT_REMOTE = "localhost:25"
DEFAULT_MAILMAN_LMTP = "{}:{}".format(*mailman.DEFAULT_MAILMAN_LMTP)
BUILTIN_CLASSES = ("DebuggingServer", "PureProxy", "MailmanProxy")

DESCRIPTION = """\
Run an SMTP server. By default it prints every message it receives to
standard output (DebuggingServer); with -c PureProxy it relays every message
to REMOTESPEC; with -c MailmanProxy it delivers the mail for the lists given
with --list to Mailman 3 over LMTP and relays the rest to REMOTESPEC. The
listening address goes to standard error. Ctrl-C stops it.
"""

EPILOG = """\
LOCALSPEC and REMOTESPEC are host:port, host, or :port; an IPv6 address goes
in brackets, as in [::1]:8025. A missing host is localhost; a missing port is
8025 (local) or 25 (remote).

Started as root, the server binds its address and then switches to the user
nobody, unless -n is given.

examples:
  print the messages sent to localhost:8025:
    %(prog)s -n
  relay what comes to localhost:1025 to mail.example.com:25:
    %(prog)s -n -c PureProxy :1025 mail.example.com
  the same, but mail for the list team@lists.example.com (and its -request,
  -owner... addresses) goes to Mailman's LMTP port, 127.0.0.1:8024 by default:
    %(prog)s -n -c MailmanProxy --list team@lists.example.com :1025 mail.example.com
  run your own SMTPServer subclass:
    %(prog)s -n -c mypackage.mymodule.MyServer
"""


class UsageError(Exception):
    """A bad argument, reported like argparse's own errors (exit status 2)."""


def _prog() -> str:
    name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return "python -m pytest_smtpd" if name in ("", "__main__.py", "-c") else name


def parse_address(text: str, default_port: int) -> tuple[str, int]:
    """``host:port``, ``host``, ``:port`` or ``[v6]:port`` as ``(host, port)``."""
    host, port = text, ""
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or (text[end + 1 :] and not text[end + 1 :].startswith(":")):
            raise UsageError(f"bad address {text!r}: expected [ipv6]:port")
        host, port = text[1:end], text[end + 2 :]
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    if port and not (port.isascii() and port.isdigit() and int(port) <= 65535):
        raise UsageError(f"bad port in {text!r}: expected a number from 0 to 65535")
    return host or "localhost", int(port) if port else default_port


def _size(text: str) -> int:
    try:
        size = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid size: {text!r} (expected a number of bytes)") from None
    if size < 0:
        raise argparse.ArgumentTypeError(f"invalid size: {text!r} (0 means no limit; negative is meaningless)")
    return size


def _list_address(text: str) -> str:
    local, at, domain = text.rpartition("@")
    if not (local and at and domain) or any(c.isspace() or c in "<>" for c in text):
        raise argparse.ArgumentTypeError(f"invalid list address: {text!r} (expected name@domain)")
    return text


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=_prog(),
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-V", "--version", action="version", version=f"pytest-smtpd {__version__}")
    parser.add_argument(
        "-n",
        "--nosetuid",
        action="store_true",
        help="do not switch to the user nobody (the default when started as root)",
    )
    parser.add_argument(
        "-c",
        "--class",
        dest="classname",
        default="DebuggingServer",
        metavar="CLASS",
        help="the server class: DebuggingServer (default), PureProxy, MailmanProxy, "
        "or package.module.ClassName for your own SMTPServer subclass",
    )
    parser.add_argument("-d", "--debug", action="store_true", help="trace sessions to standard error")
    parser.add_argument("-u", "--smtputf8", action="store_true", help="offer the SMTPUTF8 extension (RFC 6531)")
    parser.add_argument(
        "-s",
        "--size",
        type=_size,
        default=compat.DATA_SIZE_DEFAULT,
        metavar="LIMIT",
        help=f"largest message accepted, in bytes, offered with SIZE (default {compat.DATA_SIZE_DEFAULT}; 0: no limit)",
    )
    parser.add_argument(
        "--allow-open-relay",
        action="store_true",
        help="let PureProxy or MailmanProxy listen on an address other than loopback "
        "(anyone who reaches it can relay mail)",
    )
    parser.add_argument(
        "--list",
        dest="lists",
        action="append",
        type=_list_address,
        metavar="ADDRESS",
        help="MailmanProxy: a mailing list's posting address, such as team@lists.example.com; mail to it and to "
        "its -request, -join, -leave, -owner, -bounces, -confirm, -subscribe and -unsubscribe addresses goes to "
        "Mailman (repeat for each list; at least one is needed)",
    )
    parser.add_argument(
        "--mailman-lmtp",
        metavar="HOST:PORT",
        help=f"MailmanProxy: Mailman's LMTP address (default {DEFAULT_MAILMAN_LMTP})",
    )
    parser.add_argument(
        "localspec", nargs="?", default=DEFAULT_LOCAL, help=f"where to listen (default {DEFAULT_LOCAL})"
    )
    parser.add_argument(
        "remotespec",
        nargs="?",
        default=DEFAULT_REMOTE,
        help=f"the upstream server a proxy relays to (default {DEFAULT_REMOTE})",
    )
    return parser


def resolve_class(name: str) -> type[SMTPServer]:
    """The server class ``-c`` names: a built-in one or ``package.module.Class``."""
    if "." not in name:
        builtin: dict[str, type[SMTPServer]] = {
            "DebuggingServer": DebuggingServer,
            "PureProxy": proxy.PureProxy,
            "MailmanProxy": mailman.MailmanProxy,
        }
        if name not in builtin:
            raise UsageError(
                f"unknown class {name!r}: use one of {', '.join(BUILTIN_CLASSES)}, "
                "or package.module.ClassName for your own"
            )
        return builtin[name]
    else:
        module_name, _, class_name = name.rpartition(".")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise UsageError(f"cannot import module {module_name!r} for class {name!r}: {exc}") from exc
        found = getattr(module, class_name, None)
        if found is None:
            raise UsageError(f"module {module_name!r} has no class {class_name!r}")
    if not (isinstance(found, type) and issubclass(found, SMTPServer)):
        raise UsageError(f"{name!r} is not a subclass of pytest_smtpd.SMTPServer")
    return found


def _mailman_options(server_class: type[SMTPServer], args: argparse.Namespace) -> dict[str, Any]:
    """The MailmanProxy keywords from --list and --mailman-lmtp; a usage
    error when they are missing, or given for a class that takes none."""
    if not issubclass(server_class, mailman.MailmanProxy):
        if args.lists or args.mailman_lmtp is not None:
            raise UsageError(f"--list and --mailman-lmtp are for MailmanProxy, not {server_class.__name__}")
        return {}
    if not args.lists:
        raise UsageError(
            f"{server_class.__name__} needs at least one --list ADDRESS (a list's posting address): "
            "without one no mail would go to Mailman"
        )
    lmtp = parse_address(args.mailman_lmtp or DEFAULT_MAILMAN_LMTP, mailman.DEFAULT_MAILMAN_LMTP[1])
    return {"lists": list(args.lists), "mailman_lmtp": lmtp}


def should_drop_privileges(nosetuid: bool, euid: int | None = None) -> bool:
    """Whether to switch to nobody: only when running as root and -n was not
    given. The stdlib tried it whenever -n was missing and failed when not
    root; switching is pointless then, so it is not tried."""
    if nosetuid:
        return False
    if euid is None:
        euid = os.geteuid() if hasattr(os, "geteuid") else -1
    return euid == 0


def _drop_privileges() -> None:
    """Become the user nobody (its group too, unlike the stdlib), as
    ``python -m smtpd`` did when started as root."""
    import pwd

    nobody = pwd.getpwnam("nobody")
    os.setgroups([])
    os.setgid(nobody.pw_gid)
    os.setuid(nobody.pw_uid)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; the exit status is 0 after Ctrl-C, 1 when the
    server cannot start, 2 for bad arguments."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        try:
            localaddr = parse_address(args.localspec, 8025)
            remoteaddr = parse_address(args.remotespec, 25)
            server_class = resolve_class(args.classname)
            mailman_options = _mailman_options(server_class, args)
        except UsageError as exc:
            parser.error(str(exc))
    except SystemExit as exc:  # --help, --version, or a usage error
        return exc.code if isinstance(exc.code, int) else 2
    if args.debug:
        compat.DEBUGSTREAM = sys.stderr
        logging.basicConfig(stream=sys.stderr, format="%(asctime)s %(name)s %(levelname)s %(message)s")
        logging.getLogger("pytest_smtpd").setLevel(logging.DEBUG)
    options: dict[str, Any] = {"enable_SMTPUTF8": args.smtputf8}
    if issubclass(server_class, proxy.PureProxy):
        options["allow_open_relay"] = args.allow_open_relay
    options.update(mailman_options)
    server: SMTPServer | None = None
    try:
        try:
            server = server_class(localaddr, remoteaddr, args.size, **options)
        except (OSError, ValueError) as exc:
            hint = " (on the command line: --allow-open-relay)" if "allow_open_relay" in str(exc) else ""
            print(f"{parser.prog}: error: {exc}{hint}", file=sys.stderr)
            return 1
        if should_drop_privileges(args.nosetuid):
            try:
                _drop_privileges()
            except (OSError, KeyError) as exc:
                print(f"{parser.prog}: error: cannot switch to the user nobody ({exc}); try -n", file=sys.stderr)
                server.close()
                return 1
        host, port = server.address
        where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        relay = f", relaying to {remoteaddr[0]}:{remoteaddr[1]}" if isinstance(server, proxy.PureProxy) else ""
        if isinstance(server, mailman.MailmanProxy):
            relay += f", lists to Mailman at {server.mailman_lmtp[0]}:{server.mailman_lmtp[1]} (LMTP)"
        # One write, so that no trace from the server thread lands inside it.
        sys.stderr.write(f"{server_class.__name__} listening on {where}{relay}; Ctrl-C stops.\n")
        sys.stderr.flush()
        compat.loop()
    except KeyboardInterrupt:
        if server is not None:
            server.close()
    return 0
