// replay.mjs checks the recorded-stream replay page in headless Chromium.
// webtest_test.go (TestReplayPage) starts the server and passes:
//   DANMAKU_HTTP            http://127.0.0.1:P
//   DANMAKU_CHROMIUM        the browser binary
//   DANMAKU_OUT             where screenshots go
//   DANMAKU_ROOM            a fresh room
//   DANMAKU_STREAMER_TOKEN  the room's streamer (sessions, deletes)
//   DANMAKU_SERVICE_TOKEN   a service token (publishes the messages)
//
// Offsets are checked by sampling: one evaluate reads the playhead the page
// last rendered and every danmaku element's x, width and data-ts, and
// compares them with x = W - (pos - (ts - from)) * (W + w) / 8000.
import { chromium } from "playwright-core";
import assert from "node:assert/strict";
import path from "node:path";
import { env, launch, openPage, roomAPI, sleep, stepper } from "../../pkg/testenv/page.mjs";

const { HTTP, OUT, ROOM, SERVICE } = env;
const HOST = process.env.DANMAKU_STREAMER_TOKEN;
const step = stepper("replay");
const api = roomAPI(ROOM);

// Record a session: 30 messages over ~12 s, the 7th deleted; display
// modes as live: the 11th at the top, the 21st at the bottom, the 16th
// large (a service may use them under the default policies).
const session = await api("POST", "/sessions", HOST, { title: "replay test" });
step(`session ${session.id} started`);
const N = 30;
const MODES = { 10: { mode: "top" }, 20: { mode: "bottom" }, 15: { size: "large" } };
for (let i = 0; i < N; i++) {
  await api("POST", "/publish", SERVICE, { text: `msg ${String(i).padStart(2, "0")} 弹幕`, id: `r${i}`, ...(MODES[i] || {}) });
  await sleep(400);
}
const all = [];
for (let next = 0; ; ) {
  const page = await api("GET", `/history?after_seq=${next}&limit=1000&from=${session.start}`, HOST);
  all.push(...page.msgs);
  if (!page.next) break;
  next = page.next;
}
assert.equal(all.length, N, "all published messages are in history");
const deleted = all[6];
await api("DELETE", `/messages/${deleted.seq}`, HOST);
await sleep(300);
const ended = await api("POST", `/sessions/${session.id}/end`, HOST);
const FROM = ended.start;
const TO = ended.end;
const live = all.filter((m) => m.seq !== deleted.seq);
step(`recorded ${all.length} messages over ${TO - FROM} ms; deleted seq ${deleted.seq}`);

