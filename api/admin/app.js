// The admin page: plain JS against the admin API, refreshed every 2 s
// (the charts are drawn by charts.js).
"use strict";

const prefix = document.body.dataset.apiPrefix;
let token = sessionStorage.getItem("aiv-admin-token");

const $ = (selector) => document.querySelector(selector);

function cell(text, className) {
  const td = document.createElement("td");
  td.textContent = text === null || text === undefined ? "–" : String(text);
  if (className) td.className = className;
  return td;
}

function fill(table, rows) {
  const body = $(table + " tbody");
  body.replaceChildren(...rows.map((cells) => {
    const tr = document.createElement("tr");
    tr.append(...cells);
    return tr;
  }));
}

async function api(method, path) {
  const response = await fetch(prefix + path, { method, headers: { Authorization: "Bearer " + token } });
  if (response.status === 401) {
    logout();
    throw new Error("session expired");
  }
  if (!response.ok && response.status !== 204) {
    const body = await response.json().catch(() => ({}));
    throw new Error(body.error ? body.error.message : "HTTP " + response.status);
  }
  return response.status === 204 ? null : response.json();
}

function logout() {
  token = null;
  sessionStorage.removeItem("aiv-admin-token");
  sessionStorage.removeItem("aiv-admin-email");
  $("#who").textContent = "";
  $("#dashboard").hidden = true;
  $("#login").hidden = false;
}

$("#login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("#login-error").textContent = "";
  const response = await fetch(prefix + "/auth/login", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ email: $("#email").value, password: $("#password").value }),
  });
  const body = await response.json().catch(() => ({}));
  if (!response.ok || !body.access_token) {
    $("#login-error").textContent = body.error ? body.error.message : "login failed";
    return;
  }
  token = body.access_token;
  sessionStorage.setItem("aiv-admin-token", token);
  sessionStorage.setItem("aiv-admin-email", $("#email").value);
  start();
});

async function refreshQueues() {
  const { queues } = await api("GET", "/admin/queues");
  fill("#queues", queues.map((q) => [
    cell(q.queue), cell(q.pending, "n"), cell(q.scheduled, "n"), cell(q.running, "n"), cell(q.done, "n"),
    cell(q.dead, "n"), cell(q.oldest_pending_age_seconds === null ? null : q.oldest_pending_age_seconds.toFixed(1), "n"),
    cell(q.workers.length, "n"),
  ]));
  for (const q of queues) {
    const row = [...document.querySelectorAll("#queues tbody tr")].find((tr) => tr.firstChild.textContent === q.queue);
    if (row) row.dataset.queue = q.queue;
  }
  $("#refreshed").textContent = "· " + new Date().toLocaleTimeString();
}

async function act(method, path, note, id) {
  try {
    await api(method, path);
    $("#dead-message").textContent = note;
    if ($("#dead-detail").dataset.id === id) hideDetail();
  } catch (e) {
    $("#dead-message").textContent = e.message;
  }
  await refresh();
}

function hideDetail() {
  $("#dead-detail").hidden = true;
  delete $("#dead-detail").dataset.id;
  markShown();
}

// The dead job whose detail is open stands out in the list.
function markShown() {
  for (const tr of document.querySelectorAll("#dead tbody tr")) {
    tr.classList.toggle("shown", tr.dataset.id === $("#dead-detail").dataset.id);
  }
}

function fact(term, value) {
  const dt = document.createElement("dt");
  dt.textContent = term;
  const dd = document.createElement("dd");
  dd.textContent = value === null || value === undefined ? "–" : String(value);
  return [dt, dd];
}

