"""The dev inbox from the command line: ``python -m pytest_smtpd --web``
subprocesses receiving mail from smtplib, read through the REST API; the
SQLite store surviving a kill -9; the flags' usage errors; the token; and
that nothing of aiohttp is imported without the inbox."""

from __future__ import annotations

import re
import smtplib
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from inbox_helpers import Http, make_message
from peers import TIMEOUT, Spawned

from pytest_smtpd import cli, inbox

pytest.importorskip("aiohttp")

INBOX_LINE = r"listening on 127\.0\.0\.1:(\d+).*; dev inbox at (http://127\.0\.0\.1:\d+/\S*?)[;,]"


def start_cli(*flags: str) -> tuple[Spawned, tuple[str, int], str]:
    proc = Spawned.python("-m", "pytest_smtpd", "-n", "--web", "127.0.0.1:0", *flags, "127.0.0.1:0")
    match = proc.expect(INBOX_LINE, "stderr", timeout=30)
    return proc, ("127.0.0.1", int(match.group(1))), match.group(2)


def send(address: tuple[str, int], subject: str) -> None:
    with smtplib.SMTP(*address, timeout=TIMEOUT) as client:
        client.send_message(make_message(subject))


def test_the_cli_serves_the_inbox_beside_the_debugging_server() -> None:
    proc, smtp, url = start_cli()
    with proc:
        send(smtp, "through the cli")
        http = Http(url)
        page = http.get("/api/messages")
        assert [m["subject"] for m in page["messages"]] == ["through the cli"]
        assert http.get("/healthz") == {"status": "ok"}
        # Still the debugging server: the message is printed too.
        proc.expect("Subject: through the cli")
        assert proc.interrupt() == 0


