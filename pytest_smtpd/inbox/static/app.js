// The pytest-smtpd inbox UI. Every value from a message is shown with
// textContent (never as markup); a message's HTML is only shown in the
// sandboxed iframe, from /api/messages/{id}/html, which the server sends
// under a policy with no script and no remote content.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const READ_KEY = "pytest-smtpd-inbox-read";
  // The list shows the newest PAGE messages, and PAGE more per "Show more":
  // the inbox builds a summary only for the messages shown.
  const PAGE = 100;
  const RELOAD_MS = 250;
  const state = {
    messages: [], selected: null, opened: null, tab: "html", remote: new Set(), reloadTimer: null, shown: PAGE, total: 0,
  };
  let read = new Set();
  try {
    read = new Set(JSON.parse(localStorage.getItem(READ_KEY) || "[]"));
  } catch (e) {
    read = new Set();
  }

  function saveRead() {
    try {
      localStorage.setItem(READ_KEY, JSON.stringify([...read].slice(-5000)));
    } catch (e) {
      /* storage full or off: the marks last for this page only */
    }
  }

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function size(bytes) {
    if (bytes < 1024) return bytes + " B";
    if (bytes < 1024 * 1024) return (bytes / 1024).toFixed(1) + " KB";
    return (bytes / 1024 / 1024).toFixed(1) + " MB";
  }

  function when(iso) {
    const date = new Date(iso);
    return isNaN(date) ? "" : date.toLocaleTimeString();
  }

  async function api(path, options) {
    const response = await fetch(path, Object.assign({ credentials: "same-origin" }, options || {}));
    if (!response.ok) {
      let text = response.status + "";
      try {
        text = (await response.json()).error || text;
      } catch (e) {
        /* not JSON */
      }
      throw new Error(text);
    }
    return response;
  }

  async function load() {
    const q = $("search").value.trim();
    const params = new URLSearchParams({ limit: String(state.shown) });
    if (q) params.set("q", q);
    try {
      const page = await (await api("/api/messages?" + params)).json();
      state.messages = page.messages;
      state.total = page.total;
      $("count").textContent = page.total + (q ? " found" : " message(s)");
      $("search").removeAttribute("aria-invalid");
      $("search").title = "";
    } catch (error) {
      $("search").setAttribute("aria-invalid", "true");
      $("search").title = error.message;
      $("count").textContent = error.message;
      return;
    }
    render();
  }

  function scheduleLoad() {
    if (state.reloadTimer !== null) return;
    state.reloadTimer = setTimeout(() => {
      state.reloadTimer = null;
      load();
    }, RELOAD_MS);
  }

  function render() {
    const list = $("list");
    list.replaceChildren();
    for (const message of state.messages) {
      const item = el("li");
      item.dataset.id = String(message.id);
      if (!read.has(message.id)) item.classList.add("unread");
      if (message.id === state.selected) item.classList.add("selected");
      if (message.outcome === "failed") item.classList.add("failed");
      const top = el("div", "line");
      top.append(el("span", "who", message.from || message.mail_from || "<>"), el("span", "meta", when(message.received_at)));
      const middle = el("div", "line");
      middle.append(el("span", "subject", message.subject === null ? "(no subject)" : message.subject));
      const marks = el("span", "meta");
      if (message.attachments) marks.append(el("span", "mark attachment", message.attachments + (message.attachments === 1 ? " file" : " files")));
      if (message.tls) marks.append(el("span", "mark tls", "TLS"));
      if (message.outcome === "failed") marks.append(el("span", "mark failed", "failed"));
      marks.append(document.createTextNode(" " + size(message.size)));
      middle.append(marks);
      const bottom = el("div", "line");
      bottom.append(el("span", "meta", "to " + (message.to.length ? message.to : message.rcpt_tos).join(", ")));
      if (message.test) {
        // Clicking a test's name shows that test's mail only.
        const test = el("span", "meta test", message.test);
        test.title = "Show this test's mail only";
        test.addEventListener("click", (event) => {
          event.stopPropagation();
          $("search").value = 'test:"' + message.test.replace(/"/g, "") + '"';
          load();
        });
        bottom.append(test);
      }
      item.append(top, middle, bottom);
      item.addEventListener("click", () => open(message.id));
      list.append(item);
    }
    $("empty").hidden = state.messages.length > 0;
    $("more").hidden = state.messages.length >= state.total;
    if (state.opened !== null && !state.messages.some((m) => m.id === state.opened)) {
      $("view").hidden = true;
      state.opened = null;
    }
  }

  function selectTab(name) {
    state.tab = name;
    for (const button of document.querySelectorAll(".tabs button")) {
      button.setAttribute("aria-selected", String(button.dataset.tab === name));
    }
    for (const pane of document.querySelectorAll(".pane")) {
      pane.hidden = pane.id !== "pane-" + name;
    }
    if (state.opened !== null) fillTab(name, state.opened);
  }

  async function fillTab(name, id) {
    if (name === "raw") {
      const text = await (await api("/api/messages/" + id + "/raw")).text();
      if (state.opened === id) $("pane-raw").textContent = text;
    } else if (name === "transcript") {
      const message = state.current;
      const pane = $("pane-transcript");
      if (!message || message.session === null || message.session === undefined) {
        pane.textContent = "No transcript kept for this message.";
        return;
      }
      try {
        const session = await (await api("/api/sessions/" + message.session)).json();
        const lines = session.transcript.map((entry) => (entry.direction === "client" ? "C: " : "S: ") + entry.line);
        if (state.opened === id) pane.textContent = lines.join("\n");
      } catch (error) {
        pane.textContent = error.message;
      }
    }
  }

  async function open(id) {
    state.selected = id;
    state.opened = id;
    let message;
    try {
      message = await (await api("/api/messages/" + id)).json();
    } catch (error) {
      $("count").textContent = error.message;
      return;
    }
    if (state.opened !== id) return;
    state.current = message;
    read.add(id);
    saveRead();
    $("view").hidden = false;
    $("v-subject").textContent = message.subject === null ? "(no subject)" : message.subject;
    $("v-from").textContent = message.from || "";
    $("v-to").textContent = message.to.join(", ");
    $("v-envelope").textContent = (message.mail_from || "<>") + " → " + message.rcpt_tos.join(", ");
    $("v-date").textContent = (message.date || "") + " (received " + message.received_at + ")";
    $("v-test").textContent = message.test ? message.test + (message.outcome ? " (" + message.outcome + ")" : "") : "";
    $("v-test").hidden = $("v-test-label").hidden = !message.test;
    $("download").href = "/api/messages/" + id + "/raw";
    $("download").setAttribute("download", "message-" + id + ".eml");
    const frame = $("html-frame");
    if (message.html !== null) {
      frame.hidden = false;
      $("no-html").hidden = true;
      frame.src = "/api/messages/" + id + "/html" + (state.remote.has(id) ? "?remote=1" : "");
    } else {
      frame.hidden = true;
      frame.removeAttribute("src");
      $("no-html").hidden = false;
    }
    $("remote").disabled = message.html === null || state.remote.has(id);
    $("pane-text").textContent = message.text === null ? "No text part." : message.text;
    const headers = $("headers");
    headers.replaceChildren();
    for (const [name, value] of message.headers) {
      const row = el("tr");
      row.append(el("td", "", name), el("td", "", value));
      headers.append(row);
    }
    const attachments = $("pane-attachments");
    attachments.replaceChildren();
    if (!message.attachments.length) attachments.append(el("li", "empty", "No attachments."));
    for (const one of message.attachments) {
      const item = el("li");
      const link = el("a", "", one.name || "attachment " + one.index);
      link.href = "/api/messages/" + id + "/attachments/" + one.index;
      link.setAttribute("download", one.name || "attachment-" + one.index);
      item.append(link, document.createTextNode(" " + one.type + ", " + size(one.size)));
      attachments.append(item);
    }
    $("pane-raw").textContent = "";
    $("pane-transcript").textContent = "";
    selectTab(message.html === null && state.tab === "html" ? "text" : state.tab);
    render();
  }

  async function remove(id) {
    await api("/api/messages/" + id, { method: "DELETE" });
    const index = state.messages.findIndex((m) => m.id === id);
    state.messages = state.messages.filter((m) => m.id !== id);
    if (state.opened === id) {
      $("view").hidden = true;
      state.opened = null;
      const next = state.messages[Math.min(index, state.messages.length - 1)];
      state.selected = next ? next.id : null;
    }
    render();
  }

  function move(step) {
    if (!state.messages.length) return;
    let index = state.messages.findIndex((m) => m.id === state.selected);
    index = index < 0 ? 0 : Math.max(0, Math.min(state.messages.length - 1, index + step));
    state.selected = state.messages[index].id;
    render();
    const item = document.querySelector('#list li[data-id="' + state.selected + '"]');
    if (item) item.scrollIntoView({ block: "nearest" });
  }

  function connect() {
    const events = new EventSource("/api/events");
    events.addEventListener("open", () => {
      $("status").textContent = "live";
      $("status").classList.add("live");
      scheduleLoad();
    });
    events.addEventListener("error", () => {
      $("status").textContent = "reconnecting";
      $("status").classList.remove("live");
    });
    for (const kind of ["message", "deleted", "cleared", "test"]) events.addEventListener(kind, scheduleLoad);
  }

  document.addEventListener("DOMContentLoaded", () => {
    let typing = null;
    $("more").addEventListener("click", () => {
      state.shown += PAGE;
      load();
    });
    $("search").addEventListener("input", () => {
      state.shown = PAGE;
      clearTimeout(typing);
      typing = setTimeout(load, 200);
    });
    $("search").addEventListener("keydown", (event) => {
      if (event.key === "Enter") load();
      if (event.key === "Escape") $("search").blur();
    });
    $("delete-all").addEventListener("click", async () => {
      if (!confirm("Delete every message?")) return;
      await api("/api/messages", { method: "DELETE" });
      state.opened = state.selected = null;
      $("view").hidden = true;
      load();
    });
    $("delete").addEventListener("click", () => state.opened !== null && remove(state.opened));
    $("remote").addEventListener("click", () => {
      if (state.opened === null) return;
      state.remote.add(state.opened);
      $("html-frame").src = "/api/messages/" + state.opened + "/html?remote=1";
      $("remote").disabled = true;
    });
    for (const button of document.querySelectorAll(".tabs button")) {
      button.addEventListener("click", () => selectTab(button.dataset.tab));
    }
    document.addEventListener("keydown", (event) => {
      if (event.target instanceof HTMLInputElement || event.ctrlKey || event.metaKey || event.altKey) return;
      if (event.key === "j") move(1);
      else if (event.key === "k") move(-1);
      else if (event.key === "Enter" && state.selected !== null) open(state.selected);
      else if ((event.key === "Delete" || event.key === "Backspace") && state.selected !== null) remove(state.selected);
      else if (event.key === "/") {
        event.preventDefault();
        $("search").focus();
      } else return;
      event.preventDefault();
    });
    selectTab("html");
    load();
    connect();
  });
})();
