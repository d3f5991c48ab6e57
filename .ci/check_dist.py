"""Release checks on the built distributions (run by .ci/release-check.sh).

Usage: python .ci/check_dist.py DIST_DIR

The wheel holds the package (with py.typed and the inbox's UI files) and
its metadata only; the sdist
also holds the tests and the docs; the version is the package's one
``__version__``; the project URLs are declared. Nothing is published.
"""

from __future__ import annotations

import email.parser
import re
import sys
import tarfile
import zipfile
from pathlib import Path
from typing import NoReturn

ROOT = Path(__file__).resolve().parent.parent


def fail(message: str) -> NoReturn:
    sys.exit(f"check_dist: {message}")


def main(dist: Path) -> None:
    version_line = re.search(r'^__version__ = "([^"]+)"$', (ROOT / "pytest_smtpd" / "__init__.py").read_text(), re.M)
    if version_line is None:
        fail("no __version__ in pytest_smtpd/__init__.py")
    version = version_line.group(1)
    wheels = sorted(dist.glob("*.whl"))
    sdists = sorted(dist.glob("*.tar.gz"))
    if len(wheels) != 1 or len(sdists) != 1:
        fail(f"expected one wheel and one sdist in {dist}, found {wheels + sdists}")
    [wheel], [sdist] = wheels, sdists
    if f"-{version}-" not in wheel.name or not sdist.name.endswith(f"-{version}.tar.gz"):
        fail(f"the file names do not carry version {version}: {wheel.name}, {sdist.name}")

    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata = email.parser.Parser().parsestr(
            archive.read(f"pytest_smtpd-{version}.dist-info/METADATA").decode("utf-8")
        )
        entry_points = archive.read(f"pytest_smtpd-{version}.dist-info/entry_points.txt").decode("utf-8")
    stray = [name for name in names if not name.startswith(("pytest_smtpd/", f"pytest_smtpd-{version}.dist-info/"))]
    if stray:
        fail(f"the wheel holds more than the package: {stray}")
    if "pytest_smtpd/py.typed" not in names:
        fail("the wheel has no pytest_smtpd/py.typed")
    # The dev inbox's UI is package data: without it --web serves 404s.
    static = ROOT / "pytest_smtpd" / "inbox" / "static"
    missing_assets = [
        f"pytest_smtpd/inbox/static/{asset.name}"
        for asset in sorted(static.iterdir())
        if f"pytest_smtpd/inbox/static/{asset.name}" not in names
    ]
    if missing_assets:
        fail(f"the wheel lacks the inbox's UI files: {missing_assets}")
    if metadata["Version"] != version:
        fail(f"the wheel's metadata says version {metadata['Version']}, the package {version}")
    labels = {url.split(",", 1)[0].strip() for url in metadata.get_all("Project-URL") or []}
    missing = {"Documentation", "Changelog", "Issues"} - labels
    if missing:
        fail(f"project URLs missing: {sorted(missing)}")
    if "pytest-smtpd = pytest_smtpd.plugin" not in entry_points:
        fail(f"no pytest11 entry point 'pytest-smtpd = pytest_smtpd.plugin' in:\n{entry_points}")

    with tarfile.open(sdist) as archive:
        members = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    for needed in ("tests/conftest.py", "docs/index.rst", "docs/conf.py", "README.rst", "pytest_smtpd/py.typed"):
        if needed not in members:
            fail(f"the sdist has no {needed}")
    if any(name.startswith("docs/_build") for name in members):
        fail("the sdist holds a docs build")
    print(f"check_dist: {wheel.name} ({len(names)} files) and {sdist.name} ({len(members)} files) are as expected")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
