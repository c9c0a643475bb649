// danmaku.js — a dependency-free client of the danmaku WebSocket protocol
// (docs/protocol.md), for browsers and for Node (pass a WebSocket
// constructor, e.g. the "ws" package, as options.WebSocket).
//
// A DanmakuClient keeps one connection alive. It reconnects with exponential
// backoff and full jitter, rejoins its rooms with resume set to the last seq
// it delivered, resumes on the same connection when a batch skips seqs, and
// delivers every room's messages exactly once in seq order. send() retries
// with the same message id until the server answers, so a message is never
// posted twice.
//
// Events (client.on(type, fn) returns a function that removes fn):
//   message  (room, msg, source)  every message once, seq order per room;
//                                 source is "history" (recent messages on a
//                                 fresh join), "resume" (a gap being filled)
//                                 or "live" (a batch)
//   history  (room, msgs, complete)  after a join or resume was answered
//   joined   (room, seq, online)
//   delete   (room, seqs)        messages retracted by a moderator
//   purge    (room, uid, until)  every recent message of uid retracted;
//                                until (Unix ms, 0 if absent): also those
//                                with a ts before it that arrive later
//   online   (room, count)
//   notice   (room, text, uid)   a system line for the room (also a
//                                notice to every room); uid is set when it
//                                is addressed to this user alone, and room
//                                may then be ""
//   kicked   (reason)            the client stops; it does not reconnect
//   reconnect (afterMs)          the server drains; the client moves on
//   tokenexpired ()              the token expired (close 4005); the client
//                                reconnects anonymously unless setToken is
//                                called with a fresh one
//   verdict  (room, id, frame)   a message of ours that was held for review
//                                (send resolved with {held: true}) was
//                                decided by a moderator: frame is an ack
//                                with its seq (approved) or a reject
//                                (rejected). It reaches the connection that
//                                sent the message; after a reconnect in
//                                between it may not come
//   error    (frame)             an error frame {code, message}
//   close    ({code, reason})    the connection closed
//   state    (state, info)       "connecting", "open", "reconnecting"
//                                (info.delayMs), "kicked", "closed"

/** Reject codes of the protocol. */
export const Codes = Object.freeze({
  RATE_LIMITED: "rate_limited",
  SLOW_MODE: "slow_mode",
  BANNED: "banned",
  BLOCKED: "blocked",
  TOO_LONG: "too_long",
  INVALID: "invalid",
  UNAUTHORIZED: "unauthorized",
  UNAVAILABLE: "unavailable",
});

/** Application close codes (4000 range). */
export const CloseCodes = Object.freeze({
  SLOW_CONSUMER: 4000,
  KICKED: 4001,
  IDLE_TIMEOUT: 4002,
  BAD_FRAMES: 4003,
  TOKEN_EXPIRED: 4005,
});

const ROOM_RE = /^[A-Za-z0-9_-]{1,64}$/;

/** validRoom reports whether room is a valid room id. */
export function validRoom(room) {
  return typeof room === "string" && ROOM_RE.test(room);
}

/** newID returns a random message id (24 hex characters). */
export function newID() {
  const b = new Uint8Array(12);
  globalThis.crypto.getRandomValues(b);
  let s = "";
  for (const x of b) s += x.toString(16).padStart(2, "0");
  return s;
}

/**
 * backoff returns a full-jitter exponential delay in ms for the attempt
 * (0-based): uniform in [lo/2, lo/2 + min(hi, lo·2^attempt)).
 */
export function backoff(lo, hi, attempt, rand = Math.random) {
  let d = lo * 2 ** Math.min(attempt, 16);
  if (!(d <= hi)) d = hi;
  return Math.floor(rand() * d + lo / 2);
}

/** SendError is how send() fails when the client can no longer get an answer. */
export class SendError extends Error {
  constructor(reason, message) {
    super(message || reason);
    this.name = "SendError";
    /** "closed", "kicked", "timeout" or "aborted". */
    this.reason = reason;
  }
}

const OPEN = 1;

