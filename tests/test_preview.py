"""The HTML preview: built from mail sent through a real socket, opened in a
real headless Chromium (Selenium, Debian's chromium and chromedriver), where
it shows the HTML part and its cid: image and asks a loopback HTTP server for
nothing; written beside the .eml of a failing test, and linked or embedded in
its pytest-html report."""

from __future__ import annotations

import http.server
import smtplib
import struct
import threading
import zlib
from collections.abc import Iterator
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Any

import pytest
from peers import require_program
from pytester_helpers import INI

from pytest_smtpd.assertions import FixtureServer
from pytest_smtpd.preview import CSP, render, write_preview


def png(width: int, height: int) -> bytes:
    """A small red PNG image."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


class Recorder(http.server.BaseHTTPRequestHandler):
    """Answers every GET with a tiny image, noting the path asked for."""

    asked: list[str]
    asked_event: threading.Event

    def do_GET(self) -> None:
        self.asked.append(self.path)
        self.asked_event.set()
        body = png(1, 1)
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def web() -> Iterator[tuple[str, Any]]:
    """A loopback HTTP server: (its base URL, its handler class with ``asked``)."""
    handler = type("Handler", (Recorder,), {"asked": [], "asked_event": threading.Event()})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """Headless Chromium driven by Selenium, with the system chromedriver."""
    binary = require_program("chromium", "chromium")
    driver_path = require_program("chromedriver", "chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def newsletter(base_url: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"], msg["To"] = "Shop <shop@example.test>", "bob@example.test"
    msg["Subject"], msg["Date"], msg["Message-ID"] = "Your <weekly> news", formatdate(), make_msgid()
    msg.set_content("This week: shoes.\n")
    msg.add_alternative(
        f'<html><head><link rel="stylesheet" href="{base_url}/style.css">'
        f'<meta http-equiv="refresh" content="0; url={base_url}/refresh"></head>'
        f'<body style="background: url({base_url}/background.png)">'
        '<p id="greeting">This week: <b>shoes</b>.</p>'
        '<img id="logo" src="cid:logo@example.test" alt="logo">'
        f'<img id="tracker" src="{base_url}/pixel.png" alt="">'
        f'<img id="srcset" srcset="{base_url}/big.png 2x" alt="">'
        "<script>document.title = 'scripted'</script>"
        "</body></html>",
        subtype="html",
    )
    parts = msg.get_payload()
    assert isinstance(parts, list)
    html_part = parts[1]
    assert isinstance(html_part, EmailMessage)
    html_part.add_related(png(3, 2), maintype="image", subtype="png", cid="<logo@example.test>")
    return msg


def send(server: FixtureServer, msg: EmailMessage) -> None:
    with smtplib.SMTP(server.host, server.port, timeout=10) as client:
        client.send_message(msg, from_addr="bounce@example.test")


def test_the_page(smtpd: FixtureServer, web: tuple[str, Any]) -> None:
    send(smtpd, newsletter(web[0]))
    page = render(smtpd.messages[0])
    assert page is not None
    assert f'<meta http-equiv="Content-Security-Policy" content="{CSP}">' in page
    assert "<tr><th>Envelope from</th><td>&lt;bounce@example.test&gt;</td></tr>" in page
    assert "<tr><th>Subject</th><td>Your &lt;weekly&gt; news</td></tr>" in page
    assert "data:image/png;base64," in page
    assert "cid:" not in page
    # The img src, the srcset, the body's background, the refresh.
    assert "4 remote resource(s) not loaded." in page


def test_no_preview_without_html(smtpd: FixtureServer, tmp_path: Path) -> None:
    with smtplib.SMTP(smtpd.host, smtpd.port, timeout=10) as client:
        client.sendmail("a@example.test", ["b@example.test"], b"Subject: plain\r\n\r\nbody\r\n")
    assert render(smtpd.messages[0]) is None
    assert write_preview(smtpd.messages[0], tmp_path / "x.html") is False
    assert not (tmp_path / "x.html").exists()


def test_chromium_renders_it_and_loads_nothing(
    smtpd: FixtureServer, web: tuple[str, Any], chromium: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    base_url, handler = web
    send(smtpd, newsletter(base_url))
    path = tmp_path / "preview.html"
    assert write_preview(smtpd.messages[0], path)
    chromium.get(path.as_uri())
    headers = chromium.find_element(By.CLASS_NAME, "smtpd-headers").text
    assert "Envelope from <bounce@example.test>" in headers
    assert "Subject Your <weekly> news" in headers
    assert chromium.title == "Your <weekly> news"
    chromium.switch_to.frame(chromium.find_element(By.TAG_NAME, "iframe"))
    try:
        assert chromium.find_element(By.ID, "greeting").text == "This week: shoes."
        logo = chromium.find_element(By.ID, "logo")
        # The cid: image, embedded, is there at its size (complete when the page's load event fired).
        assert chromium.execute_script("return [arguments[0].complete, arguments[0].naturalWidth]", logo) == [True, 3]
        tracker = chromium.find_element(By.ID, "tracker")
        assert chromium.execute_script("return arguments[0].naturalWidth", tracker) == 0
    finally:
        chromium.switch_to.default_content()
    assert chromium.title == "Your <weekly> news"  # the sandbox ran no script
    # The same browser does reach the server from a plain page: the
    # recorder would have seen the preview's requests too.
    control = tmp_path / "control.html"
    control.write_text(f'<img src="{base_url}/control.png">', encoding="utf-8")
    chromium.get(control.as_uri())
    assert handler.asked_event.wait(10)
    assert handler.asked == ["/control.png"]


SAVE_TEST = """
import smtplib
from email.message import EmailMessage


