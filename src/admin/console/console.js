// Warren's web console: plain JavaScript over the admin API (/api/v1), no framework, no build
// step. Views are chosen by the URL's hash: #/overview, #/clients, #/client/ID, #/retained,
// #/bridge. The overview refreshes every second; its chart shows the last minute of rates.
"use strict";

const $ = (sel) => document.querySelector(sel);
let timer = null;
// A message to show after the next change of view (e.g. "Kicked ...").
let flash = "";

function token() { return sessionStorage.getItem("warren-token") || ""; }

function say(text, ok) {
  const m = $("#message");
  m.textContent = text || "";
  m.className = ok ? "ok" : "";
}

async function api(method, path, body) {
  const headers = { "content-type": "application/json" };
  if (token()) headers.authorization = "Bearer " + token();
  const res = await fetch("/api/v1" + path, { method, headers, body: body ? JSON.stringify(body) : undefined });
  if (res.status === 401) {
    $("#login").hidden = false;
    throw new Error("a token is needed");
  }
  const data = await res.json();
  if (!res.ok) throw new Error(data.error || res.statusText);
  return data;
}

function cell(v) { return v === null || v === undefined ? "-" : String(v); }

function fill(tbody, rows) {
  tbody.replaceChildren(...rows.map((cells) => {
    const tr = document.createElement("tr");
    for (const c of cells) {
      const td = document.createElement("td");
      if (c instanceof Node) td.append(c); else td.textContent = cell(c);
      tr.append(td);
    }
    return tr;
  }));
}

function fields(dl, pairs) {
  dl.replaceChildren(...pairs.flatMap(([k, v]) => {
    const dt = document.createElement("dt"); dt.textContent = k;
    const dd = document.createElement("dd"); dd.textContent = cell(v);
    return [dt, dd];
  }));
}

function link(text, href) {
  const a = document.createElement("a");
  a.textContent = text; a.href = href;
  return a;
}

const enc = encodeURIComponent;

// ---- overview ------------------------------------------------------------------------------

function drawChart(history) {
  const canvas = $("#chart");
  const ctx = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height, pad = 30;
  ctx.clearRect(0, 0, w, h);
  const max = Math.max(1, ...history.map((p) => Math.max(p.messages_in, p.messages_out)));
  ctx.fillStyle = "#5a6675"; ctx.font = "11px sans-serif";
  ctx.fillText(String(max), 2, 12); ctx.fillText("0", 2, h - 4);
  const x = (i) => pad + (i * (w - pad - 5)) / Math.max(1, 59);
  const y = (v) => h - 5 - (v * (h - 20)) / max;
  for (const [key, color] of [["messages_in", "#2b7bd6"], ["messages_out", "#d6752b"]]) {
    ctx.strokeStyle = color; ctx.lineWidth = 2; ctx.beginPath();
    const start = 60 - history.length;
    history.forEach((p, i) => (i ? ctx.lineTo : ctx.moveTo).call(ctx, x(start + i), y(p[key])));
    ctx.stroke();
  }
  canvas.dataset.points = String(history.length);
}

async function overview() {
  const o = await api("GET", "/overview");
  $("#version").textContent = "v" + o.version + " · up " + o.uptime_secs + " s";
  const cards = [
    ["Connections", o.counts.connections], ["Sessions", o.counts.sessions],
    ["Subscriptions", o.counts.subscriptions], ["Retained", o.counts.retained],
    ["Queued", o.counts.queued], ["In flight", o.counts.inflight],
    ["Msgs in /s", o.rates.messages_in], ["Msgs out /s", o.rates.messages_out],
    ["Dropped", o.totals.messages_dropped], ["Bridge", o.bridge || "off"],
  ];
  $("#cards").replaceChildren(...cards.map(([k, v]) => {
    const d = document.createElement("div"); d.className = "card";
    const b = document.createElement("b"); b.textContent = cell(v);
    d.append(b, k);
    return d;
  }));
  fill($("#listeners tbody"), o.listeners.map((l) => [l.name, l.kind, l.address]));
  drawChart(o.history);
}

// ---- clients -------------------------------------------------------------------------------

let clientsAfter = null;

async function clients(after) {
  const q = new URLSearchParams();
  if ($("#search").value) q.set("prefix", $("#search").value);
  if ($("#search-user").value) q.set("username", $("#search-user").value);
  if (after) q.set("after", after);
  const page = await api("GET", "/clients?" + q.toString().replaceAll("+", "%20"));
  fill($("#clients tbody"), page.items.map((c) => [
    link(c.client_id, "#/client/" + enc(c.client_id)), c.username, c.address, c.listener,
    c.protocol, c.subscriptions, c.queued, c.inflight,
  ]));
  clientsAfter = page.next;
  $("#clients-next").hidden = !page.next;
}

