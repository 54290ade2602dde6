// The Programs page refreshes its table, posts actions without a reload and follows logs.
// Every request is short (polling): none holds a server thread.
"use strict";
(function () {
  const REFRESH_MS = 3000;
  const FOLLOW_MS = 1000;

  function say(text, ok) {
    let list = document.querySelector("ul.messagelist");
    if (!list) {
      list = document.createElement("ul");
      list.className = "messagelist";
      const main = document.getElementById("content") || document.body;
      main.parentNode.insertBefore(list, main);
    }
    const item = document.createElement("li");
    item.className = ok ? "success" : "error";
    item.textContent = text;  // supervisord's words are text, never markup
    list.appendChild(item);
  }

  async function refresh() {
    const table = document.getElementById("djs-table");
    const rows = document.getElementById("djs-rows");
    try {
      const response = await fetch(table.dataset.refresh, {credentials: "same-origin"});
      if (response.ok) rows.innerHTML = await response.text();  // server-escaped HTML
    } catch (error) { /* the next round tries again */ }
  }

  async function submit(event) {
    const form = event.target.closest("form.djs-action");
    if (!form) return;
    const button = event.submitter;
    if (button && button.dataset.confirm && !window.confirm(button.dataset.confirm)) {
      event.preventDefault();
      return;
    }
    event.preventDefault();
    const data = new FormData(form);
    if (button) data.set(button.name, button.value);
    form.querySelectorAll("button").forEach((b) => { b.disabled = true; });
    try {
      // Not form.action: the buttons named "action" shadow that property.
      const response = await fetch(form.getAttribute("action"), {
        method: "POST", body: data, credentials: "same-origin",
        headers: {"Accept": "application/json"},
      });
      if (response.headers.get("Content-Type") === "application/json") {
        const answer = await response.json();
        say(answer.message, answer.ok);
      } else {
        say(`${response.status} ${response.statusText}`, false);
      }
    } catch (error) {
      say(String(error), false);
    }
    form.querySelectorAll("button").forEach((b) => { b.disabled = false; });
    await refresh();
  }

  async function follow(pre) {
    const box = document.getElementById("djs-follow");
    if (box && !box.checked) return;
    const url = new URL(pre.dataset.tail, window.location.href);
    url.searchParams.set("offset", pre.dataset.offset);
    try {
      const response = await fetch(url, {credentials: "same-origin"});
      if (!response.ok) return;
      const chunk = await response.json();
      if (chunk.text) {
        const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
        pre.appendChild(document.createTextNode(chunk.text));  // text, never markup
        if (atBottom) pre.scrollTop = pre.scrollHeight;
      }
      pre.dataset.offset = chunk.offset;
    } catch (error) { /* the next round tries again */ }
  }

  document.addEventListener("DOMContentLoaded", () => {
    if (document.getElementById("djs-table")) {
      document.addEventListener("submit", submit);
      window.setInterval(refresh, REFRESH_MS);
    }
    const pre = document.getElementById("djs-log");
    if (pre) {
      pre.scrollTop = pre.scrollHeight;
      window.setInterval(() => follow(pre), FOLLOW_MS);
    }
  });
})();
