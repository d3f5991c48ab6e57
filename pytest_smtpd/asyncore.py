"""Drop-in for what smtpd code uses of ``asyncore``: ``loop()``, and for
code that runs its own polling loop, ``socket_map``, ``poll()``,
``poll2()`` and ``close_all()``. The servers serve on the background loop
thread; these wait for them and close them (see docs/migration.rst)."""

from .compat import close_all, loop, poll, poll2, poll3, socket_map

__all__ = ["close_all", "loop", "poll", "poll2", "poll3", "socket_map"]
