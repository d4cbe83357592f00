// ClusterODM admin page: plain DOM, no framework, no build step.
// Everything coming from nodes is inserted with textContent (never innerHTML).
"use strict";

const REFRESH_MS = 3000;
const STATUS = { 10: "queued", 20: "running", 30: "failed", 40: "completed", 50: "canceled" };

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

async function getJSON(path) {
  const response = await fetch(path, { headers: { Accept: "application/json" }, cache: "no-store" });
  if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
  return response.json();
}

async function send(method, path, body) {
  const response = await fetch(path, {
    method,
    headers: { "Content-Type": "application/json", Accept: "application/json" },
    body: JSON.stringify(body),
  });
  if (!response.ok) throw new Error(`${method} ${path}: HTTP ${response.status}`);
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

function taskRow(task) {
  const statusText = task.status === null ? "unknown" : (STATUS[task.status] || String(task.status));
  const kind = { queued: "info", running: "run", failed: "bad", completed: "ok", canceled: "muted" }[statusText] || "muted";
  const title = task.errorMessage || task.pollError || null;
  return el("tr", { "data-task": task.uuid },
    el("td", {},
      el("div", { class: "mono" }, task.uuid),
      task.name ? el("div", { class: "muted small" }, task.name) : null),
    el("td", { title }, badge(statusText, kind), task.heldBy === "cluster" ? el("span", { class: "muted small" }, " at cluster") : null),
    progressCell(task),
    el("td", { class: "num" }, task.imagesCount ?? "–"),
    el("td", { class: "mono" }, task.node ?? "–"),
    el("td", { class: "muted" }, duration(task.ageMs)));
}

function fill(tbodyId, rows, emptyText, columns) {
  const body = document.getElementById(tbodyId);
  body.replaceChildren(...(rows.length ? rows : [el("tr", { class: "empty" }, el("td", { colspan: columns }, emptyText))]));
}

async function refresh() {
  if (busy) return;
  busy = true;
  try {
    const [nodes, tasks] = await Promise.all([getJSON("/r/node/list"), getJSON("/r/task/list")]);
    fill("nodes-body", nodes.map(nodeRow), "No nodes yet: add one with “Add node”.", 11);
    fill("tasks-body", tasks.map(taskRow), "No tasks yet.", 6);
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

async function start() {
  try {
    const info = await getJSON("/r/info");
    document.title = `${info.name} ${info.version}`;
    document.getElementById("title").textContent = `${info.name} ${info.version}`;
  } catch (error) {
    showMessage(error.message, "bad");
  }
  setupAddForm();
  document.getElementById("auto-refresh").addEventListener("change", schedule);
  await refresh();
  schedule();
}

document.addEventListener("DOMContentLoaded", start);