export class DanmakuClient {
  /**
   * @param {object} opts
   * @param {string} opts.url            ws://host:port/ws (no query)
   * @param {string} [opts.token]        a JWT; empty: anonymous (watch only)
   * @param {number} [opts.minBackoffMs=250]
   * @param {number} [opts.maxBackoffMs=10000]
   * @param {number} [opts.sendTimeoutMs=3000]  wait for an answer before
   *                                            sending again with the same id
   * @param {number} [opts.sendDeadlineMs=30000] give up on a send after this
   * @param {number} [opts.pingIntervalMs=20000]
   * @param {number} [opts.deadAfterMs=50000]   reconnect when nothing arrived
   *                                            for this long (the server
   *                                            answers every ping)
   * @param {Function} [opts.WebSocket]  constructor; default globalThis.WebSocket
   */
  constructor(opts) {
    if (!opts || typeof opts.url !== "string") throw new TypeError("danmaku: opts.url is required");
    this.url = opts.url;
    this.token = opts.token || "";
    this.minBackoffMs = opts.minBackoffMs ?? 250;
    this.maxBackoffMs = opts.maxBackoffMs ?? 10000;
    this.sendTimeoutMs = opts.sendTimeoutMs ?? 3000;
    this.sendDeadlineMs = opts.sendDeadlineMs ?? 30000;
    this.pingIntervalMs = opts.pingIntervalMs ?? 20000;
    this.deadAfterMs = opts.deadAfterMs ?? 50000;
    this.WS = opts.WebSocket || globalThis.WebSocket;
    this.state = "idle";
    this.kickedReason = "";
    this._ws = null;
    this._rooms = new Map(); // room → {last, resuming, joinWaiters:[]}
    this._waiters = new Map(); // message id → fn(frame)
    this._held = new Map(); // message id → {room, at}: held sends awaiting a verdict
    this._listeners = new Map();
    this._attempt = 0;
    this._timer = null; // reconnect timer
    this._ping = null;
    this._drainTimer = null;
    this._drainAfter = -1; // after_ms of a reconnect frame, -1 = none
    this._lastRecv = 0;
    this._stopped = false;
    this._openWaiters = new Set();
  }

  /** on subscribes fn to an event and returns a function that unsubscribes it. */
  on(type, fn) {
    let set = this._listeners.get(type);
    if (!set) this._listeners.set(type, (set = new Set()));
    set.add(fn);
    return () => set.delete(fn);
  }

  _emit(type, ...args) {
    const set = this._listeners.get(type);
    if (!set) return;
    for (const fn of [...set]) {
      try {
        fn(...args);
      } catch (e) {
        // A listener's bug must not break the protocol state machine.
        setTimeout(() => {
          throw e;
        });
      }
    }
  }

  _setState(s, info) {
    this.state = s;
    this._emit("state", s, info || {});
  }

  /** connect opens the connection (idempotent); the client then stays connected until close(). */
  connect() {
    if (this._stopped || this._ws || this._timer) return;
    this._dial();
  }

