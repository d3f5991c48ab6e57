"""Drop-in for the stdlib ``smtpd`` module: ``from pytest_smtpd import smtpd``."""

from .compat import (
    COMMASPACE,
    DATA_SIZE_DEFAULT,
    DEBUGSTREAM,
    EMPTYSTRING,
    NEWLINE,
    DebuggingServer,
    SMTPChannel,
    SMTPServer,
    __version__,
)
from .mailman import MailmanProxy
from .proxy import PureProxy

__all__ = [
    "COMMASPACE",
    "DATA_SIZE_DEFAULT",
    "DEBUGSTREAM",
    "EMPTYSTRING",
    "NEWLINE",
    "DebuggingServer",
    "MailmanProxy",
    "PureProxy",
    "SMTPChannel",
    "SMTPServer",
    "__version__",
]
