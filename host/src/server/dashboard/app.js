// The dashboard's views. Lists are never re-fetched whole on a timer: the page loads a snapshot
// once (agents, one page of tasks, the policy), then follows the event stream; the queue's
// counts and charts come from the hub's `stats` events. Drawing is batched to at most a few
// times a second, so a burst of events never blocks the page.
"use strict";

const $ = (id) => document.getElementById(id);
const esc = escapeHtml; // charts.js
const PRIORITY_NAMES = ["urgent", "high", "normal", "low"];
const STATUSES = ["queued", "assigned", "completed", "dead_letter", "cancelled"];
const AGENT_STATES = ["idle", "assigned", "working", "offline"];
const ACTIVITY_ROWS = 50;
const FAIR_WINDOW_MS = 60 * 1000;
const ROW_HEIGHT = 24;

const state = {
  role: null,
  view: "overview",
  counts: null,          // the last stats event, or the /api/tasks/stats snapshot
  statsSeen: false,      // whether this hub sends stats events
  perSecond: { assigned: 0, completed: 0 }, // task events counted this second, without stats
  throughput: new Ring(WINDOW_SECONDS),  // [t, assigned/s, completed/s]
  latency: new Ring(WINDOW_SECONDS),     // [t, p50, p99, max]
  activity: new Map(),   // task id -> its last task event (the newest ACTIVITY_ROWS)
  agents: new Map(),     // agent id -> agent record
  agentRows: [],         // the agents shown, filtered and sorted
  agentsDirty: true,
  byTenant: false,       // whether fair share groups by tenant (groupOf)
  holding: new Map(),    // task id -> {tenant, fairness_key}, for tasks assigned now
  assignments: [],       // [at ms, {tenant, fairness_key}] of the last FAIR_WINDOW_MS
  weights: new Map(),    // group -> weight (null while asked)
  tenantWeights: null,   // tenant name -> weight, from /admin/tenants when the hub has it
  taskCursors: [null],   // cursors of the task pages visited; the last is the page shown
  taskNext: null,
  dead: [],             // the dead letter's first tasks (GET /api/tasks/dead-letter)
  deadCount: 0,         // how many tasks the dead letter holds
  deadPage: 0,
  loaded: false,        // whether the snapshots of the last connect have been read
  detailId: null,
  dirty: new Set(),      // views to redraw at the next frame
};

// ---- errors and notices ----

function showError(message) {
  const banner = $("error");
  banner.textContent = message;
  banner.hidden = !message;
}

function showNotice(message) {
  const banner = $("notice");
  banner.textContent = message;
  banner.hidden = !message;
  if (message) setTimeout(() => { if (banner.textContent === message) banner.hidden = true; }, 8000);
}

function fail(error) {
  showError(explain(error));
}

// ---- formatting ----

function time(ms) {
  if (!ms) return "–";
  return new Date(ms).toLocaleTimeString();
}

function dateTime(ms) {
  if (!ms) return "–";
  return new Date(ms).toLocaleString();
}

function statusCell(status) {
  return `<td class="status-${esc(status)}" data-status="${esc(status)}">${esc(status)}</td>`;
}

function taskLink(id) {
  return `<a class="task" data-task="${esc(id)}">${esc(id)}</a>`;
}

/**
 * The fair-share group of a task event or record: its tenant once the hub shows tasks of a
 * tenant other than `default` (tenants are then what the policy shares between), else its
 * fairness key.
 */
function groupOf(record) {
  if (record.before) return "(assigned before this page opened)";
  if (record.tenant && record.tenant !== "default") state.byTenant = true;
  if (state.byTenant) return record.tenant || "default";
  return record.fairness_key || "(none)";
}

// ---- connecting ----

const stream = new EventStream({
  hello(event) {
    state.role = event.role;
    document.body.classList.toggle("is-admin", event.role === "admin");
    $("conn").textContent = `live (${event.role})`;
  },
  task: onTask,
  agent: onAgent,
  policy() { loadPolicy(); },
  stats: onStats,
  reset() { loadSnapshots(); },
  dropped(event) {
    $("conn").textContent = `the hub dropped this page (${event.reason}); reconnecting`;
  },
  onState(text, live) {
    const conn = $("conn");
    conn.textContent = live ? `live${state.role ? ` (${state.role})` : ""}` : text;
    conn.className = live ? "live" : "down";
  },
  onRefused(error) {
    fail(error);
    $("conn").textContent = "not connected";
    $("conn").className = "down";
  },
});

