"""The dev inbox's REST API through a real HTTP client (urllib) against an
in-process inbox over a running Server, with mail sent by smtplib."""

from __future__ import annotations

import json
import smtplib
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from inbox_helpers import Http, Running, running, running_inbox

from pytest_smtpd import Server
from pytest_smtpd.inbox.store import SQLiteStore

pytest.importorskip("aiohttp")

__all__ = ["running"]


def test_healthz_and_openapi(running: Running) -> None:
    assert running.http.get("/healthz") == {"status": "ok"}
    spec = running.http.get("/api/openapi.json")
    assert spec["openapi"].startswith("3.")
    for path in [
        "/api/messages",
        "/api/messages/{id}",
        "/api/messages/{id}/raw",
        "/api/messages/{id}/attachments/{n}",
        "/api/messages/{id}/release",
        "/api/wait",
        "/api/sessions",
        "/api/sessions/{id}",
        "/api/events",
        "/healthz",
    ]:
        assert path in spec["paths"], path


def test_list_is_newest_first_with_the_summary_fields(running: Running) -> None:
    running.send("first")
    running.send("second", attachments=[("report.pdf", b"%PDF-1.4", "application/pdf")])
    page = running.http.get("/api/messages")
    assert page["total"] == 2
    assert [m["subject"] for m in page["messages"]] == ["second", "first"]
    summary = page["messages"][0]
    for field in ["id", "mail_from", "rcpt_tos", "from", "to", "subject", "date", "size", "attachments", "received_at"]:
        assert field in summary, field
    assert summary["mail_from"] == "app@example.com"
    assert summary["rcpt_tos"] == ["bob@example.com"]
    assert summary["from"] == "app@example.com"
    assert summary["to"] == ["bob@example.com"]
    assert summary["attachments"] == 1
    assert summary["size"] == len(running.server.messages[1].data)
    assert summary["received_at"].endswith("+00:00")
    assert page["messages"][1]["attachments"] == 0


def test_limit_and_offset_page_the_list(running: Running) -> None:
    for number in range(5):
        running.send(f"message {number}")
    page = running.http.get("/api/messages?limit=2&offset=1")
    assert page["total"] == 5
    assert [m["subject"] for m in page["messages"]] == ["message 3", "message 2"]
    assert running.http.get("/api/messages?limit=0")["messages"] == []


@pytest.mark.parametrize(
    ("query", "subjects"),
    [
        ("to=carol@example.com", ["for carol"]),
        ("to=CAROL@EXAMPLE.COM", []),  # the local part as written, as assert_sent compares
        ("to=carol", ["for carol"]),
        ("from=billing@shop.example", ["invoice"]),
        ("subject=INVOICE", ["invoice"]),
        ("text=unsubscribe", ["newsletter"]),
        ("has=attachment", ["invoice"]),
        ("q=subject:invoice+has:attachment", ["invoice"]),
        ("q=from:billing+carol", []),
        ("q=newsletter", ["newsletter"]),
        ("q=%22for+carol%22", ["for carol"]),
    ],
)
def test_criteria_narrow_the_list(running: Running, query: str, subjects: list[str]) -> None:
    running.send("for carol", to="carol@example.com")
    running.send(
        "invoice",
        sender="billing@shop.example",
        attachments=[("invoice.pdf", b"%PDF", "application/pdf")],
    )
    running.send("newsletter", html="<p>News. <a href='https://x.test/u'>unsubscribe</a></p>")
    page = running.http.get(f"/api/messages?{query}")
    assert [m["subject"] for m in page["messages"]] == subjects
    assert page["total"] == len(subjects)


@pytest.mark.parametrize(
    ("query", "named"),
    [("colour=red", "colour"), ("has=wings", "has"), ("limit=many", "limit"), ("offset=-1", "offset")],
)
def test_a_bad_criterion_is_a_400_naming_it(running: Running, query: str, named: str) -> None:
    answer = running.http.get(f"/api/messages?{query}", expect=400)
    assert named in answer["error"]


