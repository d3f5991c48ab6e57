"""pytest-smtpd: an SMTP server for tests, and the successor of the stdlib
``smtpd`` module removed in Python 3.12."""

from __future__ import annotations

from .assertions import FixtureServer
from .compat import DebuggingServer, SMTPChannel, SMTPServer, loop
from .connection import ServerConnection, SessionConfig
from .faults import Fault, Faults
from .mailman import MailmanProxy
from .proxy import PureProxy
from .replies import Reply
from .server import Server
from .store import Attachment, Message, MessageStore

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
