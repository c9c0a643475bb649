// app.js — the viewer page: a stage where danmaku fly right to left over
// the "video", a chat log, room switching, guest sign-in and sending.
// User-supplied text is only ever rendered with textContent.
import { DanmakuClient, SendError, validRoom, wsURL } from "./danmaku.js";
import { Retractions, Stage, appendText, badge, danmakuElement, kindClass } from "./stage.js";

const $ = (id) => document.getElementById(id);
const LOG_MAX = 200;

// ---------------------------------------------------------------- rendering

function logItem(m, mine) {
  const li = document.createElement("li");
  const k = kindClass(m.kind);
  if (k) li.classList.add(k);
  if (mine) li.classList.add("mine");
  const t = document.createElement("span");
  t.className = "t";
  const d = new Date(m.ts || Date.now());
  t.textContent = String(d.getHours()).padStart(2, "0") + ":" + String(d.getMinutes()).padStart(2, "0");
  li.appendChild(t);
  const b = badge(m.role, m.kind);
  if (b) li.appendChild(b);
  if (m.name) {
    const n = document.createElement("span");
    n.className = "n";
    n.textContent = m.name;
    li.appendChild(n);
  }
  return appendText(li, m);
}

function seconds(ms) {
  return Math.max(1, Math.ceil((ms || 0) / 1000));
}

function duration(ms) {
  const s = seconds(ms);
  if (s < 120) return s + "s";
  if (s < 7200) return Math.ceil(s / 60) + " min";
  return Math.ceil(s / 3600) + " h";
}

// rejectText turns a reject frame into a sentence for the viewer.
export function rejectText(f) {
  const wait = f.retry_after_ms;
  switch (f.code) {
    case "rate_limited":
      return `slow down — try again in ${seconds(wait)}s`;
    case "slow_mode":
      return `slow mode is on — you can send again in ${seconds(wait)}s`;
    case "banned":
      return wait > 0 ? `you are timed out in this room for ${duration(wait)}` : "you are banned from this room";
    case "blocked":
      if (f.message === "duplicate") return "you just said that — say something new";
      if (f.message === "display_mode") return "top and bottom danmaku are not open to you in this room — send it scrolling";
      if (f.message === "display_size") return "that size is not open to you in this room — send it at normal size";
      if (f.message === "link") return "links are not allowed in this room";
      return "message blocked by the room's filters";
    case "too_long":
      return "message too long for this room — shorten it";
    case "invalid":
      return "message not accepted: " + (f.message || "invalid");
    case "unauthorized":
      return "sign in to send — pick a guest name above";
    case "unavailable":
      return "the server is busy — try again in a moment";
    default:
      return "message refused (" + (f.code || "unknown") + ")";
  }
}

// ---------------------------------------------------------------- app

const stage = new Stage($("layer"));
const logEl = $("log");
let room = "";
// What delete and purge frames retracted in the room, so a message that
// comes after them is not shown (reset with the room).
let retracted = new Retractions();
let me = { token: "", uid: "", name: "" };
let client = null;
let guestsEnabled = true;

function note(text, cls) {
  const n = $("note");
  n.textContent = text;
  n.className = "note" + (cls ? " " + cls : "");
}

function mine(m) {
  return !!me.uid && m.uid === me.uid;
}

// emptyHint shows a line on the stage while the room has no message.
function emptyHint(on) {
  const h = $("empty-hint");
  if (on) {
    h.textContent = me.token
      ? `No danmaku in #${room} yet — say something below to start.`
      : `No danmaku in #${room} yet — pick a guest name below and say something.`;
  }
  h.hidden = !on;
}

function show(m, fly) {
  emptyHint(false);
  if (fly) stage.add(danmakuElement(m, mine(m)), m.kind === "paid" || m.kind === "system");
  const atBottom = logEl.scrollTop + logEl.clientHeight >= logEl.scrollHeight - 30;
  logEl.appendChild(logItem(m, mine(m)));
  while (logEl.children.length > LOG_MAX) logEl.firstElementChild.remove();
  if (atBottom) logEl.scrollTop = logEl.scrollHeight;
}

function removeWhere(pred) {
  stage.removeWhere(pred);
  for (const li of [...logEl.children]) if (pred(li)) li.remove();
}

function setOnline(n) {
  $("online").textContent = n + " online";
}

function setIdentity(tok, uid, name) {
  me = { token: tok || "", uid: uid || "", name: name || "" };
  try {
    if (me.token) sessionStorage.setItem("danmaku.me", JSON.stringify(me));
    else sessionStorage.removeItem("danmaku.me");
  } catch {
    // storage may be unavailable; the identity then lasts for this page
  }
  const box = $("identity");
  box.classList.toggle("signed-in", !!me.token);
  $("signout").hidden = !me.token;
  $("whoami").textContent = me.token ? "sending as " + (me.name || me.uid || "you") : "watching anonymously";
  if (client) client.setToken(me.token);
}

// claimsOf reads the payload of a JWT (without verifying it: the server does).
function claimsOf(tok) {
  try {
    const p = tok.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const json = decodeURIComponent(
      [...atob(p)].map((c) => "%" + c.charCodeAt(0).toString(16).padStart(2, "0")).join(""),
    );
    const c = JSON.parse(json);
    return c && typeof c === "object" ? c : null;
  } catch {
    return null;
  }
}

