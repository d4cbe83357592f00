// ClusterODM admin page: plain DOM, no framework, no build step.
// Everything coming from nodes is inserted with textContent (never innerHTML).
"use strict";

const REFRESH_MS = 3000;
const FOLLOW_MS = 2000;
const STATUS = { 10: "queued", 20: "running", 30: "failed", 40: "completed", 50: "canceled" };
const STATUS_KIND = { queued: "info", running: "run", failed: "bad", completed: "ok", canceled: "muted" };
const STATUS_COLOR = { queued: "#c98a0b", running: "#2f6fde", failed: "#d64545", completed: "#1f9d55", canceled: "#98a2b3" };
const FINAL = new Set([30, 40, 50]);

let timer = null;
let busy = false;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function ago(ms) {
  if (ms === null || ms === undefined) return "never";
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

function duration(ms) {
  if (ms === null || ms === undefined) return "–";
  return ago(ms).replace(" ago", "");
}

function showMessage(text, kind) {
  const box = document.getElementById("message");
  box.textContent = text;
  box.className = `message ${kind || "info"}`;
  box.hidden = !text;
  if (text) setTimeout(() => { if (box.textContent === text) box.hidden = true; }, 6000);
}

// The server's own `{"error": ...}` when it sent one (e.g. the database is unavailable), else the status.
async function failure(response, what) {
  const body = await response.json().catch(() => null);
  return new Error(body && typeof body.error === "string" ? body.error : `${what}: HTTP ${response.status}`);
}

async function getJSON(path) {
  const response = await fetch(path, { headers: { Accept: "application/json" }, cache: "no-store" });
  if (!response.ok) throw await failure(response, path);
  return response.json();
}

async function send(method, path, body) {
  const response = await fetch(path, {
    method,
    headers: { "Content-Type": "application/json", Accept: "application/json" },
    body: JSON.stringify(body),
  });
  if (!response.ok) throw await failure(response, `${method} ${path}`);
  return response.json();
}

function badge(text, kind) {
  return el("span", { class: `badge ${kind}` }, text);
}

function nodeRow(node) {
  const info = node.nodeData.info || {};
  const engine = node.getEngineInfo && node.getEngineInfo.engine
    ? `${node.getEngineInfo.engine} ${node.getEngineInfo.engineVersion}` : "?";
  const queue = node.getTaskQueueCount ?? "?";
  const slots = node.getMaxParallelTasks ?? "?";
  let ram = "?";
  let ramTitle = null;
  if (typeof info.availableMemory === "number" && typeof info.totalMemory === "number" && info.totalMemory > 0) {
    ram = `${Math.round((info.availableMemory / info.totalMemory) * 100)}%`;
    const gb = (b) => (b / 1073741824).toFixed(1);
    ramTitle = `${gb(info.availableMemory)} / ${gb(info.totalMemory)} GB`;
  }
  const flags = el("span", { class: "flags" },
    node.isLocked ? badge("locked", "warn") : null,
    node.isAutoSpawned ? badge("auto-spawned", "info") : null);
  const lockButton = el("button", {
    type: "button",
    class: "button small ghost",
    "data-action": node.isLocked ? "unlock" : "lock",
    onclick: () => act(node.isLocked ? "/r/node/unlock" : "/r/node/lock", "POST", node),
  }, node.isLocked ? "Unlock" : "Lock");
  const deleteButton = el("button", {
    type: "button",
    class: "button small danger",
    "data-action": "delete",
    onclick: () => {
      if (confirm(`Remove node ${node.name}? Its task routes are forgotten too.`)) act("/r/node", "DELETE", node);
    },
  }, "Remove");
  const state = node.isOnline ? badge("online", "ok") : badge("offline", "bad");
  return el("tr", { "data-node": node.name, class: node.isOnline ? "" : "dim" },
    el("td", { class: "num" }, node.number),
    el("td", { class: "mono" }, node.name),
    el("td", { title: node.lastError || null }, state),
    el("td", {}, `${queue} / ${slots}`, el("span", { class: "muted" }, ` (${node.availableSlots} free)`)),
    el("td", {}, engine),
    el("td", {}, node.getVersion ?? "?"),
    el("td", { class: "num" }, info.cpuCores ?? "?"),
    el("td", { class: "num", title: ramTitle }, ram),
    el("td", {}, flags),
    el("td", { class: "muted" }, ago(node.lastPollAgeMs)),
    el("td", { class: "actions" }, lockButton, deleteButton));
}

function progressCell(task) {
  if (typeof task.progress !== "number") return el("td", { class: "muted" }, "–");
  const pct = Math.max(0, Math.min(100, task.progress));
  const bar = el("div", { class: "bar" });
  bar.style.width = `${pct}%`;
  const kind = task.status === 30 ? "bad" : task.status === 40 ? "ok" : task.status === 50 ? "muted" : "run";
  return el("td", {},
    el("div", { class: `progress ${kind}`, role: "progressbar", "aria-valuenow": pct, "aria-valuemin": 0, "aria-valuemax": 100 }, bar),
    el("span", { class: "progress-text" }, `${pct.toFixed(pct % 1 ? 1 : 0)}%`));
}

function statusBadge(code) {
  const text = code === null || code === undefined ? "unknown" : (STATUS[code] || String(code));
  return badge(text, STATUS_KIND[text] || "muted");
}

function taskRow(task) {
  const title = task.errorMessage || task.pollError || null;
  return el("tr", { "data-task": task.uuid },
    el("td", {},
      el("a", { class: "mono task-link", href: `#/task/${encodeURIComponent(task.uuid)}` }, task.uuid),
      task.name ? el("div", { class: "muted small" }, task.name) : null),
    el("td", { title }, statusBadge(task.status), task.heldBy === "cluster" ? el("span", { class: "muted small" }, " at cluster") : null),
    progressCell(task),
    el("td", { class: "num" }, task.imagesCount ?? "–"),
    el("td", { class: "mono" }, task.node ?? "–"),
    el("td", { class: "muted" }, duration(task.ageMs)));
}

const QUEUE_KIND = { waiting: "info", assigned: "run", sending: "run" };

function queueRow(task) {
  // No owner column: the queue's order is for operators, whose tasks they are is not.
  const state = task.node ? [badge(task.state, QUEUE_KIND[task.state] || "muted"), el("span", { class: "muted small mono" }, ` ${task.node}`)]
    : [badge(task.state, QUEUE_KIND[task.state] || "muted")];
  return el("tr", { "data-queued": task.uuid },
    el("td", { class: "num" }, task.position),
    el("td", {}, el("a", { class: "mono task-link", href: `#/task/${encodeURIComponent(task.uuid)}` }, task.uuid)),
    el("td", {}, ...state),
    el("td", { class: "num" }, task.images),
    el("td", { class: "muted", title: new Date(task.enqueuedAt).toLocaleString() }, duration(task.waitedMs)));
}

function replicaRow(replica) {
  const state = replica.alive ? badge("alive", "ok") : badge("dead", "bad");
  return el("tr", { "data-replica": replica.id },
    el("td", { class: "mono" }, replica.id, replica.this ? el("span", { class: "muted small" }, " (this one)") : null),
    el("td", { class: "mono" }, replica.address),
    el("td", {}, state, replica.leader ? badge("leader", "info") : null),
    el("td", { class: "muted" }, `${(replica.heartbeatAgeMs / 1000).toFixed(1)} s ago`),
    el("td", { class: "muted" }, new Date(replica.startedAt).toLocaleString()));
}

function fill(tbodyId, rows, emptyText, columns) {
  const body = document.getElementById(tbodyId);
  body.replaceChildren(...(rows.length ? rows : [el("tr", { class: "empty" }, el("td", { colspan: columns }, emptyText))]));
}

function drawCharts(history) {
  const t = history.t;
  lineChart(document.getElementById("chart-statuses"), t,
    Object.entries(history.statuses).map(([name, values]) => ({ name, values, color: STATUS_COLOR[name] || "#666", step: true })),
    { format: formatCount });
  lineChart(document.getElementById("chart-upload"), t,
    [{ name: "upload", label: "received", values: history.uploadRate, color: "#2f6fde", area: true }],
    { format: formatBytesRate, minMax: 1000 });
  const host = document.getElementById("chart-nodes");
  const boxes = history.nodes.map((node) => {
    const box = el("figure", { class: "chart-box", "data-node-chart": node.name },
      el("figcaption", { class: "mono" }, node.name), el("div", { class: "chart-host" }));
    lineChart(box.lastChild, t, [
      { name: "running", values: node.running, color: STATUS_COLOR.running, step: true },
      { name: "queued", values: node.queued, color: STATUS_COLOR.queued, step: true },
      { name: "slots", values: node.slots, color: "#6b7585", dashed: true, step: true },
    ], { format: formatCount });
    return box;
  });
  host.replaceChildren(...(boxes.length ? boxes : [el("p", { class: "muted empty-charts" }, "No node has been polled yet.")]));
  const seconds = Math.round(history.intervalMs / 100) / 10;
  document.getElementById("charts-note").textContent =
    `${t.length} samples, one every ${seconds} s, kept in memory for ${Math.round(history.windowMs / 60000)} min`;
}

async function refresh() {
  if (busy || !document.getElementById("view-task").hidden) return;
  busy = true;
  try {
    const [nodes, tasks, history, replicas, queue] = await Promise.all([
      getJSON("/r/node/list"), getJSON("/r/task/list"), getJSON("/r/history"), getJSON("/r/replica/list"),
      getJSON("/r/queue/list")]);
    document.getElementById("no-nodes").hidden = nodes.length > 0;
    drawCharts(history);
    fill("nodes-body", nodes.map(nodeRow), "No nodes yet: add one with “Add node”.", 11);
    fill("tasks-body", tasks.map(taskRow), "No tasks yet.", 6);
    fill("replicas-body", replicas.map(replicaRow), "Not registered yet.", 5);
    fill("queue-body", queue.map(queueRow), "No task is waiting: every committed task has a node.", 5);
    document.getElementById("stat-online").textContent = `${nodes.filter((n) => n.isOnline).length} / ${nodes.length}`;
    document.getElementById("stat-slots").textContent = nodes.reduce((sum, n) => sum + (n.isOnline && !n.isLocked ? n.availableSlots : 0), 0);
    document.getElementById("stat-running").textContent = tasks.filter((t) => t.status === 10 || t.status === 20).length;
    document.getElementById("stat-tasks").textContent = tasks.length;
    document.getElementById("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
  } catch (error) {
    showMessage(`Cannot refresh: ${error.message}`, "bad");
  } finally {
    busy = false;
  }
}

async function act(path, method, node) {
  try {
    const ok = await send(method, path, { number: node.number });
    if (ok !== true) showMessage(`${node.name}: the node list changed, try again`, "bad");
  } catch (error) {
    showMessage(error.message, "bad");
  }
  await refresh();
}

function schedule() {
  clearInterval(timer);
  if (document.getElementById("auto-refresh").checked) timer = setInterval(refresh, REFRESH_MS);
}

function setupAddForm() {
  const form = document.getElementById("add-node-form");
  document.getElementById("add-node-open").addEventListener("click", () => {
    form.hidden = false;
    document.getElementById("add-hostname").focus();
  });
  document.getElementById("add-node-cancel").addEventListener("click", () => { form.hidden = true; });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = new FormData(form);
    const body = { hostname: String(data.get("hostname")).trim(), port: Number(data.get("port")), token: String(data.get("token") || "") };
    try {
      const reply = await send("POST", "/r/node/add", body);
      if (reply.success) {
        showMessage(`Added ${body.hostname}:${body.port}`, "ok");
        form.reset();
        form.hidden = true;
      } else {
        showMessage(`Cannot add ${body.hostname}:${body.port}: ${reply.error}`, "bad");
      }
    } catch (error) {
      showMessage(error.message, "bad");
    }
    await refresh();
  });
}