async function connect() {
  stream.stop();
  showError("");
  if (!api.token) {
    showError("Type a token (admin or agent) to connect.");
    return;
  }
  try {
    // One cheap call first: a wrong token is told at once, before the stream starts.
    await api.get("/api/policy");
  } catch (e) {
    fail(e);
    $("conn").textContent = "not connected";
    $("conn").className = "down";
    return;
  }
  stream.lastId = null;
  stream.start();
  await loadSnapshots();
}

/** Everything the page shows that the stream does not replay: loaded at connect and on reset. */
async function loadSnapshots() {
  state.loaded = false;
  await Promise.all([loadCounts(), loadAgents(), loadPolicy(), loadBuiltins(), loadTenants(), loadTasks(), loadDead()]);
  state.loaded = true;
}

// ---- overview: counts, charts, activity ----

async function loadCounts() {
  try {
    const stats = await api.get("/api/tasks/stats");
    if (!state.statsSeen) {
      const byPriority = [0, 1, 2, 3].map((p) => (stats.by_priority || {})[p] ?? (stats.by_priority || {})[PRIORITY_NAMES[p]] ?? 0);
      state.counts = { by_status: stats.by_status || {}, queued_by_priority: byPriority };
      markDirty("overview");
    }
  } catch (e) { fail(e); }
}

let countsTimer = null;

/** Without stats events (an older hub), counts are re-read at most every 2 s while tasks move. */
function countsChanged() {
  if (state.statsSeen || countsTimer) return;
  countsTimer = setTimeout(() => { countsTimer = null; loadCounts(); }, 2000);
}

function onStats(event) {
  if (!state.statsSeen) state.throughput = new Ring(WINDOW_SECONDS); // drop the counted points
  state.statsSeen = true;
  state.counts = event;
  state.throughput.push([event.at, event.assigned_per_s, event.completed_per_s]);
  const wait = event.wait_ms || {};
  // A second with no assignment has no wait to show (the hub sends zeros then).
  if (event.assigned_per_s > 0) state.latency.push([event.at, wait.p50 ?? null, wait.p99 ?? null, wait.max ?? null]);
  markDirty("overview");
}

function onTask(event) {
  state.activity.delete(event.task_id);
  state.activity.set(event.task_id, event);
  if (state.activity.size > ACTIVITY_ROWS) state.activity.delete(state.activity.keys().next().value);
  const group = { tenant: event.tenant, fairness_key: event.fairness_key };
  groupOf(group);
  if (event.status === "assigned") {
    if (event.event === "assigned") state.assignments.push([Date.now(), group]);
    state.holding.set(event.task_id, group);
  } else {
    state.holding.delete(event.task_id);
  }
  if (event.event === "assigned" || event.event === "completed") state.perSecond[event.event] += 1;
  countsChanged();
  markDirty("overview");
  markDirty("fair");
  // A task shown in the list or the detail changes in place.
  const row = document.querySelector(`#task-list tr[data-task="${CSS.escape(event.task_id)}"]`);
  if (row) {
    row.cells[1].outerHTML = statusCell(event.status);
    row.cells[3].textContent = event.assigned_to || "–";
  }
  if (state.detailId === event.task_id) loadDetailSoon();
  if (event.status === "dead_letter" || event.event === "retried" || document.querySelector(`#dead-list tr[data-task="${CSS.escape(event.task_id)}"]`)) {
    loadDeadSoon();
  }
}

