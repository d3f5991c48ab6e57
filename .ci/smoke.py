"""Smoke test of an installed wheel, run by .ci/release-check.sh with the
Python of a fresh virtualenv holding only the wheel and its dependencies,
from a directory outside the source tree (so the source cannot be imported
by accident).

It checks that pytest loads the plugin from its ``pytest11`` entry point
(``pytest-smtpd``) and a test using the ``smtpd`` fixture and the marker
passes, and that the command line serves on loopback: one message sent with
smtplib is printed, and Ctrl-C (SIGINT) ends it with status 0.
"""

from __future__ import annotations

import os
import re
import signal
import smtplib
import subprocess
import sys
import tempfile
import textwrap
from importlib import metadata
from pathlib import Path

TEST = textwrap.dedent(
    """
    import smtplib

    import pytest


    @pytest.mark.smtpd(hostname="smoke.test")
    def test_fixture_from_the_entry_point(smtpd, request):
        assert request.config.pluginmanager.get_plugin("pytest-smtpd") is not None
        with smtplib.SMTP(smtpd.host, smtpd.port, timeout=10) as client:
            assert client.ehlo()[1].startswith(b"smoke.test")
            client.sendmail("a@example.com", ["b@example.com"], b"Subject: smoke\\r\\n\\r\\nhi\\r\\n")
        smtpd.assert_sent(subject="smoke", to=lambda addresses: True)
    """
)


def check_install(work: Path) -> None:
    import pytest_smtpd

    location = Path(pytest_smtpd.__file__).resolve()
    if "site-packages" not in location.parts:
        sys.exit(f"smoke: pytest_smtpd imported from {location}, not from the installed wheel")
    [entry] = [ep for ep in metadata.entry_points(group="pytest11") if ep.name == "pytest-smtpd"]
    if entry.value != "pytest_smtpd.plugin":
        sys.exit(f"smoke: entry point pytest-smtpd -> {entry.value}")
    if metadata.version("pytest-smtpd") != pytest_smtpd.__version__:
        sys.exit("smoke: the installed version and __version__ differ")


def check_plugin(work: Path) -> None:
    (work / "test_smoke.py").write_text(TEST)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-W", "error", "-p", "no:cacheprovider", "test_smoke.py"],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if result.returncode != 0 or "1 passed" not in result.stdout:
        sys.exit(f"smoke: the plugin test failed:\n{result.stdout}\n{result.stderr}")


def check_cli(work: Path) -> None:
    script = Path(sys.executable).parent / "pytest-smtpd"
    with subprocess.Popen(
        [str(script), "-n", "127.0.0.1:0"],
        cwd=work,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as server:
        try:
            assert server.stderr is not None and server.stdout is not None
            line = server.stderr.readline()  # blocks until it listens; bounded by the kill below
            match = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
            if match is None:
                sys.exit(f"smoke: unexpected first line from the CLI: {line!r}")
            with smtplib.SMTP("127.0.0.1", int(match.group(1)), timeout=10) as client:
                client.sendmail("a@example.com", ["b@example.com"], b"Subject: cli smoke\r\n\r\nhello\r\n")
            server.send_signal(signal.SIGINT)
            out, err = server.communicate(timeout=30)
        finally:
            if server.poll() is None:
                server.kill()
    if server.returncode != 0:
        sys.exit(f"smoke: the CLI exited with {server.returncode}:\n{err}")
    if "Subject: cli smoke" not in out:
        sys.exit(f"smoke: the CLI did not print the message:\n{out}")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        os.chdir(work)
        check_install(work)
        check_plugin(work)
        check_cli(work)
    print("smoke: the wheel's plugin and command line work")


if __name__ == "__main__":
    main()