def test_fails(smtpd):
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "shop@example.test", "bob@example.test", "Sale"
    msg.set_content("Sale!")
    msg.add_alternative("<p>Sale!</p>", subtype="html")
    with smtplib.SMTP(smtpd.host, smtpd.port) as client:
        client.send_message(msg)
        client.sendmail("a@example.test", ["b@example.test"], b"Subject: plain\\r\\n\\r\\nbody\\r\\n")
    assert False
"""


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeini(INI)
    pytester.makepyfile(test_mail=SAVE_TEST)
    return pytester


def test_save_dir_writes_a_preview_beside_each_html_message(project: pytest.Pytester) -> None:
    project.runpytest_inprocess("--smtpd-save-dir=saved", "-p", "no:html").assert_outcomes(failed=1)
    names = sorted(path.name for path in (project.path / "saved").iterdir())
    assert names == [
        "test_mail.py__test_fails-1.eml",
        "test_mail.py__test_fails-1.html",
        "test_mail.py__test_fails-2.eml",
        "test_mail.py__test_fails.mbox",
    ]
    page = (project.path / "saved" / "test_mail.py__test_fails-1.html").read_text(encoding="utf-8")
    assert "<tr><th>Subject</th><td>Sale</td></tr>" in page
    assert "&lt;p&gt;Sale!&lt;/p&gt;" in page


def test_pytest_html_report_links_the_preview(project: pytest.Pytester) -> None:
    project.runpytest_inprocess("--smtpd-save-dir=saved", "--html=reports/report.html").assert_outcomes(failed=1)
    report = (project.path / "reports" / "report.html").read_text(encoding="utf-8")
    assert "smtpd: 2 message(s)" in report
    assert "#1 from &amp;lt;shop@example.test&amp;gt; to bob@example.test: &amp;#x27;Sale&amp;#x27;" in report
    assert "../saved/test_mail.py__test_fails-1.html" in report


def test_pytest_html_report_embeds_the_preview_without_save_dir(project: pytest.Pytester) -> None:
    project.runpytest_inprocess("--html=report.html").assert_outcomes(failed=1)
    report = (project.path / "report.html").read_text(encoding="utf-8")
    assert "smtpd: 2 message(s)" in report
    assert "smtpd-preview" in report and "srcdoc=" in report
    assert not (project.path / "saved").exists()