  _dial() {
    this._timer = null;
    if (this._stopped) return;
    let u = this.url;
    if (this.token) u += (u.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(this.token);
    this._setState("connecting");
    let ws;
    try {
      ws = new this.WS(u);
    } catch (e) {
      this._scheduleReconnect();
      return;
    }
    this._ws = ws;
    this._drainAfter = -1;
    ws.onopen = () => {
      if (this._ws !== ws) return;
      this._attempt = 0;
      this._lastRecv = Date.now();
      // Rejoin before anything else is written: sends waiting for the
      // connection go out after the joins.
      for (const [room, rs] of this._rooms) {
        rs.resuming = true;
        this._write(joinFrame(room, rs.last));
      }
      this._ping = setInterval(() => this._tick(), Math.min(this.pingIntervalMs, 5000));
      this._lastPing = Date.now();
      this._setState("open");
      for (const fn of [...this._openWaiters]) fn();
    };
    ws.onmessage = (ev) => {
      if (this._ws !== ws) return;
      this._lastRecv = Date.now();
      if (typeof ev.data !== "string") return;
      let f;
      try {
        f = JSON.parse(ev.data);
      } catch {
        return;
      }
      if (f && typeof f.op === "string") this._handle(f);
    };
    ws.onclose = (ev) => {
      if (this._ws !== ws) return;
      this._lost({ code: ev.code, reason: ev.reason || "" });
    };
    ws.onerror = () => {
      // A close event follows; nothing to do here.
    };
  }

  _tick() {
    const now = Date.now();
    if (now - this._lastRecv > this.deadAfterMs) {
      // The connection looks dead (no pong, no frame): drop it.
      this._abort();
      return;
    }
    if (now - this._lastPing >= this.pingIntervalMs) {
      this._lastPing = now;
      this._write('{"op":"ping"}');
    }
  }

  // _abort drops the current socket and reconnects.
  _abort() {
    const ws = this._ws;
    if (!ws) return;
    try {
      ws.close(1000);
    } catch {
      // ignore
    }
    this._lost({ code: 1006, reason: "client gave up on the connection" });
  }

  _lost(info) {
    const ws = this._ws;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
    }
    this._ws = null;
    clearInterval(this._ping);
    this._ping = null;
    clearTimeout(this._drainTimer);
    this._drainTimer = null;
    for (const rs of this._rooms.values()) rs.resuming = true;
    this._emit("close", info);
    if (this._stopped) return;
    if (info.code === CloseCodes.KICKED || this.kickedReason) {
      this._stop("kicked");
      return;
    }
    if (info.code === CloseCodes.TOKEN_EXPIRED && this.token) {
      this.token = "";
      this._emit("tokenexpired");
    }
    let delay;
    if (this._drainAfter >= 0) {
      // A draining server asked us to move: go now (the server already
      // spread clients over its drain window), with a little jitter.
      delay = Math.floor(Math.random() * this.minBackoffMs);
      this._attempt = 0;
    }
    this._scheduleReconnect(delay);
  }

  _scheduleReconnect(delay) {
    if (this._stopped || this._timer) return;
    if (delay === undefined) delay = backoff(this.minBackoffMs, this.maxBackoffMs, this._attempt++);
    this._setState("reconnecting", { delayMs: delay });
    this._timer = setTimeout(() => this._dial(), delay);
  }

  _stop(state) {
    this._stopped = true;
    clearTimeout(this._timer);
    this._timer = null;
    const err = new SendError(state, state === "kicked" ? "kicked: " + this.kickedReason : "client closed");
    for (const fn of [...this._waiters.values()]) fn(null, err);
    this._waiters.clear();
    for (const rs of this._rooms.values()) {
      for (const w of rs.joinWaiters.splice(0)) w.reject(err);
    }
    for (const fn of [...this._openWaiters]) fn();
    this._setState(state);
  }

  _write(s) {
    const ws = this._ws;
    if (!ws || ws.readyState !== OPEN) return false;
    try {
      ws.send(s);
      return true;
    } catch {
      return false;
    }
  }

