// replay.js — the recorded-stream replay page:
//   /replay?room=R&from=T1&to=T2   (Unix ms)   or   /replay?room=R&session=ID
// with optional video=URL (a video file played under the danmaku, starting
// at T1), at=T (open at that time) and autoplay=1.
//
// Danmaku appear at their original offsets: where each one is on screen is
// computed from the replay clock alone (x = W - (pos - offset) * speed), so
// pause, seek and speed changes need no bookkeeping and an item loaded late
// still shows where it belongs. History is read in pages of at most PAGE
// messages from windows of WINDOW ms of the stream, only as far as AHEAD
// past the playhead; a seek drops the buffer and reads from the new place.
// The density bar draws GET /api/rooms/{room}/density; a click on it seeks.
// Display modes as live (stage.js): top and bottom danmaku stay centred in
// the first free row from their edge for FIXED ms from their offset.
// User-supplied text is only ever rendered with textContent.

import { danmakuElement, modeOf } from "./stage.js";

const $ = (id) => document.getElementById(id);
const ROOM_RE = /^[A-Za-z0-9_-]{1,64}$/;
const DURATION = 8000; // replay ms an item takes to cross the stage
const FIXED = 4000; // replay ms a top or bottom item stays (stage.js fixedMs)
const PAGE = 300; // messages per history request
const WINDOW = 120000; // ms of the stream one request covers at most
const AHEAD = 30000; // replay ms read ahead of the playhead
const BUCKETS = 200; // density bars
const GAP = 24; // px between items in a lane
const SPEEDS = [0.5, 0.75, 1, 1.25, 1.5, 2];

const state = {
  room: "",
  from: 0,
  to: 0,
  session: "",
  pos: 0, // ms since from
  playing: false,
  speed: 1,
  renderedPos: -1,
  buf: [], // loaded items ascending by offset: {m, offset, lane, el, w}
  seen: new Set(), // seqs in buf
  lanes: [], // per lane: the last item placed in it
  tops: [], // per row from the top: the last top item placed in it
  bottoms: [], // per row from the bottom: the last bottom item
  gen: 0, // bumps on every seek; stale pages are dropped
  segStart: 0, // ts the current window starts at
  winEnd: 0, // ts the current window ends at (exclusive)
  afterSeq: 0, // paging inside the window
  loadedUntil: 0, // every message with ts < loadedUntil is in buf
  complete: false, // the whole rest of the range is in buf
  loading: false,
  fetches: [], // history requests made: {from, to, after_seq, limit, count}
  density: null,
  error: "",
};

const shown = new Map(); // seq → element on the stage

function note(text, bad) {
  const n = $("note");
  n.textContent = text;
  n.className = "note" + (bad ? " bad" : "");
}

function fmt(ms) {
  const s = Math.max(0, Math.floor(ms / 1000));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, "0");
  return h > 0 ? `${h}:${String(m).padStart(2, "0")}:${ss}` : `${m}:${ss}`;
}

async function api(path) {
  const res = await fetch(path, { headers: { Accept: "application/json" } });
  let body = null;
  try {
    body = await res.json();
  } catch {
    body = null;
  }
  if (!res.ok) {
    const msg = body && body.error ? body.error.message : `HTTP ${res.status}`;
    throw new Error(msg);
  }
  return body;
}

// ---------------------------------------------------------------- layout

const measureCtx = document.createElement("canvas").getContext("2d");

function stageSize() {
  const layer = $("layer");
  const W = layer.clientWidth || 640;
  const H = layer.clientHeight || 360;
  const laneH = parseFloat(getComputedStyle(document.documentElement).getPropertyValue("--lane")) || 34;
  return { W, laneH, n: Math.max(1, Math.floor((H - 8) / laneH)) };
}

// estimate is an item's width before it has an element (lane choice).
function estimate(m) {
  measureCtx.font = '600 22px system-ui, -apple-system, "Segoe UI", "PingFang SC", "Noto Sans CJK SC", sans-serif';
  return measureCtx.measureText(m.text || "").width + 8 + (m.role || m.kind === "paid" ? 40 : 0);
}

