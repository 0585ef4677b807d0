// mall's dashboard, live: counts and new decisions from the server's event stream
// (GET /admin/autonomous/live), put on the page without a reload. Served from the binary.
"use strict";
(function () {
  const root = document.querySelector("[data-live]");
  if (!root || !window.EventSource) return;
  const url = root.getAttribute("data-live") + "?since=" + encodeURIComponent(root.getAttribute("data-since") || "0");
  const status = document.getElementById("live-status");
  const say = (s) => { if (status) status.textContent = s; };
  const source = new EventSource(url);
  let fresh = 0;
  source.addEventListener("open", () => say("Live: updating every second."));
  source.addEventListener("error", () => say("Live: reconnecting…"));
  source.addEventListener("counts", (e) => {
    const counts = JSON.parse(e.data);
    for (const [name, value] of Object.entries(counts)) {
      for (const el of document.querySelectorAll('[data-count="' + name + '"]')) {
        el.textContent = String(value);
      }
    }
  });
  source.addEventListener("decision", (e) => {
    const d = JSON.parse(e.data);
    const body = document.querySelector("#decisions-table tbody");
    if (!body) return;
    const row = document.createElement("tr");
    row.className = "new";
    for (const key of ["at", "product_id", "kind", "summary"]) {
      const cell = document.createElement("td");
      cell.textContent = d[key];
      row.appendChild(cell);
    }
    const cell = document.createElement("td");
    if (d.href) {
      const a = document.createElement("a");
      a.href = d.href;
      a.textContent = "diff";
      a.className = "diff-link";
      cell.appendChild(a);
    }
    row.appendChild(cell);
    body.insertBefore(row, body.firstChild);
    while (body.rows.length > 20) body.deleteRow(body.rows.length - 1);
    fresh += 1;
    say("Live: " + fresh + " new since the page loaded.");
  });
})();
