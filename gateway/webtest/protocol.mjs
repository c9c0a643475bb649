// protocol.mjs checks statements of docs/protocol.md against a running
// server with node's "ws" package (a client the project did not write).
// Env: DANMAKU_HTTP (http://host:port), DANMAKU_WS (ws://host:port/ws).
import WebSocket from "ws";
import assert from "node:assert/strict";

const HTTP = process.env.DANMAKU_HTTP;
const WS = process.env.DANMAKU_WS;
const step = (s) => console.log("protocol: " + s);

// handshake resolves with the HTTP status of a refused upgrade, or 101.
function handshake(url, headers = {}) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers });
    const t = setTimeout(() => reject(new Error("handshake timed out: " + url)), 5000);
    ws.on("unexpected-response", (_req, res) => {
      clearTimeout(t);
      resolve(res.statusCode);
      res.destroy();
    });
    ws.on("open", () => {
      clearTimeout(t);
      ws.close();
      resolve(101);
    });
    ws.on("error", () => {});
  });
}

// open connects and collects frames; next(pred) waits for a matching one.
function open(url) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    const frames = [];
    let closed = null;
    const waiters = new Set();
    const poke = () => {
      for (const w of [...waiters]) w();
    };
    ws.on("message", (d) => {
      frames.push(JSON.parse(d.toString()));
      poke();
    });
    ws.on("close", (code, reason) => {
      closed = { code, reason: reason.toString() };
      poke();
    });
    ws.on("error", (e) => reject(e));
    ws.on("open", () =>
      resolve({
        ws,
        frames,
        send: (f) => ws.send(typeof f === "string" ? f : JSON.stringify(f)),
        next(pred, what, ms = 5000) {
          return new Promise((res, rej) => {
            let i = 0;
            const check = () => {
              for (; i < frames.length; i++) {
                if (pred(frames[i])) {
                  waiters.delete(check);
                  clearTimeout(t);
                  res(frames[i]);
                  return;
                }
              }
            };
            const t = setTimeout(() => {
              waiters.delete(check);
              rej(new Error("timed out waiting for " + what));
            }, ms);
            waiters.add(check);
            check();
          });
        },
        closed(ms = 15000) {
          return new Promise((res, rej) => {
            const check = () => {
              if (closed) {
                waiters.delete(check);
                clearTimeout(t);
                res(closed);
              }
            };
            const t = setTimeout(() => rej(new Error("timed out waiting for close")), ms);
            waiters.add(check);
            check();
          });
        },
      }),
    );
  });
}

step("handshake errors");
assert.equal(await handshake(WS.replace(/\/ws$/, "/nope")), 404);
assert.equal(await handshake(WS + "?token=not.a.jwt"), 401);
assert.equal(await handshake(WS + "?room=bad%20room"), 400);
assert.equal(await handshake(WS + "?room=ok&resume=x"), 400);
assert.equal(await handshake(WS + "?room=ok"), 101);
const cfg = await (await fetch(HTTP + "/api/config")).json();
assert.equal(cfg.ws_path, "/ws");
assert.equal(String(cfg.ws_port), new URL(WS).port);

step("joined then history on ?room=, ping/pong, error frames");
const anon = await open(WS + "?room=proto");
const joined = await anon.next((f) => f.op !== undefined, "first frame");
assert.equal(joined.op, "joined");
assert.equal(joined.room, "proto");
const hist = await anon.next((f) => f.op === "history", "history");
assert.equal(hist.complete, true);
assert.deepEqual(hist.msgs, []);
anon.send({ op: "ping" });
await anon.next((f) => f.op === "pong", "pong");
anon.send({ op: "dance" });
assert.equal((await anon.next((f) => f.op === "error", "error")).code, "unknown_op");
anon.send("[1,2]");
await anon.next((f) => f.op === "error" && f.code === "invalid", "invalid frame error");
anon.send({ op: "send", room: "proto", id: "a1", text: "hi" });
const un = await anon.next((f) => f.op === "reject", "unauthorized reject");
assert.deepEqual([un.id, un.room, un.code], ["a1", "proto", "unauthorized"]);