  _handle(f) {
    switch (f.op) {
      case "batch": {
        const rs = this._rooms.get(f.room);
        if (!rs || rs.resuming || !Array.isArray(f.msgs)) return; // not joined, or the history will cover it
        const out = [];
        let gap = false;
        if (f.to) {
          // A thinned batch covers f.from..f.to: the seqs it leaves out
          // are not a gap.
          if (rs.last !== 0 && f.from > rs.last + 1) {
            gap = true;
          } else {
            for (const m of f.msgs) if (m.seq > rs.last) out.push(m);
            rs.last = Math.max(rs.last, f.to);
          }
        } else {
          for (const m of f.msgs) {
            if (m.seq <= rs.last) continue;
            if (rs.last !== 0 && m.seq !== rs.last + 1) {
              gap = true;
              break;
            }
            rs.last = m.seq;
            out.push(m);
          }
        }
        if (gap) {
          // Missed messages: ask for them on this connection and ignore
          // batches until the history answers.
          rs.resuming = true;
          this._write(joinFrame(f.room, rs.last));
        }
        for (const m of out) this._emit("message", f.room, m, "live");
        return;
      }
      case "history": {
        const rs = this._rooms.get(f.room);
        if (!rs) return;
        const source = rs.last > 0 ? "resume" : "history";
        const out = [];
        if (!f.complete && rs.last > 0 && (rs.incomplete || 0) < MAX_INCOMPLETE) {
          // A resume the gateway could not fill entirely: deliver what
          // continues the stream, stay resuming and ask again from there.
          const before = rs.last;
          for (const m of f.msgs || []) {
            if (m.seq === rs.last + 1) {
              rs.last = m.seq;
              out.push(m);
            }
          }
          rs.incomplete = rs.last > before ? 0 : (rs.incomplete || 0) + 1;
          for (const m of out) this._emit("message", f.room, m, source);
          const resume = joinFrame(f.room, rs.last);
          setTimeout(() => this._write(resume), 250 * 2 ** rs.incomplete);
          return;
        }
        rs.incomplete = 0;
        for (const m of f.msgs || []) {
          if (m.seq > rs.last) {
            rs.last = m.seq;
            out.push(m);
          }
        }
        // The history covers everything up to the joined seq, also
        // messages a thinned room left out.
        rs.last = Math.max(rs.last, rs.joinedSeq || 0);
        rs.resuming = false;
        for (const m of out) this._emit("message", f.room, m, source);
        this._emit("history", f.room, out, !!f.complete);
        for (const w of rs.joinWaiters.splice(0)) w.resolve();
        return;
      }
      case "joined": {
        const rs = this._rooms.get(f.room);
        if (rs) {
          rs.joinedSeq = f.seq || 0;
          this._emit("joined", f.room, f.seq || 0, f.online || 0);
        }
        return;
      }
      case "ack":
      case "reject": {
        const fn = this._waiters.get(f.id);
        if (fn) {
          fn(f);
          return;
        }
        // No send waits for it: the later verdict on a held message.
        const h = this._held.get(f.id);
        if (h && !(f.op === "ack" && f.held)) {
          this._held.delete(f.id);
          this._emit("verdict", f.room || h.room, f.id, f);
        }
        return;
      }
      case "delete":
        if (this._rooms.has(f.room)) this._emit("delete", f.room, f.seqs || []);
        return;
      case "purge":
        if (this._rooms.has(f.room)) this._emit("purge", f.room, f.uid || "", f.until || 0);
        return;
      case "online":
        if (this._rooms.has(f.room)) this._emit("online", f.room, f.count || 0);
        return;
      case "notice":
        // A notice with uid is for this user alone (a push to one user):
        // emitted even when it names no room the client is in.
        if (this._rooms.has(f.room) || f.uid) this._emit("notice", f.room || "", f.text || "", f.uid || "");
        return;
      case "kicked":
        this.kickedReason = f.reason || "kicked";
        this._emit("kicked", this.kickedReason);
        return;
      case "reconnect": {
        const after = Math.max(0, Number(f.after_ms) || 0);
        this._drainAfter = after;
        this._emit("reconnect", after);
        // The server closes with 1001 at after_ms; if it does not, leave.
        const ws = this._ws;
        clearTimeout(this._drainTimer);
        this._drainTimer = setTimeout(() => {
          if (this._ws === ws) this._abort();
        }, after + 1000);
        return;
      }
      case "error":
        this._emit("error", f);
        return;
      case "pong":
        return;
    }
  }

  /**
   * join joins room; the promise resolves when its history arrived. resume
   * > 0 asks for every message after that seq (a room seen in an earlier
   * session). Joining a room again acts as a resume from the last seq.
   */
  join(room, resume = 0) {
    if (!validRoom(room)) return Promise.reject(new TypeError("danmaku: bad room " + JSON.stringify(room)));
    if (this._stopped) return Promise.reject(new SendError("closed", "client closed"));
    let rs = this._rooms.get(room);
    if (!rs) {
      rs = { last: resume > 0 ? resume : 0, resuming: true, joinWaiters: [] };
      this._rooms.set(room, rs);
    }
    rs.resuming = true;
    const p = new Promise((resolve, reject) => rs.joinWaiters.push({ resolve, reject }));
    this._write(joinFrame(room, rs.last));
    this.connect();
    return p;
  }

