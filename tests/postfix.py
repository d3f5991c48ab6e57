"""A real Postfix for the tests: Debian's postfix package, run from its own
configuration directory in a temporary directory, listening on a loopback
port, delivering every message for every domain into one Maildir.

Started once per session by the ``postfix`` fixture (``postfix -c DIR
start``) and stopped at the end (``postfix -c DIR stop``). Starting Postfix
needs root; without the package or without root the tests that need it are
skipped (failed under CI).
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from peers import TIMEOUT, free_port, mta_base, require_program, wait_until

from pytest_smtpd.tls import test_ca

__all__ = [
    "BLOCKED_SENDER",
    "BUSY_RECIPIENT",
    "REFUSED_RECIPIENT",
    "REJECTED_SUBJECT",
    "Postfix",
    "alive",
    "postfix_base",
    "postfix_fixture",
]

#: Postfix refuses this recipient with 550, this one with 450, this sender
#: with 553, and a message with this Subject at end of DATA with 550.
REFUSED_RECIPIENT = "refused@example.com"
BUSY_RECIPIENT = "busy@example.com"
BLOCKED_SENDER = "blocked@example.com"
REJECTED_SUBJECT = "reject me"

#: The user the virtual delivery agent writes the Maildir as.
MAIL_USER = "nobody"


class Postfix:
    """One Postfix instance under ``base``."""

    def __init__(self, base: Path, port: int) -> None:
        self.base = base
        self.host = "127.0.0.1"
        self.port = port
        self.config_dir = base / "etc"
        self.queue_dir = base / "queue"
        self.data_dir = base / "data"
        self.mail_base = base / "mail"
        self.maildir = self.mail_base / "inbox"
        self.log_file = base / "maillog"
        self.postfix = require_program("postfix", "postfix")

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    # -- set-up --------------------------------------------------------------

    def configure(self) -> None:
        nobody = pwd.getpwnam(MAIL_USER)
        postfix_user = pwd.getpwnam("postfix")
        for directory in (self.config_dir, self.queue_dir, self.data_dir, self.mail_base):
            directory.mkdir()
        # Postfix keeps its lock and caches here, as the postfix user.
        os.chown(self.data_dir, postfix_user.pw_uid, postfix_user.pw_gid)
        os.chown(self.mail_base, nobody.pw_uid, nobody.pw_gid)
        ca = test_ca()
        cert, key = self.config_dir / "cert.pem", self.config_dir / "key.pem"
        shutil.copyfile(ca.cert_path, cert)
        shutil.copyfile(ca.key_path, key)
        key.chmod(0o600)
        (self.config_dir / "header_checks").write_text(
            f"/^Subject: {REJECTED_SUBJECT}$/ REJECT message refused by policy\n"
        )
        recipient_access = (
            f"inline:{{ {{ {REFUSED_RECIPIENT} = 550 5.1.1 no such user here }},"
            f" {{ {BUSY_RECIPIENT} = 450 4.2.1 mailbox busy, try later }} }}"
        )
        sender_access = f"inline:{{ {{ {BLOCKED_SENDER} = 553 5.7.1 sender blocked }} }}"
        main_cf = {
            "compatibility_level": "3.6",
            "queue_directory": self.queue_dir,
            "data_directory": self.data_dir,
            "mail_owner": "postfix",
            "setgid_group": "postdrop",
            "myhostname": "postfix.test",
            "mydomain": "test",
            "myorigin": "$myhostname",
            "mydestination": "",
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "mynetworks": "127.0.0.0/8",
            "smtpd_banner": "$myhostname ESMTP Postfix (pytest-smtpd tests)",
            "alias_maps": "",
            "alias_database": "",
            "local_recipient_maps": "",
            "smtputf8_enable": "yes",
            "virtual_mailbox_domains": "static:all",
            "virtual_mailbox_base": self.mail_base,
            "virtual_mailbox_maps": "static:inbox/",
            "virtual_uid_maps": f"static:{nobody.pw_uid}",
            "virtual_gid_maps": f"static:{nobody.pw_gid}",
            "maillog_file": self.log_file,
            "maillog_file_prefixes": self.base,
            "smtpd_sender_restrictions": f"check_sender_access {sender_access}",
            "smtpd_recipient_restrictions": (
                f"check_recipient_access {recipient_access}, permit_mynetworks, reject_unauth_destination"
            ),
            "header_checks": f"regexp:{self.config_dir / 'header_checks'}",
            "smtpd_tls_security_level": "may",
            "smtpd_tls_cert_file": cert,
            "smtpd_tls_key_file": key,
        }
        (self.config_dir / "main.cf").write_text("".join(f"{name} = {value}\n" for name, value in main_cf.items()))
        # service type private unpriv chroot wakeup maxproc command: nothing
        # chrooted, so no copies of /etc are needed in the queue directory.
        services = [
            f"{self.host}:{self.port} inet n - n - - smtpd",
            "pickup unix n - n 60 1 pickup",
            "cleanup unix n - n - 0 cleanup",
            "qmgr unix n - n 300 1 qmgr",
            "rewrite unix - - n - - trivial-rewrite",
            "bounce unix - - n - 0 bounce",
            "defer unix - - n - 0 bounce",
            "trace unix - - n - 0 bounce",
            "verify unix - - n - 1 verify",
            "flush unix n - n 1000? 0 flush",
            "proxymap unix - - n - - proxymap",
            "showq unix n - n - - showq",
            "error unix - - n - - error",
            "retry unix - - n - - error",
            "discard unix - - n - - discard",
            "virtual unix - n n - - virtual",
            "anvil unix - - n - 1 anvil",
            "scache unix - - n - 1 scache",
            "tlsmgr unix - - n 1000? 1 tlsmgr",
            "postlog unix-dgram n - n - 1 postlogd",
        ]
        (self.config_dir / "master.cf").write_text("\n".join(services) + "\n")

    def _postfix(self, command: str) -> None:
        result = subprocess.run(
            [self.postfix, "-c", str(self.config_dir), command],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"postfix {command} failed ({result.returncode}):\n{result.stdout}{result.stderr}\nlog:\n{self.log()}"
            )

    def start(self) -> None:
        # master -w (which "postfix start" uses) returns once the master
        # daemon has initialised, listeners included.
        self._postfix("start")
        with socket.create_connection(self.address, timeout=TIMEOUT) as sock:
            greeting = sock.recv(512)
        if not greeting.startswith(b"220 "):
            raise RuntimeError(f"postfix greeted with {greeting!r}")

    def master_pid(self) -> int | None:
        try:
            return int((self.queue_dir / "pid" / "master.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def stop(self) -> None:
        pid = self.master_pid()
        self._postfix("stop")
        if pid is not None:
            wait_until(lambda: not alive(pid), "the Postfix master to exit", timeout=30)

    # -- what arrived --------------------------------------------------------

    def log(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def delivered(self) -> list[bytes]:
        """Every message in the Maildir."""
        files = [path for sub in ("new", "cur") for path in sorted((self.maildir / sub).glob("*"))]
        return [path.read_bytes() for path in files]

    def wait_for_messages(self, token: str, count: int = 1, timeout: float = TIMEOUT) -> list[bytes]:
        """The ``count`` delivered messages containing ``token`` (e.g. a
        unique Subject); Postfix delivers one copy per recipient."""
        needle = token.encode()

        def find() -> list[bytes] | None:
            if not self.maildir.is_dir():
                return None
            found = [message for message in self.delivered() if needle in message]
            return found if len(found) >= count else None

        try:
            return wait_until(find, f"{count} message(s) containing {token!r} in {self.maildir}", timeout=timeout)
        except TimeoutError as exc:
            raise AssertionError(f"{exc}\nPostfix log:\n{self.log()}") from None

    def wait_for_message(self, token: str, timeout: float = TIMEOUT) -> bytes:
        """The delivered message containing ``token``."""
        return self.wait_for_messages(token, 1, timeout)[0]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def postfix_base(prefix: str) -> Path:
    """A new directory for a private Postfix instance, once it is known that
    one can run here (the package, root, the postfix user); else skipped."""
    require_program("postfix", "postfix")
    return mta_base(prefix, "Postfix", "postfix", "install the Debian package 'postfix'")


@pytest.fixture(scope="session", name="postfix")
def postfix_fixture() -> Iterator[Postfix]:
    """A running Postfix on 127.0.0.1 and a free port, for the session."""
    base = postfix_base("pytest-smtpd-postfix-")
    instance = Postfix(base, free_port())
    try:
        instance.configure()
        instance.start()
        yield instance
    finally:
        try:
            if instance.master_pid() is not None:
                instance.stop()
        finally:
            shutil.rmtree(base, ignore_errors=True)