def test_the_full_view_raw_and_attachment(running: Running) -> None:
    running.send(
        "with parts",
        html="<p>Hi <b>Bob</b></p>",
        attachments=[("données.csv", b"a,b\r\n1,2\r\n", "text/csv"), ("logo.png", b"\x89PNG\r\n", "image/png")],
    )
    [summary] = running.http.get("/api/messages")["messages"]
    view = running.http.get(f"/api/messages/{summary['id']}")
    assert view["subject"] == "with parts"
    assert ["Subject", "with parts"] in view["headers"]
    assert view["text"] == "Hello, Bob.\n"
    assert "<b>Bob</b>" in view["html"]
    assert view["attachments"] == [
        {"index": 0, "name": "données.csv", "type": "text/csv", "size": 10},
        {"index": 1, "name": "logo.png", "type": "image/png", "size": 6},
    ]
    assert view["envelope"]["mail_from"] == "app@example.com"
    assert view["envelope"]["rcpt_tos"] == ["bob@example.com"]
    assert view["mail_options"] == running.server.messages[0].mail_options
    assert view["session"] == 1

    status, headers, raw = running.http.request("GET", f"/api/messages/{summary['id']}/raw")
    assert status == 200
    assert headers["Content-Type"] == "message/rfc822"
    assert raw == running.server.messages[0].data

    status, headers, content = running.http.request("GET", f"/api/messages/{summary['id']}/attachments/1")
    assert (status, content) == (200, b"\x89PNG\r\n")
    assert headers["Content-Type"] == "image/png"
    assert headers["Content-Disposition"].startswith('attachment; filename="logo.png"')
    status, headers, content = running.http.request("GET", f"/api/messages/{summary['id']}/attachments/0")
    assert "filename*=UTF-8''donn%C3%A9es.csv" in headers["Content-Disposition"]
    assert running.http.get(f"/api/messages/{summary['id']}/attachments/2", expect=404)["error"]


@pytest.mark.parametrize("path", ["/api/messages/999", "/api/messages/abc", "/api/messages/999/raw", "/api/sessions/7"])
def test_unknown_ids_are_json_404s(running: Running, path: str) -> None:
    assert "error" in running.http.get(path, expect=404)


def test_an_unknown_path_is_a_json_404(running: Running) -> None:
    assert "/api/nothing" in running.http.get("/api/nothing", expect=404)["error"]


def test_delete_one_and_all(running: Running) -> None:
    for number in range(3):
        running.send(f"message {number}")
    first, second, third = sorted(m["id"] for m in running.http.get("/api/messages")["messages"])
    assert running.http.json("DELETE", f"/api/messages/{second}") == {"deleted": 1}
    assert running.http.json("DELETE", f"/api/messages/{second}", expect=404)["error"]
    assert [m["id"] for m in running.http.get("/api/messages")["messages"]] == [third, first]
    assert running.http.json("DELETE", "/api/messages") == {"deleted": 2}
    assert running.http.get("/api/messages") == {"total": 0, "messages": []}


def test_wait_answers_at_once_for_a_message_already_here(running: Running) -> None:
    running.send("welcome", to="new@example.com")
    found = running.http.get("/api/wait?to=new@example.com&timeout=5")
    assert found["subject"] == "welcome"


def test_wait_blocks_until_a_matching_message_arrives(running: Running) -> None:
    running.send("unrelated")
    answer: dict[str, Any] = {}
    waiting = threading.Thread(
        target=lambda: answer.update(running.http.get("/api/wait?subject=reset&timeout=10")), daemon=True
    )
    waiting.start()
    # The wait is registered once the inbox has a waiter; mail sent before
    # would be found by the first look all the same.
    deadline = time.monotonic() + 10
    while not running.inbox._waiters and time.monotonic() < deadline:
        waiting.join(0.01)
    running.send("Password reset")
    waiting.join(10)
    assert answer["subject"] == "Password reset"