  /** leave leaves room. */
  leave(room) {
    const rs = this._rooms.get(room);
    if (!rs) return;
    this._rooms.delete(room);
    for (const w of rs.joinWaiters.splice(0)) w.reject(new SendError("closed", "left the room"));
    this._write(JSON.stringify({ op: "leave", room }));
  }

  /** rooms returns the joined rooms. */
  rooms() {
    return [...this._rooms.keys()];
  }

  /** lastSeq returns the highest seq delivered for room (0 if none). */
  lastSeq(room) {
    const rs = this._rooms.get(room);
    return rs ? rs.last : 0;
  }

  /**
   * setToken changes the identity: the connection is replaced and every
   * room resumed where it was. An empty token makes an anonymous viewer.
   */
  setToken(token) {
    this.token = token || "";
    if (this._stopped) return;
    if (this._ws) {
      this._attempt = 0;
      this._abortThenDial();
    } else if (this._timer) {
      clearTimeout(this._timer);
      this._timer = null;
      this._dial();
    }
  }

  _abortThenDial() {
    const ws = this._ws;
    ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
    try {
      ws.close(1000);
    } catch {
      // ignore
    }
    this._ws = null;
    clearInterval(this._ping);
    this._ping = null;
    for (const rs of this._rooms.values()) rs.resuming = true;
    this._emit("close", { code: 1000, reason: "identity changed" });
    this._dial();
  }

  /**
   * send posts text to room and resolves with the server's verdict: an ack
   * frame ({op:"ack", id, room, seq} or {..., held:true}) or a reject frame
   * ({op:"reject", id, room, code, retry_after_ms?, message?}). It retries
   * with the same id after a timeout or a lost connection, and after an
   * "unavailable" reject once retry_after_ms passed. It fails with a
   * SendError when the client is closed or kicked, opts.signal aborts, or
   * no verdict came within opts.deadlineMs (default sendDeadlineMs).
   */
  send(room, text, opts = {}) {
    return this.sendID(room, opts.id || newID(), text, opts);
  }

  /**
   * sendID is send with a caller-chosen id. opts.retry marks every attempt
   * as a re-send of an id sent before (its answer was lost, e.g. before a
   * page reload); attempts after the first are always marked. opts.mode
   * ("scroll", "top", "bottom") and opts.size ("small", "normal", "large")
   * ask for a display mode and size; the room's settings decide who may
   * use them.
   */
  async sendID(room, id, text, opts = {}) {
    const f = { op: "send", room, id, text };
    if (opts.mode && opts.mode !== "scroll") f.mode = opts.mode;
    if (opts.size && opts.size !== "normal") f.size = opts.size;
    const first = JSON.stringify(opts.retry ? { ...f, retry: true } : f);
    const again = JSON.stringify({ ...f, retry: true });
    const deadline = Date.now() + (opts.deadlineMs ?? this.sendDeadlineMs);
    const signal = opts.signal;
    let attempt = 0;
    let written = false; // the id went out once: later attempts are retries
    for (;;) {
      this._check(signal, deadline);
      if (this.state !== "open") {
        await this._waitOpen(signal, deadline);
        continue;
      }
      const r = await new Promise((resolve) => {
        let timer = null;
        const done = (f, err) => {
          clearTimeout(timer);
          if (this._waiters.get(id) === done) this._waiters.delete(id);
          if (signal) signal.removeEventListener("abort", onAbort);
          resolve({ f, err });
        };
        const onAbort = () => done(null, new SendError("aborted", "send aborted"));
        this._waiters.set(id, done);
        if (signal) signal.addEventListener("abort", onAbort);
        const wait = Math.min(this.sendTimeoutMs, Math.max(0, deadline - Date.now()));
        timer = setTimeout(() => done(null, null), wait);
        if (this._write(written ? again : first)) {
          written = true;
        } else {
          // No connection: fall through to waiting for one.
          clearTimeout(timer);
          timer = setTimeout(() => done(null, null), 0);
        }
      });
      if (r.err) throw r.err;
      const f = r.f;
      if (f) {
        if (f.op === "reject" && f.code === Codes.UNAVAILABLE) {
          const wait = f.retry_after_ms > 0 ? f.retry_after_ms : backoff(this.minBackoffMs, this.maxBackoffMs, attempt);
          attempt++;
          await this._sleep(wait, signal, deadline);
          continue;
        }
        if (f.op === "ack" && f.held) this._rememberHeld(id, room);
        return f;
      }
      // No answer in time, or no connection: back off, then try again.
      await this._sleep(backoff(this.minBackoffMs, this.maxBackoffMs, attempt), signal, deadline);
      attempt++;
    }
  }

