"""A real Postfix as the SENDING side: mail submitted to it with its
``sendmail`` is relayed to our server, as an MTA in front of an app would.

One instance per test session, from its own configuration and queue
directories, with no listener of its own. Every next hop is our server on
one loopback port that the tests bind in turn; the recipient's domain picks
how Postfix talks to it (see ``ROUTES``): plain SMTP, STARTTLS with the
certificate verified against the test CA, STARTTLS plus SASL AUTH, or LMTP.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from peers import TIMEOUT, free_port, require_program, wait_until
from postfix import alive, postfix_base

from pytest_smtpd.tls import test_ca

__all__ = ["AUTH_PASSWORD", "AUTH_USER", "PostfixSender", "postfix_sender_fixture"]

AUTH_USER, AUTH_PASSWORD = "relay-user", "relay-s3cret"


class PostfixSender:
    """One sending Postfix under ``base``, relaying to 127.0.0.1:``port``."""

    def __init__(self, base: Path, port: int) -> None:
        self.base = base
        self.port = port
        self.config_dir = base / "etc"
        self.queue_dir = base / "queue"
        self.data_dir = base / "data"
        self.log_file = base / "maillog"
        self.postfix = require_program("postfix", "postfix")
        self.sendmail_program = require_program("sendmail", "postfix")

    def configure(self) -> None:
        postfix_user = pwd.getpwnam("postfix")
        for directory in (self.config_dir, self.queue_dir, self.data_dir):
            directory.mkdir()
        os.chown(self.data_dir, postfix_user.pw_uid, postfix_user.pw_gid)
        ca_file = self.config_dir / "ca.pem"
        shutil.copyfile(test_ca().ca_path, ca_file)
        hop = f"127.0.0.1:{self.port}"
        # The domain of the (first) recipient chooses the way to our server.
        transports = {
            "plain.test": f"smtp:[127.0.0.1]:{self.port}",
            "tls.test": f"smtp-tls:[localhost]:{self.port}",
            "auth.test": f"smtp-auth:[localhost]:{self.port}",
            "lmtp.test": f"lmtp:inet:{hop}",
        }
        main_cf = {
            "compatibility_level": "3.6",
            "queue_directory": self.queue_dir,
            "data_directory": self.data_dir,
            "mail_owner": "postfix",
            "setgid_group": "postdrop",
            "myhostname": "sender.test",
            "mydomain": "test",
            "myorigin": "$myhostname",
            "mydestination": "",
            "local_transport": "error:no local delivery here",
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "alias_maps": "",
            "alias_database": "",
            "smtputf8_enable": "yes",
            "maillog_file": self.log_file,
            "maillog_file_prefixes": self.base,
            # Everything else (bounces to the sender's domain included) goes
            # to our server as plain SMTP.
            "relayhost": f"[127.0.0.1]:{self.port}",
            "transport_maps": "inline:{ " + ", ".join(f"{{ {d} = {t} }}" for d, t in transports.items()) + " }",
            "smtp_dns_support_level": "disabled",
            "smtp_host_lookup": "native",
            "lmtp_host_lookup": "native",
            "smtp_bind_address": "127.0.0.1",
            # Each test binds our server anew on the same port: no cached
            # connection may outlive it.
            "smtp_connection_cache_on_demand": "no",
            "lmtp_connection_cache_on_demand": "no",
            "smtp_tls_security_level": "none",
            "smtp_tls_CAfile": ca_file,
            "smtp_tls_loglevel": "1",  # logs "Verified TLS connection established"
            "smtp_sasl_password_maps": f"inline:{{ {{ [localhost]:{self.port} = {AUTH_USER}:{AUTH_PASSWORD} }} }}",
            "smtp_sasl_security_options": "noanonymous",
            "smtp_sasl_tls_security_options": "noanonymous",
            # A refused message comes back to its sender at once.
            "bounce_queue_lifetime": "0",
            "maximal_queue_lifetime": "1h",
        }
        (self.config_dir / "main.cf").write_text("".join(f"{name} = {value}\n" for name, value in main_cf.items()))
        services = [
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
            "smtp unix - - n - - smtp",
            "relay unix - - n - - smtp",
            "smtp-tls unix - - n - - smtp -o smtp_tls_security_level=verify",
            "smtp-auth unix - - n - - smtp -o smtp_tls_security_level=verify -o smtp_sasl_auth_enable=yes",
            "lmtp unix - - n - - lmtp",
            "anvil unix - - n - 1 anvil",
            "scache unix - - n - 1 scache",
            "tlsmgr unix - - n 1000? 1 tlsmgr",
            "postlog unix-dgram n - n - 1 postlogd",
        ]
        (self.config_dir / "master.cf").write_text("\n".join(services) + "\n")

    def run(self, *command: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        result = subprocess.run(list(command), input=stdin, capture_output=True, timeout=60, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"{command} failed ({result.returncode}): {result.stdout!r} {result.stderr!r}")
        return result

    def start(self) -> None:
        self.run(self.postfix, "-c", str(self.config_dir), "start")

    def stop(self) -> None:
        pid_file = self.queue_dir / "pid" / "master.pid"
        try:
            pid = int(pid_file.read_text().strip())
        except (OSError, ValueError):
            return
        self.run(self.postfix, "-c", str(self.config_dir), "stop")
        wait_until(lambda: not alive(pid), "the sending Postfix to exit", timeout=30)

    def send(self, message: bytes, sender: str, recipients: Sequence[str], *options: str) -> None:
        """Submit with Postfix's own sendmail (``-C`` picks this instance)."""
        self.run(
            self.sendmail_program,
            "-C",
            str(self.config_dir),
            "-i",
            "-f",
            sender,
            *options,
            "--",
            *recipients,
            stdin=message,
        )

    def flush(self) -> None:
        """Try every deferred message again now."""
        self.run(require_program("postqueue", "postfix"), "-c", str(self.config_dir), "-f")

    def wait_for_deferral(self) -> None:
        """Until a message sits in the deferred queue."""
        deferred = self.queue_dir / "deferred"
        wait_until(lambda: any(path.is_file() for path in deferred.rglob("*")), "a deferred message")

    def wait_for_log(self, text: str) -> str:
        """The log, once it has a line containing ``text``."""
        return wait_until(lambda: self.log() if text in self.log() else None, f"{text!r} in the Postfix log")

    def empty_queue(self) -> None:
        self.run(require_program("postsuper", "postfix"), "-c", str(self.config_dir), "-d", "ALL")

    def log(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")
        except FileNotFoundError:
            return ""


@pytest.fixture(scope="session", name="postfix_sender")
def postfix_sender_fixture() -> Iterator[PostfixSender]:
    """A running sending Postfix whose every next hop is 127.0.0.1 on a port
    reserved for the session, where each test binds its own server."""
    instance = PostfixSender(postfix_base("pytest-smtpd-postfix-sender-"), free_port())
    try:
        instance.configure()
        instance.start()
        yield instance
    finally:
        try:
            instance.stop()
        finally:
            shutil.rmtree(instance.base, ignore_errors=True)


#: Seconds Postfix may take from submission to delivery (pickup, cleanup,
#: qmgr and the smtp client each take a turn).
DELIVERY_TIMEOUT = max(TIMEOUT, 30.0)
