// Pilotage dashboard: the only script of the pages (no library, no build step; see docs/architecture.md).
// 1. A run's page follows the run live: the API's event stream (EventSource) says something happened, and the
//    server renders the new timeline rows (escaped there); they are appended without reloading the page.
// 2. The approvals page answers an approval through the API (POST /api/v1/approvals/{id}/approve|deny): the
//    browser sends the session cookie (when a token is set) and its Origin, which the server checks.
"use strict";

function followRun(table) {
  const run = table.dataset.run;
  const body = table.tBodies[0];
  const live = document.getElementById("live");
  const status = document.getElementById("run-status");
  let after = Number(table.dataset.after || 0);
  let busy = false;
  let again = false;

  function setLive(state, text) {
    if (live) {
      live.dataset.state = state;
      live.textContent = text;
    }
  }

  async function refresh() {
    if (busy) {
      again = true;
      return;
    }
    busy = true;
    try {
      const answer = await fetch(`/runs/${encodeURIComponent(run)}/rows?after=${after}`,
                                 {credentials: "same-origin"});
      if (answer.ok) {
        const html = await answer.text();
        if (html.trim()) {
          body.insertAdjacentHTML("beforeend", html);
          const rows = body.querySelectorAll("tr[data-offset]");
          after = Math.max(after, Number(rows[rows.length - 1].dataset.offset));
          table.dataset.after = String(after);
        }
        const state = answer.headers.get("X-Run-Status");
        if (status && state) {
          status.textContent = state;
        }
      }
    } finally {
      busy = false;
      if (again) {
        again = false;
        refresh();
      }
    }
  }

  const url = `/api/v1/events/stream?named=false&run=${encodeURIComponent(run)}&after=${after}`;
  const source = new EventSource(url, {withCredentials: true});
  source.onopen = () => setLive("open", "Live: new events appear as they happen.");
  source.onerror = () => setLive("retrying", "Live: reconnecting…");
  source.onmessage = () => refresh();
}

function answerApprovals(container) {
  container.addEventListener("submit", async (event) => {
    const form = event.target.closest("form.answer");
    if (!form) {
      return;
    }
    event.preventDefault();
    const decision = event.submitter && event.submitter.value === "deny" ? "deny" : "approve";
    const id = form.dataset.approval;
    const output = form.querySelector("output.result");
    const buttons = form.querySelectorAll("button");
    buttons.forEach((b) => { b.disabled = true; });
    const body = JSON.stringify({by: form.elements.by.value, reason: form.elements.reason.value});
    try {
      const answer = await fetch(`/api/v1/approvals/${encodeURIComponent(id)}/${decision}`, {
        method: "POST",
        credentials: "same-origin",
        headers: {"Content-Type": "application/json", "Accept": "application/json"},
        body,
      });
      const doc = await answer.json();
      if (answer.ok) {
        output.textContent = `${decision === "approve" ? "Approved" : "Denied"} by ${doc.by} (signed, key ${doc.key_id}).`;
        form.closest("section").dataset.answered = decision;
        return;
      }
      output.textContent = `Refused: ${doc.detail || answer.status}`;
    } catch (error) {
      output.textContent = `Not sent: ${error}`;
    }
    buttons.forEach((b) => { b.disabled = false; });
  });
}

document.addEventListener("DOMContentLoaded", () => {
  const timeline = document.getElementById("timeline");
  if (timeline) {
    followRun(timeline);
  }
  const approvals = document.getElementById("approvals");
  if (approvals) {
    answerApprovals(approvals);
  }
});