def test_wait_times_out_with_408_saying_what_arrived(running: Running) -> None:
    running.send("unrelated")
    started = time.monotonic()
    answer = running.http.get("/api/wait?subject=never&timeout=0.3", expect=408)
    assert time.monotonic() - started >= 0.3
    assert answer["total"] == 1
    assert [m["subject"] for m in answer["messages"]] == ["unrelated"]
    assert "0.3s" in answer["error"]
    assert "timeout" in running.http.get("/api/wait?timeout=soon", expect=400)["error"]


def test_sessions_with_transcripts(running: Running) -> None:
    running.send("one")
    sessions = running.http.get("/api/sessions")
    assert sessions["total"] == 1
    [session] = sessions["sessions"]
    assert session["commands"][:4] == ["EHLO", "MAIL", "RCPT", "DATA"]
    assert session["messages"] == [1]
    full = running.http.get(f"/api/sessions/{session['id']}")
    lines = [entry["line"] for entry in full["transcript"]]
    assert lines[0].startswith("220 ")
    assert any(line.lower().startswith("mail from:<app@example.com>") for line in lines)  # FROM: before 3.13
    assert {entry["direction"] for entry in full["transcript"]} == {"client", "server"}


def test_a_refused_message_is_not_kept_but_its_session_is() -> None:
    for run in running_inbox():
        run.server.handler = lambda message: "550 No such user"
        with pytest.raises(Exception, match="No such user"):
            run.send("refused")
        assert run.http.get("/api/messages")["total"] == 0
        [session] = run.http.get("/api/sessions")["sessions"]
        assert session["messages"] == []
        lines = [entry["line"] for entry in run.http.get(f"/api/sessions/{session['id']}")["transcript"]]
        assert "550 No such user" in lines


def _events(http: Http, count: int, ready: threading.Event) -> list[tuple[str, Any]]:
    import urllib.request

    request = urllib.request.Request(http.base + "/api/events")
    found: list[tuple[str, Any]] = []
    with urllib.request.urlopen(request, timeout=10) as stream:
        assert stream.headers["Content-Type"] == "text/event-stream"
        kind = None
        for raw in stream:
            line = raw.decode().rstrip("\n")
            if line.startswith(": "):
                ready.set()
            elif line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                found.append((kind or "", json.loads(line[6:])))
                if len(found) == count:
                    return found
    return found


def test_events_stream_new_and_deleted_messages(running: Running) -> None:
    ready = threading.Event()
    result: list[list[tuple[str, Any]]] = []
    reader = threading.Thread(target=lambda: result.append(_events(running.http, 3, ready)), daemon=True)
    reader.start()
    assert ready.wait(10)
    running.send("live")
    deadline = time.monotonic() + 10
    while running.http.get("/api/messages")["total"] == 0 and time.monotonic() < deadline:
        reader.join(0.01)
    running.http.json("DELETE", "/api/messages/1")
    running.http.json("DELETE", "/api/messages")
    reader.join(10)
    [events] = result
    assert events[0][0] == "message"
    assert events[0][1]["id"] == 1
    assert events[0][1]["mail_from"] == "app@example.com"
    assert events[0][1]["rcpt_tos"] == ["bob@example.com"]
    assert events[1] == ("deleted", {"ids": [1]})
    assert events[2] == ("cleared", {"ids": []})


def test_the_ui_is_served_with_a_strict_policy(running: Running) -> None:
    status, headers, body = running.http.request("GET", "/")
    assert status == 200
    assert b"<title>pytest-smtpd inbox</title>" in body
    policy = headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy
    assert "default-src 'none'" in policy
    assert "unsafe-inline" not in policy
    for name in ["app.js", "style.css"]:
        status, headers, _ = running.http.request("GET", f"/static/{name}")
        assert status == 200, name
    assert running.http.request("GET", "/static/../app.py")[0] == 404


