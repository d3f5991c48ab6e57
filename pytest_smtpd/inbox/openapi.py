"""The OpenAPI 3.1 description of the inbox's REST API, served at
``/api/openapi.json`` (data only: the routes are in ``app``)."""

from __future__ import annotations

from typing import Any

from .. import __version__

__all__ = ["openapi"]

_CRITERIA = [
    ("to", "an address in To, Cc or the envelope (with an @: that address; without: containing it)"),
    ("from", "the From address or the envelope sender (as for to)"),
    ("subject", "the subject contains this, in any case"),
    ("text", "the text or HTML body contains this, in any case"),
    ("has", "attachment: only messages with an attachment"),
    ("test", "the pytest node id contains this (pytest --smtpd-web)"),
    ("q", "the UI's search syntax: to:, from:, subject:, text:, has:attachment, test: terms and free words"),
]


def _parameters(*extra: tuple[str, str, str]) -> list[dict[str, Any]]:
    found = [
        {"name": name, "in": "query", "required": False, "description": text, "schema": {"type": "string"}}
        for name, text in _CRITERIA
    ]
    for name, kind, text in extra:
        found.append({"name": name, "in": "query", "required": False, "description": text, "schema": {"type": kind}})
    return found


def _id(name: str = "id") -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "integer"}}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(description: str, schema: str | None = None) -> dict[str, Any]:
    content: dict[str, Any] = {"schema": {"$ref": f"#/components/schemas/{schema}"}} if schema else {"schema": {}}
    return {"description": description, "content": {"application/json": content}}


_ERRORS = {
    "400": _json("a bad criterion or parameter, named in the message", "Error"),
    "404": _json("no message with that id", "Error"),
}

_SUMMARY = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "mail_from": {"type": "string", "description": "the envelope sender, empty for <>"},
        "rcpt_tos": {"type": "array", "items": {"type": "string"}},
        "from": {"type": ["string", "null"]},
        "to": {"type": "array", "items": {"type": "string"}},
        "subject": {"type": ["string", "null"]},
        "date": {"type": ["string", "null"], "description": "the Date header as written"},
        "size": {"type": "integer"},
        "attachments": {"type": "integer", "description": "how many"},
        "received_at": {"type": "string", "format": "date-time"},
        "tls": {"type": "boolean"},
        "test": {"type": ["string", "null"]},
        "outcome": {"type": ["string", "null"]},
        "session": {"type": ["integer", "null"]},
    },
}


def openapi() -> dict[str, Any]:
    """The API description."""
    message = {
        "get": {
            "summary": "one message, in full",
            "parameters": [_id()],
            "responses": {"200": _json("the message", "Message"), "404": _ERRORS["404"]},
        },
        "delete": {
            "summary": "delete one message",
            "parameters": [_id()],
            "responses": {"200": _json("deleted"), "404": _ERRORS["404"]},
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "pytest-smtpd dev inbox", "version": __version__},
        "paths": {
            "/api/messages": {
                "get": {
                    "summary": "the messages matching the criteria, newest first",
                    "parameters": _parameters(
                        ("limit", "integer", "at most this many (default 50, at most 1000)"),
                        ("offset", "integer", "skip this many first"),
                    ),
                    "responses": {"200": _json("a page", "Page"), "400": _ERRORS["400"]},
                },
                "delete": {"summary": "delete every message", "responses": {"200": _json("how many")}},
            },
            "/api/messages/{id}": message,
            "/api/messages/{id}/raw": {
                "get": {
                    "summary": "the message as received",
                    "parameters": [_id()],
                    "responses": {"200": {"description": "the bytes", "content": {"message/rfc822": {}}}},
                }
            },
            "/api/messages/{id}/html": {
                "get": {
                    "summary": "the HTML body, under a Content-Security-Policy that blocks scripts and, "
                    "unless remote=1, remote content",
                    "parameters": [_id(), {"name": "remote", "in": "query", "schema": {"type": "integer"}}],
                    "responses": {"200": {"description": "the HTML", "content": {"text/html": {}}}},
                }
            },
            "/api/messages/{id}/attachments/{n}": {
                "get": {
                    "summary": "attachment n (from 0, as listed in the message's attachments)",
                    "parameters": [_id(), _id("n")],
                    "responses": {"200": {"description": "its content, with its type"}, "404": _ERRORS["404"]},
                }
            },
            "/api/messages/{id}/release": {
                "post": {
                    "summary": "relay the message to an SMTP server (STARTTLS when offered)",
                    "parameters": [_id()],
                    "requestBody": {"content": {"application/json": {"schema": _ref("Release")}}},
                    "responses": {
                        "200": _json("the upstream server accepted it"),
                        "502": _json("the upstream server refused it, or could not be reached"),
                        "400": _ERRORS["400"],
                        "404": _ERRORS["404"],
                    },
                }
            },
            "/api/wait": {
                "get": {
                    "summary": "wait for a message matching the criteria (the newest one already here, or the "
                    "first to arrive)",
                    "parameters": _parameters(("timeout", "number", "seconds to wait (default 10, at most 300)")),
                    "responses": {
                        "200": _json("the message's summary", "Summary"),
                        "408": _json("none came: what did arrive"),
                        "400": _ERRORS["400"],
                    },
                }
            },
            "/api/sessions": {"get": {"summary": "every session kept, oldest first", "responses": {"200": _json("")}}},
            "/api/sessions/{id}": {
                "get": {
                    "summary": "one session with its SMTP transcript",
                    "parameters": [_id()],
                    "responses": {"200": _json("the session"), "404": _ERRORS["404"]},
                }
            },
            "/api/events": {
                "get": {
                    "summary": "server-sent events: message (id, envelope, size, time), deleted and cleared (ids), "
                    "test (an outcome)",
                    "responses": {"200": {"description": "the stream", "content": {"text/event-stream": {}}}},
                }
            },
            "/api/tests": {"get": {"summary": "test outcomes by node id", "responses": {"200": _json("")}}},
            "/healthz": {"get": {"summary": "liveness", "responses": {"200": _json("ok")}}},
        },
        "components": {
            "schemas": {
                "Summary": _SUMMARY,
                "Page": {
                    "type": "object",
                    "properties": {
                        "total": {"type": "integer"},
                        "messages": {"type": "array", "items": {"$ref": "#/components/schemas/Summary"}},
                    },
                },
                "Message": {
                    "allOf": [
                        {"$ref": "#/components/schemas/Summary"},
                        {
                            "type": "object",
                            "properties": {
                                "headers": {"type": "array", "items": {"type": "array", "items": {"type": "string"}}},
                                "text": {"type": ["string", "null"]},
                                "html": {"type": ["string", "null"]},
                                "attachments": {
                                    "type": "array",
                                    "items": {
                                        "type": "object",
                                        "properties": {
                                            "index": {"type": "integer"},
                                            "name": {"type": ["string", "null"]},
                                            "type": {"type": "string"},
                                            "size": {"type": "integer"},
                                        },
                                    },
                                },
                                "envelope": {"type": "object"},
                                "mail_options": {"type": "array", "items": {"type": "string"}},
                            },
                        },
                    ]
                },
                "Release": {
                    "type": "object",
                    "properties": {
                        "to": {"type": "array", "items": {"type": "string"}},
                        "host": {"type": "string"},
                        "port": {"type": "integer"},
                    },
                },
                "Error": {"type": "object", "properties": {"error": {"type": "string"}}},
            }
        },
    }
