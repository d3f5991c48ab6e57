"""What every request to the inbox goes through (an aiohttp middleware):
the token, the Host check against DNS rebinding, the origin check on
changes, JSON errors, and the headers that keep a response from running
in the inbox's origin."""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

__all__ = ["TOKEN_COOKIE", "ApiError", "security"]

#: The cookie that carries ``--web-token`` after the printed URL was opened.
TOKEN_COOKIE = "pytest_smtpd_inbox_token"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiError(Exception):
    """An error answer: its status and a JSON body with ``error``."""

    def __init__(self, status: int, text: str, **extra: Any) -> None:
        super().__init__(text)
        self.status = status
        self.body = {"error": text, **extra}


def _error(status: int, text: str, **extra: Any) -> web.Response:
    return web.json_response({"error": text, **extra}, status=status)


def _loopback_host(host: str) -> bool:
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    name = name.strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def security(token: str | None, allow_remote: bool) -> Any:
    """The middleware: with ``token``, requests must carry it; without
    ``allow_remote``, their Host must be a loopback name."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not allow_remote and not _loopback_host(request.host):
            # A page elsewhere whose name was pointed at 127.0.0.1 (DNS rebinding).
            return _error(403, f"the inbox answers only to a loopback host name, not {request.host!r}")
        if token is not None:
            given = request.headers.get("Authorization", "")
            bearer = given[7:] if given.lower().startswith("bearer ") else ""
            cookie = request.cookies.get(TOKEN_COOKIE, "")
            in_url = request.query.get("token", "")
            if in_url and request.method == "GET" and hmac.compare_digest(in_url.encode(), token.encode()):
                moved = web.Response(status=303, headers={"Location": request.path})
                moved.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="Strict", path="/")
                return moved
            if not (
                hmac.compare_digest(bearer.encode(), token.encode())
                or hmac.compare_digest(cookie.encode(), token.encode())
            ):
                return _error(401, "a token is needed: Authorization: Bearer TOKEN, or open the URL printed at start")
        if request.method not in ("GET", "HEAD", "OPTIONS"):
            origin = request.headers.get("Origin")
            if origin is not None and origin.split("://", 1)[-1] != request.host:
                return _error(403, f"a request from another origin ({origin}) cannot change the inbox")
        try:
            response = await handler(request)
        except ApiError as exc:
            return web.json_response(exc.body, status=exc.status)
        except web.HTTPException as exc:
            if exc.status >= 400:
                return _error(exc.status, f"{exc.reason}: {request.method} {request.path}")
            raise
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        response.headers.setdefault("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'; sandbox")
        return response

    return middleware
