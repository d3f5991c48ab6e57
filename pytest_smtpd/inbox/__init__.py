"""The dev inbox: a web UI and a REST API over the messages the servers
accept, for the command line (``python -m pytest_smtpd --web PORT``) and
for a test run (``pytest --smtpd-web PORT``). Needs the ``web`` extra
(aiohttp): ``pip install 'pytest-smtpd[web]'``.

This package's ``__init__`` imports nothing of aiohttp; ``web`` and ``app``
do, and ``available()`` says whether they can."""

from __future__ import annotations

import importlib.util

__all__ = ["EXTRA_HINT", "available", "is_loopback"]

#: What to install for the inbox.
EXTRA_HINT = "the dev inbox needs the web extra: pip install 'pytest-smtpd[web]' (it brings aiohttp)"


def available() -> bool:
    """Whether aiohttp (the ``web`` extra) is installed."""
    return importlib.util.find_spec("aiohttp") is not None


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine only (localhost, 127.x, ::1)."""
    import ipaddress

    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