// assignLane picks the first lane where item neither overlaps the previous
// item entering nor catches up with it before it leaves; with none free,
// the lane whose last item entered earliest.
function assignLane(item) {
  const { W, n } = stageSize();
  const mode = modeOf(item.m);
  if (mode !== "scroll") {
    // The first row from its edge whose last item is gone by then; with
    // none, the one that empties first.
    const rows = mode === "top" ? state.tops : state.bottoms;
    if (rows.length !== n) rows.length = n;
    let best = 0;
    for (let i = 0; i < n; i++) {
      if (!rows[i] || rows[i].offset + FIXED <= item.offset) {
        best = i;
        break;
      }
      if (rows[i].offset < rows[best].offset) best = i;
    }
    item.lane = best;
    rows[best] = item;
    return;
  }
  if (state.lanes.length !== n) state.lanes.length = n;
  const speed = (W + item.w) / DURATION;
  let best = 0;
  let bestAt = Infinity;
  for (let i = 0; i < n; i++) {
    const prev = state.lanes[i];
    if (!prev) {
      best = i;
      bestAt = -Infinity;
      break;
    }
    const ps = (W + prev.w) / DURATION;
    const entered = prev.offset + (prev.w + GAP) / ps; // prev's tail is GAP inside the stage
    const caught = item.offset + W / speed < prev.offset + DURATION; // new reaches the left edge before prev leaves
    if (item.offset >= entered && !(speed > ps && caught)) {
      best = i;
      bestAt = -Infinity;
      break;
    }
    if (entered < bestAt) {
      best = i;
      bestAt = entered;
    }
  }
  item.lane = best;
  state.lanes[best] = item;
}

function element(item) {
  const el = danmakuElement(item.m);
  el.dataset.ts = String(item.m.ts);
  return el;
}

// ---------------------------------------------------------------- history

function addMessages(msgs) {
  let sorted = true;
  for (const m of msgs) {
    if (state.seen.has(m.seq) || m.deleted) continue;
    state.seen.add(m.seq);
    const item = { m, offset: m.ts - state.from, lane: 0, el: null, w: estimate(m) };
    const last = state.buf[state.buf.length - 1];
    if (last && last.offset > item.offset) sorted = false;
    state.buf.push(item);
    assignLane(item);
  }
  if (!sorted) state.buf.sort((a, b) => a.offset - b.offset || a.m.seq - b.m.seq);
  // Keep memory bounded: forget what is long behind the playhead.
  if (state.buf.length > 4 * PAGE) {
    const keepFrom = lowerBound(state.pos - DURATION - 1000);
    if (keepFrom > PAGE) {
      for (const it of state.buf.slice(0, keepFrom)) state.seen.delete(it.m.seq);
      state.buf.splice(0, keepFrom);
    }
  }
}

// fetchPage reads the next page of the current window.
async function fetchPage() {
  if (state.loading || state.complete) return;
  state.loading = true;
  const gen = state.gen;
  const p = new URLSearchParams({ from: String(state.segStart), to: String(state.winEnd), limit: String(PAGE) });
  if (state.afterSeq) p.set("after_seq", String(state.afterSeq));
  const rec = { from: state.segStart, to: state.winEnd, after_seq: state.afterSeq, limit: PAGE, count: 0 };
  state.fetches.push(rec);
  try {
    const body = await api(`/api/rooms/${encodeURIComponent(state.room)}/history?${p}`);
    if (gen !== state.gen) return; // a seek made it stale
    rec.count = body.msgs.length;
    addMessages(body.msgs);
    if (body.next) {
      state.afterSeq = body.next;
      state.loadedUntil = Math.max(state.loadedUntil, body.msgs[body.msgs.length - 1].ts);
    } else if (state.winEnd >= state.to) {
      state.loadedUntil = state.to;
      state.complete = true;
    } else {
      state.loadedUntil = state.winEnd;
      state.segStart = state.winEnd;
      state.winEnd = Math.min(state.winEnd + WINDOW, state.to);
      state.afterSeq = 0;
    }
    state.error = "";
  } catch (e) {
    if (gen === state.gen) {
      state.error = e.message;
      note("history: " + e.message + " (retrying)", true);
      await new Promise((r) => setTimeout(r, 1000));
    }
  } finally {
    if (gen === state.gen) state.loading = false;
  }
}

