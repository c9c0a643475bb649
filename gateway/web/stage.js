// stage.js — the danmaku stage shared by the viewer page (app.js) and the
// OBS overlay (overlay.js): how a message becomes an element, how
// elements are laid out on a layer, and what was retracted. Scrolling danmaku fly right to left in
// lanes; top and bottom danmaku (display modes, docs/protocol.md) stay
// centred in their own rows for a few seconds. User-supplied text is only
// ever rendered with textContent.

const COLOR_RE = /^#[0-9a-fA-F]{6}$/;

/** kindClass is the CSS class of a message kind ("" for a plain one). */
export function kindClass(kind) {
  return kind === "paid" || kind === "highlight" || kind === "system" ? kind : "";
}

/** modeOf is a message's display mode: "top", "bottom" or "scroll". */
export function modeOf(m) {
  return m.mode === "top" || m.mode === "bottom" ? m.mode : "scroll";
}

/** badge returns the role or paid badge of a message, or null. */
export function badge(role, kind) {
  const b = document.createElement("span");
  if (kind === "paid") {
    b.className = "badge paid";
    b.textContent = "¥";
    return b;
  }
  if (role !== "mod" && role !== "streamer" && role !== "service") return null;
  b.className = "badge " + role;
  b.textContent = role === "mod" ? "MOD" : role === "streamer" ? "HOST" : "BOT";
  return b;
}

/**
 * Retractions remembers what delete and purge frames retracted, so a
 * message that arrives after its delete or purge (a resume racing the
 * delete, a message accepted just before a ban) is never shown: deleted
 * seqs, and purged uids with the purge's until (the uid's messages with a
 * ts before it are covered; a frame without until covers what was sent
 * until it arrived). Both are bounded; the oldest is forgotten first.
 */
export class Retractions {
  constructor(max = 4096) {
    this.max = max;
    this.deleted = new Set();
    this.purged = new Map(); // uid → until (Unix ms)
  }

  delete(seqs) {
    for (const s of seqs) {
      this.deleted.add(s);
      if (this.deleted.size > this.max) this.deleted.delete(this.deleted.values().next().value);
    }
  }

  purge(uid, until) {
    const u = Math.max(until || Date.now(), this.purged.get(uid) || 0);
    this.purged.delete(uid); // re-inserted as the newest
    this.purged.set(uid, u);
    if (this.purged.size > this.max) this.purged.delete(this.purged.keys().next().value);
  }

  /** hides reports whether m was retracted. */
  hides(m) {
    if (this.deleted.has(m.seq)) return true;
    const until = this.purged.get(m.uid || "");
    return until !== undefined && (m.ts || 0) < until;
  }
}

/**
 * danmakuElement renders m for the stage: kind, size and mode as classes
 * ("dm paid large top"), the colour, a badge, data-seq and data-uid (what
 * delete and purge remove by). Unknown modes and sizes render as scroll at
 * normal size, as old clients do.
 */
export function danmakuElement(m, mine) {
  const el = document.createElement("div");
  el.className = "dm";
  const k = kindClass(m.kind);
  if (k) el.classList.add(k);
  if (m.size === "small" || m.size === "large") el.classList.add(m.size);
  const mode = modeOf(m);
  if (mode !== "scroll") el.classList.add(mode);
  if (mine) el.classList.add("mine");
  if (m.color && COLOR_RE.test(m.color)) el.style.color = m.color;
  const b = badge(m.role, m.kind);
  if (b) el.appendChild(b);
  return appendText(el, m);
}

/**
 * appendText ends el with m's text (a span.text, set as textContent) and
 * marks el with m's uid and seq (data-uid, data-seq); it returns el.
 */
export function appendText(el, m) {
  const t = document.createElement("span");
  t.className = "text";
  t.textContent = m.text;
  el.appendChild(t);
  el.dataset.uid = m.uid || "";
  if (m.seq) el.dataset.seq = String(m.seq);
  return el;
}

