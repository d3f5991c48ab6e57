"""DebuggingServer prints every message it receives to standard output.

Run it, then ``python smtpd_senddata.py`` in another terminal. Ctrl-C stops it.
The port is 1025; set SMTPD_EXAMPLE_PORT to use another.
"""

from __future__ import annotations

import os

from pytest_smtpd import asyncore, smtpd

PORT = int(os.environ.get("SMTPD_EXAMPLE_PORT", "1025"))

server = smtpd.DebuggingServer(("127.0.0.1", PORT), None)

asyncore.loop()
