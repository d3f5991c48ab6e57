"""Every Python block of README.rst and docs/*.rst runs here (issue 11).

A small collector of our own rather than a plugin: pytest's doctest module
handles ``>>>`` sessions only, and the plugins that run rst code blocks
(pytest-codeblocks, sybil) would each bring a second convention for naming
files and marking fragments, where the pages already have one: the
``# test_x.py`` first line that tests/test_recipes.py reads.

The rules, also stated in docs/contributing.rst:

- A ``.. code-block:: python`` block whose first line names a file
  (``# test_x.py``, ``# conftest.py``, ``# signup.py``) is that file of a
  small project, one per page; the page's test modules run together in
  pytester and every test in them must pass. A page with a conftest.py and
  no test module gets one trivial test that uses the fixture, so the
  conftest is at least loaded and its options accepted.
- An unnamed block that defines ``test_`` functions is a test module too.
- Any other unnamed block runs as a script, in a subprocess with a timeout,
  and must exit 0.
- A block preceded by the comment ``.. fragment: <why>`` is only compiled
  (top-level ``await`` allowed): it shows part of something.
- A ``::`` literal block is Python when it parses as Python (shell lines and
  sample output do not); then it runs as a script, unless it is in
  ``LITERAL_FRAGMENTS`` below, each with its reason. (A comment cannot sit
  between a paragraph and its literal block, so those are listed here.)

- Shell blocks: each ``python -m pytest_smtpd`` command (with the
  ``mkdir -p`` and ``python -m trustme`` lines before it in its block) runs
  on free loopback ports, must say where it listens, and exits 0 on Ctrl-C.

README's cheat sheet and docs/recipes.rst are run by tests/test_recipes.py
with their expected test counts; this module checks they are covered there
and does not run them twice.
"""

from __future__ import annotations

import ast
import re
import shlex
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest
import test_recipes
from peers import Spawned, free_port

ROOT = Path(__file__).parent.parent
PAGES = [ROOT / "README.rst", *sorted((ROOT / "docs").glob("*.rst"))]
FILE_NAME = re.compile(r"#\s*(\w+\.py)\b")
FRAGMENT_MARK = re.compile(r"^\.\. fragment:\s*\S")

#: ``::`` blocks that are Python but only part of a program:
#: (page, a line of the block) -> why.
LITERAL_FRAGMENTS = {
    ("README.rst", "asyncore.loop()"): "serves forever on a fixed port",
    ("migration.rst", "import smtpd, asyncore"): "the stdlib import it replaces is gone from Python 3.12",
    ("servers.rst", "mailman_lmtp=("): "listens on a fixed port and serves forever",
    ("servers.rst", "deliver_with_my_client("): "the LMTP client under test is the reader's own",
}


@dataclass
class Block:
    page: Path
    line: int
    kind: str  # "python" or "literal"
    code: str
    fragment: bool

    @property
    def name(self) -> str | None:
        match = FILE_NAME.match(self.code)
        return match.group(1) if match else None

    @property
    def id(self) -> str:
        return f"{self.page.name}:{self.line}"

    def is_test_module(self) -> bool:
        name = self.name
        if name is not None:
            return name.startswith("test_")
        return re.search(r"^(async )?def test_\w*\(", self.code, re.MULTILINE) is not None

    def test_count(self) -> int:
        return len(re.findall(r"^(?:async )?def test_\w*\(", self.code, re.MULTILINE))


def blocks_of(page: Path) -> list[Block]:
    lines = page.read_text(encoding="utf-8").splitlines()
    found = []
    index = 0
    while index < len(lines):
        line = lines[index]
        directive = re.match(r"^(\s*)\.\. code-block:: (\w+)", line)
        literal = not line.lstrip().startswith("..") and line.rstrip().endswith("::")
        if not directive and not literal:
            index += 1
            continue
        indent = len(line) - len(line.lstrip())
        start = index
        index += 1
        while index < len(lines) and re.match(r"^\s+:\w[\w-]*:", lines[index]):
            index += 1  # directive options
        body = []
        while index < len(lines) and (
            not lines[index].strip() or len(lines[index]) - len(lines[index].lstrip()) > indent
        ):
            body.append(lines[index])
            index += 1
        code = textwrap.dedent("\n".join(body)).strip("\n") + "\n"
        if not code.strip():
            continue
        if directive:
            if directive.group(2) != "python":
                continue
            before = [text for text in lines[:start] if text.strip()]
            fragment = bool(before) and FRAGMENT_MARK.match(before[-1].strip()) is not None
            found.append(Block(page, start + 1, "python", code, fragment))
        else:
            try:
                ast.parse(code)
            except SyntaxError:
                continue  # shell lines, sample output
            fragment = any(page.name == name and line in code for name, line in LITERAL_FRAGMENTS)
            found.append(Block(page, start + 1, "literal", code, fragment))
    return found