function switchRoom(next) {
  if (!validRoom(next)) {
    note("room ids are 1-64 letters, digits, _ or -", "bad");
    return;
  }
  if (next === room) return;
  if (room) client.leave(room);
  room = next;
  retracted = new Retractions();
  emptyHint(false);
  stage.clear();
  logEl.textContent = "";
  setOnline(0);
  $("room-name").textContent = "#" + room;
  $("room-input").value = room;
  document.title = room + " · danmaku";
  const u = new URL(location.href);
  u.searchParams.set("room", room);
  history.replaceState(null, "", u);
  client.join(room).catch(() => {});
}

const STATE_TEXT = {
  idle: "offline",
  connecting: "connecting…",
  open: "live",
  closed: "offline",
};

function wire(c) {
  c.on("state", (s, info) => {
    const el = $("conn");
    el.dataset.state = s;
    let t = STATE_TEXT[s] || s;
    if (s === "reconnecting") t = "reconnecting in " + (info.delayMs / 1000).toFixed(1) + "s";
    if (s === "kicked") t = "kicked: " + c.kickedReason;
    $("conn-text").textContent = t;
  });
  c.on("message", (r, m, source) => {
    if (r === room && !retracted.hides(m)) show(m, source !== "history");
  });
  c.on("joined", (r, _seq, online) => {
    if (r === room) setOnline(online);
  });
  c.on("history", (r) => {
    if (r === room && logEl.children.length === 0) emptyHint(true);
  });
  c.on("verdict", (r, _id, f) => {
    if (f.op === "ack") note("a moderator approved your message" + (r !== room ? " in #" + r : ""), "ok");
    else note("a moderator rejected your message" + (r !== room ? " in #" + r : ""), "bad");
  });
  c.on("online", (r, n) => {
    if (r === room) setOnline(n);
  });
  c.on("delete", (r, seqs) => {
    if (r !== room) return;
    retracted.delete(seqs);
    const set = new Set(seqs.map(String));
    removeWhere((el) => set.has(el.dataset.seq));
  });
  c.on("purge", (r, uid, until) => {
    if (r !== room) return;
    retracted.purge(uid, until);
    removeWhere((el) => el.dataset.uid === uid);
  });
  c.on("notice", (r, text, uid) => {
    if (r === room || uid) show({ text, kind: "system", role: "service", name: uid ? "to you" : "", ts: Date.now() }, true);
  });
  c.on("kicked", (reason) => note("you were disconnected: " + reason, "bad"));
  c.on("tokenexpired", () => {
    setIdentity("", "", "");
    note("your sign-in expired — pick a guest name again to send", "bad");
  });
  c.on("error", (f) => note("server: " + (f.message || f.code), "bad"));
}

async function send(text) {
  const r = room;
  note("sending…");
  try {
    const f = await client.send(r, text, { mode: $("send-mode").value, size: $("send-size").value });
    if (f.op === "ack") {
      note(f.held ? "your message is waiting for a moderator — you will see the outcome here" : "", f.held ? "" : "ok");
      return;
    }
    note(rejectText(f), "bad");
    const input = $("send-input");
    if (!input.value && (f.code !== "blocked" || /^display_/.test(f.message || ""))) input.value = text;
  } catch (e) {
    note(e instanceof SendError ? "not sent: " + e.message : "not sent", "bad");
  }
}

async function guest(name) {
  note("signing in…");
  try {
    const res = await fetch("/api/guest", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ name }),
    });
    const body = await res.json().catch(() => ({}));
    if (!res.ok) {
      note("guest sign-in failed: " + ((body.error && body.error.message) || res.status), "bad");
      return;
    }
    setIdentity(body.token, body.uid, body.name);
    note("signed in as " + body.name, "ok");
    $("send-input").focus();
  } catch {
    note("guest sign-in failed: network error", "bad");
  }
}

async function main() {
  let cfg = {};
  try {
    const res = await fetch("/api/config");
    if (res.ok) cfg = await res.json();
  } catch {
    // fall back to the page's own port
  }
  guestsEnabled = cfg.guests !== false;
  if (!guestsEnabled) {
    $("guest-form").hidden = true;
    document.querySelector(".token-box").open = true;
  }
  try {
    const saved = JSON.parse(sessionStorage.getItem("danmaku.me") || "null");
    if (saved && saved.token) me = saved;
  } catch {
    // ignore
  }
  client = new DanmakuClient({ url: wsURL(location, cfg), token: me.token });
  wire(client);
  setIdentity(me.token, me.uid, me.name);
  client.connect();

  const initial = new URLSearchParams(location.search).get("room");
  switchRoom(validRoom(initial) ? initial : "demo");

  $("room-form").addEventListener("submit", (e) => {
    e.preventDefault();
    switchRoom($("room-input").value.trim());
  });
  for (const b of document.querySelectorAll(".quick button")) {
    b.addEventListener("click", () => switchRoom(b.dataset.room));
  }
  $("guest-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const name = $("guest-name").value.trim();
    if (name) guest(name);
  });
  $("token-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const tok = $("token-input").value.trim();
    if (!tok) return;
    const c = claimsOf(tok);
    if (!c) {
      note("that does not look like a token", "bad");
      return;
    }
    $("token-input").value = "";
    setIdentity(tok, typeof c.sub === "string" ? c.sub : "", typeof c.name === "string" ? c.name : "");
    note("using the pasted token", "ok");
  });
  $("signout").addEventListener("click", () => {
    setIdentity("", "", "");
    note("");
  });
  $("send-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const input = $("send-input");
    const text = input.value.trim();
    if (!text) return;
    input.value = "";
    send(text);
  });
  addEventListener("resize", () => stage.size());
  globalThis.danmakuViewer = {
    client,
    stage,
    get retracted() {
      return retracted;
    },
  };
}

main();
