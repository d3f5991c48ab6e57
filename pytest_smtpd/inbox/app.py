"""The inbox's HTTP side on aiohttp: the REST API's routes, the event
stream and the UI's static files, with the policies their content is
served under (``security`` checks every request)."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import urllib.parse
from importlib import resources
from typing import Any

from aiohttp import web

from ..message import Message
from .hub import Inbox
from .openapi import openapi
from .query import CriteriaError, parse
from .release import release
from .security import ApiError, security
from .store import Stored

__all__ = ["UI_POLICY", "html_policy", "make_app"]

#: The UI's own pages: scripts and styles from the inbox only, no inline
#: script, nothing fetched from elsewhere; messages' HTML only in frames
#: from the inbox (which are sandboxed, see ``html_policy``).
UI_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "frame-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
DEFAULT_LIMIT = 50
MAX_LIMIT = 1000
DEFAULT_WAIT = 10.0
MAX_WAIT = 300.0
#: Seconds between the event stream's keep-alive comments.
KEEPALIVE = 15.0
STATIC = ("index.html", "app.js", "style.css")
_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}
#: Tags that would make a request on their own however the policy reads:
#: a refresh (the frame navigating itself) and link hints.
_SELF_LOADING = re.compile(
    r"<meta\b[^>]*http-equiv\s*=\s*[\"']?\s*refresh[^>]*>|"
    r"<link\b[^>]*rel\s*=\s*[\"']?[^\"'>]*(?:prefetch|preload|preconnect|prerender|modulepreload)[^>]*>",
    re.IGNORECASE,
)


_CID = re.compile(r"""cid:([^"'\s)>]+)""", re.IGNORECASE)
#: Parts larger than this are not inlined as data: URLs.
INLINE_LIMIT = 5 * 1024 * 1024


def _inline_cid(message: Message, markup: str) -> str:
    """``cid:`` references (images sent with the message, RFC 2392) as
    ``data:`` URLs, the only images the frame may load without remote content."""
    if "cid:" not in markup.lower():
        return markup
    parts: dict[str, str] = {}
    for part in message.email.walk():
        content_id = part.get("Content-ID")
        if content_id is None or part.is_multipart():
            continue
        payload = part.get_payload(decode=True)
        if isinstance(payload, bytes) and len(payload) <= INLINE_LIMIT:
            encoded = base64.b64encode(payload).decode("ascii")
            parts[str(content_id).strip().strip("<>")] = f"data:{part.get_content_type()};base64,{encoded}"
    return _CID.sub(lambda match: parts.get(urllib.parse.unquote(match.group(1)), match.group(0)), markup)


def html_policy(remote: bool) -> str:
    """The policy of a message's HTML: no script, no frames, no forms, no
    plugins; images, styles and fonts inline only, or from anywhere once
    "load remote content" was chosen; sandboxed even when opened alone."""
    sources = "* data:" if remote else "data:"
    return (
        f"default-src 'none'; img-src {sources}; style-src 'unsafe-inline' {'*' if remote else ''}; "
        f"font-src {sources}; media-src {sources}; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'self'; sandbox"
    ).replace("  ", " ")


class _Routes:
    """The handlers, over one inbox."""

    def __init__(self, inbox: Inbox, release_to: tuple[str, int] | None, release_context: Any) -> None:
        self.inbox = inbox
        self.release_to = release_to
        self.release_context = release_context

    # -- helpers ---------------------------------------------------------------

    async def _entry(self, request: web.Request) -> Stored:
        text = request.match_info["id"]
        if not text.isdigit():
            raise _not_found(f"no message {text!r}: ids are numbers")
        entry = await self.inbox.get(int(text))
        if entry is None:
            raise _not_found(f"no message {text}")
        return entry

    @staticmethod
    def _number(request: web.Request, name: str, default: float, high: float, kind: type = int) -> Any:
        text = request.query.get(name)
        if text is None or text == "":
            return kind(default)
        try:
            value = kind(text)
        except ValueError:
            raise _bad_request(f"{name}: expected a number, got {text!r}") from None
        if not 0 <= value <= high:
            raise _bad_request(f"{name}: expected a number from 0 to {high:g}, got {text!r}")
        return value

    @staticmethod
    def _criteria(request: web.Request) -> Any:
        try:
            return parse(list(request.query.items()))
        except CriteriaError as exc:
            raise _bad_request(str(exc), criterion=exc.name) from None

    # -- the UI -------------------------------------------------------------------

    async def static(self, request: web.Request) -> web.Response:
        name = request.match_info.get("name", "index.html")
        if name not in STATIC:
            raise _not_found(f"no file {name!r}")
        body = resources.files(__package__).joinpath("static").joinpath(name).read_bytes()
        response = web.Response(body=body, content_type=_TYPES[name[name.rfind(".") :]], charset="utf-8")
        response.headers["Content-Security-Policy"] = UI_POLICY
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Cache-Control"] = "no-cache"
        return response

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def openapi(self, request: web.Request) -> web.Response:
        return web.json_response(openapi())

    # -- messages ---------------------------------------------------------------------

    async def messages(self, request: web.Request) -> web.Response:
        where = self._criteria(request)
        limit = self._number(request, "limit", DEFAULT_LIMIT, MAX_LIMIT)
        offset = self._number(request, "offset", 0, 10**12)
        total, summaries = await self.inbox.page(where, limit, offset)
        return web.json_response({"total": total, "messages": summaries})

    async def delete_all(self, request: web.Request) -> web.Response:
        return web.json_response({"deleted": await self.inbox.clear()})

    async def message(self, request: web.Request) -> web.Response:
        entry = await self._entry(request)
        message = entry.message
        summary = entry.summarised()
        summary["outcome"] = self.inbox.tests.get(entry.test) if entry.test else None
        headers = []
        for name, raw in message.email.raw_items():
            try:
                shown = str(message.email.policy.header_fetch_parse(name, raw))
            except Exception:  # a header the policy cannot read: as written
                shown = str(raw)
            headers.append([name, shown])
        view = {
            **summary,
            "headers": headers,
            "text": message.text,
            "html": message.html,
            "attachments": [
                {"index": index, "name": one.filename, "type": one.content_type, "size": len(one.content)}
                for index, one in enumerate(message.attachments)
            ],
            "envelope": {
                "mail_from": message.mail_from,
                "rcpt_tos": message.rcpt_tos,
                "peer": list(message.peer),
                "helo": message.helo,
                "transfer": message.transfer,
                "auth_identity": message.auth_identity,
                "tls": None
                if message.tls is None
                else {"version": message.tls.version, "cipher": message.tls.cipher, "mode": message.tls.mode},
            },
            "mail_options": message.mail_options,
            "rcpt_options": message.options_per_rcpt,
        }
        return web.json_response(view)

    async def delete(self, request: web.Request) -> web.Response:
        entry = await self._entry(request)
        await self.inbox.delete(entry.id)
        return web.json_response({"deleted": 1})

    async def raw(self, request: web.Request) -> web.Response:
        entry = await self._entry(request)
        response = web.Response(body=entry.message.data, content_type="message/rfc822")
        response.headers["Content-Disposition"] = f'inline; filename="message-{entry.id}.eml"'
        return response

    async def html(self, request: web.Request) -> web.Response:
        entry = await self._entry(request)
        markup = entry.message.html
        if markup is None:
            raise _not_found(f"message {entry.id} has no HTML part")
        remote = request.query.get("remote") == "1"
        markup = _inline_cid(entry.message, _SELF_LOADING.sub("", markup))
        response = web.Response(text=markup, content_type="text/html")
        response.headers["Content-Security-Policy"] = html_policy(remote)
        return response

    async def attachment(self, request: web.Request) -> web.Response:
        entry = await self._entry(request)
        index = request.match_info["n"]
        attachments = entry.message.attachments
        if not index.isdigit() or int(index) >= len(attachments):
            raise _not_found(f"message {entry.id} has {len(attachments)} attachment(s), counted from 0: no {index!r}")
        one = attachments[int(index)]
        response = web.Response(body=one.content, content_type="application/octet-stream")
        response.headers["Content-Type"] = one.content_type if "/" in one.content_type else "application/octet-stream"
        name = (one.filename or f"attachment-{index}").replace('"', "").replace("\\", "")
        ascii_name = name.encode("ascii", "replace").decode("ascii").replace("?", "_")
        response.headers["Content-Disposition"] = (
            f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{urllib.parse.quote(name, safe='')}"
        )
        return response

    async def release(self, request: web.Request) -> web.Response:
        entry = await self._entry(request)
        if request.content_type != "application/json":
            raise _bad_request("the request body must be JSON (Content-Type: application/json)")
        try:
            body = await request.json()
        except ValueError as exc:
            raise _bad_request(f"the request body is not JSON: {exc}") from None
        if not isinstance(body, dict):
            raise _bad_request("the request body must be a JSON object")
        unknown = set(body) - {"to", "host", "port"}
        if unknown:
            raise _bad_request(f"unknown field(s) {sorted(unknown)}: expected to, host, port")
        to = body.get("to", entry.message.rcpt_tos)
        if not (isinstance(to, list) and to and all(isinstance(one, str) and "@" in one for one in to)):
            raise _bad_request(f"to: expected a list of addresses, got {to!r}")
        host, port = body.get("host"), body.get("port")
        if host is None and port is None and self.release_to is not None:
            host, port = self.release_to
        if not isinstance(host, str) or not host:
            raise _bad_request("host: where to relay to is needed (or start the inbox with --release-to HOST:PORT)")
        if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
            raise _bad_request(f"port: expected a port number, got {port!r}")
        released = await release(entry.message, to, host, port, tls_context=self.release_context)
        return web.json_response(released.as_json(), status=200 if released.ok else 502)

    async def wait(self, request: web.Request) -> web.Response:
        where = self._criteria(request)
        timeout = self._number(request, "timeout", DEFAULT_WAIT, MAX_WAIT, float)
        found = await self.inbox.wait(where, timeout)
        if found is not None:
            return web.json_response(found.summarised())
        total, arrived = await self.inbox.page(None, 10, 0)
        return web.json_response(
            {
                "error": f"no message matching the criteria arrived in {timeout:g}s; {total} message(s) here",
                "total": total,
                "messages": arrived,
            },
            status=408,
        )

    # -- sessions, tests, events ----------------------------------------------------------

    async def sessions(self, request: web.Request) -> web.Response:
        views = await self.inbox.sessions()
        return web.json_response({"total": len(views), "sessions": views})

    async def session(self, request: web.Request) -> web.Response:
        text = request.match_info["id"]
        view = await self.inbox.session(int(text)) if text.isdigit() else None
        if view is None:
            raise _not_found(f"no session {text!r}")
        return web.json_response(view)

    async def tests(self, request: web.Request) -> web.Response:
        return web.json_response(self.inbox.tests)

    async def events(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        queue = self.inbox.subscribe()
        try:
            await response.write(b": the pytest-smtpd inbox\n\n")
            while True:
                try:
                    first = await asyncio.wait_for(queue.get(), KEEPALIVE)
                except asyncio.TimeoutError:
                    await response.write(b": keep-alive\n\n")
                    continue
                # What has queued up meanwhile goes in the same write.
                events = [first]
                while not queue.empty() and events[-1] is not None:
                    events.append(queue.get_nowait())
                chunk = b"".join(_event_bytes(event) for event in events if event is not None)
                if chunk:
                    await response.write(chunk)
                if events[-1] is None:
                    break
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self.inbox.unsubscribe(queue)
        return response


def _event_bytes(event: dict[str, Any]) -> bytes:
    """One server-sent event. A new message is told by its envelope only:
    parsing every message for its headers here would slow down taking mail in."""
    kind = event.pop("type")
    if kind == "message":
        entry: Stored = event.pop("entry")
        message = entry.message
        event = {
            "id": entry.id,
            "mail_from": message.mail_from,
            "rcpt_tos": message.rcpt_tos,
            "size": len(message.data),
            "received_at": entry.summarised_time(),
            "test": entry.test,
            "session": entry.session_id,
        }
    return f"event: {kind}\ndata: {json.dumps(event)}\n\n".encode()


def _not_found(text: str) -> ApiError:
    return ApiError(404, text)


def _bad_request(text: str, **extra: Any) -> ApiError:
    return ApiError(400, text, **extra)


def make_app(
    inbox: Inbox,
    *,
    token: str | None = None,
    allow_remote: bool = False,
    release_to: tuple[str, int] | None = None,
    release_context: Any = None,
) -> web.Application:
    """The aiohttp application over ``inbox``."""
    routes = _Routes(inbox, release_to, release_context)
    app = web.Application(middlewares=[security(token, allow_remote)])
    app.add_routes(
        [
            web.get("/", routes.static),
            web.get("/static/{name}", routes.static),
            web.get("/healthz", routes.healthz),
            web.get("/api/openapi.json", routes.openapi),
            web.get("/api/messages", routes.messages),
            web.delete("/api/messages", routes.delete_all),
            web.get("/api/messages/{id}", routes.message),
            web.delete("/api/messages/{id}", routes.delete),
            web.get("/api/messages/{id}/raw", routes.raw),
            web.get("/api/messages/{id}/html", routes.html),
            web.get("/api/messages/{id}/attachments/{n}", routes.attachment),
            web.post("/api/messages/{id}/release", routes.release),
            web.get("/api/wait", routes.wait),
            web.get("/api/sessions", routes.sessions),
            web.get("/api/sessions/{id}", routes.session),
            web.get("/api/tests", routes.tests),
            web.get("/api/events", routes.events),
        ]
    )
    return app