// -- the task detail view (#/task/<uuid>) --------------------------------------------------

const detail = { uuid: null, next: 0, status: null, timer: null, busy: false };

function fact(name, value) {
  return [el("dt", {}, name), el("dd", {}, value === null || value === undefined ? "–" : value)];
}

function appendOutput(lines) {
  const pre = document.getElementById("task-output");
  const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
  if (lines.length) pre.append(lines.map((line) => line.replace(/\r?\n$/, "")).join("\n") + "\n");
  if (atEnd) pre.scrollTop = pre.scrollHeight;
  document.getElementById("task-output-count").textContent = `(${detail.next} lines)`;
}

function renderDetail(task) {
  document.getElementById("task-uuid").textContent = task.uuid;
  document.getElementById("task-name").textContent = task.name || "";
  document.getElementById("task-status").replaceChildren(statusBadge(task.status));
  const error = document.getElementById("task-error");
  error.textContent = task.errorMessage || (task.readError ? `Cannot read the task from its node: ${task.readError}` : "");
  error.hidden = !error.textContent;
  const created = typeof task.dateCreated === "number" ? new Date(task.dateCreated).toLocaleString() : null;
  const progress = typeof task.progress === "number" ? `${task.progress.toFixed(task.progress % 1 ? 1 : 0)}%` : null;
  document.getElementById("task-facts").replaceChildren(
    ...fact("Node", task.node ? `${task.nodeNumber ?? "?"}) ${task.node}` : "not on a node yet"),
    ...fact("Held by", task.heldBy === "node" ? "its node" : "clusterodm"),
    ...fact("Progress", progress),
    ...fact("Images", task.imagesCount),
    ...fact("Created", created),
    ...fact("Processing time", typeof task.processingTime === "number" && task.processingTime >= 0 ? duration(task.processingTime) : null));
  const timeline = task.timeline.map((change) => el("li", { "data-status": change.status },
    el("span", { class: "muted" }, new Date(change.at).toLocaleTimeString()), " ",
    statusBadge(change.status), " ",
    el("span", { class: "mono small" }, change.where === "clusterodm" ? "at clusterodm (upload or forward)" : `on ${change.where}`)));
  document.getElementById("task-timeline").replaceChildren(...(timeline.length ? timeline
    : [el("li", { class: "muted" }, "No status change heard since clusterodm started.")]));
  const options = task.options.map((o) => el("tr", {}, el("td", { class: "mono" }, o.name),
    el("td", { class: "mono" }, typeof o.value === "string" ? o.value : JSON.stringify(o.value))));
  fill("task-options", options, "No options (the node's defaults).", 2);
  const pre = document.getElementById("task-output");
  pre.replaceChildren();
  detail.next = task.next;
  if (task.outputStart > 0) pre.append(`… ${task.outputStart} earlier lines not shown …\n`);
  appendOutput(task.output);
  pre.scrollTop = pre.scrollHeight;
}