function drawOverview() {
  const counts = state.counts || { by_status: {}, queued_by_priority: [] };
  $("by-status").innerHTML = STATUSES.map((s) =>
    `<tr><td class="status-${s}">${s}</td><td class="num" data-count="${s}">${counts.by_status[s] ?? 0}</td></tr>`).join("");
  $("by-priority").innerHTML = PRIORITY_NAMES.map((name, p) =>
    `<tr><td>${p} ${name}</td><td class="num">${(counts.queued_by_priority || [])[p] ?? 0}</td></tr>`).join("");
  const agents = counts.agents || countAgentStates();
  $("by-state").innerHTML = AGENT_STATES.map((s) => `<tr><td>${s}</td><td class="num">${agents[s] ?? 0}</td></tr>`).join("")
    + `<tr><td>connected</td><td class="num">${counts.connected ?? "–"}</td></tr>`;
  const now = Date.now();
  drawChart($("chart-throughput"), state.throughput.toArray(), ["assigned/s", "completed/s"], now);
  drawChart($("chart-latency"), state.latency.toArray(), ["p50", "p99", "max"], now);
  const rows = [...state.activity.values()].reverse().map((e) =>
    `<tr data-task="${esc(e.task_id)}"><td>${taskLink(e.task_id)}</td>${statusCell(e.status)}<td>${esc(e.event)}</td>`
    + `<td>${e.priority}</td><td>${esc(e.assigned_to || "–")}</td><td>${esc(e.tenant ? `${e.tenant} / ${e.fairness_key}` : e.fairness_key)}</td><td>${time(e.at)}</td></tr>`);
  $("activity").tBodies[0].innerHTML = rows.join("") || `<tr><td colspan="7" class="muted">no task has changed since this page opened</td></tr>`;
}

/** Agent counts from the list, for a hub without stats events. */
function countAgentStates() {
  const counts = {};
  for (const agent of state.agents.values()) counts[agent.fsm_state] = (counts[agent.fsm_state] || 0) + 1;
  return counts;
}

// ---- agents: one snapshot, then events; a virtual list draws only the rows in view ----

async function loadAgents() {
  try {
    const answer = await api.get("/api/agents");
    state.agents = new Map(answer.agents.map((a) => [a.agent_id, a]));
    state.agentsDirty = true;
    // Tasks held at connect, for fair share: their groups are learnt from their next event.
    state.holding = new Map();
    for (const agent of state.agents.values()) {
      if (agent.current_task_id) state.holding.set(agent.current_task_id, { before: true });
    }
    markDirty("fair");
    markDirty("agents");
  } catch (e) { fail(e); }
}

function onAgent(event) {
  const known = state.agents.get(event.agent_id) || {};
  state.agents.set(event.agent_id, { ...known, ...event });
  state.agentsDirty = true;
  markDirty("agents");
  if (!state.statsSeen) markDirty("overview");
}

function drawAgents() {
  const list = $("agent-list");
  if (state.agentsDirty) {
    const text = $("agent-filter").value.trim().toLowerCase();
    const wanted = $("agent-state").value;
    state.agentRows = [...state.agents.values()]
      .filter((a) => (!wanted || a.fsm_state === wanted)
        && (!text || a.agent_id.toLowerCase().includes(text) || (a.capabilities || []).some((c) => c.toLowerCase().includes(text))))
      .sort((a, b) => (a.agent_id < b.agent_id ? -1 : 1));
    state.agentsDirty = false;
    $("agent-count").textContent = `${state.agentRows.length} of ${state.agents.size} agents`;
    list.firstElementChild.style.height = `${state.agentRows.length * ROW_HEIGHT}px`;
  }
  const first = Math.floor(list.scrollTop / ROW_HEIGHT);
  const count = Math.ceil(list.clientHeight / ROW_HEIGHT) + 2;
  const rows = state.agentRows.slice(first, first + count).map((a, i) =>
    `<div class="vrow" style="top:${(first + i) * ROW_HEIGHT}px" data-agent="${esc(a.agent_id)}">`
    + `<span>${esc(a.agent_id)}</span><span>${esc(a.fsm_state)}</span>`
    + `<span>${a.current_task_id ? taskLink(a.current_task_id) : "–"}</span>`
    + `<span>${esc((a.capabilities || []).join(", ") || "–")}</span>`
    + `<span>${dateTime(a.connected_at)}</span><span>${time(a.last_seen)}</span></div>`);
  list.innerHTML = `<div class="vspacer" style="height:${state.agentRows.length * ROW_HEIGHT}px"></div>${rows.join("")}`;
}

// ---- tasks: server-side filters and cursors, a detail with its history ----