def test_without_web_the_cli_line_is_as_before() -> None:
    with Spawned.python("-m", "pytest_smtpd", "-n", "127.0.0.1:0") as proc:
        line = proc.expect(r"listening on", "stderr").string
        assert "inbox" not in line
        assert proc.interrupt() == 0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--store", "x.sqlite"], "--store is for the dev inbox: give --web [HOST:]PORT too"),
        (["--max-messages", "5"], "--max-messages is for the dev inbox"),
        (["--web-token", "t"], "--web-token is for the dev inbox"),
        (["--release-to", "mx:25"], "--release-to is for the dev inbox"),
        (["--web", "192.0.2.1:8080"], "give --allow-remote and --web-token TOKEN"),
        (["--web", "192.0.2.1:8080", "--allow-remote"], "give --allow-remote and --web-token TOKEN"),
        (["--web", "localhost"], "no port"),
        (["--web", "8080", "--max-messages", "0"], "invalid number: '0'"),
    ],
)
def test_inbox_usage_errors(capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    assert cli.main(["-n", *argv]) == 2
    assert message in capsys.readouterr().err


def test_web_without_the_extra_says_which_to_install(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(inbox, "available", lambda: False)
    assert cli.main(["-n", "--web", "0", "127.0.0.1:0"]) == 1
    assert "pip install 'pytest-smtpd[web]'" in capsys.readouterr().err


def test_web_without_aiohttp_in_a_subprocess() -> None:
    code = (
        "import sys; sys.modules['aiohttp'] = None\n"
        "from pytest_smtpd import cli\n"
        "sys.exit(cli.main(['-n', '--web', '0', '127.0.0.1:0']))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done
    assert "the dev inbox needs the web extra: pip install 'pytest-smtpd[web]'" in done.stderr


def test_nothing_of_aiohttp_is_imported_by_the_plugin_or_the_cli() -> None:
    code = (
        "import sys\n"
        "import pytest_smtpd, pytest_smtpd.plugin, pytest_smtpd.cli, pytest_smtpd.inbox\n"
        "from pytest_smtpd import cli\n"
        "cli.build_parser().parse_args(['--web', '8080'])\n"
        "loaded = sorted(name for name in sys.modules if name.split('.')[0] in ('aiohttp', 'multidict', 'yarl'))\n"
        "assert not loaded, loaded\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_a_token_is_required_as_bearer_or_cookie() -> None:
    proc, smtp, url = start_cli("--web-token", "s3cret")
    with proc:
        assert url.endswith("/?token=s3cret")
        base = url.split("?")[0]
        send(smtp, "secret mail")
        anonymous = Http(base)
        assert "token" in anonymous.get("/api/messages", expect=401)["error"]
        assert anonymous.get("/api/messages", expect=401, headers={"Authorization": "Bearer wrong"})
        assert Http(base, token="s3cret").get("/api/messages")["total"] == 1
        # Opening the printed URL sets the cookie and goes to the UI.
        import http.client

        connection = http.client.HTTPConnection("127.0.0.1", int(base.rsplit(":", 1)[1].strip("/")), timeout=TIMEOUT)
        connection.request("GET", "/?token=s3cret")
        response = connection.getresponse()
        response.read()
        assert response.status == 303
        assert response.getheader("Location") == "/"
        cookie = response.getheader("Set-Cookie")
        assert cookie is not None and "HttpOnly" in cookie and "SameSite=Strict" in cookie
        connection.close()
        value = cookie.split(";")[0]
        assert anonymous.get("/api/messages", headers={"Cookie": value})["total"] == 1
        assert proc.interrupt() == 0


def test_a_foreign_host_name_is_refused_on_loopback() -> None:
    """A page whose name was made to point at 127.0.0.1 (DNS rebinding) gets nothing."""
    proc, _, url = start_cli()
    with proc:
        http = Http(url)
        assert "loopback" in http.get("/api/messages", expect=403, headers={"Host": "evil.example:80"})["error"]
        assert http.get("/api/messages", headers={"Host": "localhost"})["total"] == 0
        # Another origin cannot delete (a form posted from a page elsewhere).
        answer = http.json("DELETE", "/api/messages", expect=403, headers={"Origin": "http://evil.example"})
        assert "another origin" in answer["error"]
        assert proc.interrupt() == 0


def test_web_inbox_refuses_a_remote_address_without_allow_remote_and_token() -> None:
    from pytest_smtpd.inbox.hub import Inbox
    from pytest_smtpd.inbox.web import WebInbox

    with pytest.raises(ValueError, match="--allow-remote"):
        WebInbox(Inbox(), "192.0.2.1", 8080)
    with pytest.raises(ValueError, match="needs a token"):
        WebInbox(Inbox(), "192.0.2.1", 8080, allow_remote=True)
    assert WebInbox(Inbox(), "192.0.2.1", 8080, allow_remote=True, token="t").url == "http://192.0.2.1:8080/?token=t"


def test_every_message_answered_250_survives_kill_9(tmp_path: Path) -> None:
    store = tmp_path / "inbox.sqlite"
    proc, smtp, url = start_cli("--store", str(store))
    acknowledged: list[str] = []
    stop = threading.Event()

    def sender() -> None:
        number = 0
        while not stop.is_set() and number < 2000:
            subject = f"message {number}"
            try:
                with smtplib.SMTP(*smtp, timeout=TIMEOUT) as client:
                    client.send_message(make_message(subject))
                    acknowledged.append(subject)  # the 250 to the data has come
            except (smtplib.SMTPException, OSError):
                return
            number += 1

    with proc:
        thread = threading.Thread(target=sender, daemon=True)
        thread.start()
        http = Http(url)
        # Killed mid-stream, once some mail is in.
        http.get("/api/wait?subject=message+20&timeout=30")
        proc.proc.kill()
        proc.wait()
        stop.set()
        thread.join(TIMEOUT * 2)
    assert len(acknowledged) >= 21
    restarted, _, url = start_cli("--store", str(store))
    with restarted:
        page = Http(url).get("/api/messages?limit=1000")
        kept = {m["subject"] for m in page["messages"]}
        assert set(acknowledged) <= kept, sorted(set(acknowledged) - kept)
        assert restarted.interrupt() == 0


def test_a_store_that_is_not_sqlite_is_an_error(tmp_path: Path) -> None:
    bad = tmp_path / "not.sqlite"
    bad.write_bytes(b"this is not a database" * 100)
    done = subprocess.run(
        [sys.executable, "-m", "pytest_smtpd", "-n", "--web", "127.0.0.1:0", "--store", str(bad), "127.0.0.1:0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert re.search(r"error: --web: --store .*cannot use it as a SQLite file", done.stderr), done.stderr