// Stage lays danmaku out on a layer element.
//
// Scrolling items cross the layer in `duration` ms whatever their width (so
// longer items move faster), or at `speed` px/s when it is set. A lane takes
// a new item when the previous one has fully entered with a gap and the new
// one cannot catch up with it (keeping the gap) before it leaves. Where an
// item is comes from its animation's own clock, not from when it was
// placed: on a busy page an animation starts frames later than asked, and
// reckoning from the placing time put the next item on top of it.
//
// Top and bottom items take the first free row counted from the top or the
// bottom edge and stay there, centred, for `fixedMs` ms.
//
// Items wait in a queue while no row is free (each mode in its order) or
// while `maxOnScreen` items are shown; the queue keeps at most `maxQueue`,
// dropping its oldest plain lines first.
export class Stage {
  /**
   * @param {HTMLElement} layer the positioned element danmaku go in
   * @param {object} [opts]
   * @param {number} [opts.duration=8000] ms a scrolling item takes to cross
   * @param {number} [opts.speed=0] px/s of scrolling items; 0 means use duration
   * @param {number} [opts.fixedMs=4000] ms a top or bottom item stays
   * @param {number} [opts.lanes=0] use at most this many rows; 0 means as many as fit
   * @param {number} [opts.maxOnScreen=0] show at most this many at once; 0 means no cap
   * @param {number} [opts.maxQueue=60] longest backlog
   */
  constructor(layer, opts = {}) {
    this.layer = layer;
    this.duration = opts.duration || 8000;
    this.speed = opts.speed || 0;
    this.fixedMs = opts.fixedMs || 4000;
    this.maxLanes = opts.lanes || 0;
    this.maxOnScreen = opts.maxOnScreen || 0;
    this.maxQueue = opts.maxQueue || 60;
    this.gap = 24;
    this.lanes = [];
    this.tops = [];
    this.bottoms = [];
    this.queue = [];
    this.live = new Set();
    this.timer = null;
  }

  size() {
    const W = this.layer.clientWidth || 640;
    const H = this.layer.clientHeight || 360;
    const laneH = parseFloat(getComputedStyle(this.layer).getPropertyValue("--lane")) || 34;
    let n = Math.max(1, Math.floor((H - 8) / laneH));
    if (this.maxLanes > 0) n = Math.min(n, this.maxLanes);
    for (const rows of [this.lanes, this.tops, this.bottoms]) if (rows.length !== n) rows.length = n;
    return { W, H, laneH, n };
  }

  /** add queues el (from danmakuElement) for the stage; priority items go first. */
  add(el, priority) {
    el.style.visibility = "hidden";
    el.style.transform = "translateX(-100000px)";
    this.layer.appendChild(el);
    const mode = el.classList.contains("top") ? "top" : el.classList.contains("bottom") ? "bottom" : "scroll";
    const item = { el, mode, w: el.offsetWidth, speed: 0, start: 0, anim: null };
    el._item = item;
    if (priority) this.queue.unshift(item);
    else this.queue.push(item);
    // Keep the backlog short: a hot room drops its oldest plain lines.
    while (this.queue.length > this.maxQueue) {
      const i = this.queue.findIndex((it) => !it.el.classList.contains("paid") && !it.el.classList.contains("system"));
      const [old] = this.queue.splice(i >= 0 ? i : 0, 1);
      old.el.remove();
    }
    this.pump();
  }

