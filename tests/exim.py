"""A real Exim as the SENDING side: the MTA whose SMTP client speaks BDAT
(CHUNKING, RFC 3030) when the server offers it, which Postfix's does not.

Debian's exim4 packages conflict with postfix, so ``.ci/install-peers.sh``
does not install one: it unpacks exim4-daemon-light into ``EXIM_DIR`` and
creates the ``Debian-exim`` user the binary is built to run as. Each test
gets its own instance: a configuration file (``exim4 -C``), spool and log in
a temporary directory, no daemon. A message is submitted on the command
line and delivered in the foreground (``-odf``), to our server on
127.0.0.1; the recipient's domain picks the transport (see ``ROUTES``).
Bounces, to the sender's domain, go to a local mbox, so that our server
records only what a test sends it. Running Exim needs root, as Postfix does;
without the binary, the user or root the tests are skipped (failed under
CI).
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from peers import SBIN, TIMEOUT, missing, mta_base, wait_until

__all__ = ["EXIM_DIR", "EXIM_USER", "ROUTES", "SENDER_DOMAIN", "UNDERSTATEMENT", "Exim", "exim_base", "exim_program"]

#: Where .ci/install-peers.sh unpacks the exim4-daemon-light package.
EXIM_DIR = Path("/opt/exim4-peer")
#: The user Debian's Exim is compiled to run as (and to look up at start).
EXIM_USER = "Debian-exim"
#: Exim's name, and the domain whose mail (the bounces) stays local.
SENDER_DOMAIN = "sender.test"
#: Recipient domain -> the smtp transport that takes its mail to our server:
#: Exim's defaults; a SIZE on MAIL that understates the message by
#: ``UNDERSTATEMENT`` octets (so that a size limit is met by the data, not
#: at MAIL); STARTTLS required, with our certificate verified against the
#: test CA; DKIM-signed for example.test, selector test, with the key a test
#: writes to ``Exim.dkim_key_file``.
ROUTES = {
    "plain.test": "remote_smtp",
    "understated.test": "remote_smtp_understated",
    "tls.test": "remote_smtp_tls",
    "dkim.test": "remote_smtp_dkim",
}
#: Exim sends SIZE=<message size + size_addition> whenever the server offers
#: SIZE (a negative size_addition does not turn it off in 4.96: it is added).
UNDERSTATEMENT = 80_000
#: Seconds one Exim command may take: a delivery in the foreground
#: included, with its connection, its replies and its bounce.
COMMAND_TIMEOUT = 60.0
#: An Exim message id (4.96: 1xZLVO-0006sS-2f; 4.97 on, longer parts).
MESSAGE_ID = re.compile(r"\b[0-9A-Za-z]{6}-[0-9A-Za-z]{6,11}-[0-9A-Za-z]{2,4}\b")


def exim_program() -> str:
    """The Exim binary: the one install-peers.sh unpacked, else one on PATH."""
    unpacked = EXIM_DIR / "usr" / "sbin" / "exim4"
    if os.access(unpacked, os.X_OK):
        return str(unpacked)
    found = shutil.which("exim4") or shutil.which("exim4", path=SBIN)
    if found is None:
        missing(f"exim4 is not available: .ci/install-peers.sh unpacks Debian's exim4-daemon-light into {EXIM_DIR}")
    return found


def exim_base() -> Path:
    """A new directory for a private Exim instance, once it is known that
    one can run here (the binary, root, the Debian-exim user); else skipped."""
    exim_program()
    return mta_base("pytest-smtpd-exim-", "Exim", EXIM_USER, ".ci/install-peers.sh creates it")


class Exim:
    """One Exim under ``base``, relaying every domain of ``ROUTES`` to
    127.0.0.1:``port`` and keeping bounces in ``bounces_file``."""

    def __init__(self, base: Path, port: int, ca_file: str) -> None:
        self.base = base
        self.port = port
        self.program = exim_program()
        self.config_file = base / "exim.conf"
        self.spool_dir = base / "spool"
        self.log_dir = base / "log"
        self.mail_dir = base / "mail"
        self.bounces_file = self.mail_dir / "bounces"
        self.ca_file = base / "ca.pem"
        shutil.copyfile(ca_file, self.ca_file)  # readable by Debian-exim, unlike the test CA's directory
        self.ca_file.chmod(0o644)
        #: The DKIM signing key of the dkim.test route, read at delivery.
        self.dkim_key_file = base / "dkim.pem"

    def configure(self) -> None:
        user = pwd.getpwnam(EXIM_USER)
        for directory in (self.spool_dir, self.log_dir, self.mail_dir):
            directory.mkdir()
            os.chown(directory, user.pw_uid, user.pw_gid)
        main = {
            "exim_path": self.program,
            "keep_environment": "",
            "exim_user": EXIM_USER,
            "exim_group": EXIM_USER,
            "spool_directory": self.spool_dir,
            "log_file_path": f"{self.log_dir}/%slog",
            "primary_hostname": SENDER_DOMAIN,
            "qualify_domain": SENDER_DOMAIN,
            "disable_ipv6": "true",
            # No "message delayed" warnings: a deferred message waits for
            # the test's queue run, and nothing else.
            "delay_warning": "0s",
        }
        lines = [f"{name} = {value}" for name, value in main.items()]
        lines += [
            "",
            "begin routers",
            "",
            "bounces:",
            "  driver = accept",
            f"  domains = {SENDER_DOMAIN}",
            "  transport = local_mbox",
        ]
        for domain, transport in ROUTES.items():
            lines += [
                "",
                f"to_{domain.replace('.', '_')}:",
                "  driver = manualroute",
                f"  domains = {domain}",
                f"  route_list = * 127.0.0.1::{self.port}",
                f"  transport = {transport}",
                # 127.0.0.1 is this host: send there all the same.
                "  self = send",
            ]
        smtp = [
            "  driver = smtp",
            "  hosts_try_chunking = *",  # the default, said aloud: BDAT when CHUNKING is offered
            "  allow_localhost",
        ]
        lines += [
            "",
            "begin transports",
            "",
            "remote_smtp:",
            *smtp,
            "",
            "remote_smtp_understated:",
            *smtp,
            f"  size_addition = -{UNDERSTATEMENT}",
            "",
            "remote_smtp_tls:",
            *smtp,
            "  hosts_require_tls = *",
            "  tls_verify_hosts = *",
            f"  tls_verify_certificates = {self.ca_file}",
            "",
            "remote_smtp_dkim:",
            *smtp,
            "  dkim_domain = example.test",
            "  dkim_selector = test",
            f"  dkim_private_key = {self.dkim_key_file}",
            "",
            "local_mbox:",
            "  driver = appendfile",
            f"  file = {self.bounces_file}",
            f"  user = {EXIM_USER}",
            "",
            "begin retry",
            "",
            # A deferred message is tried again by the test's queue run, which
            # forces delivery whatever the hints say.
            "* * F,1h,1h",
        ]
        self.config_file.write_text("\n".join(lines) + "\n")

    # -- commands --------------------------------------------------------------

    def run(self, *arguments: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        """``exim4 -C <this configuration> arguments...``, with a deadline."""
        command = [self.program, "-C", str(self.config_file), *arguments]
        return subprocess.run(command, input=stdin, capture_output=True, timeout=COMMAND_TIMEOUT, check=False)

    def send(self, message: bytes, sender: str, recipients: Sequence[str]) -> str:
        """Submit ``message`` as sendmail does (``-i``: a lone dot is data)
        and deliver it in the foreground (``-odf``); its Exim message id."""
        before = self.received_ids()
        result = self.run("-odf", "-i", "-f", sender, "--", *recipients, stdin=message)
        new = [message_id for message_id in self.received_ids() if message_id not in before]
        if len(new) != 1:
            raise AssertionError(f"exim took {len(new)} messages, not 1: {result!r}\nExim log:\n{self.log()}")
        return new[0]

    def deliver(self, message_id: str) -> None:
        """Deliver the message now (``-M``), retry times or not."""
        result = self.run("-M", message_id)
        if result.returncode != 0:
            raise AssertionError(f"exim -M {message_id} failed: {result!r}\nExim log:\n{self.log()}")

    def queued(self) -> list[str]:
        """The ids of the messages waiting in the queue (``-bp``)."""
        result = self.run("-bp")
        if result.returncode != 0:
            raise AssertionError(f"exim -bp failed: {result!r}")
        return MESSAGE_ID.findall(result.stdout.decode())

    # -- what happened -----------------------------------------------------------

    def log(self) -> str:
        try:
            return (self.log_dir / "mainlog").read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def received_ids(self) -> list[str]:
        """The ids of the messages Exim has taken, bounces (from ``<>``) not
        counted, in order."""
        return re.findall(rf"^\S+ \S+ ({MESSAGE_ID.pattern}) <= (?!<> )", self.log(), re.MULTILINE)

    def log_lines(self, message_id: str) -> list[str]:
        """The log lines about one message."""
        return [line for line in self.log().splitlines() if f" {message_id} " in line]

    def wait_for_log(self, message_id: str, text: str) -> str:
        """The first log line about ``message_id`` containing ``text``."""

        def find() -> str | None:
            return next((line for line in self.log_lines(message_id) if text in line), None)

        try:
            return wait_until(find, f"{text!r} in the Exim log for {message_id}", timeout=TIMEOUT)
        except TimeoutError as exc:
            raise AssertionError(f"{exc}\nExim log:\n{self.log()}") from None

    def bounces(self) -> str:
        """The local mbox of the bounces Exim sent back to the sender."""
        try:
            return self.bounces_file.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_for_bounce(self, token: str) -> str:
        """The mbox, once a bounce containing ``token`` (the Subject of the
        message it returns) is in it: the bounce is a message of its own,
        which a second Exim process may still be delivering."""
        try:
            return wait_until(
                lambda: self.bounces() if token in self.bounces() else None, f"a bounce of {token!r}", timeout=TIMEOUT
            )
        except TimeoutError as exc:
            raise AssertionError(f"{exc}\nExim log:\n{self.log()}") from None
