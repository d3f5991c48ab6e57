"""A custom server that prints who sent each message, to whom, and how long
it is (the PyMOTW smtpd example, ported by changing its imports).

Run it, then ``python smtpd_senddata.py`` in another terminal. Ctrl-C stops it.
The port is 1025; set SMTPD_EXAMPLE_PORT to use another.
"""

from __future__ import annotations

import os
from typing import Any

from pytest_smtpd import asyncore, smtpd

PORT = int(os.environ.get("SMTPD_EXAMPLE_PORT", "1025"))


class CustomSMTPServer(smtpd.SMTPServer):
    def process_message(
        self, peer: tuple[str, int], mailfrom: str, rcpttos: list[str], data: bytes | str, **kwargs: Any
    ) -> None:
        print("Receiving message from:", peer)
        print("Message addressed from:", mailfrom)
        print("Message addressed to  :", rcpttos)
        print("Message length        :", len(data))
        return


server = CustomSMTPServer(("127.0.0.1", PORT), None)

asyncore.loop()