async function loadDetail(uuid) {
  const response = await fetch(`/r/task/${encodeURIComponent(uuid)}`, { cache: "no-store" });
  const task = await response.json();
  if (detail.uuid !== uuid) return;
  if (!response.ok) {
    document.getElementById("task-uuid").textContent = uuid;
    document.getElementById("task-status").replaceChildren();
    const error = document.getElementById("task-error");
    error.textContent = task.error || `HTTP ${response.status}`;
    error.hidden = false;
    return;
  }
  detail.status = task.status;
  renderDetail(task);
}

async function followDetail() {
  const uuid = detail.uuid;
  if (detail.busy || uuid === null || !document.getElementById("follow").checked || FINAL.has(detail.status)) return;
  detail.busy = true;
  try {
    const news = await getJSON(`/r/task/${encodeURIComponent(uuid)}/output?line=${detail.next}`);
    if (detail.uuid !== uuid) return;
    if (news.status !== detail.status && news.status !== null) {
      await loadDetail(uuid); // a status change: show the new timeline (and the whole output again)
      return;
    }
    detail.next = news.next;
    appendOutput(news.lines);
    if (typeof news.progress === "number") {
      const facts = document.querySelectorAll("#task-facts dd");
      if (facts.length > 2) facts[2].textContent = `${news.progress.toFixed(news.progress % 1 ? 1 : 0)}%`;
    }
  } catch (error) {
    showMessage(`Cannot follow the task: ${error.message}`, "bad");
  } finally {
    detail.busy = false;
  }
}

