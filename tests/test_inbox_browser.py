"""The dev inbox's UI in a real headless Chromium (Debian's chromium and
chromedriver, driven by Selenium): mail sent with smtplib appears in the
open list without a reload, its HTML renders in the sandboxed iframe,
hostile mail runs nothing and fetches nothing from a "remote" host (a
loopback HTTP server standing in for it, which must see no request), search
narrows the list, delete removes. Screenshots of the list and of a message
go to $PYTEST_SMTPD_SCREENSHOTS (CI keeps it), else the test's tmp dir."""

from __future__ import annotations

import http.server
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from inbox_helpers import Running, running_inbox
from peers import require_program

pytest.importorskip("aiohttp")
webdriver = pytest.importorskip("selenium.webdriver")

from selenium.common.exceptions import StaleElementReferenceException, TimeoutException  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

#: Seconds the page gets to show a change.
WAIT = 15.0


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    chromium = require_program("chromium", "chromium")
    driver_path = require_program("chromedriver", "chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,800"]:
        options.add_argument(argument)
    options.add_argument("--disable-gpu")
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=driver_path), options=options)
    driver.set_page_load_timeout(WAIT)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    where = os.environ.get("PYTEST_SMTPD_SCREENSHOTS")
    path = Path(where) if where else tmp_path
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def inbox() -> Iterator[Running]:
    yield from running_inbox()


class Remote:
    """A loopback HTTP server standing in for a remote host: it records every request."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        seen = self.requests

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                seen.append(self.path)
                self.send_response(200)
                self.send_header("Content-Type", "image/gif")
                self.end_headers()
                self.wfile.write(b"GIF89a\x01\x00\x01\x00\x00\x00\x00;")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(WAIT)


@pytest.fixture
def remote() -> Iterator[Remote]:
    server = Remote()
    try:
        yield server
    finally:
        server.close()


def wait_for(driver: Any, what: str, condition: Any) -> Any:
    try:
        return WebDriverWait(driver, WAIT, poll_frequency=0.05).until(lambda _: condition())
    except TimeoutException:
        raise AssertionError(f"the page did not show {what} within {WAIT}s") from None


def subjects(driver: Any) -> list[str]:
    # Read in one script: the list is rebuilt as events come.
    found: list[str] = driver.execute_script(
        "return [...document.querySelectorAll('#list li .subject')].map(e => e.textContent)"
    )
    return found


def classes(driver: Any, subject: str) -> str:
    found: str = driver.execute_script(
        "for (const li of document.querySelectorAll('#list li'))"
        "  if (li.querySelector('.subject').textContent === arguments[0]) return li.className;"
        "return '';",
        subject,
    )
    return found


def click(driver: Any, subject: str) -> None:
    """Click the list item, again if the list was rebuilt under the click."""
    for _ in range(5):
        try:
            found = item(driver, subject)
            assert found is not None, f"no {subject!r} in {subjects(driver)}"
            found.click()
            return
        except StaleElementReferenceException:
            continue
    raise AssertionError(f"the item {subject!r} kept being rebuilt")


def open_ui(driver: Any, inbox: Running) -> None:
    driver.get(f"http://127.0.0.1:{inbox.web.port}/")
    wait_for(driver, "the live status", lambda: driver.find_element(By.ID, "status").text == "live")


def item(driver: Any, subject: str) -> Any:
    for one in driver.find_elements(By.CSS_SELECTOR, "#list li"):
        if one.find_element(By.CSS_SELECTOR, ".subject").text == subject:
            return one
    return None


def test_mail_appears_live_and_its_html_renders(browser: Any, inbox: Running, shots: Path) -> None:
    open_ui(browser, inbox)
    assert subjects(browser) == []
    assert not browser.find_element(By.ID, "view").is_displayed()  # nothing opened yet
    inbox.send("Welcome aboard", html="<h1 id='greeting'>Hello, Bob</h1><p>Your account is ready.</p>")
    inbox.send("Your invoice", attachments=[("invoice.pdf", b"%PDF-1.4", "application/pdf")])
    wait_for(browser, "both messages", lambda: subjects(browser) == ["Your invoice", "Welcome aboard"])
    assert "unread" in classes(browser, "Welcome aboard")
    assert "1 file" in browser.execute_script("return document.querySelector('#list li').textContent")
    browser.save_screenshot(str(shots / "inbox-list.png"))

    click(browser, "Welcome aboard")
    wait_for(browser, "the message view", lambda: browser.find_element(By.ID, "v-subject").text == "Welcome aboard")
    frame = browser.find_element(By.ID, "html-frame")
    assert frame.get_attribute("sandbox") == ""
    browser.switch_to.frame(frame)
    try:
        wait_for(browser, "the HTML part", lambda: browser.find_elements(By.ID, "greeting"))
        assert browser.find_element(By.ID, "greeting").text == "Hello, Bob"
    finally:
        browser.switch_to.default_content()
    wait_for(browser, "the read mark", lambda: "unread" not in classes(browser, "Welcome aboard"))
    browser.save_screenshot(str(shots / "inbox-message.png"))

    for tab, pane, expected in [
        ("text", "pane-text", "Hello, Bob."),
        ("headers", "pane-headers", "Welcome aboard"),
        ("raw", "pane-raw", "Subject: Welcome aboard"),
        # smtplib writes "mail FROM:" before Python 3.13, "mail from:" from then on.
        ("transcript", "pane-transcript", "c: mail from:<app@example.com>"),
    ]:
        browser.find_element(By.CSS_SELECTOR, f".tabs button[data-tab='{tab}']").click()
        shown = lambda p=pane, e=expected: e.lower() in browser.find_element(By.ID, p).text.lower()  # noqa: E731
        wait_for(browser, f"the {tab} tab", shown)


def test_hostile_mail_runs_nothing_and_fetches_nothing(
    browser: Any, inbox: Running, remote: Remote, shots: Path
) -> None:
    html = f"""<html><head>
