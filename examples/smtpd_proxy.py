"""PureProxy relays every message to an upstream server (here the host
``mail``, port 25). It prints nothing: look at the upstream's log.

The port is 1025; set SMTPD_EXAMPLE_PORT to use another, and
SMTPD_EXAMPLE_UPSTREAM (host:port) to relay somewhere else.
"""

from __future__ import annotations

import os

from pytest_smtpd import asyncore, smtpd

PORT = int(os.environ.get("SMTPD_EXAMPLE_PORT", "1025"))
UPSTREAM_HOST, _, UPSTREAM_PORT = os.environ.get("SMTPD_EXAMPLE_UPSTREAM", "mail:25").rpartition(":")

server = smtpd.PureProxy(("127.0.0.1", PORT), (UPSTREAM_HOST, int(UPSTREAM_PORT)))

asyncore.loop()