step("16 rooms per connection");
for (let i = 0; i < 15; i++) anon.send({ op: "join", room: "extra" + i });
await anon.next((f) => f.op === "history" && f.room === "extra14", "16th room");
anon.send({ op: "join", room: "one-too-many" });
const tm = await anon.next((f) => f.op === "error" && f.message.includes("too many rooms"), "too many rooms error");
assert.equal(tm.code, "invalid");

step("sending: ack, duplicate id, too_long, not joined, rate limit");
const g = await (
  await fetch(HTTP + "/api/guest", { method: "POST", headers: { "Content-Type": "application/json" }, body: '{"name":"proto"}' })
).json();
const me = await open(WS + "?room=proto&token=" + encodeURIComponent(g.token));
await me.next((f) => f.op === "history", "history");
me.send({ op: "send", room: "proto", id: "m1", text: "  first\nline  " });
const ack = await me.next((f) => f.op === "ack" && f.id === "m1", "ack");
assert.ok(ack.seq >= 1);
const b = await anon.next((f) => f.op === "batch", "batch to the other viewer");
assert.equal(b.msgs[0].text, "first line", "text is cleaned");
assert.equal(b.msgs[0].seq, ack.seq);
me.send({ op: "send", room: "proto", id: "m1", text: "first line" });
const again = await me.next((f) => f.op === "ack" && f.id === "m1" && f !== ack, "duplicate ack");
assert.equal(again.seq, ack.seq, "a retry gets the same seq");
me.send({ op: "send", room: "proto", id: "m2", text: "x".repeat(501) });
assert.equal((await me.next((f) => f.id === "m2", "m2")).code, "too_long");
me.send({ op: "send", room: "proto", id: "m3", text: "y".repeat(101) });
assert.equal((await me.next((f) => f.id === "m3", "m3")).code, "too_long", "room default 100 runes");
me.send({ op: "send", room: "elsewhere", id: "m4", text: "hi" });
assert.equal((await me.next((f) => f.id === "m4", "m4")).code, "invalid");
for (let i = 0; i < 4; i++) me.send({ op: "send", room: "proto", id: "r" + i, text: "burst " + i });
const rl = await me.next((f) => f.op === "reject" && f.code === "rate_limited", "rate_limited");
assert.ok(rl.retry_after_ms > 0);

step("close codes: binary 1003, oversized 1009, bad frames 4003");
const bin = await open(WS);
bin.ws.send(Buffer.from([1, 2, 3]));
assert.equal((await bin.closed()).code, 1003);
const big = await open(WS);
big.send(JSON.stringify({ op: "ping", pad: "x".repeat(4096) }));
assert.equal((await big.closed()).code, 1009);
const bad = await open(WS);
// Exactly 21: frames still arriving after the close can make the TCP stack
// reset the connection, and the client then sees 1006 (see the doc).
for (let i = 0; i < 21; i++) bad.send("{}");
assert.equal((await bad.closed()).code, 4003);
const bye = await open(WS);
bye.ws.close(1000);
assert.equal((await bye.closed()).code, 1000);

step("subprotocols: danmaku.v1 is chosen from a list; only unknown ones fail on the client (RFC 6455)");
const picked = await new Promise((resolve, reject) => {
  const ws = new WebSocket(WS, ["mqtt", "danmaku.v1"]);
  ws.on("open", () => {
    resolve(ws.protocol);
    ws.close();
  });
  ws.on("error", reject);
});
assert.equal(picked, "danmaku.v1");
const refused = await new Promise((resolve) => {
  const ws = new WebSocket(WS, ["mqtt"]);
  ws.on("open", () => resolve("opened"));
  ws.on("error", (e) => resolve(e.message));
});
assert.equal(refused, "Server sent no subprotocol");

anon.ws.close();
me.ws.close();
step("ok");