function taskQuery(cursor) {
  const params = new URLSearchParams({ limit: "50" });
  if ($("f-status").value) params.set("status", $("f-status").value);
  if ($("f-priority").value) params.set("priority", $("f-priority").value);
  if ($("f-agent").value.trim()) params.set("assigned_to", $("f-agent").value.trim());
  if ($("f-key").value.trim()) params.set("fairness_key", $("f-key").value.trim());
  if (cursor) params.set("cursor", cursor);
  return params.toString();
}

async function loadTasks() {
  const cursor = state.taskCursors[state.taskCursors.length - 1];
  try {
    const page = await api.get(`/api/tasks?${taskQuery(cursor)}`);
    state.taskNext = page.next_cursor || null;
    $("task-list").tBodies[0].innerHTML = page.tasks.map((t) =>
      `<tr data-task="${esc(t.id)}"><td>${taskLink(t.id)}</td>${statusCell(t.status)}<td>${t.priority}</td>`
      + `<td>${esc(t.assigned_to || "–")}</td><td>${esc(t.tenant || "–")}</td><td>${esc(t.fairness_key || "–")}</td><td class="num">${t.retry_count}</td>`
      + `<td>${time(t.updated_at)}</td><td class="desc">${esc(t.description)}</td></tr>`).join("")
      || `<tr><td colspan="9" class="muted">no task matches</td></tr>`;
    $("task-page").textContent = `page ${state.taskCursors.length} (${page.count} shown)`;
    $("task-prev").disabled = state.taskCursors.length < 2;
    $("task-next").disabled = !state.taskNext;
  } catch (e) { fail(e); }
}

async function openTask(id) {
  state.detailId = id;
  selectView("tasks");
  await loadDetail();
}

let detailTimer = null;
function loadDetailSoon() {
  if (!detailTimer) detailTimer = setTimeout(() => { detailTimer = null; loadDetail(); }, 200);
}

async function loadDetail() {
  const id = state.detailId;
  const box = $("task-detail");
  if (!id) { box.hidden = true; return; }
  let task;
  try {
    task = await api.get(`/api/tasks/${encodeURIComponent(id)}`);
  } catch (e) {
    box.hidden = false;
    box.innerHTML = `<p class="bad">${esc(e.status === 404 ? `No task has the id ${id}.` : explain(e))}</p>`;
    return;
  }
  const fields = ["status", "priority", "tenant", "fairness_key", "weight", "assigned_to", "generation", "retry_count",
    "reclaim_count", "max_retries", "needed_capabilities", "last_error", "submitted_by", "created_at", "updated_at",
    "complete_by", "run_timeout_ms", "tokens_used"];
  const rows = fields.filter((f) => task[f] !== undefined && task[f] !== null).map((f) => {
    let value = task[f];
    if (f.endsWith("_at") || f === "complete_by") value = dateTime(value);
    else if (typeof value === "object") value = JSON.stringify(value);
    return `<tr><th>${f}</th><td ${f === "status" ? `class="status-${esc(task.status)}" data-status="${esc(task.status)}"` : ""}>${esc(value)}</td></tr>`;
  });
  const history = (task.history || []).map((h) =>
    `<li><span class="when">${dateTime(h.timestamp)}</span><b>${esc(h.event)}</b> ${h.details ? esc(JSON.stringify(h.details)) : ""}</li>`);
  const actions = [];
  if (task.status === "dead_letter") actions.push(`<button data-act="retry" data-task="${esc(task.id)}">Retry</button>`);
  if (task.status === "assigned") actions.push(`<button data-act="requeue" data-task="${esc(task.id)}">Requeue</button>`);
  if (["queued", "assigned", "dead_letter"].includes(task.status)) actions.push(`<button data-act="cancel" data-task="${esc(task.id)}">Cancel</button>`);
  box.hidden = false;
  box.innerHTML = `<h2>${esc(task.id)} <button data-close>close</button></h2>`
    + `<p class="desc">${esc(task.description)}</p>`
    + `<p class="admin-only">${actions.join(" ")}</p>`
    + `<table id="detail-fields">${rows.join("")}</table>`
    + `<h2>History (newest first)</h2><ul class="timeline" id="detail-history">${history.join("")}</ul>`
    + (task.result !== undefined && task.result !== null ? `<h2>Result</h2><pre>${esc(JSON.stringify(task.result, null, 2))}</pre>` : "");
}

