"""``--fault`` on the command line: read in-process through ``main()``, and
a ``python -m pytest_smtpd`` server that misbehaves for swaks as told."""

from __future__ import annotations

import signal
import subprocess

import pytest
from peers import Spawned, require_program

from pytest_smtpd import cli
from pytest_smtpd.faults import Fault

LISTENING = r"^\w+ listening on 127\.0\.0\.1:(\d+)[,;]"
# swaks' documented exit statuses.
SWAKS_NO_RCPT_ACCEPTED = 24
SWAKS_DATA_REFUSED = 25
SWAKS_MESSAGE_REFUSED = 26
SWAKS_CONNECTION_CLOSED = 6


def test_fault_is_read_and_repeatable() -> None:
    args = cli.build_parser().parse_args(
        ["--fault", "RCPT=450 4.2.1 Mailbox busy", "--fault", "DATA=disconnect", "--fault", "MAIL=delay:5"]
    )
    assert args.faults == [
        Fault.reply("RCPT", "450 4.2.1 Mailbox busy"),
        Fault.disconnect("DATA"),
        Fault.delay("MAIL", 5),
    ]
    assert cli.build_parser().parse_args([]).faults == []


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ("RCPT", "expected STEP=REPLY"),
        ("RCPT=250 OK", "needs a 4xx or 5xx reply"),
        ("SEND=stall", "unknown fault step 'SEND'"),
        ("MAIL=delay:later", "delay:SECONDS needs a number"),
    ],
)
def test_a_bad_fault_is_a_usage_error(capsys: pytest.CaptureFixture[str], value: str, error: str) -> None:
    assert cli.main(["-n", "--fault", value, "127.0.0.1:0"]) == 2
    err = capsys.readouterr().err
    assert "error: argument --fault: " in err and error in err


def test_help_describes_fault(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "--fault STEP=WHAT" in out and "delay:SECONDS" in out and "disconnect:OCTETS" in out


def start(*argv: str) -> tuple[Spawned, int]:
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        pytest.skip("SIGINT is ignored in this process (a background job?), so the server would ignore Ctrl-C")
    process = Spawned.python("-m", "pytest_smtpd", "-n", *argv, "127.0.0.1:0")
    port = int(process.expect(LISTENING, stream="stderr").group(1))
    return process, port


def swaks(port: int, *options: str) -> subprocess.CompletedProcess[str]:
    program = require_program("swaks", "swaks")
    args = [program, "--server", "127.0.0.1", "--port", str(port), "--helo", "client.test"]
    args += ["--from", "a@example.com", "--to", "b@example.com", "--timeout", "20", *options]
    return subprocess.run(args, capture_output=True, text=True, timeout=30, check=False)


def stop(process: Spawned) -> None:
    assert process.interrupt() == 0, process.report()
    assert "Traceback" not in process.output("stderr"), process.report()


@pytest.mark.parametrize(
    ("fault", "status", "seen"),
    [
        ("RCPT=450 4.2.1 Mailbox busy", SWAKS_NO_RCPT_ACCEPTED, "<** 450 4.2.1 Mailbox busy"),
        ("DATA=554 5.3.0 No data today", SWAKS_DATA_REFUSED, "<** 554 5.3.0 No data today"),
        ("MESSAGE=552 5.3.4 Too big for me", SWAKS_MESSAGE_REFUSED, "<** 552 5.3.4 Too big for me"),
        ("DATA=disconnect:10", SWAKS_CONNECTION_CLOSED, "Remote host closed connection unexpectedly"),
    ],
)
def test_swaks_against_the_cli_with_a_fault(fault: str, status: int, seen: str) -> None:
    process, port = start("--fault", fault)
    with process:
        assert "1 fault rule(s)" in process.output("stderr")
        result = swaks(port)
        assert result.returncode == status, result.stdout + result.stderr
        assert seen in result.stdout + result.stderr
        # Nothing was accepted, so nothing was printed.
        assert "MESSAGE FOLLOWS" not in process.output()
        stop(process)


def test_swaks_waits_out_a_delay_and_the_message_is_delivered() -> None:
    process, port = start("--fault", "MAIL=delay:0.2")
    with process:
        result = swaks(port)
        assert result.returncode == 0, result.stdout + result.stderr
        process.expect("^------------ END MESSAGE ------------$")
        stop(process)


def test_swaks_is_refused_once_then_accepted_with_times() -> None:
    """By hand, as an application's retry would: the first attempt gets the
    450, the second goes through."""
    process, port = start("--fault", "RCPT[times=1]=450 4.2.1 Mailbox busy")
    with process:
        first = swaks(port)
        assert first.returncode == SWAKS_NO_RCPT_ACCEPTED, first.stdout + first.stderr
        second = swaks(port)
        assert second.returncode == 0, second.stdout + second.stderr
        process.expect("^------------ END MESSAGE ------------$")
        stop(process)
