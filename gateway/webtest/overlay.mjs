// overlay.mjs checks the OBS overlay (/overlay) in headless Chromium.
// overlay_test.go starts the server and passes:
//   DANMAKU_HTTP           http://127.0.0.1:P
//   DANMAKU_CHROMIUM       the browser binary
//   DANMAKU_OUT            where screenshots go
//   DANMAKU_ROOM           a fresh room
//   DANMAKU_PAID_ROOM      another fresh room (the kinds=paid overlay)
//   DANMAKU_MOD_TOKEN      a mod token for both rooms (deletes)
//   DANMAKU_SERVICE_TOKEN  a service token (publishes)
//   DANMAKU_WS             ws://127.0.0.1:P/ws
//   DANMAKU_VIEWER_TOKEN   a viewer token (sends, then is banned: a purge)
//   DANMAKU_VIEWER_UID     its uid
import { chromium } from "playwright-core";
import WebSocket from "ws";
import assert from "node:assert/strict";
import path from "node:path";
import { call, env, launch, openPage, sleep, stepper } from "../../pkg/testenv/page.mjs";

const { HTTP, WS, OUT, ROOM, MOD, SERVICE, VIEWER } = env;
const PAID_ROOM = process.env.DANMAKU_PAID_ROOM;
const VIEWER_UID = process.env.DANMAKU_VIEWER_UID;