  pump() {
    const { W, H, laneH, n } = this.size();
    const now = performance.now();
    const blocked = new Set();
    for (let q = 0; q < this.queue.length && blocked.size < 3; ) {
      if (this.maxOnScreen > 0 && this.live.size >= this.maxOnScreen) break;
      const item = this.queue[q];
      if (blocked.has(item.mode)) {
        q++;
        continue;
      }
      item.w = item.el.offsetWidth || item.w; // fonts may have loaded since add
      let placed = false;
      if (item.mode === "scroll") {
        const speed = this.speed > 0 ? this.speed / 1000 : (W + item.w) / this.duration;
        const lane = this.freeLane(W, item.w, speed, n);
        if (lane >= 0) {
          this.place(item, lane, W, laneH, speed, now);
          placed = true;
        }
      } else {
        const rows = item.mode === "top" ? this.tops : this.bottoms;
        const row = this.freeRow(rows, n);
        if (row >= 0) {
          this.placeFixed(item, rows, row, H, laneH);
          placed = true;
        }
      }
      if (placed) this.queue.splice(q, 1);
      else blocked.add(item.mode); // later items of this mode keep their order
    }
    if (this.queue.length > 0 && !this.timer) {
      this.timer = setTimeout(() => {
        this.timer = null;
        this.pump();
      }, 120);
    }
  }

  // elapsed is how far (ms) item's animation has run; 0 while it waits
  // for its first frame.
  elapsed(item) {
    const t = item.anim ? item.anim.currentTime : null;
    return typeof t === "number" && t > 0 ? t : 0;
  }

  freeLane(W, w, speed, n) {
    for (let i = 0; i < n; i++) {
      const prev = this.lanes[i];
      if (!prev || !prev.el.isConnected) return i;
      const tail = W - prev.speed * this.elapsed(prev) + prev.w; // right edge of prev
      if (tail + this.gap > W) continue; // not fully in yet
      if (speed > prev.speed && (tail + this.gap) / prev.speed > W / speed) continue; // would catch up
      return i;
    }
    return -1;
  }

  freeRow(rows, n) {
    for (let i = 0; i < n; i++) if (!rows[i] || !rows[i].el.isConnected) return i;
    return -1;
  }

  place(item, lane, W, laneH, speed, now) {
    const { el } = item;
    item.speed = speed;
    item.start = now;
    this.lanes[lane] = item;
    el.style.top = lane * laneH + 4 + "px";
    // Until its first frame the item waits off the right edge, not at x=0
    // over the lane's older items.
    el.style.transform = `translateX(${W}px)`;
    el.style.visibility = "";
    this.live.add(el);
    item.anim = el.animate([{ transform: `translateX(${W}px)` }, { transform: `translateX(${-item.w - 8}px)` }], {
      duration: (W + item.w + 8) / speed,
      easing: "linear",
      fill: "forwards",
    });
    item.anim.onfinish = () => this.remove(el);
  }

  placeFixed(item, rows, row, H, laneH) {
    const { el } = item;
    rows[row] = item;
    el.style.top = (item.mode === "top" ? row * laneH + 4 : H - (row + 1) * laneH - 4) + "px";
    el.style.transform = "";
    el.style.visibility = "";
    el.dataset.row = String(row);
    this.live.add(el);
    // The item's own animation is its clock: it leaves when it finishes.
    item.anim = el.animate([{ opacity: 1 }, { opacity: 1 }], { duration: this.fixedMs });
    item.anim.onfinish = () => this.remove(el);
  }

  /** remove takes el off the stage (or out of the queue) for good. */
  remove(el) {
    this.live.delete(el);
    const item = el._item;
    if (item) {
      const q = this.queue.indexOf(item);
      if (q >= 0) this.queue.splice(q, 1);
      if (item.anim) item.anim.cancel();
    }
    el.remove();
    if (this.queue.length > 0) queueMicrotask(() => this.pump());
  }

  /** removeWhere removes every item (shown or queued) for which pred(el) holds. */
  removeWhere(pred) {
    for (const el of [...this.layer.children]) if (el._item && pred(el)) this.remove(el);
  }

  clear() {
    for (const el of [...this.layer.children]) this.remove(el);
    this.queue.length = 0;
    this.lanes = [];
    this.tops = [];
    this.bottoms = [];
  }
}
