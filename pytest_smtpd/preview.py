"""A standalone ``.html`` preview of an HTML message, for a CI artifact or a
pytest-html report: the envelope and subject on top, the HTML body below in a
sandboxed frame, ``cid:`` images embedded as ``data:`` URIs, and nothing
loaded from the network (a Content-Security-Policy, and remote ``src``
attributes taken out)."""

from __future__ import annotations

import base64
import html
import os
import re
import time
from collections.abc import Sequence
from email.message import EmailMessage
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote

if TYPE_CHECKING:
    from .message import Message

__all__ = ["CSP", "render", "report_html", "write_preview"]

#: What a preview may load: inline styles, and images and fonts from data: URIs.
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; font-src data:; frame-src 'self'"
_CSP_META = f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
#: Attributes that load a resource, when their URL is remote (or protocol-relative).
_REMOTE_ATTRIBUTE = re.compile(
    r"""\b(src|srcset|background|poster|data)\s*=\s*(["']?)\s*(?:https?:)?//""", re.IGNORECASE
)
#: A remote ``url(...)`` in a style.
_REMOTE_URL = re.compile(r"""\burl\(\s*(["']?)\s*(?:https?:)?//""", re.IGNORECASE)
#: A ``<meta http-equiv="refresh">``: a navigation, which no policy stops.
_REFRESH = re.compile(r"""<meta\b[^>]*\bhttp-equiv\s*=\s*["']?refresh\b[^>]*>""", re.IGNORECASE)
_CID = re.compile(r"""cid:([^"'\s)>]+)""", re.IGNORECASE)

_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 0; }
.smtpd-headers { background: #f3f3f3; border-bottom: 1px solid #ccc; padding: 8px 12px; }
.smtpd-headers th { text-align: right; color: #555; padding-right: 8px; vertical-align: top; font-weight: normal; }
.smtpd-note { color: #a40; }
iframe { border: 0; width: 100%; height: 80vh; }
"""


def _inline_images(message: Message) -> dict[str, str]:
    """``{content id: data URI}`` for every part with a Content-ID."""
    images: dict[str, str] = {}
    for part in message.email.walk():
        content_id = part.get("Content-ID")
        if content_id is None or not isinstance(part, EmailMessage) or part.is_multipart():
            continue
        payload = part.get_payload(decode=True)
        if isinstance(payload, bytes):
            encoded = base64.b64encode(payload).decode("ascii")
            images[str(content_id).strip().strip("<>")] = f"data:{part.get_content_type()};base64,{encoded}"
    return images


def _body(markup: str, images: dict[str, str]) -> tuple[str, int]:
    """The HTML body with cid: references embedded and remote resources
    taken out (stylesheet links are left to the policy); how many."""
    markup = _CID.sub(lambda m: images.get(unquote(m.group(1)), m.group(0)), markup)
    markup, blocked = _REMOTE_ATTRIBUTE.subn(lambda m: f"data-smtpd-blocked-{m.group(0)}", markup)
    markup, in_styles = _REMOTE_URL.subn(lambda m: f"url({m.group(1)}#smtpd-blocked:", markup)
    markup, refreshes = _REFRESH.subn("<!-- meta refresh removed by pytest-smtpd -->", markup)
    blocked += in_styles + refreshes
    # Its own policy too, in case the frame is opened on its own.
    return f"<!DOCTYPE html><html><head>{_CSP_META}</head><body>{markup}</body></html>", blocked


def render(message: Message) -> str | None:
    """The preview page of ``message``, or None if it has no HTML body."""
    markup = message.html
    if markup is None:
        return None
    body, blocked = _body(markup, _inline_images(message))
    rows = [
        ("Envelope from", f"<{message.mail_from}>"),
        ("Envelope to", ", ".join(f"<{rcpt}>" for rcpt in message.rcpt_tos)),
        ("From", str(message.email.get("From", ""))),
        ("To", str(message.email.get("To", ""))),
        ("Cc", str(message.email.get("Cc", ""))),
        ("Subject", message.subject or ""),
        ("Date", str(message.email.get("Date", ""))),
        ("Received", time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(message.received_at))),
    ]
    table = "".join(
        f"<tr><th>{html.escape(name)}</th><td>{html.escape(value)}</td></tr>" for name, value in rows if value
    )
    note = (
        f'<p class="smtpd-note">{blocked} remote resource(s) not loaded.</p>'
        if blocked
        else '<p class="smtpd-note" hidden></p>'
    )
    title = html.escape(message.subject or "(no subject)")
    return (
        "<!DOCTYPE html>\n"
        f'<html><head><meta charset="utf-8">{_CSP_META}<title>{title}</title><style>{_STYLE}</style></head>\n'
        f'<body><div class="smtpd-headers"><table>{table}</table>{note}</div>\n'
        f'<iframe sandbox title="message" srcdoc="{html.escape(body, quote=True)}"></iframe>\n'
        "</body></html>\n"
    )


def write_preview(message: Message, path: str | os.PathLike[str]) -> bool:
    """Write the preview of ``message`` to ``path``; False (nothing written)
    if the message has no HTML body."""
    page = render(message)
    if page is None:
        return False
    with open(path, "w", encoding="utf-8") as file:
        file.write(page)
    return True


def report_html(messages: Sequence[Message], previews: Sequence[Path | None], report_dir: Path | None) -> str:
    """The pytest-html extra of a failing test: its messages, each HTML one
    with a link to its saved preview (``previews``, relative to the report)
    or, where none was saved, the preview embedded."""
    items = []
    for index, (message, preview) in enumerate(zip(messages, previews, strict=True), 1):
        text = html.escape(
            f"#{index} from <{message.mail_from}> to {', '.join(message.rcpt_tos)}: {message.subject!r},"
            f" {len(message.data)} bytes"
        )
        if preview is not None:
            href = os.path.relpath(preview, report_dir) if report_dir is not None else preview.resolve().as_uri()
            text += f' <a class="smtpd-preview" href="{html.escape(href)}">preview</a>'
        else:
            page = render(message)
            if page is not None:
                text += (
                    f'<br><iframe class="smtpd-preview" sandbox style="width:100%;height:400px;border:1px solid #ccc"'
                    f' srcdoc="{html.escape(page, quote=True)}"></iframe>'
                )
        items.append(f"<li>{text}</li>")
    return f'<div class="smtpd-messages"><p>smtpd: {len(messages)} message(s)</p><ul>{"".join(items)}</ul></div>'
