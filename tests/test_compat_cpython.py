"""The contract of the stdlib-compatible layer: CPython's own
``Lib/test/test_smtplib.py``, Python 3.11's copy, runs against our ``smtpd``
and ``asyncore`` with only its two import lines changed.

Nothing of CPython is copied into this repository: the file is read from a
Python 3.11 installed on the machine (``$PYTEST_SMTPD_CPYTHON_TESTS`` names its
``test`` directory, else pyenv's or the system's is used), its two import lines
are rewritten into a temporary directory, and a child process runs it with
the Python under test. Python 3.10's own ``test.support`` lacks what the 3.11
file calls (``support.requires_working_socket()``), so there the file runs with
the 3.11 helpers it was written for (``test.support``, ``test.mock_socket``),
linked beside it; the real stdlib scores 82 of 82 that way too, which the
reference run below checks.

Every test that does not pass is in ``EXPECTED_FAILURES``, with the RFC fix
it hits; each is also listed in docs/migration.rst.
"""

from __future__ import annotations

import glob
import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

#: The two lines of the 3.11 file that import the deprecated stdlib modules.
IMPORT_LINES = {
    "asyncore = warnings_helper.import_deprecated('asyncore')": "asyncore",
    "smtpd = warnings_helper.import_deprecated('smtpd')": "smtpd",
}
OURS = {"asyncore": "from pytest_smtpd import asyncore", "smtpd": "from pytest_smtpd import smtpd"}

#: Test -> why it cannot pass: a stdlib behaviour that broke an RFC and that
#: we fixed on purpose (docs/migration.rst, "Where we follow the RFC"). The
#: same on every supported Python.
EXPECTED_FAILURES = {
    "DebuggingServerTests.testSecondHELO": (
        "expects 503 Duplicate HELO/EHLO; RFC 5321 4.1.4 makes a second HELO/EHLO legal, resetting the transaction"
    ),
}

#: The file holds 82 tests; every one must run.
TEST_COUNT = 82
#: Hard limit for one run of the file (it takes about a second).
CHILD_TIMEOUT = 45

RUNNER = """\
import json, sys, unittest

class Recorder(unittest.TestResult):
    def __init__(self):
        super().__init__()
        self.outcomes = {}

    def _record(self, test, outcome, detail=""):
        name = test.id().removeprefix("cpython_test_smtplib.")
        if self.outcomes.get(name, ("ok",))[0] == "ok":
            self.outcomes[name] = (outcome, detail)

    def addSuccess(self, test):
        self._record(test, "ok")

    def addFailure(self, test, err):
        self._record(test, "failed", self._exc_info_to_string(err, test))

    def addError(self, test, err):
        self._record(test, "error", self._exc_info_to_string(err, test))

    def addSkip(self, test, reason):
        self._record(test, "skipped", reason)

    def addExpectedFailure(self, test, err):
        self._record(test, "ok")

    def addUnexpectedSuccess(self, test):
        self._record(test, "failed", "unexpected success")

    def addSubTest(self, test, subtest, err):
        if err is not None:
            self._record(test, "failed", f"{subtest}: " + self._exc_info_to_string(err, subtest))

suite = unittest.defaultTestLoader.loadTestsFromName("cpython_test_smtplib")
result = Recorder()
suite.run(result)
with open(sys.argv[1], "w") as out:
    json.dump(result.outcomes, out)
"""


def cpython_311_test_dir() -> Path | None:
    """A Python 3.11 ``test`` directory holding test_smtplib.py and its helpers."""
    candidates: list[str] = []
    if os.environ.get("PYTEST_SMTPD_CPYTHON_TESTS"):
        candidates.append(os.environ["PYTEST_SMTPD_CPYTHON_TESTS"])
    if sys.version_info[:2] == (3, 11):
        spec = importlib.util.find_spec("test")
        if spec is not None and spec.origin is not None:
            candidates.append(str(Path(spec.origin).parent))
    for pattern in (
        os.path.expanduser("~/.pyenv/versions/3.11*/lib/python3.11/test"),
        "/root/.pyenv/versions/3.11*/lib/python3.11/test",
        "/usr/lib/python3.11/test",
        "/usr/local/lib/python3.11/test",
    ):
        candidates += sorted(glob.glob(pattern), reverse=True)
    for candidate in candidates:
        path = Path(candidate)
        if all((path / name).exists() for name in ("test_smtplib.py", "mock_socket.py", "support")):
            return path
    return None


def importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # its package is missing
        return False


def own_helpers_suffice() -> bool:
    """Whether this Python's own ``test.support`` has what the 3.11 file calls."""
    if sys.version_info < (3, 11):
        return False  # no support.requires_working_socket()
    return importable("test.support") and importable("test.mock_socket")


def stdlib_imports() -> dict[str, str] | None:
    """The import lines of the real stdlib modules on this Python, or None."""
    if sys.version_info < (3, 12):
        return {"asyncore": "import asyncore", "smtpd": "import smtpd"}
    # 3.12 moved them into the test package: asyncore to test.support, smtpd
    # to test (3.12) or test.support (3.13).
    if not importable("test.support.asyncore"):
        return None
    for package in ("test.support", "test"):
        if importable(f"{package}.smtpd"):
            return {"asyncore": "from test.support import asyncore", "smtpd": f"from {package} import smtpd"}
    return None


