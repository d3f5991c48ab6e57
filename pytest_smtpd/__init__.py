"""pytest-smtpd: an SMTP server for tests, and the successor of the stdlib
``smtpd`` module removed in Python 3.12."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .assertions import FixtureServer
    from .compat import DebuggingServer, SMTPChannel, SMTPServer, loop
    from .connection import ServerConnection, SessionConfig
    from .faults import Fault, Faults
    from .mailman import MailmanProxy
    from .message import Attachment, Message
    from .proxy import PureProxy
    from .replies import Reply
    from .server import Server
    from .store import MessageStore

__version__ = "0.1.0"

__all__ = [
    "Attachment",
    "DebuggingServer",
    "Fault",
    "Faults",
    "FixtureServer",
    "MailmanProxy",
    "Message",
    "MessageStore",
    "PureProxy",
    "Reply",
    "SMTPChannel",
    "SMTPServer",
    "Server",
    "ServerConnection",
    "SessionConfig",
    "__version__",
    "loop",
]

#: Every name loads on first use: pytest imports this package (for the
#: plugin) in every run, and a run whose tests use no server, or not the
#: stdlib-style classes (nor aiosmtplib, which the proxies bring), should not
#: pay for them at start-up.
_LAZY = {
    "Attachment": "message",
    "Fault": "faults",
    "Faults": "faults",
    "FixtureServer": "assertions",
    "Message": "message",
    "MessageStore": "store",
    "Reply": "replies",
    "Server": "server",
    "ServerConnection": "connection",
    "SessionConfig": "connection",
    "DebuggingServer": "compat",
    "SMTPChannel": "compat",
    "SMTPServer": "compat",
    "loop": "compat",
    "MailmanProxy": "mailman",
    "PureProxy": "proxy",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
