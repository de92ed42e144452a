// The admin page: plain JS against the admin API, refreshed every 2 s.
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

async function act(method, path, note) {
  try {
    await api(method, path);
    $("#dead-message").textContent = note;
  } catch (e) {
    $("#dead-message").textContent = e.message;
  }
  await refresh();
}

async function refreshDead() {
  const rows = [];
  for (const queue of ["turns", "batch"]) {
    const { dead } = await api("GET", "/admin/queues/" + queue + "/dead?limit=50");
    for (const job of dead) {
      const retry = document.createElement("button");
      retry.textContent = "Retry";
      retry.dataset.action = "retry";
      retry.onclick = () => act("POST", `/admin/queues/${queue}/dead/${job.id}/retry`, `job ${job.id} retried`);
      const remove = document.createElement("button");
      remove.textContent = "Delete";
      remove.dataset.action = "delete";
      remove.onclick = () => act("DELETE", `/admin/queues/${queue}/dead/${job.id}`, `job ${job.id} deleted`);
      const actions = document.createElement("td");
      actions.append(retry, " ", remove);
      const id = cell(job.id);
      id.innerHTML = "<code></code>";
      id.firstChild.textContent = job.id;
      rows.push([cell(queue), id, cell(job.error, "error"), cell(job.attempts, "n"), actions]);
    }
  }
  fill("#dead", rows);
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

async function refresh() {
  if (!token) return;
  try {
    await Promise.all([refreshQueues(), refreshDead(), refreshProviders(), refreshBatches()]);
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