async function route() {
  const match = /^#\/task\/(.+)$/.exec(location.hash);
  clearInterval(detail.timer);
  detail.uuid = match ? decodeURIComponent(match[1]) : null;
  document.getElementById("view-dashboard").hidden = detail.uuid !== null;
  document.getElementById("view-task").hidden = detail.uuid === null;
  if (detail.uuid === null) {
    await refresh();
    return;
  }
  window.scrollTo(0, 0);
  detail.status = null;
  try {
    await loadDetail(detail.uuid);
  } catch (error) {
    showMessage(error.message, "bad");
  }
  detail.timer = setInterval(followDetail, FOLLOW_MS);
}

async function start() {
  try {
    const info = await getJSON("/r/info");
    document.title = `${info.name} ${info.version}`;
    document.getElementById("title").textContent = `${info.name} ${info.version}`;
    if (info.nodesFile) document.getElementById("no-nodes-file").textContent = info.nodesFile;
    if (info.cliPort) document.getElementById("no-nodes-cli-port").textContent = info.cliPort;
    else document.getElementById("no-nodes-cli").hidden = true;
  } catch (error) {
    showMessage(error.message, "bad");
  }
  setupAddForm();
  document.getElementById("auto-refresh").addEventListener("change", schedule);
  document.getElementById("task-back").addEventListener("click", (event) => {
    event.preventDefault();
    location.hash = "";
  });
  window.addEventListener("hashchange", route);
  await route();
  schedule();
}

document.addEventListener("DOMContentLoaded", start);