function lowerBound(offset) {
  // first index whose offset > offset
  let lo = 0;
  let hi = state.buf.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (state.buf[mid].offset > offset) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

// ---------------------------------------------------------------- playback

function duration() {
  return state.to - state.from;
}

function seek(pos) {
  pos = Math.max(0, Math.min(duration(), Math.round(pos)));
  state.gen++;
  state.pos = pos;
  state.buf = [];
  state.seen = new Set();
  state.lanes = [];
  state.tops = [];
  state.bottoms = [];
  for (const el of shown.values()) el.remove();
  shown.clear();
  // Read from DURATION before the playhead: those items are on screen.
  state.segStart = Math.max(state.from, state.from + pos - DURATION);
  state.winEnd = Math.min(state.segStart + WINDOW, state.to);
  state.afterSeq = 0;
  state.loadedUntil = state.segStart;
  state.complete = false;
  state.loading = false;
  state.renderedPos = -1;
  syncVideo(true);
  fetchPage();
}

function setPlaying(on) {
  if (on && state.pos >= duration()) seek(0);
  state.playing = on;
  $("play").textContent = on ? "❚❚" : "▶";
  $("play").setAttribute("aria-label", on ? "pause" : "play");
  syncVideo(true);
}

function setSpeed(s) {
  if (!SPEEDS.includes(s)) return;
  state.speed = s;
  $("speed").value = String(s);
  syncVideo(true);
}

function render() {
  const { W, laneH } = stageSize();
  const H = $("layer").clientHeight || 360;
  const pos = state.pos;
  const lo = lowerBound(pos - DURATION);
  const want = new Set();
  for (let i = lo; i < state.buf.length && state.buf[i].offset <= pos; i++) {
    const item = state.buf[i];
    const mode = modeOf(item.m);
    if (mode !== "scroll" && pos - item.offset >= FIXED) continue; // its time is over
    want.add(item.m.seq);
    let el = shown.get(item.m.seq);
    if (!el) {
      el = item.el || element(item);
      item.el = el;
      el.style.top = (mode === "bottom" ? H - (item.lane + 1) * laneH - 4 : item.lane * laneH + 4) + "px";
      $("layer").appendChild(el);
      item.w = el.offsetWidth || item.w;
      shown.set(item.m.seq, el);
    }
    if (mode !== "scroll") continue; // centred by stage.css
    const speed = (W + item.w) / DURATION;
    el.style.transform = `translateX(${(W - (pos - item.offset) * speed).toFixed(1)}px)`;
  }
  for (const [seq, el] of shown) {
    if (!want.has(seq)) {
      el.remove();
      shown.delete(seq);
    }
  }
  state.renderedPos = pos;
  state.renderedW = W;
}

function updateUI() {
  const dur = duration();
  $("clock").textContent = `${fmt(state.pos)} / ${fmt(dur)}`;
  const frac = dur > 0 ? state.pos / dur : 0;
  $("playhead").style.left = (frac * 100).toFixed(3) + "%";
  if (document.activeElement !== $("seek")) $("seek").value = String(Math.round(frac * 1000));
  const buffering = !state.complete && state.from + state.pos >= state.loadedUntil;
  $("buffer").textContent = buffering ? "loading…" : "";
}

let last = 0;
function frame(now) {
  const dt = last ? Math.min(now - last, 1000) : 0;
  last = now;
  if (state.to > state.from) {
    if (state.playing) {
      let next = state.pos + dt * state.speed;
      // Never run past what is loaded: the clock waits for the page.
      if (!state.complete) next = Math.min(next, Math.max(state.pos, state.loadedUntil - state.from));
      state.pos = Math.min(next, duration());
      if (state.pos >= duration()) setPlaying(false);
    }
    if (!state.loading && !state.complete && state.loadedUntil - state.from < state.pos + AHEAD * Math.max(1, state.speed)) {
      fetchPage();
    }
    render();
    updateUI();
    syncVideo(false);
  }
  requestAnimationFrame(frame);
}

// ---------------------------------------------------------------- video

let videoCheck = 0;
function syncVideo(force) {
  const v = $("video");
  if (v.hidden || !v.src) return;
  const now = performance.now();
  if (!force && now - videoCheck < 500) return;
  videoCheck = now;
  v.playbackRate = state.speed;
  const want = state.pos / 1000;
  if (force || Math.abs(v.currentTime - want) > 0.3) {
    try {
      v.currentTime = want;
    } catch {
      // not seekable yet
    }
  }
  if (state.playing && v.paused && (!v.duration || want < v.duration)) v.play().catch(() => {});
  if (!state.playing && !v.paused) v.pause();
}

// ---------------------------------------------------------------- density

function drawDensity(d) {
  const svg = $("density");
  const NS = "http://www.w3.org/2000/svg";
  while (svg.firstChild) svg.firstChild.remove();
  const n = d.counts.length;
  svg.setAttribute("viewBox", `0 0 ${n} 100`);
  const peak = Math.max(1, ...d.counts);
  d.counts.forEach((c, i) => {
    if (c <= 0) return;
    const h = Math.max(3, (c / peak) * 96);
    const r = document.createElementNS(NS, "rect");
    r.setAttribute("x", String(i + 0.08));
    r.setAttribute("width", "0.84");
    r.setAttribute("y", String(100 - h));
    r.setAttribute("height", String(h));
    r.dataset.i = String(i);
    r.dataset.count = String(c);
    const t = document.createElementNS(NS, "title");
    t.textContent = `${fmt(i * d.bucket_ms)}: ${c} messages`;
    r.appendChild(t);
    svg.appendChild(r);
  });
  svg.dataset.buckets = String(n);
  svg.dataset.peak = String(peak);
}

async function loadDensity() {
  const p = state.session
    ? new URLSearchParams({ session: state.session, buckets: String(BUCKETS) })
    : new URLSearchParams({ from: String(state.from), to: String(state.to), buckets: String(BUCKETS) });
  try {
    state.density = await api(`/api/rooms/${encodeURIComponent(state.room)}/density?${p}`);
    drawDensity(state.density);
  } catch (e) {
    note("density: " + e.message, true);
  }
}

// ---------------------------------------------------------------- sessions

async function listSessions() {
  const ol = $("sessions");
  try {
    const body = await api(`/api/rooms/${encodeURIComponent(state.room)}/sessions?limit=20`);
    ol.textContent = "";
    for (const s of body.sessions) {
      const li = document.createElement("li");
      const a = document.createElement("a");
      a.href = `/replay?${new URLSearchParams({ room: state.room, session: s.id })}`;
      a.textContent = s.title || s.id;
      li.appendChild(a);
      const t = document.createElement("span");
      t.className = "t";
      t.textContent = " " + new Date(s.start).toLocaleString() + (s.end ? " · " + fmt(s.end - s.start) : "");
      li.appendChild(t);
      if (!s.end) {
        const live = document.createElement("span");
        live.className = "live";
        live.textContent = " live";
        li.appendChild(live);
      }
      ol.appendChild(li);
    }
    if (!body.sessions.length) {
      const li = document.createElement("li");
      li.textContent = "no sessions recorded";
      ol.appendChild(li);
    }
  } catch (e) {
    ol.textContent = "";
    const li = document.createElement("li");
    li.textContent = "sessions: " + e.message;
    ol.appendChild(li);
  }
}

// ---------------------------------------------------------------- setup

function hint(text) {
  const h = $("hint");
  h.textContent = text;
  h.hidden = !text;
}

function wire() {
  $("play").addEventListener("click", () => setPlaying(!state.playing));
  $("speed").addEventListener("change", (e) => setSpeed(Number(e.target.value)));
  $("seek").addEventListener("change", (e) => seek((Number(e.target.value) / 1000) * duration()));
  $("seek").addEventListener("input", (e) => {
    state.pos = (Number(e.target.value) / 1000) * duration(); // preview while dragging
  });
  document.querySelector(".timeline").addEventListener("click", (e) => {
    const r = e.currentTarget.getBoundingClientRect();
    seek(((e.clientX - r.left) / r.width) * duration());
  });
  document.addEventListener("keydown", (e) => {
    if (e.target instanceof HTMLInputElement || e.target instanceof HTMLSelectElement) return;
    if (e.key === " ") {
      e.preventDefault();
      setPlaying(!state.playing);
    } else if (e.key === "ArrowRight") seek(state.pos + 5000);
    else if (e.key === "ArrowLeft") seek(state.pos - 5000);
  });
}

async function main() {
  wire();
  const q = new URLSearchParams(location.search);
  state.room = q.get("room") || "";
  if (!ROOM_RE.test(state.room)) {
    hint("Open /replay?room=R&from=T1&to=T2 (Unix ms) or /replay?room=R&session=ID");
    $("sessions").textContent = "";
    return;
  }
  $("room-name").textContent = state.room;
  listSessions();
  state.session = q.get("session") || "";
  try {
    if (state.session) {
      const s = await api(`/api/rooms/${encodeURIComponent(state.room)}/sessions/${encodeURIComponent(state.session)}`);
      state.from = s.start;
      state.to = s.end || Date.now();
      if (s.title) document.title = `${s.title} · danmaku replay`;
    } else if (q.get("from") && q.get("to")) {
      state.from = Number(q.get("from"));
      state.to = Number(q.get("to"));
      if (!Number.isSafeInteger(state.from) || !Number.isSafeInteger(state.to) || state.from < 0 || state.to <= state.from) {
        throw new Error("from and to must be Unix ms with from < to");
      }
    } else {
      hint("Pick a recorded session, or open /replay?room=R&from=T1&to=T2");
      return;
    }
  } catch (e) {
    hint("Cannot open the replay: " + e.message);
    return;
  }
  $("range").textContent = `${new Date(state.from).toLocaleString()} – ${new Date(state.to).toLocaleTimeString()}`;
  const video = q.get("video");
  if (video) {
    try {
      const u = new URL(video, location.href);
      if (u.protocol !== "http:" && u.protocol !== "https:") throw new Error("video must be an http(s) URL");
      const v = $("video");
      v.src = u.href;
      v.hidden = false;
      $("backdrop").hidden = true;
    } catch (e) {
      note(e.message, true);
    }
  }
  if (q.get("speed")) setSpeed(Number(q.get("speed")));
  const at = Number(q.get("at"));
  seek(Number.isFinite(at) && at >= state.from ? at - state.from : 0);
  loadDensity();
  if (q.get("autoplay") === "1") setPlaying(true);
  requestAnimationFrame(frame);
}

// For tests and the curious: the replay's state and controls.
window.__replay = { state, seek, setPlaying, setSpeed, DURATION };

main();
