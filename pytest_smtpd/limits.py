"""The protocol's default limits, each with its reason: the protocol core
applies them, and the options table (options.py) offers them as the
defaults of the server's options. No I/O, no imports: both read it."""

from __future__ import annotations

__all__ = [
    "DEFAULT_COMMAND_SIZE_LIMIT",
    "DEFAULT_DATA_SIZE_LIMIT",
    "DEFAULT_MAX_RECIPIENTS",
    "DEFAULT_MAX_TRANSCRIPT_LINES",
]

#: 32 MiB, the stdlib ``smtpd`` default.
DEFAULT_DATA_SIZE_LIMIT = 33554432
#: RFC 5321 4.5.3.1.4: a command line is at most 512 octets with its CRLF.
DEFAULT_COMMAND_SIZE_LIMIT = 512
#: Recipients per transaction, as Postfix's smtpd_recipient_limit.
DEFAULT_MAX_RECIPIENTS = 1000
#: Lines a session's transcript keeps. A long session of ordinary mail
#: (8 lines a message) stays whole up to 12,000 messages; a client sending
#: bad commands for ever costs at most about 16 MiB (measured with short lines).
DEFAULT_MAX_TRANSCRIPT_LINES = 100_000