<meta http-equiv="refresh" content="0;url={remote.url("refresh")}">
<link rel="stylesheet" href="{remote.url("style.css")}">
<link rel="prefetch" href="{remote.url("prefetch")}">
<style>@import url("{remote.url("import.css")}"); body {{ background: url("{remote.url("background")}"); }}</style>
<script>top.pwned = "script"; parent.document.title = "pwned";</script>
</head><body>
<p id="content">Hostile content</p>
<img src="{remote.url("image.gif")}" id="tracker">
<img src="x" onerror="top.pwned = 'onerror'">
<svg><image href="{remote.url("svg-image")}"/></svg>
<iframe src="{remote.url("frame")}"></iframe>
<object data="{remote.url("object")}"></object>
<a id="js-link" href="javascript:top.pwned='link'">click me</a>
<form action="{remote.url("form")}"><input name="q"></form>
</body></html>"""
    hostile_subject = f"<img src={remote.url('subject')} onerror=\"top.pwned='subject'\"><b>bold</b>"
    open_ui(browser, inbox)
    inbox.send(
        hostile_subject,
        sender="app@example.com",
        html=html,
        headers={"Reply-To": f"<script>top.pwned='header'</script> <img src={remote.url('header')}>"},
    )
    wait_for(browser, "the hostile message", lambda: subjects(browser) == [hostile_subject])
    click(browser, hostile_subject)
    wait_for(browser, "the message view", lambda: browser.find_element(By.ID, "v-subject").text == hostile_subject)
    browser.switch_to.frame(browser.find_element(By.ID, "html-frame"))
    try:
        wait_for(browser, "the HTML part", lambda: browser.find_elements(By.ID, "content"))
        browser.find_element(By.ID, "js-link").click()
    finally:
        browser.switch_to.default_content()
    for tab in ["headers", "raw", "text", "html"]:
        browser.find_element(By.CSS_SELECTOR, f".tabs button[data-tab='{tab}']").click()
    # Settled: a round trip to the inbox after everything the page asked for.
    browser.execute_script("return fetch('/healthz').then(r => r.json())")
    browser.save_screenshot(str(shots / "inbox-hostile.png"))
    assert browser.execute_script("return window.pwned === undefined")
    assert browser.title == "pytest-smtpd inbox"
    assert browser.current_url == f"http://127.0.0.1:{inbox.web.port}/"
    assert remote.requests == []

    # Load remote content: now, and only now, the images come (so the
    # stand-in would have seen a request had one been made before).
    browser.find_element(By.ID, "remote").click()
    wait_for(browser, "the remote image requested", lambda: "/image.gif" in remote.requests)
    assert browser.execute_script("return window.pwned === undefined")
    assert not {"/refresh", "/frame", "/object", "/prefetch"} & set(remote.requests)


def test_search_narrows_and_delete_removes(browser: Any, inbox: Running) -> None:
    inbox.send("Password reset", to="alice@example.com")
    inbox.send("Weekly digest", to="bob@example.com")
    inbox.send("Order shipped", to="alice@example.com")
    open_ui(browser, inbox)
    wait_for(browser, "three messages", lambda: len(subjects(browser)) == 3)

    search = browser.find_element(By.ID, "search")
    search.send_keys("to:alice@example.com")
    wait_for(browser, "alice's two", lambda: subjects(browser) == ["Order shipped", "Password reset"])
    search.send_keys(" subject:reset")
    wait_for(browser, "one left", lambda: subjects(browser) == ["Password reset"])
    search.clear()
    search.send_keys(Keys.ENTER)
    wait_for(browser, "all three again", lambda: len(subjects(browser)) == 3)

    # Keyboard: j to the first, second, third, k back to the second; Enter
    # opens it, Delete deletes it.
    search.send_keys(Keys.ESCAPE)
    keys = ActionChains(browser)
    keys.send_keys("jjjk").perform()
    wait_for(browser, "the second selected", lambda: "selected" in classes(browser, "Weekly digest"))
    ActionChains(browser).send_keys(Keys.ENTER).perform()
    wait_for(browser, "the view", lambda: browser.find_element(By.ID, "v-subject").text == "Weekly digest")
    ActionChains(browser).send_keys(Keys.DELETE).perform()
    wait_for(browser, "the deleted one gone", lambda: subjects(browser) == ["Order shipped", "Password reset"])
    assert [m["subject"] for m in inbox.http.get("/api/messages")["messages"]] == ["Order shipped", "Password reset"]

    # The delete button, then delete all.
    click(browser, "Order shipped")
    wait_for(browser, "the view", lambda: browser.find_element(By.ID, "v-subject").text == "Order shipped")
    browser.find_element(By.ID, "delete").click()
    wait_for(browser, "one left", lambda: subjects(browser) == ["Password reset"])
    browser.find_element(By.ID, "delete-all").click()
    browser.switch_to.alert.accept()
    wait_for(browser, "an empty list", lambda: subjects(browser) == [])
    assert inbox.http.get("/api/messages")["total"] == 0


def test_the_list_shows_a_page_and_more_on_demand(browser: Any, inbox: Running) -> None:
    import smtplib

    with smtplib.SMTP(*inbox.server.address, timeout=WAIT) as client:
        for number in range(101):
            client.sendmail("app@example.com", ["bob@example.com"], f"Subject: number {number}\r\n\r\nhi\r\n".encode())
    open_ui(browser, inbox)
    wait_for(browser, "the first page", lambda: len(subjects(browser)) == 100)
    assert subjects(browser)[0] == "number 100"
    browser.find_element(By.ID, "more").click()
    wait_for(browser, "all of them", lambda: len(subjects(browser)) == 101)
    assert subjects(browser)[-1] == "number 0"
    assert not browser.find_element(By.ID, "more").is_displayed()
