"""``WebInbox``: the inbox's web server (aiohttp) started and stopped on
the servers' loop thread, from any other thread."""

from __future__ import annotations

import asyncio
import secrets
from concurrent.futures import Future
from typing import Any

from aiohttp import web

from .. import loopthread
from . import is_loopback
from .app import make_app
from .hub import Inbox

__all__ = ["WebInbox"]

#: Seconds start() and stop() wait for the loop thread.
STARTUP_TIMEOUT = 30.0


class WebInbox:
    """The UI and REST API over ``inbox`` at ``host:port`` (0: a free port).

    A host other than loopback needs ``allow_remote`` and a ``token``
    (``ValueError`` otherwise); a token may be given on loopback too."""

    def __init__(
        self,
        inbox: Inbox,
        host: str = "localhost",
        port: int = 0,
        *,
        token: str | None = None,
        allow_remote: bool = False,
        release_to: tuple[str, int] | None = None,
        release_context: Any = None,
    ) -> None:
        if not is_loopback(host):
            if not allow_remote:
                raise ValueError(
                    f"the inbox serves loopback only; {host!r} would let other machines read the mail: "
                    "give --allow-remote and --web-token TOKEN"
                )
            if not token:
                raise ValueError(f"serving the inbox on {host!r} needs a token (--web-token TOKEN)")
        self.inbox = inbox
        self.host = host
        self.token = token
        self._app = make_app(
            inbox, token=token, allow_remote=allow_remote, release_to=release_to, release_context=release_context
        )
        self._requested_port = port
        self.port = port
        self._runner: web.AppRunner | None = None
        self._lease: loopthread.Lease | None = None

    @staticmethod
    def new_token() -> str:
        """A random token, for ``--web-token`` when none is chosen."""
        return secrets.token_urlsafe(24)

    @property
    def url(self) -> str:
        """Where the UI is; with a token, the URL that sets its cookie."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        base = f"http://{host}:{self.port}/"
        return f"{base}?token={self.token}" if self.token else base

    def _run(self, coroutine: Any) -> Any:
        assert self._lease is not None
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coroutine, self._lease.loop)
        return future.result(STARTUP_TIMEOUT)

    def start(self) -> WebInbox:
        """Bind and serve; ``OSError`` if the address cannot be bound."""
        self._lease = loopthread.acquire_loop()
        try:
            self._run(self._start())
        except BaseException:
            self._lease.release()
            self._lease = None
            raise
        return self

    async def _start(self) -> None:
        runner = web.AppRunner(self._app, handle_signals=False, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self._requested_port, reuse_address=True)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = int(runner.addresses[0][1])

    def stop(self) -> None:
        """Stop serving, end the event streams, and let go of the loop thread."""
        if self._lease is None:
            return
        try:
            self._run(self._stop())
        finally:
            self.inbox.close()
            self._lease.release()
            self._lease = None

    async def _stop(self) -> None:
        self.inbox.close_streams()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def __enter__(self) -> WebInbox:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
