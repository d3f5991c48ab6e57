"""The command-line examples of README.rst and docs/ run (issue 11).

Every ``python -m pytest_smtpd ...`` line of a literal block is started as
written, except that its listening port becomes 0 (a free port) and files
it names are made in a temporary directory. Other commands of the same
block that it depends on (``python -m trustme -d certs``) run first. The
test waits for the listening line, greets the server with smtplib, and
stops it with Ctrl-C (SIGINT), which must exit 0.

The synopsis line (``[options] [localspec [remotespec]]``) is not a
command and is skipped.
"""

from __future__ import annotations

import re
import shlex
import signal
import smtplib
import subprocess
import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
PAGES = [ROOT / "README.rst", *sorted((ROOT / "docs").glob("*.rst"))]
COMMAND = "python -m pytest_smtpd"
LISTENING = re.compile(r"listening on \[?([^\]\s,]+?)\]?:(\d+)")
#: Options of the CLI that take a value (so their value is not a spec).
VALUED = {
    "-c",
    "--class",
    "-s",
    "--size",
    "--list",
    "--mailman-lmtp",
    "--tls",
    "--tls-port",
    "--tls-cert",
    "--tls-key",
    "--tls-ca-out",
    "--auth",
    "--fault",
    "--web",
    "--store",
    "--max-messages",
    "--web-token",
    "--release-to",
}


def _logical_lines(page: Path) -> list[list[str]]:
    """The indented blocks of a page, as lists of lines with backslash
    continuations joined."""
    blocks: list[list[str]] = []
    current: list[str] = []
    pending = ""
    for raw in page.read_text(encoding="utf-8").splitlines():
        if raw.startswith((" ", "\t")) and raw.strip():
            line = pending + raw.strip()
            if line.endswith("\\"):
                pending = line[:-1] + " "
                continue
            pending = ""
            current.append(line)
        elif raw.strip():
            if current:
                blocks.append(current)
            current = []
    if current:
        blocks.append(current)
    return blocks


def _examples() -> list[tuple[str, list[str], list[str]]]:
    """(id, earlier commands of the block, the CLI's arguments)."""
    found = []
    for page in PAGES:
        for block in _logical_lines(page):
            before: list[str] = []
            for line in block:
                line = line.removeprefix("$ ")
                if (line.startswith(COMMAND) or f"&& {COMMAND}" in line) and "[options]" not in line:
                    command = line[line.index(COMMAND) :]
                    argv = shlex.split(command, comments=True)[3:]
                    found.append((f"{page.name}:{' '.join(argv)}", list(before), argv))
                elif "python -m trustme" in line:
                    before.append(line)
    return found


def _free_port_argv(argv: list[str]) -> list[str]:
    """``argv`` with the local spec's port set to 0 (a localspec added when
    there is none, since the default port is 8025)."""
    result: list[str] = []
    positionals = 0
    skip_value = False
    for index, arg in enumerate(argv):
        if skip_value:
            skip_value = False
            if argv[index - 1] == "--web":
                # The dev inbox's port too ([HOST:]PORT).
                arg = f"{arg.rsplit(':', 1)[0]}:0" if ":" in arg else "0"
        elif arg in VALUED:
            skip_value = True
        elif not arg.startswith("-"):
            positionals += 1
            if positionals == 1:
                host = arg.rsplit(":", 1)[0] if ":" in arg else arg
                arg = f"{host or 'localhost'}:0"
        result.append(arg)
    if positionals == 0:
        result.append("localhost:0")
    return result


EXAMPLES = _examples()


def test_the_pages_have_command_line_examples() -> None:
    # The collector would pass vacuously if the pages' wording changed.
    assert len(EXAMPLES) >= 5, EXAMPLES


@pytest.mark.parametrize(("before", "argv"), [(b, a) for _, b, a in EXAMPLES], ids=[i for i, _, _ in EXAMPLES])
def test_command_line_example_serves(before: list[str], argv: list[str], tmp_path: Path) -> None:
    for command in before:
        # As a shell would, with this interpreter as ``python``.
        script = command.replace("python -m", f"{shlex.quote(sys.executable)} -m")
        subprocess.run(["sh", "-c", script], cwd=tmp_path, check=True, timeout=60, capture_output=True)
    process = subprocess.Popen(
        [sys.executable, "-m", "pytest_smtpd", *_free_port_argv(argv)],
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    listening: list[re.Match[str]] = []
    seen: list[str] = []
    ready = threading.Event()

    def read_stderr() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            seen.append(line)
            match = LISTENING.search(line)
            if match and not listening:
                listening.append(match)
                ready.set()
        ready.set()

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    try:
        assert ready.wait(30), f"no listening line in 30 s: {seen}"
        assert listening, f"exited with {process.poll()} before listening: {''.join(seen)}"
        host, port = listening[0].group(1), int(listening[0].group(2))
        with smtplib.SMTP(host, port, timeout=10) as client:
            code, _ = client.ehlo("docs.test")
            assert code == 250
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=20) == 0, "".join(seen)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
        reader.join(timeout=10)
        process.stderr.close()