def test_max_messages_drops_the_oldest() -> None:
    from pytest_smtpd.inbox.store import MemoryStore

    for run in running_inbox(MemoryStore(max_messages=2)):
        for number in range(3):
            run.send(f"message {number}")
        page = run.http.get("/api/messages")
        assert [m["subject"] for m in page["messages"]] == ["message 2", "message 1"]


def test_sqlite_store_serves_the_same_api(tmp_path: Path) -> None:
    for run in running_inbox(SQLiteStore(tmp_path / "inbox.sqlite")):
        run.send("kept", attachments=[("a.txt", b"A", "text/plain")])
        [summary] = run.http.get("/api/messages?has=attachment")["messages"]
        assert run.http.get(f"/api/messages/{summary['id']}")["attachments"][0]["name"] == "a.txt"
        assert run.http.get(f"/api/sessions/{summary['session']}")["messages"] == [summary["id"]]
    # The file outlives the inbox: the message and its session are read back.
    for run in running_inbox(SQLiteStore(tmp_path / "inbox.sqlite")):
        [summary] = run.http.get("/api/messages")["messages"]
        assert summary["subject"] == "kept"
        status, _, raw = run.http.request("GET", f"/api/messages/{summary['id']}/raw")
        assert status == 200
        assert b"Subject: kept" in raw
        assert run.http.get(f"/api/sessions/{summary['session']}")["transcript"][0]["line"].startswith("220 ")


def test_release_relays_to_an_upstream_with_starttls() -> None:
    with Server(tls="starttls") as upstream:
        for run in running_inbox(release_context=upstream.client_context()):
            run.send("to release", to="bob@example.com")
            body = {"to": ["real@example.org"], "host": upstream.host, "port": upstream.port}
            released = run.http.json("POST", "/api/messages/1/release", body)
            assert released["ok"] is True
            assert released["code"] == 250
            assert released["tls"] is True
            [message] = upstream.messages
            assert message.rcpt_tos == ["real@example.org"]
            assert message.mail_from == "app@example.com"
            assert message.data == run.server.messages[0].data
            assert message.tls is not None


def test_release_answers_with_the_upstream_refusal(running: Running) -> None:
    running.send("to release")
    with Server(handler=lambda message: "554 5.7.1 Rejected by policy") as upstream:
        body = {"host": upstream.host, "port": upstream.port}
        released = running.http.json("POST", "/api/messages/1/release", body, expect=502)
        assert (released["ok"], released["code"], released["tls"]) == (False, 554, False)
        assert "Rejected by policy" in released["message"]
        assert upstream.messages == []


def test_release_goes_to_the_default_upstream_and_to_the_envelope_recipients() -> None:
    with Server() as upstream:
        for run in running_inbox(release_to=upstream.address):
            run.send("default", to=["one@example.com", "two@example.com"])
            assert run.http.json("POST", "/api/messages/1/release", {})["ok"] is True
            assert upstream.messages[0].rcpt_tos == ["one@example.com", "two@example.com"]


@pytest.mark.parametrize(
    ("body", "named"),
    [({"to": "bob@example.com", "host": "127.0.0.1", "port": 25}, "to"), ({"to": ["b@example.com"]}, "host"),
     ({"host": "127.0.0.1", "port": "25"}, "port"), ({"via": "x"}, "via")],
)  # fmt: skip
def test_a_bad_release_request_is_a_400(running: Running, body: dict[str, Any], named: str) -> None:
    running.send("x")
    assert named in running.http.json("POST", "/api/messages/1/release", body, expect=400)["error"]


def test_release_to_a_closed_port_is_a_502(running: Running) -> None:
    from peers import free_port

    running.send("x")
    body = {"host": "127.0.0.1", "port": free_port()}
    answer = running.http.json("POST", "/api/messages/1/release", body, expect=502)
    assert "cannot connect" in answer["message"]


