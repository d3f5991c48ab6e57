"""Sphinx configuration: ``nox -s docs`` builds the site with ``-W
--keep-going -n`` (warnings are errors, every reference must resolve)."""

from __future__ import annotations

import sys
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pytest_smtpd import __version__  # noqa: E402

project = "pytest-smtpd"
author = "pytest-smtpd developers"
copyright = "pytest-smtpd developers"
release = __version__
version = __version__

sys.path.insert(0, str(ROOT / "docs" / "_ext"))
# options_table: the Server options table, made from pytest_smtpd/options.py.
extensions = ["sphinx.ext.autodoc", "options_table"]
html_theme = "furo"
html_title = f"pytest-smtpd {release}"
exclude_patterns = ["_build"]
nitpicky = True
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "undoc-members": False, "show-inheritance": True}

# intersphinx, offline: CI reaches no documentation site (only the package
# registries), so it cannot download the Python, pytest and trustme
# inventories. Instead the names outside this project that the pages and
# signatures use are listed here with their address in those projects'
# docs, and written as small inventories of our own at build time; the links
# go to the real pages. A new outside name fails the nitpicky build until it
# is added below, as a name of ours that does not resolve does.
extensions.append("sphinx.ext.intersphinx")
_EXTERNAL = {
    "python": (
        "https://docs.python.org/3/",
        {
            "py:class": {
                "collections.abc.Awaitable": "library/collections.abc.html#collections.abc.Awaitable",
                "collections.abc.Callable": "library/collections.abc.html#collections.abc.Callable",
                "collections.abc.Iterable": "library/collections.abc.html#collections.abc.Iterable",
                "collections.abc.Iterator": "library/collections.abc.html#collections.abc.Iterator",
                "collections.abc.Mapping": "library/collections.abc.html#collections.abc.Mapping",
                "collections.abc.MutableMapping": "library/collections.abc.html#collections.abc.MutableMapping",
                "collections.abc.Sequence": "library/collections.abc.html#collections.abc.Sequence",
                "email.message.EmailMessage": "library/email.message.html#email.message.EmailMessage",
                "enum.Enum": "library/enum.html#enum.Enum",
                "os.PathLike": "library/os.html#os.PathLike",
                "re.Pattern": "library/re.html#re.Pattern",
                "socket.socket": "library/socket.html#socket.socket",
                "ssl.SSLContext": "library/ssl.html#ssl.SSLContext",
                "ssl.TLSVersion": "library/ssl.html#ssl.TLSVersion",
            },
        },
    ),
    "pytest": (
        "https://docs.pytest.org/en/stable/",
        {
            "py:class": {
                # autodoc prints the class where it is defined.
                "_pytest.fixtures.FixtureRequest": "reference/reference.html#pytest.FixtureRequest",
                "pytest.FixtureRequest": "reference/reference.html#pytest.FixtureRequest",
                "pytest.PytestWarning": "reference/reference.html#pytest.PytestWarning",
            },
        },
    ),
    "trustme": (
        "https://trustme.readthedocs.io/en/latest/",
        {"py:class": {"trustme.CA": "#trustme.CA"}},
    ),
}


def _write_inventory(path: Path, project: str, entries: dict[str, dict[str, str]]) -> None:
    """An ``objects.inv`` (Sphinx inventory version 2) holding ``entries``."""
    lines = [f"{name} {role} 1 {uri} -" for role, names in entries.items() for name, uri in sorted(names.items())]
    header = (
        "# Sphinx inventory version 2\n"
        f"# Project: {project}\n"
        "# Version: \n"
        "# The remainder of this file is compressed using zlib.\n"
    )
    path.write_bytes(header.encode() + zlib.compress(("\n".join(lines) + "\n").encode()))


_INVENTORIES = ROOT / "docs" / "_build" / "inventories"
_INVENTORIES.mkdir(parents=True, exist_ok=True)
intersphinx_mapping: dict[str, tuple[str, str]] = {}
for _project, (_url, _entries) in _EXTERNAL.items():
    _inventory = _INVENTORIES / f"{_project}.inv"
    _write_inventory(_inventory, _project, _entries)
    intersphinx_mapping[_project] = (_url, str(_inventory))
# Ours, private, but the type of a public attribute (Faults.rules): left
# unlinked rather than documented.
nitpick_ignore = [
    ("py:class", "pytest_smtpd.faults._Rule"),
    # The private thread-safe list under MessageStore and SessionStore (shown as their base).
    ("py:class", "pytest_smtpd._sequence.LockedList"),
    # ServerConnection.handle_command is _dispatch's function bound as the
    # method (no call in between); its annotations name the core through a
    # type-only import, so autodoc shows them unevaluated: "Event", the
    # union of pytest_smtpd.events, unlinked.
    ("py:class", "Event"),
]
