"""Helpers for the dev inbox tests: an in-process inbox over a running
``Server``, an HTTP client (urllib) that returns JSON and statuses, and
messages sent with smtplib."""

from __future__ import annotations

import json
import smtplib
import urllib.error
import urllib.request
from collections.abc import Iterator
from email.message import EmailMessage
from typing import Any

import pytest

from pytest_smtpd import Server

# The inbox's tests need the web extra; the modules importing this one are skipped without it.
pytest.importorskip("aiohttp")

from pytest_smtpd.inbox.hub import Inbox
from pytest_smtpd.inbox.store import InboxStore
from pytest_smtpd.inbox.web import WebInbox

TIMEOUT = 10.0


class Http:
    """Requests to one base URL, answered as (status, headers, body)."""

    def __init__(self, base: str, token: str | None = None) -> None:
        self.base = base.rstrip("/")
        self.token = token

    def request(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None, timeout: float = TIMEOUT
    ) -> tuple[int, dict[str, str], bytes]:
        data = None
        sent = dict(headers or {})
        if body is not None:
            data = json.dumps(body).encode()
            sent.setdefault("Content-Type", "application/json")
        if self.token is not None:
            sent.setdefault("Authorization", f"Bearer {self.token}")
        request = urllib.request.Request(self.base + path, data=data, method=method, headers=sent)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as error:
            with error:
                return error.code, dict(error.headers), error.read()

    def json(self, method: str, path: str, body: Any = None, expect: int = 200, **kwargs: Any) -> Any:
        status, headers, raw = self.request(method, path, body, **kwargs)
        assert status == expect, (status, raw)
        assert headers["Content-Type"].startswith("application/json"), headers
        return json.loads(raw)

    def get(self, path: str, expect: int = 200, **kwargs: Any) -> Any:
        return self.json("GET", path, expect=expect, **kwargs)


class Running:
    """A Server, the inbox over it and its web server."""

    def __init__(self, server: Server, inbox: Inbox, web: WebInbox) -> None:
        self.server = server
        self.inbox = inbox
        self.web = web
        self.http = Http(f"http://127.0.0.1:{web.port}", web.token)

    def send(
        self,
        subject: str = "Hello",
        *,
        sender: str = "app@example.com",
        to: str | list[str] = "bob@example.com",
        text: str = "Hello, Bob.",
        html: str | None = None,
        attachments: list[tuple[str, bytes, str]] = (),  # type: ignore[assignment]
        headers: dict[str, str] | None = None,
    ) -> None:
        message = make_message(subject, sender=sender, to=to, text=text, html=html, attachments=attachments)
        for name, value in (headers or {}).items():
            message[name] = value
        recipients = [to] if isinstance(to, str) else to
        with smtplib.SMTP(*self.server.address, timeout=TIMEOUT) as client:
            client.send_message(message, sender, recipients)


def make_message(
    subject: str,
    *,
    sender: str = "app@example.com",
    to: str | list[str] = "bob@example.com",
    text: str = "Hello, Bob.",
    html: str | None = None,
    attachments: list[tuple[str, bytes, str]] = (),  # type: ignore[assignment]
) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to if isinstance(to, str) else ", ".join(to)
    message["Subject"] = subject
    message.set_content(text)
    if html is not None:
        message.add_alternative(html, subtype="html")
    for name, content, mime in attachments:
        maintype, subtype = mime.split("/")
        message.add_attachment(content, maintype=maintype, subtype=subtype, filename=name)
    return message


def running_inbox(store: InboxStore | None = None, **web_options: Any) -> Iterator[Running]:
    """A started Server with an inbox and its web server on 127.0.0.1, all stopped after."""
    inbox = Inbox(store)
    with Server() as server:
        inbox.attach(server)
        web = WebInbox(inbox, "127.0.0.1", 0, **web_options)
        with web:
            yield Running(server, inbox, web)


@pytest.fixture
def running() -> Iterator[Running]:
    yield from running_inbox()