const browser = await launch(chromium);
const problems = [];
try {
  const page = await openPage(browser, problems, { width: 1280, height: 820, timeout: 15000 });
  await page.goto(`${HTTP}/replay?room=${ROOM}&session=${session.id}`);

  // The density bar: one bar per non-empty bucket, counts summing to the
  // messages that replay (not the deleted one).
  await page.waitForFunction(() => document.querySelectorAll("#density rect").length > 0);
  const bars = await page.$$eval("#density rect", (rs) => rs.map((r) => ({ count: Number(r.dataset.count), h: Number(r.getAttribute("height")) })));
  assert.equal(bars.reduce((a, b) => a + b.count, 0), live.length, "density bars count every replayed message once");
  assert.ok(bars.every((b) => b.h > 0), "every bar is drawn");
  step(`density bar: ${bars.length} bars`);

  // sample reads what the page last rendered and checks it against ts.
  let samples = 0;
  const seenModes = new Set();
  async function sample(label) {
    const s = await page.evaluate(() => {
      const st = window.__replay.state;
      const layer = document.getElementById("layer");
      const lr = layer.getBoundingClientRect();
      const items = [...layer.querySelectorAll(".dm")].map((el) => {
        const r = el.getBoundingClientRect();
        const mode = el.classList.contains("top") ? "top" : el.classList.contains("bottom") ? "bottom" : "scroll";
        return { seq: Number(el.dataset.seq), ts: Number(el.dataset.ts), x: r.left - lr.left, w: el.offsetWidth,
          mode, large: el.classList.contains("large"), top: r.top - lr.top, bottom: lr.bottom - r.bottom };
      });
      return { pos: st.renderedPos, W: st.renderedW, H: lr.height, from: st.from, playing: st.playing, buf: st.buf.map((it) => it.m.seq), items };
    });
    assert.equal(s.from, FROM, "the page replays the session's range");
    const D = 8000;
    const F = 4000; // top and bottom danmaku stay this long
    const stay = (m) => (m.mode === "top" || m.mode === "bottom" ? F : D);
    const want = live.filter((m) => m.ts - FROM <= s.pos && m.ts - FROM > s.pos - stay(m)).map((m) => m.seq).sort((a, b) => a - b);
    const got = s.items.map((i) => i.seq).sort((a, b) => a - b);
    assert.deepEqual(got, want, `${label}: on screen at pos ${s.pos} ms`);
    for (const it of s.items) {
      const m = live.find((x) => x.seq === it.seq);
      assert.equal(it.mode, m.mode || "scroll", `${label}: seq ${it.seq} shown in its display mode`);
      assert.equal(it.large, m.size === "large", `${label}: seq ${it.seq} shown at its size`);
      if (it.mode !== "scroll") {
        // Centred in a row at its edge.
        assert.ok(Math.abs(it.x + it.w / 2 - s.W / 2) < 2, `${label}: ${it.mode} seq ${it.seq} centred (x ${it.x.toFixed(1)}, w ${it.w})`);
        const edge = it.mode === "top" ? it.top : it.bottom;
        assert.ok(edge >= 0 && edge < s.H / 4, `${label}: ${it.mode} seq ${it.seq} at its edge (${edge.toFixed(1)} px from it)`);
        continue;
      }
      const x = s.W - (s.pos - (it.ts - FROM)) * ((s.W + it.w) / D);
      assert.ok(Math.abs(it.x - x) < 1.5, `${label}: seq ${it.seq} at x=${it.x.toFixed(1)}, want ${x.toFixed(1)} (pos ${s.pos}, ts ${it.ts})`);
    }
    assert.ok(!s.buf.includes(deleted.seq) && !got.includes(deleted.seq), `${label}: the deleted message is never replayed`);
    for (const it of s.items) seenModes.add(it.large ? "large" : it.mode);
    samples++;
    return s;
  }

  await sample("before play");
  await page.click("#play");
  for (let i = 0; i < 6; i++) {
    await sleep(700);
    const s = await sample(`playing ${i}`);
    if (i === 5) assert.ok(s.items.length > 3, `several danmaku on screen after 4 s (${s.items.length})`);
  }
  await page.screenshot({ path: path.join(OUT, "replay-playing.png") });
  for (const m of ["top", "bottom", "large"]) {
    if (!seenModes.has(m)) {
      // Not sampled while playing (a busy machine): seek to it and look.
      const target = live.find((x) => (x.mode || (x.size === "large" ? "large" : "")) === m);
      await page.evaluate((pos) => window.__replay.seek(pos), target.ts - FROM + 500);
      await page.waitForFunction(() => window.__replay.state.renderedPos >= 0 && !window.__replay.state.loading);
      await sleep(200);
      await sample(`seeked to the ${m} message`);
    }
  }
  assert.ok(["top", "bottom", "large"].every((m) => seenModes.has(m)), `display modes replayed: ${[...seenModes]}`);

  // Pause holds the clock.
  await page.click("#play");
  const p1 = (await sample("paused")).pos;
  await sleep(600);
  const p2 = (await sample("still paused")).pos;
  assert.equal(p2, p1, "pause holds the playhead");

  // 2×: the playhead runs twice as fast as the page's own clock.
  await page.selectOption("#speed", "2");
  const rate = await page.evaluate(async () => {
    const st = window.__replay.state;
    window.__replay.setPlaying(true);
    await new Promise((r) => requestAnimationFrame(r));
    const a = { pos: st.pos, t: performance.now() };
    await new Promise((r) => setTimeout(r, 1000));
    const b = { pos: st.pos, t: performance.now() };
    window.__replay.setPlaying(false);
    return (b.pos - a.pos) / (b.t - a.t);
  });
  assert.ok(rate > 1.7 && rate < 2.2, `2× speed advances ${rate.toFixed(2)} ms per ms`);
  step(`2× speed: ${rate.toFixed(2)} ms of replay per ms`);

  // A click on the density bar at 80 % seeks there and reads history from
  // 8 s before it, in pages of at most 300 messages and 120 s windows.
  const before = await page.evaluate(() => window.__replay.state.fetches.length);
  const box = await page.locator(".timeline").boundingBox();
  await page.mouse.click(box.x + box.width * 0.8, box.y + box.height / 2);
  await page.waitForFunction(() => window.__replay.state.renderedPos >= 0 && !window.__replay.state.loading);
  const after = await page.evaluate(() => ({ pos: window.__replay.state.pos, fetches: window.__replay.state.fetches }));
  const dur = TO - FROM;
  assert.ok(Math.abs(after.pos - 0.8 * dur) < dur * 0.01 + 50, `seek to 80 %: pos ${after.pos} of ${dur}`);
  const seekFetch = after.fetches[before];
  assert.ok(seekFetch, "the seek read history");
  assert.equal(seekFetch.from, Math.max(FROM, FROM + Math.round(after.pos) - 8000), "the seek reads from 8 s before the new playhead");
  for (const f of after.fetches) {
    assert.ok(f.limit <= 300 && f.to - f.from <= 120000, `bounded history read: ${JSON.stringify(f)}`);
  }
  await sleep(200);
  await sample("after seek");
  await page.click("#play");
  await sleep(800);
  const s = await sample("playing after seek");
  await page.screenshot({ path: path.join(OUT, "replay-seeked.png") });
  step(`seeked to ${after.pos} ms; ${s.items.length} on screen; ${samples} samples matched their ts`);

  // A range opened by from/to replays the same messages.
  await page.goto(`${HTTP}/replay?room=${ROOM}&from=${FROM}&to=${TO}&at=${FROM + 5000}`);
  await page.waitForFunction(() => window.__replay.state.renderedPos === 5000 && !window.__replay.state.loading);
  await sleep(200);
  await sample("opened by from/to at +5 s");
  assert.deepEqual(problems, [], "no page errors");
  step("ok");
} finally {
  await browser.close();
}