@dataclass
class Run:
    outcomes: dict[str, tuple[str, str]]
    stderr: str

    def not_passed(self) -> dict[str, tuple[str, str]]:
        return {name: outcome for name, outcome in self.outcomes.items() if outcome[0] != "ok"}


def rewrite(source: str, imports: dict[str, str]) -> str:
    """The file with its two import lines replaced, and nothing else."""
    lines = source.splitlines(keepends=True)
    replaced = 0
    for index, line in enumerate(lines):
        module = IMPORT_LINES.get(line.rstrip("\n"))
        if module is not None:
            lines[index] = imports[module] + "\n"
            replaced += 1
    assert replaced == 2, "the import lines of test_smtplib.py are not the expected ones"
    return "".join(lines)


@pytest.fixture(scope="module")
def test_dir() -> Path:
    found = cpython_311_test_dir()
    if found is None:
        pytest.skip(
            "no Python 3.11 standard library test package (test/test_smtplib.py) on this machine; "
            "set PYTEST_SMTPD_CPYTHON_TESTS to one"
        )
    return found


def run_file(test_dir: Path, imports: dict[str, str], workdir: Path) -> Run:
    workdir.mkdir()
    source = (test_dir / "test_smtplib.py").read_text(encoding="utf-8")
    (workdir / "cpython_test_smtplib.py").write_text(rewrite(source, imports), encoding="utf-8")
    (workdir / "runner.py").write_text(RUNNER, encoding="utf-8")
    if not own_helpers_suffice():
        package = workdir / "test"
        package.mkdir()
        (package / "__init__.py").write_text("", encoding="utf-8")
        (package / "support").symlink_to(test_dir / "support", target_is_directory=True)
        (package / "mock_socket.py").symlink_to(test_dir / "mock_socket.py")
    results = workdir / "results.json"
    process = subprocess.run(
        [sys.executable, "-W", "default::ResourceWarning", "runner.py", str(results)],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT,
    )
    assert process.returncode == 0, process.stderr
    outcomes = {name: (outcome, detail) for name, (outcome, detail) in json.loads(results.read_text()).items()}
    return Run(outcomes, process.stderr)


@pytest.fixture(scope="module")
def our_run(test_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Run:
    return run_file(test_dir, OURS, tmp_path_factory.mktemp("cpython") / "ours")


def describe(failures: dict[str, tuple[str, str]]) -> Iterator[str]:
    for name, (outcome, detail) in sorted(failures.items()):
        yield f"{name}: {outcome}\n{detail}"


def test_cpython_test_smtplib_passes_with_only_its_imports_changed(our_run: Run) -> None:
    assert len(our_run.outcomes) == TEST_COUNT, sorted(our_run.outcomes)
    unexpected = {name: result for name, result in our_run.not_passed().items() if name not in EXPECTED_FAILURES}
    assert not unexpected, "\n\n".join(describe(unexpected))
    passed = TEST_COUNT - len(our_run.not_passed())
    assert passed == TEST_COUNT - len(EXPECTED_FAILURES)


def test_each_expected_failure_still_fails_for_its_reason(our_run: Run) -> None:
    """The list stays honest: a test in it that starts passing must leave it."""
    for name in EXPECTED_FAILURES:
        outcome, detail = our_run.outcomes[name]
        assert outcome == "failed", f"{name} now passes: remove it from EXPECTED_FAILURES"
    outcome, detail = our_run.outcomes["DebuggingServerTests.testSecondHELO"]
    assert "(250, b'') != (503, b'Duplicate HELO/EHLO')" in detail


def test_the_run_leaves_no_resource_or_thread_behind(our_run: Run) -> None:
    """Unclosed sockets, transports or threads show up on the child's stderr:
    as ResourceWarnings, or as test.support's "Warning -- ... dangling" notes."""
    for marker in ("ResourceWarning", "Exception ignored", "Warning -- ", "Traceback"):
        assert marker not in our_run.stderr, our_run.stderr


def test_expected_failures_are_listed_in_the_migration_guide() -> None:
    guide = (Path(__file__).parent.parent / "docs" / "migration.rst").read_text(encoding="utf-8")
    for name in EXPECTED_FAILURES:
        assert name.split(".")[-1] in guide, f"docs/migration.rst does not explain why {name} fails"


def test_the_real_stdlib_passes_every_test_of_the_same_run(test_dir: Path, tmp_path: Path) -> None:
    """The reference: the same file, with the same helpers, against the real
    stdlib modules of this Python (where they still exist), passes all 82.
    So whatever ours misses is ours, not the harness's."""
    imports = stdlib_imports()
    if imports is None:
        pytest.skip("this Python has neither the stdlib smtpd/asyncore nor their copies in its test package")
    run = run_file(test_dir, imports, tmp_path / "stdlib")
    assert len(run.outcomes) == TEST_COUNT
    assert not run.not_passed(), "\n\n".join(describe(run.not_passed()))


def test_only_the_two_import_lines_are_changed(test_dir: Path) -> None:
    source = (test_dir / "test_smtplib.py").read_text(encoding="utf-8")
    rewritten = rewrite(source, OURS)
    changed = [(a, b) for a, b in zip(source.splitlines(), rewritten.splitlines(), strict=True) if a != b]
    assert sorted(b for _, b in changed) == sorted(OURS.values())


def test_a_file_whose_import_lines_moved_is_refused_not_run_unchanged() -> None:
    with pytest.raises(AssertionError, match="not the expected ones"):
        rewrite("import asyncore\nimport smtpd\n", OURS)