def test_a_messages_html_is_served_under_a_policy_without_script_or_remote_content(running: Running) -> None:
    running.send(
        "hostile",
        html='<meta http-equiv="refresh" content="0;url=http://198.51.100.1/"><link rel=prefetch href="http://x.test/">'
        '<script>alert(1)</script><img src="http://198.51.100.1/pixel.gif"><p>body</p>',
    )
    status, headers, body = running.http.request("GET", "/api/messages/1/html")
    assert status == 200
    assert headers["Content-Type"].startswith("text/html")
    policy = headers["Content-Security-Policy"]
    directives = {}
    for part in policy.split(";"):
        name, _, value = part.strip().partition(" ")
        directives[name] = value
    assert directives["default-src"] == "'none'"
    assert "script-src" not in directives  # default-src 'none' covers it
    assert directives["img-src"] == "data:"
    assert "sandbox" in directives
    assert directives["frame-ancestors"] == "'self'"
    # Requests no policy governs are taken out: a refresh and link hints.
    assert b"refresh" not in body
    assert b"prefetch" not in body
    assert b"<p>body</p>" in body
    _, headers, _ = running.http.request("GET", "/api/messages/1/html?remote=1")
    assert "img-src * data:" in headers["Content-Security-Policy"]
    assert "script" not in headers["Content-Security-Policy"]
    assert "sandbox" in headers["Content-Security-Policy"]


def test_raw_and_attachments_cannot_run_in_the_inbox_origin(running: Running) -> None:
    running.send("attached page", attachments=[("page.html", b"<script>alert(1)</script>", "text/html")])
    for path in ["/api/messages/1/raw", "/api/messages/1/attachments/0", "/api/messages"]:
        _, headers, _ = running.http.request("GET", path)
        assert headers["X-Content-Type-Options"] == "nosniff", path
        assert "sandbox" in headers["Content-Security-Policy"], path
    _, headers, _ = running.http.request("GET", "/api/messages/1/attachments/0")
    assert headers["Content-Disposition"].startswith("attachment;")


def test_html_in_subjects_and_addresses_is_data_in_the_api(running: Running) -> None:
    subject = "<img src=x onerror=alert(1)>"
    # HTML in the display names (Python 3.13's address parser refuses "<script>@example.com" itself).
    running.send(subject, sender='"<b>Eve</b>" <eve@example.com>', to='"<script>" <script@example.com>')
    [summary] = running.http.get("/api/messages")["messages"]
    assert summary["subject"] == subject
    assert running.http.get("/api/messages/1")["headers"][0][1].startswith('"<b>Eve</b>"')


def test_allow_remote_turns_the_host_check_off_and_the_token_is_required() -> None:
    for run in running_inbox(token="t0ken", allow_remote=True):
        foreign = {"Host": "mailbox.internal:8080"}
        assert Http(run.http.base).get("/api/messages", expect=401, headers=foreign)["error"]
        assert Http(run.http.base, token="t0ken").get("/api/messages", headers=foreign)["total"] == 0


def test_images_sent_with_the_message_are_shown_inline(running: Running) -> None:
    from email.message import EmailMessage

    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "app@example.com", "bob@example.com", "logo"
    message.set_content("text")
    message.add_alternative(
        '<p><img src="cid:logo@app.example" alt="logo"> <img src="cid:missing@x"></p>', subtype="html"
    )
    html_part = message.get_body(("html",))
    assert isinstance(html_part, EmailMessage)
    html_part.add_related(b"GIF89a-logo", maintype="image", subtype="gif", cid="<logo@app.example>")
    with smtplib.SMTP(*running.server.address, timeout=10) as client:
        client.send_message(message)
    status, _, body = running.http.request("GET", "/api/messages/1/html")
    assert status == 200
    assert b'src="data:image/gif;base64,R0lGODlhLWxvZ28="' in body
    assert b'src="cid:missing@x"' in body  # unknown: left as it is (and loads nothing)