BLOCKS = [block for page in PAGES for block in blocks_of(page)]
#: Run with expected counts by tests/test_recipes.py.
ELSEWHERE = {("recipes.rst", name) for name in test_recipes.EXPECTED} | {("README.rst", "test_signup")}


def _covered_elsewhere(block: Block) -> bool:
    return block.name is not None and (block.page.name, block.name.removesuffix(".py")) in ELSEWHERE


FRAGMENTS = [block for block in BLOCKS if block.fragment]
SCRIPTS = [block for block in BLOCKS if not block.fragment and block.name is None and not block.is_test_module()]
PROJECT_PAGES = sorted(
    {
        block.page
        for block in BLOCKS
        if not block.fragment and (block.name is not None or block.is_test_module()) and not _covered_elsewhere(block)
    }
)


def test_the_collector_finds_the_blocks() -> None:
    """A guard against a collector that silently finds nothing."""
    assert len(BLOCKS) >= 25
    assert {block.page.name for block in BLOCKS} >= {"README.rst", "tutorial.rst", "tls-auth.rst", "servers.rst"}
    for page, line in LITERAL_FRAGMENTS:
        assert any(b.page.name == page and b.fragment and line in b.code for b in BLOCKS), (page, line)


def test_recipes_and_cheat_sheet_are_run_by_test_recipes() -> None:
    names = {(block.page.name, block.name) for block in BLOCKS if block.name and block.name.startswith("test_")}
    covered = {(page, f"{name}.py") for page, name in ELSEWHERE}
    assert covered <= names
    assert set(test_recipes.BLOCKS) == set(test_recipes.EXPECTED)


@pytest.mark.parametrize("block", FRAGMENTS, ids=lambda block: block.id)
def test_fragment_compiles(block: Block) -> None:
    compile(block.code, block.id, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True)