// ---- dead letter: retry and cancel (admin) ----

/** The dead letter's first 1,000 tasks (its own route, which needs no scan of the queue). */
async function loadDead() {
  try {
    const answer = await api.get("/api/tasks/dead-letter");
    state.dead = answer.tasks;
    state.deadCount = answer.count;
    state.deadPage = Math.min(state.deadPage, Math.max(0, Math.ceil(state.dead.length / 50) - 1));
    drawDead();
  } catch (e) { fail(e); }
}

function drawDead() {
  const page = state.dead.slice(state.deadPage * 50, state.deadPage * 50 + 50);
  $("dead-list").tBodies[0].innerHTML = page.map((t) =>
    `<tr data-task="${esc(t.id)}"><td>${taskLink(t.id)}</td><td>${t.priority}</td><td>${esc(t.tenant || "–")}</td><td>${esc(t.fairness_key || "–")}</td>`
    + `<td class="num">${t.retry_count}</td><td class="desc">${esc(t.last_error || "–")}</td><td>${time(t.updated_at)}</td>`
    + `<td class="admin-only"><button data-act="retry" data-task="${esc(t.id)}">Retry</button> `
    + `<button data-act="cancel" data-task="${esc(t.id)}">Cancel</button></td></tr>`).join("")
    || `<tr><td colspan="8" class="muted">the dead letter is empty</td></tr>`;
  const more = state.deadCount > state.dead.length
    ? `; the first ${state.dead.length} are listed here, the Tasks view pages through all of them (status dead_letter)` : "";
  $("dead-page").textContent = `page ${state.deadPage + 1}, ${state.deadCount} tasks in the dead letter${more}`;
  $("dead-prev").disabled = state.deadPage === 0;
  $("dead-next").disabled = (state.deadPage + 1) * 50 >= state.dead.length;
}

let deadTimer = null;
function loadDeadSoon() {
  if (!deadTimer) deadTimer = setTimeout(() => { deadTimer = null; loadDead(); }, 500);
}

async function act(action, id) {
  try {
    const answer = await api.post(`/api/tasks/${encodeURIComponent(id)}/${action}`);
    showError("");
    showNotice(`${action}: ${id} is now ${answer.status}`);
  } catch (e) {
    fail(e);
  }
  loadDead();
  if (state.detailId === id) loadDetail();
}

// ---- policy: what is in force, and swapping it (admin) ----

async function loadPolicy() {
  try {
    const policy = await api.get("/api/policy");
    const info = [["name", policy.name], ["version", policy.version], ["digest", policy.digest], ["source", policy.source]];
    if (policy.contract !== undefined) info.push(["contract", policy.contract]);
    info.push(["config", JSON.stringify(policy.config)], ["loaded at", dateTime(policy.loaded_at)],
      ["fallback active", policy.fallback_active ? "YES: the native greedy policy is deciding" : "no"]);
    if (policy.startup_fallback) info.push(["startup fallback", `${policy.startup_fallback.wanted}: ${policy.startup_fallback.reason}`]);
    $("policy-info").innerHTML = info.map(([k, v]) =>
      `<tr><th>${k}</th><td data-field="${k.replace(/ /g, "_")}" ${k === "fallback active" && policy.fallback_active ? 'class="bad"' : ""}>${esc(v)}</td></tr>`).join("");
    const counters = policy.counters || {};
    $("policy-counters").innerHTML = Object.entries(counters).map(([k, v]) =>
      `<tr><th>${esc(k)}</th><td class="num">${esc(v !== null && typeof v === "object"
        ? Object.entries(v).map(([name, n]) => `${name} ${n}`).join(", ") : v)}</td></tr>`).join("");
  } catch (e) { fail(e); }
}

async function loadBuiltins() {
  try {
    const answer = await api.get("/api/policy/builtins");
    $("swap-builtin").innerHTML = answer.builtins.map((name) => `<option>${esc(name)}</option>`).join("");
  } catch (e) { fail(e); }
}

