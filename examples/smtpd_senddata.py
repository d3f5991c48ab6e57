"""Send one message to the example server on localhost, showing the whole
SMTP conversation (smtplib's debug output goes to standard error).

The port is 1025; set SMTPD_EXAMPLE_PORT to use another.
"""

from __future__ import annotations

import email.utils
import os
import smtplib
from email.mime.text import MIMEText

PORT = int(os.environ.get("SMTPD_EXAMPLE_PORT", "1025"))

# Create the message
msg = MIMEText("This is the body of the message.")
msg["To"] = email.utils.formataddr(("Recipient", "recipient@example.com"))
msg["From"] = email.utils.formataddr(("Author", "author@example.com"))
msg["Subject"] = "Simple test message"

server = smtplib.SMTP("127.0.0.1", PORT)
server.set_debuglevel(True)  # show communication with the server
try:
    server.sendmail("author@example.com", ["recipient@example.com"], msg.as_string())
finally:
    server.quit()
