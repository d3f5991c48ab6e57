"""TLS and AUTH with real SMTP clients in subprocesses: swaks, curl, openssl
s_client and msmtp, against the server on loopback, with certificate
verification on. The negative cases check each tool's exit status and the
server's reply: a wrong password (535), a CA that did not sign the server
certificate (the client refuses), AUTH or MAIL before TLS where TLS is
required (538, 530).

A missing program skips its tests naming the Debian package to install, or
fails them when the CI environment variable is set (see .ci/install-peers.sh).
"""

from __future__ import annotations

import base64
import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest
import trustme
from peers import require_program

from pytest_smtpd import Server
from pytest_smtpd.auth import Credentials
from pytest_smtpd.server import TLSMode

#: Seconds a client program may take before it counts as hung.
TIMEOUT = 30.0
USERS = {"alice": "s3cret-Pa55"}
PASSWORD = USERS["alice"]
WRONG = "wr0ng-Pa55"
MESSAGE = b"Subject: real client\r\nFrom: a@example.com\r\nTo: b@example.com\r\n\r\nhello\r\n"

# swaks' documented exit statuses.
SWAKS_AUTH_FAILED = 28
SWAKS_TLS_FAILED = 29
SWAKS_MAIL_REFUSED = 23
# curl's exit statuses.
CURL_SEND_FAILED = 55
CURL_CERT_REFUSED = 60
CURL_TLS_UNAVAILABLE = 64
CURL_LOGIN_DENIED = 67
# msmtp's (sysexits.h).
MSMTP_DATAERR = 65
MSMTP_UNAVAILABLE = 69
MSMTP_NOPERM = 77


def run(
    args: Sequence[str], *, env: dict[str, str] | None = None, stdin: bytes | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a client program to completion, with a deadline."""
    completed = subprocess.run(
        list(args),
        input=stdin,
        capture_output=True,
        timeout=TIMEOUT,
        env=env,
        check=False,
    )
    return subprocess.CompletedProcess(
        completed.args,
        completed.returncode,
        completed.stdout.decode("utf-8", "backslashreplace"),
        completed.stderr.decode("utf-8", "backslashreplace"),
    )


def clean_env() -> dict[str, str]:
    """This environment without anything that decides which CAs to trust."""
    env = dict(os.environ)
    for name in ("SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        env.pop(name, None)
    return env


def describe(result: subprocess.CompletedProcess[str]) -> str:
    return f"{result.args}\nexit status {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"


class Recorder:
    """An authenticator checking USERS that remembers the mechanisms used."""

    def __init__(self) -> None:
        self.mechanisms: list[str] = []

    def __call__(self, credentials: Credentials) -> bool:
        self.mechanisms.append(credentials.mechanism)
        secret = USERS.get(credentials.username)
        return secret is not None and credentials.matches(secret)


@pytest.fixture
def other_ca(tmp_path: Path) -> str:
    """A fresh CA that did not sign the server's certificate."""
    path = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(path))
    return str(path)


def assert_received(server: Server, mode: TLSMode, identity: str | None = "alice") -> None:
    (message,) = server.messages
    assert message.tls is not None and message.tls.mode == mode
    assert message.auth_identity == identity
    assert message.mail_from == "a@example.com" and message.rcpt_tos == ["b@example.com"]


# -- swaks ------------------------------------------------------------------


