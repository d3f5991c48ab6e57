"""Runs one of examples/ unchanged, with the fixed addresses the article
uses (127.0.0.1:1025, mail:25) mapped to the test's free ports, so that the
examples keep the article's code and the tests never depend on a fixed port.

Usage: python example_runner.py EXAMPLE.py; the map is the JSON object in
the EXAMPLE_ADDRESSES environment variable, {"host:port": "host:port"}.
"""

from __future__ import annotations

import json
import os
import runpy
import smtplib
import sys
from typing import Any

from pytest_smtpd import compat

ADDRESSES: dict[str, str] = json.loads(os.environ.get("EXAMPLE_ADDRESSES", "{}"))


def mapped(address: tuple[str, int]) -> tuple[str, int]:
    host, _, port = ADDRESSES.get(f"{address[0]}:{address[1]}", f"{address[0]}:{address[1]}").rpartition(":")
    return host, int(port)


_server_init = compat.SMTPServer.__init__


def _init(self: compat.SMTPServer, localaddr: Any, remoteaddr: Any, *args: Any, **kwargs: Any) -> None:
    _server_init(self, mapped(localaddr), remoteaddr and mapped(remoteaddr), *args, **kwargs)


_connect = smtplib.SMTP.connect


def _smtp_connect(self: smtplib.SMTP, host: str = "localhost", port: int = 0, source_address: Any = None) -> Any:
    return _connect(self, *mapped((host, port or smtplib.SMTP_PORT)), source_address)


compat.SMTPServer.__init__ = _init  # type: ignore[method-assign]
smtplib.SMTP.connect = _smtp_connect  # type: ignore[method-assign]

if __name__ == "__main__":
    path = sys.argv[1]
    sys.argv = sys.argv[1:]
    runpy.run_path(path, run_name="__main__")
