// overlay.js — the OBS overlay at /overlay?room=R: the room's danmaku on a
// transparent page, laid out by the viewer page's stage (stage.js), for a
// browser source. No chrome, no input. It watches anonymously, reconnects
// and resumes by itself (danmaku.js), and takes a deleted or purged message
// off the screen (and out of its queue) as soon as the delete or purge
// arrives. Options (all optional but room) are in docs/api.md#overlay.
import { DanmakuClient, validRoom, wsURL } from "./danmaku.js";
import { Retractions, Stage, danmakuElement, modeOf } from "./stage.js";

// Messages that arrive to fill a gap after a reconnect are shown only when
// this recent (ms): an overlay that was away for a minute does not replay
// the minute at once.
const RESUME_FRESH_MS = 15000;

// parseOptions reads and checks the query; problems lists what was wrong.
export function parseOptions(search) {
  const q = new URLSearchParams(search);
  const problems = [];
  const num = (name, lo, hi, dflt) => {
    const v = q.get(name);
    if (v === null || v === "") return dflt;
    const n = Number(v);
    if (!Number.isFinite(n) || n < lo || n > hi) {
      problems.push(`${name} must be a number from ${lo} to ${hi}`);
      return dflt;
    }
    return n;
  };
  const room = q.get("room") || "";
  if (!validRoom(room)) problems.push("room must be 1-64 letters, digits, _ or -");
  const o = {
    room,
    lanes: Math.floor(num("lanes", 1, 50, 0)),
    speed: num("speed", 20, 2000, 0),
    font: num("font", 10, 120, 28),
    opacity: num("opacity", 0.05, 1, 1),
    max: Math.floor(num("max", 1, 1000, 0)),
    duration: num("duration", 2, 30, 8) * 1000,
    kinds: new Set(),
  };
  const kinds = (q.get("kinds") || "all").split(",").map((s) => s.trim()).filter(Boolean);
  for (const k of kinds) {
    if (k === "all") continue;
    if (k === "paid" || k === "highlight" || k === "mod" || k === "system") o.kinds.add(k);
    else problems.push(`kinds: unknown kind "${k}" (all, paid, highlight, mod, system)`);
  }
  return { o, problems };
}

// wanted reports whether m is of a kind the overlay shows.
export function wanted(kinds, m) {
  if (kinds.size === 0) return true;
  if (kinds.has(m.kind)) return true;
  return kinds.has("mod") && (m.role === "mod" || m.role === "streamer");
}

async function main() {
  const { o, problems } = parseOptions(location.search);
  if (problems.length > 0) {
    const p = document.getElementById("problem");
    p.textContent = "danmaku overlay: " + problems.join("; ");
    p.hidden = false;
    if (!validRoom(o.room)) return;
  }
  const layer = document.getElementById("layer");
  layer.style.setProperty("--font", o.font + "px");
  layer.style.setProperty("--lane", Math.round(o.font * 1.5) + "px");
  layer.style.opacity = String(o.opacity);
  const stage = new Stage(layer, { lanes: o.lanes, speed: o.speed, duration: o.duration, maxOnScreen: o.max });
  const retracted = new Retractions();

  let cfg = {};
  try {
    const res = await fetch("/api/config");
    if (res.ok) cfg = await res.json();
  } catch {
    // fall back to the page's own port
  }
  const client = new DanmakuClient({ url: wsURL(location, cfg) });
  client.on("message", (room, m, source) => {
    if (room !== o.room || retracted.hides(m) || !wanted(o.kinds, m)) return;
    if (source === "history") return; // a fresh join starts from now
    if (source === "resume" && Date.now() - (m.ts || 0) > RESUME_FRESH_MS) return;
    stage.add(danmakuElement(m, false), m.kind === "paid" || m.kind === "system");
  });
  client.on("delete", (room, seqs) => {
    if (room !== o.room) return;
    retracted.delete(seqs);
    const set = new Set(seqs.map(String));
    stage.removeWhere((el) => set.has(el.dataset.seq));
  });
  client.on("purge", (room, uid, until) => {
    if (room !== o.room) return;
    retracted.purge(uid, until);
    stage.removeWhere((el) => el.dataset.uid === uid);
  });
  client.on("notice", (room, text) => {
    if (room !== o.room) return;
    const m = { text, kind: "system", role: "service", uid: "", ts: Date.now() };
    if (wanted(o.kinds, m)) stage.add(danmakuElement(m, false), true);
  });
  client.on("state", (s) => {
    document.documentElement.dataset.state = s;
  });
  addEventListener("resize", () => stage.size());
  client.connect();
  client.join(o.room).catch(() => {});
  globalThis.danmakuOverlay = { client, stage, options: o, modeOf, retracted };
}

main();