async function swapPolicy(event) {
  event.preventDefault();
  const result = $("swap-result");
  const configText = $("swap-config").value.trim();
  let config;
  if (configText) {
    try { config = JSON.parse(configText); } catch (e) {
      result.hidden = false;
      result.className = "bad";
      result.textContent = `The configuration is not JSON: ${e.message}`;
      return;
    }
  }
  const kind = document.querySelector('input[name="swap-kind"]:checked').value;
  $("swap-go").disabled = true;
  result.hidden = false;
  result.className = "";
  result.textContent = "swapping…";
  try {
    let policy;
    if (kind === "builtin") {
      const body = { builtin: $("swap-builtin").value };
      if (config !== undefined) body.config = config;
      policy = await api.call("PUT", "/api/policy", body);
    } else {
      const file = $("swap-file").files[0];
      if (!file) throw new ApiError(0, "Choose a component file (.wasm) to upload.");
      const query = config !== undefined ? `?config=${encodeURIComponent(JSON.stringify(config))}` : "";
      policy = await api.call("PUT", `/api/policy${query}`, await file.arrayBuffer(), "application/wasm");
    }
    result.className = "ok";
    result.textContent = `In force now: ${policy.name} ${policy.version} (${policy.source}, ${policy.digest})`;
    loadPolicy();
  } catch (e) {
    result.className = "bad";
    result.textContent = `The swap was refused; the policy in force is unchanged. ${explain(e)}`;
  } finally {
    $("swap-go").disabled = false;
  }
}

// ---- fair share: live holdings and recent assignments per group, against weights ----

/** Tenants' weights, where the hub has tenants and the token may read them. */
async function loadTenants() {
  try {
    const answer = await api.get("/admin/tenants");
    state.tenantWeights = new Map((answer.tenants || []).map((t) => [t.name, t.weight]));
  } catch (e) {
    state.tenantWeights = null; // no tenants on this hub, or not an admin
  }
}

/** A fairness key's weight: the weight of one of its tasks, asked once per key. */
function weightOf(group) {
  if (state.tenantWeights && state.tenantWeights.has(group)) return state.tenantWeights.get(group);
  if (state.weights.has(group)) return state.weights.get(group);
  state.weights.set(group, null);
  if (group !== "(none)" && !state.byTenant) {
    api.get(`/api/tasks?${new URLSearchParams({ fairness_key: group, limit: "1" })}`)
      .then((page) => { state.weights.set(group, page.tasks[0] ? page.tasks[0].weight ?? 1 : 1); markDirty("fair"); })
      .catch(() => state.weights.set(group, 1));
  } else {
    state.weights.set(group, 1);
  }
  return null;
}

/** Forgets the assignments older than the window (in one cut: thousands may expire at once). */
function trimAssignments() {
  const since = Date.now() - FAIR_WINDOW_MS;
  const keep = state.assignments.findIndex(([at]) => at >= since);
  state.assignments.splice(0, keep < 0 ? state.assignments.length : keep);
}

function drawFair() {
  trimAssignments();
  const groups = new Map();
  const entry = (g) => groups.get(g) || groups.set(g, { now: 0, recent: 0 }).get(g);
  for (const task of state.holding.values()) entry(groupOf(task)).now += 1;
  for (const [, task] of state.assignments) entry(groupOf(task)).recent += 1;
  const totalNow = [...groups.values()].reduce((sum, g) => sum + g.now, 0);
  const totalRecent = state.assignments.length;
  const weights = new Map([...groups.keys()].map((g) => [g, weightOf(g)]));
  const totalWeight = [...weights.values()].reduce((sum, w) => sum + (w || 0), 0);
  const pct = (part, whole) => (whole ? (100 * part) / whole : 0);
  const rows = [...groups.entries()].sort((a, b) => b[1].now - a[1].now || b[1].recent - a[1].recent).slice(0, 200).map(([group, g]) => {
    const w = weights.get(group);
    const wShare = pct(w || 0, totalWeight);
    const aShare = pct(g.now, totalNow);
    return `<tr data-group="${esc(group)}"><td>${esc(group)}</td><td class="num">${w ?? "…"}</td><td class="num">${wShare.toFixed(1)}%</td>`
      + `<td class="num">${g.now}</td><td class="num">${aShare.toFixed(1)}%</td><td class="num">${g.recent}</td>`
      + `<td class="num">${pct(g.recent, totalRecent).toFixed(1)}%</td>`
      + `<td><span class="bar" style="width:${aShare * 2}px"></span><br><span class="bar weight" style="width:${wShare * 2}px"></span></td></tr>`;
  });
  $("fair-list").tBodies[0].innerHTML = rows.join("") || `<tr><td colspan="8" class="muted">no task is assigned and none was in the last minute</td></tr>`;
}

