"""The command line: argument handling in-process through main(), and the
server itself as ``python -m pytest_smtpd`` subprocesses, receiving mail
from smtplib and stopped with Ctrl-C (SIGINT)."""

from __future__ import annotations

import os
import pwd
import re
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import textwrap
import types
from pathlib import Path
from typing import Any

import pytest
import trustme
from peers import TIMEOUT, Spawned, require_program

from pytest_smtpd import DebuggingServer, PureProxy, Server, __version__, cli, compat, mailman
from pytest_smtpd.mailman import MailmanProxy

#: The line saying where the server listens (not the debug log's line).
LISTENING = r"^\w+ listening on 127\.0\.0\.1:(\d+)[,;]"
MESSAGE = "From: a@example.com\r\nTo: b@example.com\r\nSubject: from the cli test\r\n\r\nHello, server.\r\n"
LIST = "team@lists.example.com"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = cli.main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


# -- in-process ------------------------------------------------------------------


def test_help_names_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "--help")
    assert status == 0
    assert out.startswith("usage: ")
    # "-c CLASS, --class CLASS" before Python 3.13, "-c, --class CLASS" since.
    for short, long in [("-n", "--nosetuid"), ("-c", "--class CLASS"), ("-d", "--debug"), ("-u", "--smtputf8")]:
        assert re.search(rf"^  {short}\b.*, {long}\b", out, re.MULTILINE), (short, long)
    for short, long in [("-s", "--size LIMIT"), ("-V", "--version"), ("-h", "--help")]:
        assert re.search(rf"^  {short}\b.*, {long}\b", out, re.MULTILINE), (short, long)
    for name in ["--allow-open-relay", "--list ADDRESS", "--mailman-lmtp HOST:PORT", "localspec", "remotespec"]:
        assert re.search(rf"^  {name}\b", out, re.MULTILINE), name
    tls_auth = [
        "--tls {starttls,implicit}",
        "--tls-port PORT",
        "--tls-cert PATH",
        "--tls-key PATH",
        "--tls-ca-out PATH",
    ]
    extensions = ["--chunking", "--dsn", "--enhanced-status-codes"]
    for name in [*tls_auth, "--require-starttls", "--auth USER:PASSWORD", "--require-auth", *extensions]:
        assert re.search(rf"^  {re.escape(name)}(\s|$)", out, re.MULTILINE), name
    assert "localhost:8025" in out
    assert "localhost:25" in out


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version(capsys: pytest.CaptureFixture[str], flag: str) -> None:
    assert run(capsys, flag) == (0, f"pytest-smtpd {__version__}\n", "")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["-c", "NoSuchServer"], "unknown class 'NoSuchServer': use one of DebuggingServer, PureProxy, MailmanProxy"),
        (["-c", "no_such_module_xyz.Server"], "cannot import module 'no_such_module_xyz'"),
        (["-c", "pytest_smtpd.proxy.NoSuchClass"], "module 'pytest_smtpd.proxy' has no class 'NoSuchClass'"),
        (["-c", "collections.OrderedDict"], "'collections.OrderedDict' is not a subclass of pytest_smtpd.SMTPServer"),
        (["-s", "big"], "argument -s/--size: invalid size: 'big'"),
        (["-s", "-1"], "argument -s/--size: invalid size: '-1'"),
        (["localhost:port"], "bad port in 'localhost:port'"),
        (["localhost:70000"], "bad port in 'localhost:70000'"),
        (["localhost:1025", "mail:smtp"], "bad port in 'mail:smtp'"),
        (["[::1"], "bad address '[::1'"),
        (["a:1", "b:2", "c:3"], "unrecognized arguments: c:3"),
        (["--no-such-option"], "unrecognized arguments: --no-such-option"),
        (["-c", "MailmanProxy"], "MailmanProxy needs at least one --list ADDRESS"),
        (["-c", "MailmanProxy", "--mailman-lmtp", "127.0.0.1:8024"], "MailmanProxy needs at least one --list"),
        (["-c", "MailmanProxy", "--list", "team"], "argument --list: invalid list address: 'team'"),
        (["-c", "MailmanProxy", "--list", "@lists.example.com"], "invalid list address: '@lists.example.com'"),
        (["-c", "MailmanProxy", "--list", "<team@x.example>"], "invalid list address: '<team@x.example>'"),
        (["-c", "MailmanProxy", "--list", LIST, "--mailman-lmtp", "mm:lmtp"], "bad port in 'mm:lmtp'"),
        (["--list", LIST], "--list and --mailman-lmtp are for MailmanProxy, not DebuggingServer"),
        (["-c", "PureProxy", "--mailman-lmtp", ":8024"], "are for MailmanProxy, not PureProxy"),
        (["-c", "PureProxy", "--show-envelope"], "--show-envelope is for DebuggingServer, not PureProxy"),
    ],
)
def test_bad_arguments(capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    status, out, err = run(capsys, "-n", *argv)
    assert status == 2
    assert out == ""
    assert err.startswith("usage: ")
    assert message in err


def test_mailmanproxy_gets_the_lists_and_the_lmtp_address(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[MailmanProxy] = []

    class Recorded(MailmanProxy):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            made.append(self)

    def ctrl_c(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(mailman, "MailmanProxy", Recorded)
    monkeypatch.setattr(compat, "loop", ctrl_c)
    argv = ["-c", "MailmanProxy", "--list", LIST, "--list", "Dev@Lists.Example.org", "127.0.0.1:0", "127.0.0.1:2525"]
    status, _, err = run(capsys, "-n", *argv)
    assert status == 0, err
    [server] = made
    assert server.mailman_lmtp == ("127.0.0.1", 8024)  # the default
    assert server.remoteaddr == ("127.0.0.1", 2525)
    assert server.is_list_address("team-request@lists.example.com")
    assert server.is_list_address("dev@lists.example.org")
    assert not server.is_list_address("bob@example.com")
    assert re.search(r"relaying to 127\.0\.0\.1:2525, lists to Mailman at 127\.0\.0\.1:8024 \(LMTP\);", err)
    assert not server._server.is_running()  # closed on Ctrl-C


def test_mailmanproxy_open_relay_needs_the_flag(capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run(capsys, "-n", "-c", "MailmanProxy", "--list", LIST, "0.0.0.0:0", "127.0.0.1:25")
    assert status == 1
    assert "MailmanProxy would listen on '0.0.0.0', which is not a loopback address" in err
    assert "--allow-open-relay" in err


def test_open_relay_needs_the_flag(capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run(capsys, "-n", "-c", "PureProxy", "0.0.0.0:0", "127.0.0.1:25")
    assert status == 1
    assert "not a loopback address" in err
    assert "--allow-open-relay" in err


def test_address_in_use_is_reported(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        status, _, err = run(capsys, "-n", f"127.0.0.1:{port}")
    assert status == 1
    assert "already in use" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--tls", "smtps"], "argument --tls: invalid choice: 'smtps' (choose from 'starttls', 'implicit')"),
        (["--tls-key", "key.pem"], "--tls-key needs --tls-cert (the certificate it belongs to)"),
        (["--tls", "starttls", "--tls-key", "key.pem"], "--tls-key needs --tls-cert"),
        (["--tls-cert", "cert.pem"], "--tls-cert needs --tls starttls, --tls implicit or --tls-port"),
        (["--tls-cert", "cert.pem", "--tls-key", "key.pem"], "--tls-cert needs --tls starttls, --tls implicit"),
        (["--tls-ca-out", "ca.pem"], "--tls-ca-out needs --tls starttls, --tls implicit or --tls-port"),
        (
            ["--tls", "starttls", "--tls-cert", "cert.pem", "--tls-ca-out", "ca.pem"],
            "--tls-ca-out writes the test CA, which --tls-cert replaces",
        ),
        (["--require-starttls"], "--require-starttls needs --tls starttls"),
        (["--tls", "implicit", "--require-starttls"], "--require-starttls needs --tls starttls"),
        (["--tls-port", "0", "--require-starttls"], "--require-starttls needs --tls starttls"),
        (["--auth", "alice"], "argument --auth: expected USER:PASSWORD (no colon in the value)"),
        (["--auth", ":s3cret"], "argument --auth: expected USER:PASSWORD (the user name is empty)"),
        (["--auth", "alice:1", "--auth", "alice:2"], "argument --auth: the user 'alice' is given twice"),
        (["--require-auth"], "--require-auth needs --auth USER:PASSWORD"),
        (["--tls", "starttls", "--require-auth"], "--require-auth needs --auth USER:PASSWORD"),
        (["--tls-port", "smtps"], "argument --tls-port: invalid port: 'smtps'"),
        (["--tls-port", "70000"], "argument --tls-port: invalid port: '70000'"),
        (["--tls-port", "1025", "127.0.0.1:1025"], "--tls-port 1025 is the port of LOCALSPEC too"),
        (["--tls-port", "8025"], "--tls-port 8025 is the port of LOCALSPEC too"),  # the default localspec
    ],
)
def test_bad_tls_and_auth_arguments(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path, argv: list[str], message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    status, out, err = run(capsys, "-n", *argv)
    assert (status, out) == (2, ""), err
    assert err.startswith("usage: ")
    assert message in err
    assert list(tmp_path.iterdir()) == []  # refused before writing --tls-ca-out or reading anything


def test_auth_without_a_colon_does_not_repeat_the_value(capsys: pytest.CaptureFixture[str]) -> None:
    # A password typed alone must not end up in a terminal's scrollback or a CI log.
    status, _, err = run(capsys, "-n", "--auth", "s3cret-Pa55")
    assert status == 2
    assert "argument --auth: expected USER:PASSWORD" in err
    assert "s3cret-Pa55" not in err


def write_cert(directory: Path, ca: trustme.CA, *, combined: bool = False) -> tuple[Path, Path]:
    """A server certificate for 127.0.0.1 signed by ``ca``: the chain and the
    key in two files, or (``combined``) both in the first."""
    leaf = ca.issue_cert("localhost", "127.0.0.1")
    cert, key = directory / "server-cert.pem", directory / "server-key.pem"
    if combined:
        leaf.private_key_and_cert_chain_pem.write_to_path(str(cert))
    else:
        cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
        leaf.private_key_pem.write_to_path(str(key))
    return cert, key


def test_tls_files_that_cannot_be_loaded(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    ca = trustme.CA()
    cert, key = write_cert(tmp_path, ca)
    other_dir = tmp_path / "other"
    other_dir.mkdir()
    _, other_key = write_cert(other_dir, ca)
    missing = tmp_path / "missing.pem"
    no_key = "(no --tls-key: the key must be in it): "
    cases = [
        ([str(missing)], [f"cannot load {str(missing)!r} {no_key}", "No such file"]),
        ([str(cert)], [f"cannot load {str(cert)!r} {no_key}"]),  # the key is not in the certificate's file
        ([str(cert), "--tls-key", str(missing)], [f"cannot load {str(cert)!r} with the key {str(missing)!r}: "]),
        ([str(cert), "--tls-key", str(other_key)], [f"cannot load {str(cert)!r} with the key", "KEY_VALUES_MISMATCH"]),
        ([str(key), "--tls-key", str(key)], [f"cannot load {str(key)!r} with the key {str(key)!r}: "]),
    ]
    for argv, fragments in cases:
        status, out, err = run(capsys, "-n", "--tls", "starttls", "--tls-cert", *argv, "127.0.0.1:0")
        assert (status, out) == (2, ""), (argv, err)
        assert err.startswith("usage: "), err
        for fragment in ["error: argument --tls-cert: ", *fragments]:
            assert fragment in err, (argv, fragment, err)


def test_tls_ca_out_that_cannot_be_written(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    target = tmp_path / "no-such-directory" / "ca.pem"
    status, out, err = run(capsys, "-n", "--tls", "starttls", "--tls-ca-out", str(target), "127.0.0.1:0")
    assert (status, out) == (2, "")
    assert f"error: argument --tls-ca-out: cannot write {str(target)!r}: " in err


def test_tls_port_in_use_closes_the_main_listener(capsys: pytest.CaptureFixture[str]) -> None:
    # The autouse fixture in conftest.py checks that no server is left running.
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        status, _, err = run(capsys, "-n", "--tls-port", str(port), "127.0.0.1:0")
    assert status == 1
    assert "already in use" in err


@pytest.mark.parametrize(
    ("text", "default_port", "expected"),
    [
        ("localhost:8025", 8025, ("localhost", 8025)),
        ("127.0.0.1:0", 8025, ("127.0.0.1", 0)),
        ("mail.example.com", 25, ("mail.example.com", 25)),
        (":1025", 8025, ("localhost", 1025)),
        ("[::1]:1025", 8025, ("::1", 1025)),
        ("[::1]", 25, ("::1", 25)),
        ("::1", 25, ("::1", 25)),
    ],
)
def test_parse_address(text: str, default_port: int, expected: tuple[str, int]) -> None:
    assert cli.parse_address(text, default_port) == expected


def test_resolve_builtin_and_dotted_classes() -> None:
    assert cli.resolve_class("DebuggingServer") is DebuggingServer
    assert cli.resolve_class("PureProxy") is PureProxy
    assert cli.resolve_class("MailmanProxy") is MailmanProxy
    assert cli.resolve_class("pytest_smtpd.mailman.MailmanProxy") is MailmanProxy
    assert cli.resolve_class("pytest_smtpd.proxy.PureProxy") is PureProxy


@pytest.mark.parametrize(
    ("nosetuid", "euid", "expected"),
    [(False, 0, True), (True, 0, False), (False, 1000, False), (True, 1000, False)],
)
def test_switches_to_nobody_only_as_root_without_n(nosetuid: bool, euid: int, expected: bool) -> None:
    assert cli.should_drop_privileges(nosetuid, euid) is expected


# -- as a program ------------------------------------------------------------------


def start(*argv: str, env: dict[str, str] | None = None) -> tuple[Spawned, tuple[str, int]]:
    """``python -m pytest_smtpd -n ARGV``, once it says where it listens."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        # Inherited by the child, whose Ctrl-C would then do nothing.
        pytest.skip("SIGINT is ignored in this process (a background job?), so the server would ignore Ctrl-C")
    process = Spawned.python("-m", "pytest_smtpd", "-n", *argv, env=env)
    port = int(process.expect(LISTENING, stream="stderr").group(1))
    return process, ("127.0.0.1", port)


def stop(process: Spawned) -> None:
    """Ctrl-C: the program must exit 0 without a traceback."""
    status = process.interrupt()
    assert status == 0, process.report()
    assert "Traceback" not in process.output("stderr"), process.report()


def test_debugging_server_prints_each_message_and_stops_on_ctrl_c() -> None:
    process, address = start("127.0.0.1:0")
    with process:
        with smtplib.SMTP(*address, timeout=TIMEOUT) as client:
            client.sendmail("a@example.com", ["b@example.com"], MESSAGE)
        process.expect("^---------- MESSAGE FOLLOWS ----------$")
        process.expect("^------------ END MESSAGE ------------$")
        stop(process)
    printed = process.output()
    assert "Subject: from the cli test\nX-Peer: 127.0.0.1\n\nHello, server.\n" in printed


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="only root switches to nobody")
def test_without_n_root_serves_as_nobody() -> None:
    """As ``python -m smtpd`` did: started as root without ``-n``, the server
    binds, then runs as nobody, and still serves (8-bit content included)."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        pytest.skip("SIGINT is ignored in this process (a background job?), so the server would ignore Ctrl-C")
    process = Spawned.python("-m", "pytest_smtpd", "127.0.0.1:0")
    with process:
        port = int(process.expect(LISTENING, stream="stderr").group(1))
        status = Path(f"/proc/{process.proc.pid}/status").read_text()
        uids = re.search(r"^Uid:\s+(\d+)\s+(\d+)\s+(\d+)", status, re.MULTILINE)
        assert uids is not None, status
        assert {int(uid) for uid in uids.groups()} == {pwd.getpwnam("nobody").pw_uid}
        with smtplib.SMTP("127.0.0.1", port, timeout=TIMEOUT) as client:
            client.sendmail(
                "a@example.com", ["b@example.com"], "Subject: caf\u00e9\r\n\r\nd\u00e9j\u00e0 vu\r\n".encode()
            )
        process.expect("^------------ END MESSAGE ------------$")
        stop(process)
    assert "Subject: caf\u00e9\nX-Peer: 127.0.0.1\n\nd\u00e9j\u00e0 vu\n" in process.output()


def test_show_envelope_prints_mail_from_and_rcpt_to() -> None:
    process, address = start("--show-envelope", "127.0.0.1:0")
    with process:
        with smtplib.SMTP(*address, timeout=TIMEOUT) as client:
            client.sendmail("a@example.com", ["b@example.com", "c@example.com"], MESSAGE)
        process.expect("^------------ END MESSAGE ------------$")
        stop(process)
    assert (
        "Subject: from the cli test\nX-Peer: 127.0.0.1\nX-MailFrom: a@example.com\n"
        "X-RcptTo: b@example.com, c@example.com\n\nHello, server.\n"
    ) in process.output()


def test_debug_traces_to_stderr() -> None:
    process, address = start("-d", "127.0.0.1:0")
    with process:
        with smtplib.SMTP(*address, timeout=TIMEOUT) as client:
            client.noop()
        process.expect(r"^Incoming connection from \('127\.0\.0\.1', \d+\)$", stream="stderr")
        stop(process)
    assert "DebuggingServer started at" in process.output("stderr")


def test_smtputf8_and_size_are_offered() -> None:
    process, address = start("-u", "-s", "1000", "127.0.0.1:0")
    with process:
        with smtplib.SMTP(*address, timeout=TIMEOUT) as client:
            client.ehlo("client.test")
            assert client.has_extn("smtputf8")
            assert client.esmtp_features["size"] == "1000"
            with pytest.raises(smtplib.SMTPSenderRefused) as refused:
                client.sendmail("a@example.com", ["b@example.com"], "x" * 1001)
            assert refused.value.smtp_code == 552
        stop(process)


def test_extensions_chunking_dsn_and_enhanced_status_codes() -> None:
    # What an MTA pointed at the command line's server (Postfix, say) uses.
    process, address = start("--chunking", "--dsn", "--enhanced-status-codes", "127.0.0.1:0")
    with process:
        assert "offering CHUNKING, DSN, ENHANCEDSTATUSCODES" in process.lines["stderr"][-1]
        with smtplib.SMTP(*address, timeout=TIMEOUT) as client:
            client.ehlo("client.test")
            for keyword in ("chunking", "binarymime", "dsn", "enhancedstatuscodes"):
                assert client.has_extn(keyword), keyword
            assert client.mail("a@example.com", ["RET=HDRS", "ENVID=cli+2Dtest"]) == (250, b"2.1.0 OK")
            assert client.rcpt("b@example.com", ["NOTIFY=SUCCESS,FAILURE"]) == (250, b"2.1.5 OK")
            client.send(b"BDAT %d LAST\r\n" % len(MESSAGE) + MESSAGE.encode())
            assert client.getreply() == (250, b"2.0.0 OK")
        process.expect("^------------ END MESSAGE ------------$")
        stop(process)
    printed = process.output()
    assert "mail options: ['RET=HDRS', 'ENVID=cli+2Dtest']" in printed
    assert "Subject: from the cli test\nX-Peer: 127.0.0.1\n\nHello, server.\n" in printed


def test_pureproxy_relays_to_the_remote_server(smtpd: Server) -> None:
    process, address = start("-c", "PureProxy", "127.0.0.1:0", f"127.0.0.1:{smtpd.port}")
    with process:
        assert f"relaying to 127.0.0.1:{smtpd.port}" in process.lines["stderr"][-1]
        with smtplib.SMTP(*address, timeout=TIMEOUT) as client:
            assert client.sendmail("a@example.com", ["b@example.com", "c@example.com"], MESSAGE) == {}
        stop(process)
    [message] = smtpd.messages
    assert message.rcpt_tos == ["b@example.com", "c@example.com"]
    assert b"Subject: from the cli test\r\nX-Peer: 127.0.0.1\r\n\r\n" in message.data


def test_mailmanproxy_delivers_list_mail_over_lmtp_and_relays_the_rest(smtpd: Server) -> None:
    with Server(lmtp=True, hostname="mailman.test") as mailman_lmtp:
        process, address = start(
            "-c", "MailmanProxy", "--list", LIST, "--mailman-lmtp", f"127.0.0.1:{mailman_lmtp.port}",
            "127.0.0.1:0", f"127.0.0.1:{smtpd.port}",
        )  # fmt: skip
        with process:
            line = process.lines["stderr"][-1]
            assert f"relaying to 127.0.0.1:{smtpd.port}, lists to Mailman at 127.0.0.1:{mailman_lmtp.port}" in line
            with smtplib.SMTP(*address, timeout=TIMEOUT) as client:
                rcpttos = [LIST, "b@example.com", "team-request@lists.example.com"]
                assert client.sendmail("a@example.com", rcpttos, MESSAGE) == {}
            stop(process)
        [to_list] = mailman_lmtp.messages
    assert to_list.mail_from == "a@example.com"
    assert to_list.rcpt_tos == [LIST, "team-request@lists.example.com"]
    assert b"Subject: from the cli test\r\nX-Peer: 127.0.0.1\r\n\r\n" in to_list.data
    [relayed] = smtpd.messages
    assert relayed.rcpt_tos == ["b@example.com"]
    assert relayed.data == to_list.data


def test_a_class_that_takes_no_tls_options_is_a_clear_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    class StdlibSignature(compat.SMTPServer):
        def __init__(self, localaddr: Any, remoteaddr: Any, data_size_limit: int = 0, **kwargs: Any) -> None:
            if set(kwargs) - {"enable_SMTPUTF8", "decode_data"}:
                raise TypeError(f"unexpected keyword arguments {sorted(kwargs)}")
            super().__init__(localaddr, remoteaddr, data_size_limit, **kwargs)

    module = types.ModuleType("stdlib_style_server")
    module.StdlibSignature = StdlibSignature  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "stdlib_style_server", module)
    status, _, err = run(capsys, "-n", "-c", "stdlib_style_server.StdlibSignature", "--tls", "starttls", "127.0.0.1:0")
    assert status == 1
    assert err.startswith("python -m pytest_smtpd: error: cannot make a StdlibSignature: unexpected keyword")
    assert err.endswith("(options given to it: tls)\n")
    assert "Traceback" not in err


def test_dotted_class_path(tmp_path: Path) -> None:
    (tmp_path / "my_cli_server.py").write_text(
        textwrap.dedent(
            """
            from pytest_smtpd import smtpd

            class Recorder(smtpd.SMTPServer):
                def process_message(self, peer, mailfrom, rcpttos, data, **kwargs):
                    print("remote", self._remoteaddr, "from", mailfrom, "to", rcpttos, "size", len(data))
                    return "250 Recorded"
            """
        )
    )
    paths = [str(tmp_path), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    process, address = start("-c", "my_cli_server.Recorder", "127.0.0.1:0", "mail.example.com:2525", env=env)
    with process:
        with smtplib.SMTP(*address, timeout=TIMEOUT) as client:
            client.ehlo("client.test")
            client.mail("a@example.com")
            client.rcpt("b@example.com")
            assert client.data(b"Subject: x\r\n\r\n12345\r\n") == (250, b"Recorded")
        line = process.expect("^remote ").string
        stop(process)
    assert line == "remote ('mail.example.com', 2525) from a@example.com to ['b@example.com'] size 17"


# -- TLS and AUTH, as a program ----------------------------------------------------

#: What the listening line says about the test CA.
TEST_CA = r"; clients trust the test CA in (.+); Ctrl-C stops\.$"
#: The replies to MAIL with --require-starttls before STARTTLS, and with --require-auth before AUTH.
STARTTLS_FIRST = (530, b"5.7.0 Must issue a STARTTLS command first")
AUTH_FIRST = (530, b"5.7.0 Authentication required")


def search(pattern: str, text: str) -> re.Match[str]:
    match = re.search(pattern, text)
    assert match is not None, (pattern, text)
    return match


def expect_printed(process: Spawned, subject: str) -> None:
    """Wait for DebuggingServer to print the whole message with ``subject``."""
    process.expect("^---------- MESSAGE FOLLOWS ----------$")
    process.expect(f"^Subject: {re.escape(subject)}$")
    process.expect("^------------ END MESSAGE ------------$")


def message(subject: str) -> str:
    return f"From: a@example.com\r\nTo: b@example.com\r\nSubject: {subject}\r\n\r\nHello over TLS.\r\n"


def test_starttls_auth_and_the_ca_file(tmp_path: Path) -> None:
    ca_file = tmp_path / "ca.pem"
    argv = ["--tls", "starttls", "--auth", "alice:s3cret", "--require-auth", "--tls-ca-out", str(ca_file)]
    process, address = start(*argv, "127.0.0.1:0")
    with process:
        line = process.lines["stderr"][-1]
        assert ", STARTTLS offered, AUTH required; " in line
        assert search(TEST_CA, line).group(1) == str(ca_file)
        context = ssl.create_default_context(cafile=str(ca_file))
        assert context.verify_mode is ssl.CERT_REQUIRED and context.check_hostname
        with smtplib.SMTP(*address, timeout=TIMEOUT) as client:
            client.ehlo("client.test")
            assert client.has_extn("starttls")
            assert client.starttls(context=context)[0] == 220
            assert isinstance(client.sock, ssl.SSLSocket)
            certificate = client.sock.getpeercert()
            assert certificate is not None  # verified: CERT_REQUIRED, host name checked
            assert ("IP Address", "127.0.0.1") in certificate["subjectAltName"]
            client.ehlo("client.test")
            assert client.mail("a@example.com") == AUTH_FIRST
            client.rset()
            with pytest.raises(smtplib.SMTPAuthenticationError) as refused:
                client.login("alice", "wrong")
            assert refused.value.smtp_code == 535
            assert client.login("alice", "s3cret")[0] == 235
            assert client.sendmail("a@example.com", ["b@example.com"], message("starttls")) == {}
        expect_printed(process, "starttls")
        stop(process)
    assert "Subject: starttls\nX-Peer: 127.0.0.1\n\nHello over TLS.\n" in process.output()


def test_implicit_tls_with_curl(tmp_path: Path) -> None:
    curl = require_program("curl", "curl")
    ca_file = tmp_path / "ca.pem"
    mail = tmp_path / "message.eml"
    mail.write_text(message("smtps"), newline="")
    process, (host, port) = start(
        "--tls", "implicit", "--auth", "alice:s3:cret", "--tls-ca-out", str(ca_file), "127.0.0.1:0"
    )
    with process:
        assert ", implicit TLS, AUTH offered; " in process.lines["stderr"][-1]
        result = subprocess.run(
            [
                curl, "--silent", "--show-error", "--max-time", str(TIMEOUT / 2), "--ssl-reqd",
                "--cacert", str(ca_file), "--user", "alice:s3:cret",  # split at the first colon
                "--mail-from", "a@example.com", "--mail-rcpt", "b@example.com", "--upload-file", str(mail),
                f"smtps://{host}:{port}",
            ],
            capture_output=True, text=True, timeout=TIMEOUT, check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        expect_printed(process, "smtps")
        stop(process)
    assert "Subject: smtps\nX-Peer: 127.0.0.1\n\nHello over TLS.\n" in process.output()


@pytest.mark.parametrize("combined", [False, True], ids=["cert-and-key", "key-in-cert-file"])
def test_own_certificate_and_key(tmp_path: Path, combined: bool) -> None:
    own_ca = trustme.CA()
    cert, key = write_cert(tmp_path, own_ca, combined=combined)
    key_options = [] if combined else ["--tls-key", str(key)]
    process, address = start(
        "--tls", "starttls", "--require-starttls", "--tls-cert", str(cert), *key_options, "127.0.0.1:0"
    )
    with process:
        line = process.lines["stderr"][-1]
        assert ", STARTTLS required; Ctrl-C stops." in line
        assert "test CA" not in line
        context = ssl.create_default_context()
        own_ca.configure_trust(context)  # only the CA that signed our certificate
        with smtplib.SMTP(*address, timeout=TIMEOUT) as client:
            client.ehlo("client.test")
            assert client.mail("a@example.com") == STARTTLS_FIRST
            client.rset()
            assert client.starttls(context=context)[0] == 220
            assert client.sendmail("a@example.com", ["b@example.com"], message("own certificate")) == {}
        expect_printed(process, "own certificate")
        stop(process)


def test_tls_port_adds_an_implicit_tls_listener() -> None:
    argv = ["--tls", "starttls", "--require-starttls", "--auth", "alice:s3cret", "--require-auth", "--tls-port", "0"]
    process, address = start(*argv, "127.0.0.1:0")
    with process:
        line = process.lines["stderr"][-1]
        assert ", STARTTLS required, implicit TLS on 127.0.0.1:" in line
        tls_port = int(search(r", implicit TLS on 127\.0\.0\.1:(\d+),", line).group(1))
        assert tls_port != address[1]
        ca_file = search(TEST_CA, line).group(1)
        context = ssl.create_default_context(cafile=ca_file)
        with smtplib.SMTP_SSL("127.0.0.1", tls_port, timeout=TIMEOUT, context=context) as client:
            client.ehlo("client.test")
            assert not client.has_extn("starttls")  # already TLS
            assert client.mail("a@example.com") == AUTH_FIRST  # --require-auth applies here too
            client.rset()
            assert client.login("alice", "s3cret")[0] == 235
            assert client.sendmail("a@example.com", ["b@example.com"], message("on the TLS port")) == {}
        expect_printed(process, "on the TLS port")
        with smtplib.SMTP(*address, timeout=TIMEOUT) as client:
            client.ehlo("client.test")
            assert client.mail("a@example.com") == STARTTLS_FIRST  # on the main listener only
            client.rset()
            client.starttls(context=context)
            assert client.login("alice", "s3cret")[0] == 235
            assert client.sendmail("a@example.com", ["b@example.com"], message("on the main port")) == {}
        expect_printed(process, "on the main port")
        stop(process)