async function client(id) {
  const c = await api("GET", "/clients/" + enc(id));
  $("#client-title").textContent = c.client_id;
  fields($("#client-fields"), [
    ["User", c.username], ["Address", c.address], ["Listener", c.listener],
    ["Protocol", c.protocol], ["Keep alive", c.keep_alive], ["Clean start", c.clean_start],
    ["Session expiry", c.session_expiry], ["Connected since", new Date(c.connected_since).toISOString()],
    ["Bytes in", c.bytes_in], ["Bytes out", c.bytes_out], ["Queued", c.queued],
    ["Queued bytes", c.queued_bytes], ["In flight", c.inflight],
  ]);
  fill($("#client-subs tbody"), c.subscription_list.map((s) => [s.filter, s.qos, s.no_local, s.retain_as_published]));
  $("#kick").dataset.client = c.client_id;
  $("#kick").disabled = false;
}

async function kick() {
  const id = $("#kick").dataset.client;
  $("#kick").disabled = true;
  try {
    await api("POST", "/clients/" + enc(id) + "/kick", { reason: Number($("#kick-reason").value) });
    flash = "Kicked " + id;
    location.hash = "#/clients";
  } catch (e) {
    $("#kick").disabled = false;
    throw e;
  }
}

// ---- retained ------------------------------------------------------------------------------

let retainedAfter = null;

async function retained(after) {
  const q = new URLSearchParams({ filter: $("#retained-filter").value || "#" });
  if (after) q.set("after", after);
  const page = await api("GET", "/retained?" + q.toString().replaceAll("+", "%2B"));
  fill($("#retained tbody"), page.items.map((m) => {
    const del = document.createElement("button");
    del.textContent = "Delete";
    del.addEventListener("click", () => act(async () => {
      await api("DELETE", "/retained/" + enc(m.topic));
      say("Deleted " + m.topic, true);
      await retained();
    }));
    return [m.topic, m.qos, m.payload_bytes, m.payload_encoding === "utf-8" ? m.payload : "(binary)", del];
  }));
  retainedAfter = page.next;
  $("#retained-next").hidden = !page.next;
}

// ---- bridge --------------------------------------------------------------------------------

async function bridge() {
  let b;
  try {
    b = await api("GET", "/bridge");
  } catch (e) {
    fields($("#bridge-fields"), [["State", String(e.message)]]);
    fill($("#bridge-out tbody"), []); fill($("#bridge-in tbody"), []);
    return;
  }
  fields($("#bridge-fields"), [["RabbitMQ", b.url], ["Connection", b.connection], ["Reconnects", b.reconnects], ["Failed connects", b.connect_failures]]);
  fill($("#bridge-out tbody"), b.outbound.map((r) => [r.rule, r.filter, r.exchange, r.subscribed, r.pending, r.spool_messages]));
  fill($("#bridge-in tbody"), b.inbound.map((r) => [r.rule, r.queue, r.consuming]));
}

// ---- routing -------------------------------------------------------------------------------

async function act(f) {
  try { await f(); } catch (e) { say(e.message); }
}

function show(view) {
  for (const s of document.querySelectorAll("main section")) s.hidden = s.id !== "view-" + view;
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.dataset.view === view);
}

function route() {
  clearInterval(timer);
  const [, view, arg] = location.hash.match(/^#\/(\w+)\/?(.*)$/) || [null, "overview", ""];
  switch (view) {
    case "clients": show("clients"); act(() => clients()); break;
    case "client": show("client"); act(() => client(decodeURIComponent(arg))); break;
    case "retained": show("retained"); act(() => retained()); break;
    case "bridge": show("bridge"); act(bridge); timer = setInterval(() => act(bridge), 2000); break;
    default: show("overview"); act(overview); timer = setInterval(() => act(overview), 1000);
  }
}

window.addEventListener("hashchange", () => { say(flash, true); flash = ""; route(); });
window.addEventListener("DOMContentLoaded", () => {
  $("#login").addEventListener("submit", (e) => {
    e.preventDefault();
    sessionStorage.setItem("warren-token", $("#token").value);
    $("#login").hidden = true;
    say("");
    route();
  });
  $("#client-search").addEventListener("submit", (e) => { e.preventDefault(); act(() => clients()); });
  $("#clients-next").addEventListener("click", () => act(() => clients(clientsAfter)));
  $("#retained-search").addEventListener("submit", (e) => { e.preventDefault(); act(() => retained()); });
  $("#retained-next").addEventListener("click", () => act(() => retained(retainedAfter)));
  $("#kick").addEventListener("click", () => act(kick));
  route();
});