  // _rememberHeld notes a held send so that its later verdict is emitted;
  // entries older than HELD_TTL_MS (the server's queue keeps a message
  // 10 minutes) are forgotten.
  _rememberHeld(id, room) {
    const now = Date.now();
    for (const [k, v] of this._held) {
      if (now - v.at < HELD_TTL_MS && this._held.size < HELD_MAX) break;
      this._held.delete(k);
    }
    this._held.set(id, { room, at: now });
  }

  _check(signal, deadline) {
    if (this._stopped) {
      throw new SendError(this.kickedReason ? "kicked" : "closed", this.kickedReason ? "kicked: " + this.kickedReason : "client closed");
    }
    if (signal && signal.aborted) throw new SendError("aborted", "send aborted");
    if (Date.now() >= deadline) throw new SendError("timeout", "no answer from the server");
  }

  _sleep(ms, signal, deadline) {
    ms = Math.max(0, Math.min(ms, deadline - Date.now()));
    return new Promise((resolve) => {
      const t = setTimeout(fin, ms);
      function fin() {
        clearTimeout(t);
        if (signal) signal.removeEventListener("abort", fin);
        resolve();
      }
      if (signal) signal.addEventListener("abort", fin);
    });
  }

  _waitOpen(signal, deadline) {
    return new Promise((resolve) => {
      const t = setTimeout(fin, Math.max(0, deadline - Date.now()));
      const self = this;
      function fin() {
        clearTimeout(t);
        self._openWaiters.delete(fin);
        if (signal) signal.removeEventListener("abort", fin);
        resolve();
      }
      this._openWaiters.add(fin);
      if (signal) signal.addEventListener("abort", fin);
    });
  }

  /** close closes the connection for good; pending sends fail with SendError("closed"). */
  close() {
    if (this._stopped) return;
    const ws = this._ws;
    this._ws = null;
    clearInterval(this._ping);
    clearTimeout(this._drainTimer);
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      try {
        ws.close(1000);
      } catch {
        // ignore
      }
    }
    this._stop("closed");
  }
}

// HELD_TTL_MS and HELD_MAX bound the held sends remembered for a verdict.
const HELD_TTL_MS = 15 * 60 * 1000;
const HELD_MAX = 256;

// MAX_INCOMPLETE is how many resumes in a row answered complete:false
// without progress are asked again before the gap is accepted.
const MAX_INCOMPLETE = 4;

function joinFrame(room, resume) {
  return resume > 0 ? JSON.stringify({ op: "join", room, resume }) : JSON.stringify({ op: "join", room });
}

/**
 * wsURL returns the WebSocket URL for the gateway announced by GET
 * /api/config ({ws_port, ws_path}) relative to a page location.
 */
export function wsURL(location, cfg) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const port = cfg && cfg.ws_port ? ":" + cfg.ws_port : location.port ? ":" + location.port : "";
  const path = (cfg && cfg.ws_path) || "/ws";
  return scheme + "//" + location.hostname + port + path;
}