@pytest.mark.parametrize("block", SCRIPTS, ids=lambda block: block.id)
def test_script_runs(block: Block, tmp_path: Path) -> None:
    script = tmp_path / "example.py"
    script.write_text(block.code, encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-W", "error", str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, f"{block.id} failed:\n{result.stdout}\n{result.stderr}"


def page_project(page: Path, blocks: list[Block]) -> tuple[dict[str, str], int]:
    """The files of a page's project, and how many tests must pass."""
    files: dict[str, str] = {}
    expected = 0
    for number, block in enumerate(b for b in blocks if b.page == page and not b.fragment):
        if _covered_elsewhere(block):
            continue
        if block.name is not None:
            files[block.name] = block.code
        elif block.is_test_module():
            files[f"test_{page.stem.replace('-', '_')}_{number}.py"] = block.code
        else:
            continue
        if block.is_test_module():
            expected += block.test_count()
    if expected == 0:  # a conftest.py alone
        files["test_conftest_loads.py"] = "def test_conftest_loads(smtpd):\n    assert smtpd.port\n"
        expected = 1
    return files, expected


def run_project(pytester: pytest.Pytester, files: dict[str, str]) -> pytest.RunResult:
    pytester.makeini(test_recipes.INI)
    for name, code in files.items():
        (pytester.path / name).write_text(code, encoding="utf-8")
    pytester.syspathinsert()
    return pytester.runpytest_inprocess()


@pytest.mark.parametrize("page", PROJECT_PAGES, ids=lambda page: page.name)
def test_page_project_passes(page: Path, pytester: pytest.Pytester) -> None:
    files, expected = page_project(page, BLOCKS)
    run_project(pytester, files).assert_outcomes(passed=expected)


# -- shell examples of the command line -----------------------------------------


def cli_commands() -> list[tuple[str, list[list[str]]]]:
    """Each ``::`` shell block's commands that run our command line, with
    the commands before them in the block (``python -m trustme``) that they
    need (``mkdir``, ``python -m trustme``), as argument lists; ``[options]`` synopses left out."""
    found: list[tuple[str, list[list[str]]]] = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for match in re.finditer(r"::\n\n((?:    .*\n|\n)+)", text):
            block = textwrap.dedent(match.group(1)).replace("\\\n", " ")
            before: list[list[str]] = []
            for line in block.splitlines():
                for command in line.split("&&"):
                    try:
                        argv = shlex.split(command, comments=True)
                    except ValueError:
                        continue
                    if argv[:3] == ["python", "-m", "trustme"] or argv[:1] == ["mkdir"]:
                        before.append(argv)
                    elif argv[:3] == ["python", "-m", "pytest_smtpd"] and "[options]" not in argv:
                        line_number = text[: match.start()].count("\n") + 1
                        found.append((f"{page.name}:{line_number}:{len(found)}", [*before, argv]))
    return found


CLI_COMMANDS = cli_commands()
LOCAL_SPEC = re.compile(r"^(?:localhost|127\.0\.0\.1)?:\d+$")


def test_cli_examples_are_found() -> None:
    assert len(CLI_COMMANDS) >= 5


@pytest.mark.parametrize(("where", "commands"), CLI_COMMANDS, ids=[where for where, _ in CLI_COMMANDS])
def test_cli_example_serves(where: str, commands: list[list[str]], tmp_path: Path) -> None:
    """The command as written, on loopback and free ports instead of the
    fixed ones: it starts, says where it listens, and Ctrl-C ends it with 0."""
    *setup, argv = commands
    for command in setup:
        if command[0] == "mkdir":
            for directory in (arg for arg in command[1:] if not arg.startswith("-")):
                (tmp_path / directory).mkdir(parents=True, exist_ok=True)
            continue
        subprocess.run([sys.executable, *command[1:]], cwd=tmp_path, check=True, timeout=60, capture_output=True)
    args = argv[3:]
    positional = [i for i, arg in enumerate(args) if LOCAL_SPEC.match(arg) and not args[i - 1].startswith("--")]
    if positional:
        args[positional[0]] = "127.0.0.1:0"
    elif not any(arg for arg in args if not arg.startswith("-") and ":" in arg and "=" not in arg):
        args.append("127.0.0.1:0")
    if "--tls-port" in args:
        args[args.index("--tls-port") + 1] = str(free_port())
    with Spawned.python("-m", "pytest_smtpd", *args, cwd=str(tmp_path)) as server:
        server.expect(r"listening on 127\.0\.0\.1:\d+", stream="stderr")
        assert server.interrupt() == 0, server.report()
    if "--tls-ca-out" in args:
        assert (tmp_path / args[args.index("--tls-ca-out") + 1]).read_text().startswith("-----BEGIN CERTIFICATE")


def test_collector_rules_on_a_sample_page(tmp_path: Path) -> None:
    """The collector itself: what each kind of block becomes."""
    page = tmp_path / "sample.rst"
    page.write_text(
        "Title\n=====\n\n"
        ".. code-block:: python\n\n    # test_a.py\n    def test_a(smtpd):\n        assert False\n\n"
        ".. fragment: part of a test\n\n.. code-block:: python\n\n    await client.quit()\n\n"
        "A script::\n\n    print('hi')\n\n"
        "Shell, not Python::\n\n    pip install pytest-smtpd\n\n"
        ".. code-block:: toml\n\n    [tool.pytest.ini_options]\n",
        encoding="utf-8",
    )
    found = blocks_of(page)
    assert [(block.kind, block.name, block.fragment) for block in found] == [
        ("python", "test_a.py", False),
        ("python", None, True),
        ("literal", None, False),
    ]
    assert found[0].is_test_module() and found[0].test_count() == 1
    assert not found[2].is_test_module()


def test_a_failing_example_fails_its_page(pytester: pytest.Pytester, tmp_path: Path) -> None:
    """The page check can fail: a page whose test asserts what did not happen."""
    page = tmp_path / "wrong.rst"
    page.write_text(
        ".. code-block:: python\n\n    # test_wrong.py\n    def test_wrong(smtpd):\n"
        "        smtpd.assert_sent(to='nobody@example.com')\n",
        encoding="utf-8",
    )
    files, expected = page_project(page, blocks_of(page))
    assert expected == 1
    run_project(pytester, files).assert_outcomes(failed=1)
