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

from . import __version__, compat, inbox, mailman, proxy, tls
from .compat import DebuggingServer, SMTPServer
from .options import OPTIONS, given_flags

__all__ = ["build_parser", "main", "parse_address", "resolve_class", "should_drop_privileges"]

DEFAULT_LOCAL = "localhost:8025"
DEFAULT_REMOTE = "localhost:25"
DEFAULT_MAILMAN_LMTP = "{}:{}".format(*mailman.DEFAULT_MAILMAN_LMTP)
#: --max-messages (the inbox store's default, repeated so that parsing imports nothing of it).
DEFAULT_MAX_MESSAGES = 10_000
BUILTIN_CLASSES = ("DebuggingServer", "PureProxy", "MailmanProxy")
#: The extensions a flag turns on (-u, SMTPUTF8, is passed either way, as the stdlib's -u was).
EXTENSIONS = ("enable_CHUNKING", "enable_DSN", "enable_ENHANCEDSTATUSCODES")

DESCRIPTION = """\
Run an SMTP server. By default it prints every message it receives to
standard output (DebuggingServer); with -c PureProxy it relays every message
to REMOTESPEC; with -c MailmanProxy it delivers the mail for the lists given
with --list to Mailman 3 over LMTP and relays the rest to REMOTESPEC. The
listening address goes to standard error. Ctrl-C stops it.

With --tls the server speaks STARTTLS or implicit TLS, with a certificate
for localhost, 127.0.0.1 and ::1 from a test CA made on the fly (or your own
with --tls-cert); with --auth it offers SMTP AUTH. Together: a local TLS
mail sink for an application under development.
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
  a misbehaving server for trying out an application's error handling: the
  first RCPT answered 450 (a retry gets through), and a hang-up 100 bytes
  into the first message:
    %(prog)s -n --fault 'RCPT[times=1]=450 4.2.1 Mailbox busy' --fault 'DATA[times=1]=disconnect:100'
  the dev inbox: a web UI and a REST API on http://localhost:8080/ over the
  messages received, kept in mail.sqlite across restarts:
    %(prog)s -n --web 8080 --store mail.sqlite
  a TLS mail sink: STARTTLS and a login required, the test CA written to
  ca.pem for the application to trust, and SMTPS on port 8465 as well:
    %(prog)s -n --tls starttls --require-starttls --auth alice:s3cret \\
      --require-auth --tls-ca-out ca.pem --tls-port 8465 localhost:8025
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


def _list_address(text: str) -> str:
    local, at, domain = text.rpartition("@")
    if not (local and at and domain) or any(c.isspace() or c in "<>" for c in text):
        raise argparse.ArgumentTypeError(f"invalid list address: {text!r} (expected name@domain)")
    return text


def _port(text: str) -> int:
    if not (text.isascii() and text.isdigit() and int(text) <= 65535):
        raise argparse.ArgumentTypeError(f"invalid port: {text!r} (expected a number from 0 to 65535)")
    return int(text)


def _positive(text: str) -> int:
    if not (text.isascii() and text.isdigit() and int(text) > 0):
        raise argparse.ArgumentTypeError(f"invalid number: {text!r} (expected a whole number from 1)")
    return int(text)


def _web_address(text: str) -> tuple[str, int]:
    if text.isascii() and text.isdigit():
        text = f":{text}"
    try:
        host, port = parse_address(text, -1)
    except UsageError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if port < 0:
        raise argparse.ArgumentTypeError(f"expected [HOST:]PORT, got {text!r} (no port)")
    return host, port


def _web_options(args: argparse.Namespace) -> None:
    """A usage error for an inbox flag without --web, or a remote address
    without --allow-remote and --web-token."""
    if args.web is None:
        flags = {
            "--store": args.store,
            "--max-messages": args.max_messages != DEFAULT_MAX_MESSAGES or None,
            "--allow-remote": args.allow_remote or None,
            "--web-token": args.web_token,
            "--release-to": args.release_to,
        }
        for flag, value in flags.items():
            if value is not None:
                raise UsageError(f"{flag} is for the dev inbox: give --web [HOST:]PORT too")
        return
    host = args.web[0]
    if not inbox.is_loopback(host) and not (args.allow_remote and args.web_token):
        raise UsageError(
            f"--web {host}: anyone who reaches that address could read the mail; "
            "give --allow-remote and --web-token TOKEN to serve it beyond loopback"
        )
    if args.web_token is not None and not args.web_token.strip():
        raise UsageError("--web-token: the token is empty")
    if args.release_to is not None:
        args.release_to = parse_address(args.release_to, 25)


def _add_flag(parser: argparse._ActionsContainer, name: str) -> None:
    """The flag of the Server option ``name``, as the options table declares it."""
    row = OPTIONS[name]
    assert row.flag is not None, f"{name} has no flag"
    row.flag.add_to(parser, row)


def build_parser() -> argparse.ArgumentParser:
    """The command line's argument parser (``main()`` uses it; tests can
    parse a command line with it without starting anything)."""
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
    for name in ("enable_SMTPUTF8", *EXTENSIONS):
        _add_flag(parser, name)
    parser.add_argument(
        "-e",
        "--show-envelope",
        action="store_true",
        help="DebuggingServer: print each message's envelope too (X-MailFrom and X-RcptTo, after X-Peer)",
    )
    # The stdlib classes' default, which is Server's too (tests/test_options_table.py).
    _add_flag(parser, "data_size_limit")
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
    tls_group = parser.add_argument_group(
        "TLS and AUTH",
        "The certificate is for localhost, 127.0.0.1 and ::1, from a test CA made on\n"
        "the fly, unless --tls-cert gives your own. --auth and --require-auth apply\n"
        "to the --tls-port listener too.",
    )
    _add_flag(tls_group, "tls")
    tls_group.add_argument(
        "--tls-port",
        type=_port,
        metavar="PORT",
        help="also listen with implicit TLS on this port, on the same host (0: any free port)",
    )
    tls_group.add_argument(
        "--tls-cert",
        metavar="PATH",
        help="your own server certificate (PEM, the chain after it); the private key too, unless --tls-key",
    )
    tls_group.add_argument("--tls-key", metavar="PATH", help="the private key for --tls-cert (PEM)")
    tls_group.add_argument(
        "--tls-ca-out",
        metavar="PATH",
        help="write the test CA's certificate (PEM) here, for the clients to trust (not with --tls-cert)",
    )
    for name in ("require_starttls", "auth", "auth_required"):
        _add_flag(tls_group, name)
    fault_group = parser.add_argument_group(
        "faults",
        "Make the server misbehave, for trying out a client's error handling. The\n"
        "first --fault that matches a step decides it. STEP is CONNECT (the greeting),\n"
        "a verb (HELO, EHLO, MAIL, RCPT, DATA (the 354), RSET, NOOP, VRFY, QUIT, AUTH,\n"
        "STARTTLS) or MESSAGE (the reply after the final dot).",
    )
    _add_flag(fault_group, "faults")
    web_group = parser.add_argument_group(
        "dev inbox",
        "A web UI and a REST API over the messages received (docs/inbox.rst); needs\n"
        "the web extra: pip install 'pytest-smtpd[web]'.",
    )
    web_group.add_argument(
        "--web",
        type=_web_address,
        metavar="[HOST:]PORT",
        help="serve the inbox here (default host localhost; another host needs --allow-remote and --web-token)",
    )
    web_group.add_argument("--store", metavar="PATH", help="keep the messages in this SQLite file (default: in memory)")
    web_group.add_argument(
        "--max-messages",
        type=_positive,
        default=DEFAULT_MAX_MESSAGES,
        metavar="N",
        help=f"keep at most N messages, dropping the oldest (default {DEFAULT_MAX_MESSAGES})",
    )
    web_group.add_argument(
        "--allow-remote", action="store_true", help="let --web listen on an address other than loopback"
    )
    web_group.add_argument(
        "--web-token",
        metavar="TOKEN",
        help="require this token (Authorization: Bearer TOKEN, or the cookie set by opening the URL printed at start)",
    )
    web_group.add_argument(
        "--release-to", metavar="HOST:PORT", help="where POST /api/messages/{id}/release relays by default"
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


def _tls_auth_options(args: argparse.Namespace, localaddr: tuple[str, int]) -> dict[str, Any]:
    """The SMTPServer keywords from the TLS and AUTH flags (``tls_context``
    is for whichever listener has TLS); a usage error for a combination that
    makes no sense."""
    if args.tls_key is not None and args.tls_cert is None:
        raise UsageError("--tls-key needs --tls-cert (the certificate it belongs to)")
    if args.tls is None and args.tls_port is None:
        flags = {"--tls-cert": args.tls_cert, "--tls-key": args.tls_key, "--tls-ca-out": args.tls_ca_out}
        for flag, value in flags.items():
            if value is not None:
                raise UsageError(f"{flag} needs --tls starttls, --tls implicit or --tls-port")
    if args.require_starttls and args.tls != "starttls":
        raise UsageError("--require-starttls needs --tls starttls")
    if args.tls_ca_out is not None and args.tls_cert is not None:
        raise UsageError(
            "--tls-ca-out writes the test CA, which --tls-cert replaces: give the clients the CA that signed your "
            "certificate instead"
        )
    if args.tls_port is not None and args.tls_port != 0 and args.tls_port == localaddr[1]:
        raise UsageError(f"--tls-port {args.tls_port} is the port of LOCALSPEC too: choose another")
    if args.require_auth and not args.users:
        raise UsageError("--require-auth needs --auth USER:PASSWORD")
    options: dict[str, Any] = {}
    if args.tls is not None:
        options["tls"] = args.tls
    if args.require_starttls:
        options["require_starttls"] = True
    if args.tls_cert is not None:
        try:
            options["tls_context"] = tls.server_context_from_files(args.tls_cert, args.tls_key)
        except OSError as exc:  # a missing file, or ssl.SSLError: not a certificate, no key, a foreign key
            key = f" with the key {args.tls_key!r}" if args.tls_key else " (no --tls-key: the key must be in it)"
            raise UsageError(f"argument --tls-cert: cannot load {args.tls_cert!r}{key}: {exc}") from exc
    if args.users:
        users: dict[str, str] = {}
        for user, password in args.users:
            if user in users:
                raise UsageError(f"argument --auth: the user {user!r} is given twice")
            users[user] = password
        options["auth"] = users
    if args.require_auth:
        options["auth_required"] = True
    return options


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


def _where(address: tuple[str, int]) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _listening_line(
    args: argparse.Namespace, server: SMTPServer, tls_port_server: SMTPServer | None, remoteaddr: tuple[str, int]
) -> str:
    """Where the server listens and how: TLS, AUTH, where it relays, which
    CA the clients should trust."""
    parts = [f"{type(server).__name__} listening on {_where(server.address)}"]
    if args.tls == "starttls":
        parts.append("STARTTLS required" if args.require_starttls else "STARTTLS offered")
    elif args.tls == "implicit":
        parts.append("implicit TLS")
    if tls_port_server is not None:
        parts.append(f"implicit TLS on {_where(tls_port_server.address)}")
    if args.users:
        parts.append("AUTH required" if args.require_auth else "AUTH offered")
    extensions = [
        name
        for name, wanted in (
            ("CHUNKING", args.chunking),
            ("DSN", args.dsn),
            ("ENHANCEDSTATUSCODES", args.enhanced_status_codes),
        )
        if wanted
    ]
    if extensions:
        parts.append("offering " + ", ".join(extensions))
    if args.faults:
        parts.append(f"{len(args.faults)} fault rule(s)")
    if isinstance(server, proxy.PureProxy):
        parts.append(f"relaying to {remoteaddr[0]}:{remoteaddr[1]}")
    if isinstance(server, mailman.MailmanProxy):
        parts.append(f"lists to Mailman at {server.mailman_lmtp[0]}:{server.mailman_lmtp[1]} (LMTP)")
    line = ", ".join(parts)
    ca = server.ca or (tls_port_server.ca if tls_port_server is not None else None)
    if ca is not None:
        line += f"; clients trust the test CA in {args.tls_ca_out or ca.ca_path}"
    return line


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
            if args.show_envelope and not issubclass(server_class, DebuggingServer):
                raise UsageError(f"--show-envelope is for DebuggingServer, not {server_class.__name__}")
            tls_auth_options = _tls_auth_options(args, localaddr)
            _web_options(args)
            if args.tls_ca_out is not None:
                try:
                    tls.test_ca().write_ca(args.tls_ca_out)
                except OSError as exc:
                    raise UsageError(f"argument --tls-ca-out: cannot write {args.tls_ca_out!r}: {exc}") from exc
        except UsageError as exc:
            parser.error(str(exc))
    except SystemExit as exc:  # --help, --version, or a usage error
        return exc.code if isinstance(exc.code, int) else 2
    if args.web is not None and not inbox.available():
        print(f"{parser.prog}: error: --web: {inbox.EXTRA_HINT}", file=sys.stderr)
        return 1
    if args.debug:
        compat.DEBUGSTREAM = sys.stderr
        logging.basicConfig(stream=sys.stderr, format="%(asctime)s %(name)s %(levelname)s %(message)s")
        logging.getLogger("pytest_smtpd").setLevel(logging.DEBUG)
    options: dict[str, Any] = {"enable_SMTPUTF8": args.smtputf8, **given_flags(args, EXTENSIONS)}
    if issubclass(server_class, proxy.PureProxy):
        options["allow_open_relay"] = args.allow_open_relay
    options.update(mailman_options)
    if args.show_envelope:
        options["show_envelope"] = True
    main_options = {**options, **tls_auth_options}
    if args.tls is None:
        main_options.pop("tls_context", None)  # only --tls-port's listener has TLS
    servers: list[SMTPServer] = []
    web: Any = None
    try:
        try:
            servers.append(server_class(localaddr, remoteaddr, args.size, **main_options))
            if args.tls_port is not None:
                tls_port_options = {**options, **tls_auth_options, "tls": "implicit"}
                tls_port_options.pop("require_starttls", None)
                servers.append(server_class((localaddr[0], args.tls_port), remoteaddr, args.size, **tls_port_options))
        except (OSError, ValueError) as exc:
            for server in servers:
                server.close()
            hint = " (on the command line: --allow-open-relay)" if "allow_open_relay" in str(exc) else ""
            print(f"{parser.prog}: error: {exc}{hint}", file=sys.stderr)
            return 1
        except TypeError as exc:
            # E.g. a -c class with the stdlib's __init__ signature, given --tls or --auth.
            for server in servers:
                server.close()
            extra = sorted(set(main_options) - {"enable_SMTPUTF8"})
            print(
                f"{parser.prog}: error: cannot make a {server_class.__name__}: {exc}"
                + (f" (options given to it: {', '.join(extra)})" if extra else ""),
                file=sys.stderr,
            )
            return 1
        if should_drop_privileges(args.nosetuid):
            try:
                _drop_privileges()
            except (OSError, KeyError) as exc:
                print(f"{parser.prog}: error: cannot switch to the user nobody ({exc}); try -n", file=sys.stderr)
                for server in servers:
                    server.close()
                return 1
        for server in servers:
            server.faults.extend(args.faults)
        if args.web is not None:
            from .inbox import cli as inbox_cli

            try:
                web = inbox_cli.start(
                    servers,
                    args.web,
                    store=args.store,
                    max_messages=args.max_messages,
                    token=args.web_token,
                    allow_remote=args.allow_remote,
                    release_to=args.release_to,
                )
            except (OSError, ValueError) as exc:
                for server in servers:
                    server.close()
                print(f"{parser.prog}: error: --web: {exc}", file=sys.stderr)
                return 1
        line = _listening_line(args, servers[0], servers[1] if len(servers) > 1 else None, remoteaddr)
        if web is not None:
            line += f"; dev inbox at {web.url}" + (f", messages kept in {args.store}" if args.store else "")
        # One write, so that no trace from the server thread lands inside it.
        sys.stderr.write(f"{line}; Ctrl-C stops.\n")
        sys.stderr.flush()
        compat.loop()
    except KeyboardInterrupt:
        for server in servers:
            server.close()
    finally:
        if web is not None:
            web.stop()
    return 0