// sendAsViewer sends text to room over the WebSocket with the viewer token
// and resolves with the ack.
function sendAsViewer(room, text) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${WS}?room=${room}&token=${VIEWER}`);
    const id = "ov-" + Math.random().toString(36).slice(2, 10);
    const timer = setTimeout(() => reject(new Error("no ack for " + text)), 10000);
    ws.on("message", (data) => {
      const f = JSON.parse(String(data));
      if (f.op === "history") ws.send(JSON.stringify({ op: "send", room, id, text }));
      if ((f.op === "ack" || f.op === "reject") && f.id === id) {
        clearTimeout(timer);
        ws.close();
        if (f.op === "ack" && f.seq) resolve(f);
        else reject(new Error("send refused: " + JSON.stringify(f)));
      }
    });
    ws.on("error", reject);
  });
}
const step = stepper("overlay");
const api = (method, room, p, token, body) => call(method, `/api/rooms/${room}${p}`, token, body);
const publish = (room, body) => api("POST", room, "/publish", SERVICE, body);

// alphaAt decodes a PNG screenshot in the page and returns the alpha of
// the given pixels, and how many pixels of the whole image are opaque.
async function pixels(page, png, points) {
  return page.evaluate(
    async ({ b64, points }) => {
      const img = new Image();
      img.src = "data:image/png;base64," + b64;
      await img.decode();
      const c = document.createElement("canvas");
      c.width = img.width;
      c.height = img.height;
      const ctx = c.getContext("2d");
      ctx.drawImage(img, 0, 0);
      const d = ctx.getImageData(0, 0, c.width, c.height).data;
      let opaque = 0;
      for (let i = 3; i < d.length; i += 4) if (d[i] > 0) opaque++;
      return { alphas: points.map(([x, y]) => d[(y * c.width + x) * 4 + 3]), opaque, total: d.length / 4 };
    },
    { b64: png.toString("base64"), points },
  );
}

const browser = await launch(chromium);
const problems = [];
try {
  const page = await openPage(browser, problems, { width: 1280, height: 720, timeout: 15000 });

  step("the overlay opens: transparent, no chrome, options applied");
  await page.goto(`${HTTP}/overlay?room=${ROOM}&lanes=6&font=32&opacity=0.9&speed=120&max=20`);
  await page.waitForFunction(() => document.documentElement.dataset.state === "open");
  const look = await page.evaluate(() => ({
    html: getComputedStyle(document.documentElement).backgroundColor,
    body: getComputedStyle(document.body).backgroundColor,
    controls: document.querySelectorAll("input, button, select, textarea, a, form").length,
    scroll: [document.documentElement.scrollHeight <= innerHeight, document.documentElement.scrollWidth <= innerWidth],
    opacity: getComputedStyle(document.getElementById("layer")).opacity,
  }));
  assert.equal(look.html, "rgba(0, 0, 0, 0)", "html background transparent");
  assert.equal(look.body, "rgba(0, 0, 0, 0)", "body background transparent");
  assert.equal(look.controls, 0, "no controls");
  assert.deepEqual(look.scroll, [true, true], "no scrollbars");
  assert.equal(look.opacity, "0.9");
  // Give the join a moment so the publishes below are live, not history.
  await sleep(300);

  step("danmaku fly in lanes; top and bottom stay centred");
  await page.evaluate(() => { globalThis.danmakuOverlay.stage.fixedMs = 30000; });
  const keep = "keep me " + Math.random().toString(36).slice(2, 6);
  const doomed = "delete me " + Math.random().toString(36).slice(2, 6);
  await publish(ROOM, { text: keep, kind: "highlight", color: "#ff6699" });
  const del = await publish(ROOM, { text: doomed, role: "viewer" });
  await publish(ROOM, { text: "pinned to the top", mode: "top", size: "large", kind: "paid" });
  await publish(ROOM, { text: "down at the bottom", mode: "bottom" });
  const keepEl = page.locator("#layer .dm", { hasText: keep });
  const doomedEl = page.locator("#layer .dm", { hasText: doomed });
  await keepEl.waitFor({ state: "visible" });
  await doomedEl.waitFor({ state: "visible" });
  const topEl = page.locator("#layer .dm.top", { hasText: "pinned to the top" });
  const botEl = page.locator("#layer .dm.bottom", { hasText: "down at the bottom" });
  await topEl.waitFor({ state: "visible" });
  await botEl.waitFor({ state: "visible" });
  {
    const tb = await topEl.boundingBox();
    const bb = await botEl.boundingBox();
    assert.ok(Math.abs(tb.x + tb.width / 2 - 640) < 3 && tb.y < 60, `top centred at the top: ${JSON.stringify(tb)}`);
    assert.ok(Math.abs(bb.x + bb.width / 2 - 640) < 3 && 720 - (bb.y + bb.height) < 60, `bottom centred at the bottom: ${JSON.stringify(bb)}`);
    const fs = await keepEl.evaluate((el) => getComputedStyle(el).fontSize);
    assert.equal(fs, "32px", "font option");
  }
  await page.waitForTimeout(400);
  const png = await page.screenshot({ path: path.join(OUT, "overlay.png"), omitBackground: true });
  {
    const { alphas, opaque, total } = await pixels(page, png, [[0, 0], [1279, 0], [0, 719], [1279, 719], [640, 360]]);
    assert.deepEqual(alphas, [0, 0, 0, 0, 0], "the background is transparent in the screenshot");
    assert.ok(opaque > 500 && opaque < total / 4, `danmaku are drawn (${opaque} of ${total} pixels not transparent)`);
  }

  step("a deleted message leaves the screen when the delete arrives");
  await api("DELETE", ROOM, `/messages/${del.seq}`, MOD);
  await page.waitForFunction((t) => ![...document.querySelectorAll("#layer .dm")].some((el) => el.textContent.includes(t)), doomed, { timeout: 5000 });
  assert.equal(await keepEl.count(), 1, "the other message stays");
  await page.screenshot({ path: path.join(OUT, "overlay-deleted.png"), omitBackground: true });

  step("a purge (the sender banned) takes the user's messages off the screen");
  const purged = "purge me " + Math.random().toString(36).slice(2, 6);
  const pm = await sendAsViewer(ROOM, purged);
  const purgedEl = page.locator(`#layer .dm[data-seq="${pm.seq}"]`);
  await purgedEl.waitFor({ state: "visible" });
  assert.equal(await purgedEl.getAttribute("data-uid"), VIEWER_UID);
  await api("POST", ROOM, "/bans", MOD, { uid: VIEWER_UID, duration_s: 60, reason: "overlay test" });
  await page.waitForFunction((s) => !document.querySelector(`#layer .dm[data-seq="${s}"]`), pm.seq, { timeout: 5000 });
  assert.equal(await keepEl.count(), 1, "other senders' messages stay");

  step("a message of the purged user that comes after the purge (sent before the ban) never shows");
  const until = await page.evaluate((uid) => {
    const o = globalThis.danmakuOverlay;
    const u = o.retracted.purged.get(uid);
    o.client._emit("message", o.options.room, { seq: 1e9, uid, text: "late purged", ts: u - 1 }, "live");
    o.client._emit("message", o.options.room, { seq: 1e9 + 1, uid, text: "after the timeout", ts: u + 60000 }, "live");
    return u;
  }, VIEWER_UID);
  assert.ok(until > Date.now() - 60000, "the purge's until is remembered: " + until);
  await page.locator("#layer .dm", { hasText: "after the timeout" }).waitFor({ state: "attached", timeout: 5000 });
  assert.equal(await page.locator("#layer .dm", { hasText: "late purged" }).count(), 0, "the late purged message is not shown");

  step("a message deleted before it could be placed never shows");
  // One on screen at most: the next message waits in the queue.
  await page.evaluate(() => { globalThis.danmakuOverlay.stage.maxOnScreen = 1; });
  const queued = "queued then deleted " + Math.random().toString(36).slice(2, 6);
  const q = await publish(ROOM, { text: queued, role: "viewer" });
  await page.waitForFunction((s) => !!document.querySelector(`#layer .dm[data-seq="${s}"]`), q.seq);
  assert.equal(await page.locator(`#layer .dm[data-seq="${q.seq}"]`).isVisible(), false, "waits in the queue");
  await api("DELETE", ROOM, `/messages/${q.seq}`, MOD);
  await page.waitForFunction((s) => !document.querySelector(`#layer .dm[data-seq="${s}"]`), q.seq, { timeout: 5000 });
  await page.evaluate(() => {
    const { stage } = globalThis.danmakuOverlay;
    stage.maxOnScreen = 20;
    stage.pump();
  });

  step("it reconnects by itself and shows what was sent meanwhile");
  await page.evaluate(() => globalThis.danmakuOverlay.client._ws.close());
  await page.waitForFunction(() => document.documentElement.dataset.state !== "open");
  const during = "sent while away " + Math.random().toString(36).slice(2, 6);
  await publish(ROOM, { text: during });
  await page.waitForFunction(() => document.documentElement.dataset.state === "open", null, { timeout: 20000 });
  await page.locator("#layer .dm", { hasText: during }).waitFor({ state: "attached", timeout: 10000 });

  step("kinds=paid shows only paid messages");
  const paid = await browser.newPage({ viewport: { width: 960, height: 540 } });
  paid.on("pageerror", (e) => problems.push("page error (paid): " + e.message));
  await paid.goto(`${HTTP}/overlay?room=${PAID_ROOM}&kinds=paid`);
  await paid.waitForFunction(() => document.documentElement.dataset.state === "open");
  await sleep(300);
  await publish(PAID_ROOM, { text: "plain line" });
  await publish(PAID_ROOM, { text: "a highlight", kind: "highlight" });
  await publish(PAID_ROOM, { text: "a gift, thanks", kind: "paid" });
  await paid.locator("#layer .dm.paid", { hasText: "a gift, thanks" }).waitFor({ state: "visible" });
  await paid.waitForTimeout(300);
  const shown = await paid.evaluate(() => [...document.querySelectorAll("#layer .dm")].map((el) => el.textContent));
  assert.deepEqual(shown, ["¥a gift, thanks"], "only the paid message");
  await paid.screenshot({ path: path.join(OUT, "overlay-paid-only.png"), omitBackground: true });

  step("a bad option is reported on the page");
  const bad = await browser.newPage();
  await bad.goto(`${HTTP}/overlay?room=${PAID_ROOM}&lanes=0&kinds=gifts`);
  const text = await bad.locator("#problem").textContent();
  assert.match(text, /lanes must be a number from 1 to 50/);
  assert.match(text, /unknown kind "gifts"/);

  assert.deepEqual(problems, [], "no errors on the page");
  step("ok");
} finally {
  await browser.close();
}