def swaks(server: Server, *options: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    program = require_program("swaks", "swaks")
    common = ["--server", server.host, "--port", str(server.port), "--helo", "client.test"]
    common += ["--from", "a@example.com", "--to", "b@example.com", "--timeout", "20"]
    return run([program, *common, *options], env=env)


@pytest.mark.parametrize(
    ("mode", "tls_option", "mechanism"),
    [("starttls", "--tls", "PLAIN"), ("implicit", "--tls-on-connect", "LOGIN")],
)
def test_swaks_tls_and_auth(mode: TLSMode, tls_option: str, mechanism: str) -> None:
    recorder = Recorder()
    with Server(tls=mode, auth=recorder, auth_requires_tls=True) as server:
        result = swaks(
            server,
            tls_option,
            "--tls-verify",
            "--tls-ca-path",
            server.ca_path,
            "--auth",
            mechanism,
            "--auth-user",
            "alice",
            "--auth-password",
            PASSWORD,
        )
        assert result.returncode == 0, describe(result)
        assert "235 2.7.0 Authentication successful" in result.stdout
        assert_received(server, mode)
    assert recorder.mechanisms == [mechanism]


@pytest.mark.smtpd(tls="starttls")
def test_swaks_trusts_the_server_through_client_env(smtpd: Server) -> None:
    result = swaks(smtpd, "--tls", "--tls-verify", env={**clean_env(), **smtpd.client_env})
    assert result.returncode == 0, describe(result)
    assert_received(smtpd, "starttls", identity=None)


@pytest.mark.parametrize(("mode", "tls_option"), [("starttls", "--tls"), ("implicit", "--tls-on-connect")])
def test_swaks_refuses_an_untrusted_server(mode: TLSMode, tls_option: str, other_ca: str) -> None:
    with Server(tls=mode) as server:
        result = swaks(server, tls_option, "--tls-verify", "--tls-ca-path", other_ca)
        assert result.returncode == SWAKS_TLS_FAILED, describe(result)
        assert "certificate verify failed" in result.stdout + result.stderr
        assert len(server.messages) == 0


@pytest.mark.smtpd(tls="starttls", auth=USERS)
def test_swaks_wrong_password_is_535(smtpd: Server) -> None:
    tls = ["--tls", "--tls-verify", "--tls-ca-path", smtpd.ca_path]
    result = swaks(smtpd, *tls, "--auth", "LOGIN", "--auth-user", "alice", "--auth-password", WRONG)
    assert result.returncode == SWAKS_AUTH_FAILED, describe(result)
    assert "535 5.7.8 Authentication credentials invalid" in result.stdout
    assert len(smtpd.messages) == 0


@pytest.mark.smtpd(tls="starttls", auth=USERS, auth_requires_tls=True)
def test_swaks_auth_before_tls_is_538(smtpd: Server) -> None:
    result = swaks(smtpd, "--auth", "PLAIN", "--auth-user", "alice", "--auth-password", PASSWORD)
    assert result.returncode == SWAKS_AUTH_FAILED, describe(result)
    assert "538 5.7.11" in result.stdout
    assert len(smtpd.messages) == 0


@pytest.mark.smtpd(tls="starttls", require_starttls=True)
def test_swaks_mail_before_tls_is_530(smtpd: Server) -> None:
    result = swaks(smtpd)
    assert result.returncode == SWAKS_MAIL_REFUSED, describe(result)
    assert "530 5.7.0 Must issue a STARTTLS command first" in result.stdout
    assert len(smtpd.messages) == 0


@pytest.mark.smtpd()
def test_swaks_tls_against_a_server_without_it_fails(smtpd: Server) -> None:
    # Twin: --tls is not a wish; without STARTTLS on offer swaks gives up.
    result = swaks(smtpd, "--tls")
    assert result.returncode == SWAKS_TLS_FAILED, describe(result)
    assert len(smtpd.messages) == 0


# -- curl -------------------------------------------------------------------


def curl(
    url: str, *options: str, tmp_path: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    program = require_program("curl", "curl")
    mail = tmp_path / "message.eml"
    mail.write_bytes(MESSAGE)
    common = ["--silent", "--show-error", "--verbose", "--max-time", "20"]
    common += ["--mail-from", "a@example.com", "--mail-rcpt", "b@example.com", "--upload-file", str(mail)]
    return run([program, *common, *options, url], env=env)


def url(server: Server, scheme: str = "smtp") -> str:
    return f"{scheme}://{server.host}:{server.port}"


@pytest.mark.parametrize(
    ("login_options", "mechanism"),
    [([], "CRAM-MD5"), (["--login-options", "AUTH=PLAIN"], "PLAIN"), (["--login-options", "AUTH=LOGIN"], "LOGIN")],
)
def test_curl_starttls_and_auth(login_options: list[str], mechanism: str, tmp_path: Path) -> None:
    recorder = Recorder()
    with Server(tls="starttls", auth=recorder, auth_requires_tls=True) as server:
        tls = ["--ssl-reqd", "--cacert", server.ca_path]
        result = curl(url(server), *tls, "--user", f"alice:{PASSWORD}", *login_options, tmp_path=tmp_path)
        assert result.returncode == 0, describe(result)
        assert "< 235 2.7.0" in result.stderr
        assert_received(server, "starttls")
    assert recorder.mechanisms == [mechanism]


@pytest.mark.smtpd(tls="implicit", auth=USERS, auth_requires_tls=True)
def test_curl_smtps_and_auth(smtpd: Server, tmp_path: Path) -> None:
    auth = ["--user", f"alice:{PASSWORD}", "--login-options", "AUTH=PLAIN"]
    result = curl(url(smtpd, "smtps"), "--cacert", smtpd.ca_path, *auth, tmp_path=tmp_path)
    assert result.returncode == 0, describe(result)
    assert_received(smtpd, "implicit")


@pytest.mark.smtpd(tls="implicit")
def test_curl_trusts_the_server_through_client_env(smtpd: Server, tmp_path: Path) -> None:
    result = curl(url(smtpd, "smtps"), tmp_path=tmp_path, env={**clean_env(), **smtpd.client_env})
    assert result.returncode == 0, describe(result)
    assert_received(smtpd, "implicit", identity=None)


@pytest.mark.parametrize(
    ("mode", "scheme", "options"), [("starttls", "smtp", ["--ssl-reqd"]), ("implicit", "smtps", [])]
)
def test_curl_refuses_an_untrusted_server(
    mode: TLSMode, scheme: str, options: list[str], other_ca: str, tmp_path: Path
) -> None:
    with Server(tls=mode) as server:
        result = curl(url(server, scheme), *options, "--cacert", other_ca, tmp_path=tmp_path)
        assert result.returncode == CURL_CERT_REFUSED, describe(result)
        assert len(server.messages) == 0


@pytest.mark.smtpd(tls="starttls", auth=USERS)
def test_curl_wrong_password_is_535(smtpd: Server, tmp_path: Path) -> None:
    auth = ["--user", f"alice:{WRONG}", "--login-options", "AUTH=PLAIN"]
    result = curl(url(smtpd), "--ssl-reqd", "--cacert", smtpd.ca_path, *auth, tmp_path=tmp_path)
    assert result.returncode == CURL_LOGIN_DENIED, describe(result)
    assert "< 535 5.7.8 Authentication credentials invalid" in result.stderr
    assert len(smtpd.messages) == 0


@pytest.mark.smtpd(tls="starttls", auth=USERS, auth_requires_tls=True)
def test_curl_auth_before_tls_is_538(smtpd: Server, tmp_path: Path) -> None:
    result = curl(url(smtpd), "--user", f"alice:{PASSWORD}", "--login-options", "AUTH=PLAIN", tmp_path=tmp_path)
    assert result.returncode == CURL_LOGIN_DENIED, describe(result)
    assert "< 538 5.7.11" in result.stderr
    assert len(smtpd.messages) == 0


@pytest.mark.smtpd(tls="starttls", require_starttls=True)
def test_curl_mail_before_tls_is_530(smtpd: Server, tmp_path: Path) -> None:
    result = curl(url(smtpd), tmp_path=tmp_path)
    assert result.returncode == CURL_SEND_FAILED, describe(result)
    assert "< 530 5.7.0 Must issue a STARTTLS command first" in result.stderr
    assert len(smtpd.messages) == 0


@pytest.mark.smtpd()
def test_curl_ssl_reqd_against_a_server_without_tls_fails(smtpd: Server, tmp_path: Path) -> None:
    # Twin: --ssl-reqd does insist on TLS.
    result = curl(url(smtpd), "--ssl-reqd", tmp_path=tmp_path)
    assert result.returncode == CURL_TLS_UNAVAILABLE, describe(result)
    assert len(smtpd.messages) == 0


# -- openssl s_client -------------------------------------------------------


def s_client(server: Server, *options: str, stdin: bytes) -> subprocess.CompletedProcess[str]:
    program = require_program("openssl", "openssl")
    args = [program, "s_client", "-connect", f"{server.host}:{server.port}", "-verify_return_error"]
    # -crlf: our LF lines go out as CRLF; -ign_eof: wait for the server to
    # close after QUIT rather than hang up when stdin ends.
    return run([*args, "-crlf", "-ign_eof", *options], stdin=stdin)


@pytest.mark.parametrize(("mode", "options"), [("starttls", ["-starttls", "smtp"]), ("implicit", [])])
def test_openssl_s_client_verifies_and_talks(mode: TLSMode, options: list[str]) -> None:
    with Server(tls=mode, auth=USERS, auth_requires_tls=True) as server:
        plain = base64.b64encode(f"\0alice\0{PASSWORD}".encode()).decode("ascii")
        script = (
            "EHLO client.test\n"
            f"AUTH PLAIN {plain}\n"
            "MAIL FROM:<a@example.com>\nRCPT TO:<b@example.com>\nDATA\n"
            "Subject: s_client\n\nhello\n.\nQUIT\n"
        )
        result = s_client(server, *options, "-CAfile", server.ca_path, "-verify_ip", "127.0.0.1", stdin=script.encode())
        assert result.returncode == 0, describe(result)
        assert "Verify return code: 0 (ok)" in result.stdout
        lines = result.stdout.splitlines()
        assert "235 2.7.0 Authentication successful" in lines
        assert "221 Bye" in lines
        assert "250-STARTTLS" not in lines  # the EHLO inside TLS
        (message,) = server.messages
        assert message.tls is not None and message.tls.mode == mode
        assert message.auth_identity == "alice"


@pytest.mark.parametrize(("mode", "options"), [("starttls", ["-starttls", "smtp"]), ("implicit", [])])
def test_openssl_s_client_refuses_an_untrusted_server(mode: TLSMode, options: list[str], other_ca: str) -> None:
    with Server(tls=mode) as server:
        result = s_client(server, *options, "-CAfile", other_ca, stdin=b"QUIT\n")
    assert result.returncode == 1, describe(result)
    assert "Verify return code: 20 (unable to get local issuer certificate)" in result.stdout


@pytest.mark.smtpd(tls="implicit")
def test_openssl_s_client_checks_the_name(smtpd: Server) -> None:
    common = ["-CAfile", smtpd.ca_path]
    good = s_client(smtpd, *common, "-verify_hostname", "localhost", stdin=b"QUIT\n")
    assert good.returncode == 0, describe(good)
    bad = s_client(smtpd, *common, "-verify_hostname", "example.org", stdin=b"QUIT\n")
    assert bad.returncode == 1, describe(bad)
    assert "Verify return code: 62 (hostname mismatch)" in bad.stdout


# -- msmtp ------------------------------------------------------------------


def msmtp(server: Server | None, *options: str, config: Path | None = None) -> subprocess.CompletedProcess[str]:
    """msmtp with its settings on the command line (``server``), or from a
    configuration file alone (``config``): ``--host`` would ignore the file."""
    program = require_program("msmtp", "msmtp")
    args = [program, f"--file={config if config is not None else os.devnull}", "--from=a@example.com"]
    if server is not None:
        args += [f"--host={server.host}", f"--port={server.port}"]
    return run([*args, *options, "b@example.com"], stdin=MESSAGE)


def msmtp_auth(mechanism: str, password: str = PASSWORD) -> list[str]:
    return [f"--auth={mechanism}", "--user=alice", f"--passwordeval=echo {password}"]


def msmtp_tls(ca: str, starttls: bool = True) -> list[str]:
    return ["--tls=on", f"--tls-starttls={'on' if starttls else 'off'}", f"--tls-trust-file={ca}"]


@pytest.mark.parametrize(("mode", "mechanism"), [("starttls", "plain"), ("implicit", "login")])
def test_msmtp_tls_and_auth(mode: TLSMode, mechanism: str) -> None:
    recorder = Recorder()
    with Server(tls=mode, auth=recorder, auth_requires_tls=True) as server:
        result = msmtp(server, *msmtp_tls(server.ca_path, mode == "starttls"), *msmtp_auth(mechanism))
        assert result.returncode == 0, describe(result)
        assert_received(server, mode)
    assert recorder.mechanisms == [mechanism.upper()]


@pytest.mark.smtpd(tls="starttls", auth=USERS)
def test_msmtp_config_file(smtpd: Server, tmp_path: Path) -> None:
    config = tmp_path / "msmtprc"
    config.write_text(
        "account test\n"
        f"host {smtpd.host}\nport {smtpd.port}\n"
        "tls on\ntls_starttls on\n"
        f"tls_trust_file {smtpd.ca_path}\n"
        "auth on\nuser alice\n"
        f"password {PASSWORD}\n"
        "account default : test\n"
    )
    config.chmod(0o600)  # msmtp refuses a password in a file others may read
    result = msmtp(None, config=config)
    assert result.returncode == 0, describe(result)
    assert_received(smtpd, "starttls")


@pytest.mark.parametrize("starttls", [True, False])
def test_msmtp_refuses_an_untrusted_server(starttls: bool, other_ca: str) -> None:
    with Server(tls="starttls" if starttls else "implicit") as server:
        result = msmtp(server, *msmtp_tls(other_ca, starttls))
        assert result.returncode == MSMTP_UNAVAILABLE, describe(result)
        assert "TLS certificate verification failed" in result.stderr
        assert len(server.messages) == 0


@pytest.mark.smtpd(tls="starttls")
def test_msmtp_checks_the_name(smtpd: Server) -> None:
    result = msmtp(smtpd, *msmtp_tls(smtpd.ca_path), "--tls-host-override=example.org")
    assert result.returncode == MSMTP_UNAVAILABLE, describe(result)
    assert "does not match" in result.stderr
    assert len(smtpd.messages) == 0


@pytest.mark.smtpd(tls="starttls", auth=USERS)
def test_msmtp_wrong_password_is_535(smtpd: Server) -> None:
    result = msmtp(smtpd, *msmtp_tls(smtpd.ca_path), *msmtp_auth("plain", WRONG))
    assert result.returncode == MSMTP_NOPERM, describe(result)
    assert "535 5.7.8 Authentication credentials invalid" in result.stderr
    assert len(smtpd.messages) == 0


@pytest.mark.smtpd(tls="starttls", auth=USERS, auth_requires_tls=True)
def test_msmtp_auth_before_tls_is_538(smtpd: Server) -> None:
    result = msmtp(smtpd, "--tls=off", *msmtp_auth("plain"))
    assert result.returncode == MSMTP_NOPERM, describe(result)
    assert "538 5.7.11" in result.stderr
    assert len(smtpd.messages) == 0


@pytest.mark.smtpd(tls="starttls", require_starttls=True)
def test_msmtp_mail_before_tls_is_530(smtpd: Server) -> None:
    result = msmtp(smtpd, "--tls=off")
    assert result.returncode == MSMTP_DATAERR, describe(result)
    assert "530 5.7.0 Must issue a STARTTLS command first" in result.stderr
    assert len(smtpd.messages) == 0


@pytest.mark.smtpd()
def test_msmtp_starttls_against_a_server_without_it_fails(smtpd: Server, other_ca: str) -> None:
    # Twin: --tls=on is not a wish.
    result = msmtp(smtpd, *msmtp_tls(other_ca))
    assert result.returncode == MSMTP_UNAVAILABLE, describe(result)
    assert len(smtpd.messages) == 0
