"""``python -m pytest_smtpd``: a local SMTP server, like ``python -m smtpd``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import __version__, compat
from .compat import DebuggingServer

__all__ = ["main"]


def _address(text: str, default_port: int) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep:
        return text, default_port
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"bad port in {text!r}")
    return host.strip("[]") or "localhost", int(port)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pytest_smtpd",
        description="Run an SMTP server that prints every message it receives.",
    )
    parser.add_argument("--version", "-V", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--debug", "-d", action="store_true", help="trace sessions to stderr")
    parser.add_argument("--size", "-s", type=int, default=compat.DATA_SIZE_DEFAULT, help="largest message accepted, in bytes (0: no limit)")
    parser.add_argument("--smtputf8", "-u", action="store_true", help="offer SMTPUTF8")
    parser.add_argument(
        "localspec",
        nargs="?",
        default="localhost:8025",
        help="host:port to listen on (default localhost:8025)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.debug:
        compat.DEBUGSTREAM = sys.stderr
    try:
        localaddr = _address(args.localspec, 8025)
    except argparse.ArgumentTypeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        server = DebuggingServer(localaddr, None, data_size_limit=args.size, enable_SMTPUTF8=args.smtputf8)
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"Listening on {server.address[0]}:{server.address[1]}; Ctrl-C stops.", file=sys.stderr, flush=True)
    try:
        compat.loop()
    except KeyboardInterrupt:
        pass
    return 0
