// Unit tests of gateway/web/danmaku.js against a scripted WebSocket.
// Run: node --test client.test.mjs (webtest_test.go does).
import test from "node:test";
import assert from "node:assert/strict";
import { DanmakuClient, SendError, backoff, wsURL, validRoom } from "../web/danmaku.js";
import * as danmaku from "../web/danmaku.js";
import { readFileSync } from "node:fs";

// FakeWS records what the client sends and lets a test play the server.
class FakeWS {
  static all = [];
  constructor(url) {
    this.url = url;
    this.readyState = 0;
    this.sent = [];
    this.closedBy = null;
    FakeWS.all.push(this);
  }
  send(s) {
    if (this.readyState !== 1) throw new Error("not open");
    this.sent.push(JSON.parse(s));
  }
  close(code) {
    this.closedBy = code;
    this.readyState = 3;
  }
  // Server side.
  open() {
    this.readyState = 1;
    this.onopen && this.onopen({});
  }
  recv(f) {
    this.onmessage && this.onmessage({ data: JSON.stringify(f) });
  }
  drop(code = 1006, reason = "") {
    this.readyState = 3;
    this.onclose && this.onclose({ code, reason });
  }
  ops(op) {
    return this.sent.filter((f) => f.op === op);
  }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function until(pred, what, ms = 2000) {
  const t0 = Date.now();
  while (!pred()) {
    if (Date.now() - t0 > ms) throw new Error("timed out: " + what);
    await sleep(2);
  }
}

const msg = (seq, text = "m" + seq) => ({ seq, uid: "u", name: "n", text, ts: 1 });

function setup(opts = {}) {
  FakeWS.all = [];
  const c = new DanmakuClient({
    url: "ws://gw/ws",
    WebSocket: FakeWS,
    minBackoffMs: 4,
    maxBackoffMs: 20,
    sendTimeoutMs: 60,
    ...opts,
  });
  const got = [];
  const states = [];
  c.on("message", (room, m, source) => got.push({ room, seq: m.seq, source }));
  c.on("state", (s) => states.push(s));
  return { c, got, states, ws: () => FakeWS.all[FakeWS.all.length - 1] };
}

async function joined(t, room = "r", msgs = []) {
  const p = t.c.join(room);
  const ws = t.ws();
  ws.open();
  await until(() => ws.ops("join").length > 0, "join frame");
  ws.recv({ op: "joined", room, seq: msgs.length ? msgs[msgs.length - 1].seq : 0, online: 1 });
  ws.recv({ op: "history", room, msgs, complete: true });
  await p;
  return ws;
}

test("join then deliver every message once, in seq order", async () => {
  const t = setup({ token: "a b" });
  const ws = await joined(t, "r", [msg(1), msg(2)]);
  assert.equal(ws.url, "ws://gw/ws?token=a%20b");
  assert.deepEqual(ws.ops("join")[0], { op: "join", room: "r" });
  ws.recv({ op: "batch", room: "r", msgs: [msg(2), msg(3)] }); // 2 is a duplicate
  ws.recv({ op: "batch", room: "r", msgs: [msg(3)] });
  ws.recv({ op: "batch", room: "r", msgs: [msg(4), msg(5)] });
  ws.recv({ op: "batch", room: "other", msgs: [msg(9)] }); // not joined
  assert.deepEqual(
    t.got.map((g) => g.seq),
    [1, 2, 3, 4, 5],
  );
  assert.deepEqual(
    t.got.map((g) => g.source),
    ["history", "history", "live", "live", "live"],
  );
  assert.equal(t.c.lastSeq("r"), 5);
  t.c.close();
});

test("a gap resumes on the same connection and ignores batches until the history", async () => {
  const t = setup();
  const ws = await joined(t, "r", [msg(1)]);
  ws.recv({ op: "batch", room: "r", msgs: [msg(2), msg(4)] }); // 3 missing
  const joins = ws.ops("join");
  assert.deepEqual(joins[joins.length - 1], { op: "join", room: "r", resume: 2 });
  ws.recv({ op: "batch", room: "r", msgs: [msg(5)] }); // covered by the history
  ws.recv({ op: "joined", room: "r", seq: 5, online: 1 });
  ws.recv({ op: "history", room: "r", msgs: [msg(3), msg(4), msg(5)], complete: true });
  ws.recv({ op: "batch", room: "r", msgs: [msg(5), msg(6)] });
  assert.deepEqual(
    t.got.map((g) => g.seq),
    [1, 2, 3, 4, 5, 6],
  );
  assert.equal(t.got[2].source, "resume");
  assert.equal(ws.ops("join").length, 2, "one resume, batches ignored while it runs");
  assert.equal(FakeWS.all.length, 1, "no new connection");
  t.c.close();
});

test("an incomplete resume delivers what continues the stream and asks again", async () => {
  const t = setup();
  const ws = await joined(t, "r", [msg(1)]);
  ws.recv({ op: "batch", room: "r", msgs: [msg(2), msg(5)] }); // 3, 4 missing
  ws.recv({ op: "joined", room: "r", seq: 5, online: 1 });
  ws.recv({ op: "history", room: "r", msgs: [msg(3), msg(5)], complete: false });
  assert.deepEqual(t.got.map((g) => g.seq), [1, 2, 3], "only what continues the stream");
  await until(() => ws.ops("join").length === 3, "a second resume");
  assert.deepEqual(ws.ops("join")[2], { op: "join", room: "r", resume: 3 });
  ws.recv({ op: "batch", room: "r", msgs: [msg(6)] }); // still resuming: ignored
  ws.recv({ op: "history", room: "r", msgs: [msg(4), msg(5), msg(6)], complete: true });
  assert.deepEqual(t.got.map((g) => g.seq), [1, 2, 3, 4, 5, 6]);
  t.c.close();
});

test("thinned batches cover the seqs they leave out: no resume", async () => {
  const t = setup();
  const ws = await joined(t, "r", [msg(1)]);
  ws.recv({ op: "batch", room: "r", from: 2, to: 9, msgs: [msg(4), msg(8)] });
  ws.recv({ op: "batch", room: "r", from: 10, to: 12, msgs: [] });
  ws.recv({ op: "batch", room: "r", msgs: [msg(13)] });
  assert.deepEqual(t.got.map((g) => g.seq), [1, 4, 8, 13]);
  assert.equal(ws.ops("join").length, 1, "no resume for thinned seqs");
  // A thinned batch that starts past the covered range is a gap.
  ws.recv({ op: "batch", room: "r", from: 20, to: 25, msgs: [msg(21)] });
  assert.deepEqual(ws.ops("join")[1], { op: "join", room: "r", resume: 13 });
  // The history covers up to the joined seq even where it shows less.
  ws.recv({ op: "joined", room: "r", seq: 25, online: 1 });
  ws.recv({ op: "history", room: "r", msgs: [msg(21)], complete: true });
  ws.recv({ op: "batch", room: "r", from: 26, to: 27, msgs: [msg(27)] });
  assert.deepEqual(t.got.map((g) => g.seq), [1, 4, 8, 13, 21, 27]);
  assert.equal(ws.ops("join").length, 2, "one resume");
  assert.equal(t.c.lastSeq("r"), 27);
  t.c.close();
});

test("reconnect with backoff and rejoin with resume", async () => {
  const t = setup();
  const ws = await joined(t, "r", [msg(7)]);
  ws.drop(4000, "slow consumer");
  assert.equal(t.states.at(-1), "reconnecting");
  await until(() => FakeWS.all.length === 2, "second connection");
  const ws2 = t.ws();
  ws2.open();
  assert.deepEqual(ws2.ops("join"), [{ op: "join", room: "r", resume: 7 }]);
  ws2.recv({ op: "batch", room: "r", msgs: [msg(8)] }); // before the history: ignored
  ws2.recv({ op: "history", room: "r", msgs: [msg(8), msg(9)], complete: true });
  assert.deepEqual(
    t.got.map((g) => g.seq),
    [7, 8, 9],
  );
  assert.deepEqual(
    t.got.map((g) => g.source),
    ["history", "resume", "resume"],
    "the batch that came before the history was ignored",
  );
  assert.equal(t.states.at(-1), "open");
  t.c.close();
});

test("send resolves with the ack", async () => {
  const t = setup();
  const ws = await joined(t);
  const p = t.c.send("r", "hi");
  await until(() => ws.ops("send").length === 1, "send frame");
  const s = ws.ops("send")[0];
  assert.equal(s.room, "r");
  assert.equal(s.text, "hi");
  assert.match(s.id, /^[0-9a-f]{24}$/);
  ws.recv({ op: "ack", id: s.id, room: "r", seq: 3 });
  assert.deepEqual(await p, { op: "ack", id: s.id, room: "r", seq: 3 });
  t.c.close();
});

test("a held send's later ack or reject is emitted as a verdict", async () => {
  const t = setup();
  const ws = await joined(t);
  const verdicts = [];
  t.c.on("verdict", (room, id, f) => verdicts.push({ room, id, op: f.op, seq: f.seq, code: f.code }));
  for (const [text, id] of [["a", "h1"], ["b", "h2"]]) {
    const p = t.c.sendID("r", id, text);
    await until(() => ws.ops("send").some((f) => f.id === id), "send " + id);
    ws.recv({ op: "ack", id, room: "r", held: true });
    assert.deepEqual(await p, { op: "ack", id, room: "r", held: true });
  }
  // An answer to an id we never held, and a repeated held ack, are not verdicts.
  ws.recv({ op: "ack", id: "other", room: "r", seq: 9 });
  ws.recv({ op: "ack", id: "h1", room: "r", held: true });
  ws.recv({ op: "ack", id: "h1", room: "r", seq: 7 });
  ws.recv({ op: "reject", id: "h2", room: "r", code: "blocked", message: "rejected by a moderator" });
  ws.recv({ op: "ack", id: "h1", room: "r", seq: 7 }); // once only
  assert.deepEqual(verdicts, [
    { room: "r", id: "h1", op: "ack", seq: 7, code: undefined },
    { room: "r", id: "h2", op: "reject", seq: undefined, code: "blocked" },
  ]);
  t.c.close();
});

test("send retries with the same id after a timeout and after a reconnect", async () => {
  const t = setup();
  const ws = await joined(t);
  const p = t.c.send("r", "hello");
  await until(() => ws.ops("send").length === 2, "retry after the timeout");
  const [a, b] = ws.ops("send");
  assert.equal(a.id, b.id);
  assert.equal(a.retry, undefined, "the first attempt is not a retry");
  assert.equal(b.retry, true, "later attempts say they are retries");
  ws.drop(1006);
  await until(() => FakeWS.all.length === 2, "reconnect");
  const ws2 = t.ws();
  ws2.open();
  await until(() => ws2.ops("send").length === 1, "retry on the new connection");
  assert.equal(ws2.sent[0].op, "join", "rejoin goes out before the retry");
  assert.equal(ws2.ops("send")[0].id, a.id);
  assert.equal(ws2.ops("send")[0].retry, true);
  ws2.recv({ op: "reject", id: a.id, room: "r", code: "rate_limited", retry_after_ms: 900 });
  const f = await p;
  assert.equal(f.code, "rate_limited");
  assert.equal(f.retry_after_ms, 900);
  t.c.close();
});

test("unavailable is retried with the same id after retry_after_ms", async () => {
  const t = setup();
  const ws = await joined(t);
  const p = t.c.send("r", "x");
  await until(() => ws.ops("send").length === 1, "send");
  const id = ws.ops("send")[0].id;
  const t0 = Date.now();
  ws.recv({ op: "reject", id, room: "r", code: "unavailable", retry_after_ms: 40 });
  await until(() => ws.ops("send").length === 2, "retry");
  assert.ok(Date.now() - t0 >= 35, "waited retry_after_ms");
  assert.equal(ws.ops("send")[1].id, id);
  assert.equal(ws.ops("send")[1].retry, true);
  ws.recv({ op: "ack", id, room: "r", held: true });
  assert.equal((await p).held, true);
  t.c.close();
});

test("kicked: no reconnect, pending sends fail", async () => {
  const t = setup();
  const ws = await joined(t);
  const reasons = [];
  t.c.on("kicked", (r) => reasons.push(r));
  const p = t.c.send("r", "x");
  await until(() => ws.ops("send").length === 1, "send");
  ws.recv({ op: "kicked", reason: "logged in elsewhere" });
  ws.drop(4001, "logged in elsewhere");
  await assert.rejects(p, (e) => e instanceof SendError && e.reason === "kicked");
  assert.deepEqual(reasons, ["logged in elsewhere"]);
  assert.equal(t.c.state, "kicked");
  await sleep(60);
  assert.equal(FakeWS.all.length, 1, "did not reconnect");
});

test("reconnect frame: the client moves on at once when the server closes with 1001", async () => {
  const t = setup({ minBackoffMs: 30, maxBackoffMs: 5000 });
  const ws = await joined(t, "r", [msg(1)]);
  for (let i = 0; i < 6; i++) {
    // Build up a long backoff that the drain must not inherit.
    t.c._attempt++;
  }
  ws.recv({ op: "reconnect", after_ms: 10 });
  ws.drop(1001, "server draining");
  const t0 = Date.now();
  await until(() => FakeWS.all.length === 2, "reconnect after drain", 200);
  assert.ok(Date.now() - t0 < 100);
  t.ws().open();
  assert.deepEqual(t.ws().ops("join"), [{ op: "join", room: "r", resume: 1 }]);
  t.c.close();
});

test("reconnect frame: the client leaves by itself if the server does not close", async () => {
  const t = setup();
  await joined(t);
  t.ws().recv({ op: "reconnect", after_ms: 0 });
  await until(() => FakeWS.all.length === 2, "client-side drain", 3000);
  t.c.close();
});

test("token expiry reconnects anonymously", async () => {
  const t = setup({ token: "tok" });
  const ws = await joined(t);
  let expired = 0;
  t.c.on("tokenexpired", () => expired++);
  ws.drop(4005, "token expired");
  await until(() => FakeWS.all.length === 2, "reconnect");
  assert.equal(expired, 1);
  assert.equal(t.ws().url, "ws://gw/ws");
  t.c.close();
});

test("pings while open and drops a dead connection", async () => {
  const t = setup({ pingIntervalMs: 20, deadAfterMs: 150 });
  const ws = await joined(t);
  await until(() => ws.ops("ping").length >= 2, "pings");
  await until(() => FakeWS.all.length === 2, "dead connection replaced", 3000);
  t.c.close();
});

test("delete, purge, online and notice events", async () => {
  const t = setup();
  const ws = await joined(t);
  const ev = [];
  t.c.on("delete", (r, seqs) => ev.push(["delete", r, seqs]));
  t.c.on("purge", (r, uid) => ev.push(["purge", r, uid]));
  t.c.on("online", (r, n) => ev.push(["online", r, n]));
  t.c.on("notice", (r, text, uid) => ev.push(["notice", r, text, uid]));
  ws.recv({ op: "delete", room: "r", seqs: [3, 4] });
  ws.recv({ op: "purge", room: "r", uid: "u9" });
  ws.recv({ op: "online", room: "r", count: 12 });
  ws.recv({ op: "notice", room: "r", text: "slow mode on" });
  ws.recv({ op: "online", room: "elsewhere", count: 1 });
  ws.recv({ op: "notice", room: "elsewhere", text: "not ours" });
  // A notice addressed to this user (a push to one user) is emitted even
  // without a room the client is in.
  ws.recv({ op: "notice", room: "", text: "for you", uid: "me" });
  assert.deepEqual(ev, [
    ["delete", "r", [3, 4]],
    ["purge", "r", "u9"],
    ["online", "r", 12],
    ["notice", "r", "slow mode on", ""],
    ["notice", "", "for you", "me"],
  ]);
  t.c.close();
});

test("send carries mode and size only when they are not the defaults", async () => {
  const t = setup();
  const ws = await joined(t);
  const pending = [
    t.c.send("r", "a", { mode: "top", size: "large" }),
    t.c.send("r", "b", { mode: "scroll", size: "normal" }),
    t.c.send("r", "c"),
  ].map((p) => p.catch((e) => e));
  await until(() => ws.ops("send").length === 3, "three sends");
  const [a, b, c] = ws.ops("send");
  assert.equal(a.mode, "top");
  assert.equal(a.size, "large");
  for (const f of [b, c]) assert.ok(!("mode" in f) && !("size" in f), JSON.stringify(f));
  t.c.close();
  for (const e of await Promise.all(pending)) assert.ok(e instanceof SendError);
});

test("close fails pending sends and stops", async () => {
  const t = setup();
  await joined(t);
  const p = t.c.send("r", "x");
  t.c.close();
  await assert.rejects(p, (e) => e instanceof SendError && e.reason === "closed");
  assert.equal(t.c.state, "closed");
});

test("helpers", () => {
  for (let a = 0; a < 20; a++) {
    const d = backoff(250, 10000, a);
    assert.ok(d >= 125 && d < 125 + Math.min(10000, 250 * 2 ** a), `attempt ${a}: ${d}`);
  }
  assert.equal(backoff(250, 10000, 30, () => 0.999999), 10124);
  assert.equal(wsURL({ protocol: "http:", hostname: "h", port: "8080" }, { ws_port: 8090, ws_path: "/ws" }), "ws://h:8090/ws");
  assert.equal(wsURL({ protocol: "https:", hostname: "h", port: "" }, {}), "wss://h/ws");
  assert.ok(validRoom("a-b_C9"));
  assert.ok(!validRoom("a b"));
  assert.ok(!validRoom("x".repeat(65)));
});

test("danmaku.d.ts declares every export, event and option of danmaku.js", () => {
  const dts = readFileSync(new URL("../web/danmaku.d.ts", import.meta.url), "utf8");
  const js = readFileSync(new URL("../web/danmaku.js", import.meta.url), "utf8");
  for (const name of Object.keys(danmaku)) {
    assert.match(dts, new RegExp(`export declare (const|class|function) ${name}\\b`), "export " + name);
  }
  const events = new Set([...js.matchAll(/_emit\("([a-z]+)"/g)].map((m) => m[1]));
  assert.ok(events.size >= 12, "events found: " + [...events]);
  const declared = dts.slice(dts.indexOf("interface DanmakuEvents"), dts.indexOf("interface DanmakuClientOptions"));
  for (const e of events) assert.match(declared, new RegExp(`\\n  ${e}: \\(`), "event " + e);
  const ctor = js.slice(js.indexOf("  constructor(opts) {"), js.indexOf("  on(type, fn) {"));
  const opts = new Set([...ctor.matchAll(/opts\.([A-Za-z]+)/g)].map((m) => m[1]));
  assert.ok(opts.size >= 8, "options found: " + [...opts]);
  const declaredOpts = dts.slice(dts.indexOf("interface DanmakuClientOptions"), dts.indexOf("interface SendOptions"));
  for (const o of opts) assert.match(declaredOpts, new RegExp(`\\n  ${o}\\??:`), "option " + o);
});