// A dead job in full: what apalis kept, its work's attempts, the payload.
async function showDetail(queue, id) {
  let job;
  try {
    job = await api("GET", `/admin/queues/${queue}/dead/${encodeURIComponent(id)}`);
  } catch (e) {
    $("#dead-message").textContent = e.message;
    return;
  }
  const work = job.work;
  const when = (t) => (t ? new Date(t).toLocaleString() : null);
  $("#detail-id").textContent = job.id;
  $("#detail-facts").replaceChildren(
    ...fact("queue", job.queue),
    ...fact("pushed", when(job.pushed_at)),
    ...fact("runs of this job", job.attempts),
    ...fact("why it died", job.error),
    ...fact("work", work ? `${work.kind} ${work.id}: ${work.status} after ${work.attempts} attempt(s)` : "none found (the payload names none)"),
  );
  const attempts = work ? work.attempt_errors : [];
  const rows = attempts.map((a) => [cell(a.attempt), cell(when(a.at)), cell(a.error, "error")]);
  if (rows.length === 0) rows.push([cell("job run " + (job.attempts ?? "?")), cell(null), cell(job.error, "error")]);
  fill("#detail-attempts", rows);
  $("#detail-payload").textContent = JSON.stringify(job.payload, null, 2);
  $("#dead-detail").dataset.id = job.id;
  $("#dead-detail").hidden = false;
  markShown();
}

$("#detail-close").addEventListener("click", hideDetail);

async function refreshDead() {
  const rows = [];
  for (const queue of ["turns", "batch"]) {
    const { dead } = await api("GET", "/admin/queues/" + queue + "/dead?limit=50");
    for (const job of dead) {
      const retry = document.createElement("button");
      retry.textContent = "Retry";
      retry.dataset.action = "retry";
      retry.onclick = () => act("POST", `/admin/queues/${queue}/dead/${job.id}/retry`, `job ${job.id} retried`, job.id);
      const remove = document.createElement("button");
      remove.textContent = "Delete";
      remove.dataset.action = "delete";
      remove.onclick = () => act("DELETE", `/admin/queues/${queue}/dead/${job.id}`, `job ${job.id} deleted`, job.id);
      const details = document.createElement("button");
      details.textContent = "Details";
      details.dataset.action = "details";
      details.onclick = () => showDetail(queue, job.id);
      const actions = document.createElement("td");
      actions.className = "actions";
      actions.append(details, " ", retry, " ", remove);
      const id = cell(job.id);
      id.innerHTML = "<code></code>";
      id.firstChild.textContent = job.id;
      rows.push({ queue, id: job.id, cells: [cell(queue), id, cell(job.error, "error"), cell(job.attempts, "n"), actions] });
    }
  }
  fill("#dead", rows.map((r) => r.cells));
  rows.forEach((r, i) => Object.assign($("#dead tbody").children[i].dataset, { queue: r.queue, id: r.id }));
  markShown();
  if (rows.length === 0 && !$("#dead-message").textContent) $("#dead-message").textContent = "none";
}

async function refreshProviders() {
  const { providers } = await api("GET", "/admin/providers");
  fill("#providers", providers.map((p) => [
    cell(p.name), cell(p.model), cell(p.circuit.state, "state-" + p.circuit.state),
    cell((p.recent.error_rate * 100).toFixed(1) + " %", "n"), cell(p.latency_ms.p95, "n"), cell(p.today.cost_usd.toFixed(4), "n"),
  ]));
}

async function refreshBatches() {
  const { batches } = await api("GET", "/admin/batches");
  fill("#batches", batches.map((b) => {
    const last = b.last_runs[0];
    return [
      cell(b.name), cell(b.enabled ? b.schedule : "disabled"), cell(b.next_tick ? new Date(b.next_tick).toLocaleString() : null),
      cell(last ? last.status : "never", last ? "status-" + last.status : "muted"),
      cell(last && last.finished_at ? new Date(last.finished_at).toLocaleString() : null),
    ];
  }));
}

async function refreshHistory() {
  const { history } = await api("GET", "/admin/history?minutes=60");
  drawHistory(history);
}

async function refresh() {
  if (!token) return;
  try {
    await Promise.all([refreshQueues(), refreshHistory(), refreshDead(), refreshProviders(), refreshBatches()]);
  } catch (e) {
    $("#refreshed").textContent = "· " + e.message;
  }
}

let timer = null;
function start() {
  $("#who").textContent = sessionStorage.getItem("aiv-admin-email") || "";
  $("#login").hidden = true;
  $("#dashboard").hidden = false;
  refresh();
  clearInterval(timer);
  timer = setInterval(refresh, 2000);
}

if (token) start();