// ---- drawing, batched ----

let frameAsked = false;
function markDirty(view) {
  state.dirty.add(view);
  if (!frameAsked) {
    frameAsked = true;
    // At most four redraws a second, whatever the rate of events.
    setTimeout(() => requestAnimationFrame(draw), 250);
  }
}

function draw() {
  frameAsked = false;
  const dirty = state.dirty;
  state.dirty = new Set();
  if (dirty.has("overview") && state.view === "overview") drawOverview();
  else if (dirty.has("overview")) state.dirty.add("overview");
  if (dirty.has("agents") && state.view === "agents") drawAgents();
  else if (dirty.has("agents")) state.dirty.add("agents");
  if (dirty.has("fair") && state.view === "fair") drawFair();
  else if (dirty.has("fair")) state.dirty.add("fair");
}

function selectView(view) {
  state.view = view;
  for (const button of document.querySelectorAll("#tabs button")) button.classList.toggle("active", button.dataset.view === view);
  for (const section of document.querySelectorAll(".view")) section.hidden = section.id !== `view-${view}`;
  markDirty(view);
  if (view === "policy" && api.token) loadPolicy();
}

// ---- wiring ----

$("token").value = api.token;
$("login").addEventListener("submit", (event) => {
  event.preventDefault();
  api.setToken($("token").value);
  connect();
});
$("forget").addEventListener("click", () => {
  api.forget();
  stream.stop();
  $("token").value = "";
  document.body.classList.remove("is-admin");
  $("conn").textContent = "not connected";
});
$("tabs").addEventListener("click", (event) => {
  if (event.target.dataset.view) selectView(event.target.dataset.view);
});
document.addEventListener("click", (event) => {
  const target = event.target;
  if (target.dataset.act) act(target.dataset.act, target.dataset.task);
  else if (target.dataset.task && target.tagName === "A") openTask(target.dataset.task);
  else if (target.hasAttribute("data-close")) { state.detailId = null; $("task-detail").hidden = true; }
});
$("task-search").addEventListener("submit", (event) => {
  event.preventDefault();
  const id = $("task-id").value.trim();
  if (id) { openTask(id); return; }
  state.taskCursors = [null];
  loadTasks();
});
$("task-next").addEventListener("click", () => { state.taskCursors.push(state.taskNext); loadTasks(); });
$("task-prev").addEventListener("click", () => { state.taskCursors.pop(); loadTasks(); });
$("dead-next").addEventListener("click", () => { state.deadPage += 1; drawDead(); });
$("dead-prev").addEventListener("click", () => { state.deadPage -= 1; drawDead(); });
$("agent-list").addEventListener("scroll", () => requestAnimationFrame(drawAgents));
$("agent-filter").addEventListener("input", () => { state.agentsDirty = true; markDirty("agents"); });
$("agent-state").addEventListener("change", () => { state.agentsDirty = true; markDirty("agents"); });
$("swap-form").addEventListener("submit", swapPolicy);
// The charts' time axis moves on even when no event arrives; the policy counters too. A hub
// without stats events gets a throughput chart counted from its task events instead.
setInterval(() => {
  if (!state.statsSeen && !stream.stopped) {
    state.throughput.push([Date.now(), state.perSecond.assigned, state.perSecond.completed]);
  }
  state.perSecond = { assigned: 0, completed: 0 };
  trimAssignments();
  if (state.view === "overview") markDirty("overview");
}, 1000);
setInterval(() => { if (state.view === "policy" && api.token && !stream.stopped) loadPolicy(); }, 5000);

markDirty("overview");
if (api.token) connect();
