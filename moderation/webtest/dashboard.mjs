// dashboard.mjs drives the moderation dashboard in headless Chromium while a
// viewer (the "ws" package) in the same room sends messages and watches the
// moderator's actions arrive. webtest_test.go starts the server and passes:
//   DANMAKU_HTTP          http://127.0.0.1:P
//   DANMAKU_WS            ws://127.0.0.1:Q/ws
//   DANMAKU_CHROMIUM      the browser binary
//   DANMAKU_OUT           where the screenshot goes
//   DANMAKU_ROOM          the room
//   DANMAKU_MOD_TOKEN     a mod token for the room
//   DANMAKU_VIEWER_TOKEN  a viewer token
import { chromium } from "playwright-core";
import WebSocket from "ws";
import assert from "node:assert/strict";
import path from "node:path";

const HTTP = process.env.DANMAKU_HTTP;
const WS = process.env.DANMAKU_WS;
const OUT = process.env.DANMAKU_OUT;
const ROOM = process.env.DANMAKU_ROOM;
const MOD = process.env.DANMAKU_MOD_TOKEN;
const VIEWER = process.env.DANMAKU_VIEWER_TOKEN;
const step = (s) => console.log("dashboard: " + s);

function waitFor(pred, ms, what) {
  return new Promise((resolve, reject) => {
    const t0 = Date.now();
    const iv = setInterval(() => {
      const v = pred();
      if (v) {
        clearInterval(iv);
        resolve(v);
      } else if (Date.now() - t0 > ms) {
        clearInterval(iv);
        reject(new Error("timed out waiting for " + what));
      }
    }, 20);
  });
}

// The viewer: sends and receives on one connection.
step("connecting the viewer");
const frames = [];
const viewer = new WebSocket(`${WS}?room=${ROOM}&token=${encodeURIComponent(VIEWER)}`);
viewer.on("message", (data) => frames.push(JSON.parse(data.toString())));
await waitFor(() => frames.find((f) => f.op === "history" && f.room === ROOM), 5000, "viewer history");
let nextId = 0;
function send(text) {
  const id = "v-" + ++nextId + "-" + Math.random().toString(36).slice(2, 8);
  viewer.send(JSON.stringify({ op: "send", room: ROOM, id, text }));
  return id;
}
const ackOf = (id, pred = () => true) =>
  waitFor(() => frames.find((f) => f.op === "ack" && f.id === id && pred(f)), 5000, "ack of " + id);

step("launching chromium " + process.env.DANMAKU_CHROMIUM);
const browser = await chromium.launch({
  executablePath: process.env.DANMAKU_CHROMIUM,
  headless: true,
  timeout: 20000,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--no-first-run"],
});
const problems = [];
try {
  const page = await browser.newPage({ viewport: { width: 1360, height: 900 } });
  page.setDefaultTimeout(10000);
  page.on("pageerror", (e) => problems.push("page error: " + e.message));
  page.on("console", (m) => {
    if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) problems.push("console error: " + m.text());
  });
  page.on("response", (r) => {
    if (r.status() >= 400) problems.push(`HTTP ${r.status()} for ${r.url()}`);
  });
  page.on("dialog", (d) => {
    problems.push("dialog opened: " + d.message());
    d.dismiss();
  });
  const apiAuth = [];
  page.on("request", (r) => {
    if (r.url().includes("/api/rooms/")) apiAuth.push([r.headers()["authorization"] || "", r.headers()["cookie"] || ""]);
  });

  step("opening the dashboard with a mod token");
  await page.goto(`${HTTP}/dashboard`);
  await page.fill("#room", ROOM);
  await page.fill("#token", MOD);
  await page.click("#connect");
  await page.waitForFunction(() => document.getElementById("status").textContent.startsWith("watching"));
  assert.equal(await page.evaluate(() => sessionStorage.getItem("danmaku.mod.token")), MOD, "token kept in sessionStorage");
  assert.equal(await page.evaluate(() => document.cookie), "", "no cookies");

  step("a viewer's message arrives in the feed");
  const markup = "<img src=x onerror=alert(1)>hello <b>mods</b> " + Math.random().toString(36).slice(2, 6);
  const id1 = send(markup);
  const ack1 = await ackOf(id1, (f) => f.seq > 0);
  const row = page.locator(`#feed li[data-seq="${ack1.seq}"]`);
  await row.waitFor({ state: "attached" });
  assert.equal(await row.locator(".text").textContent(), markup, "text rendered as text");
  assert.equal(await page.locator("#feed img, #feed b").count(), 0, "no markup parsed");

  step("deleting it; the viewer receives the delete");
  await row.locator('button[data-testid="delete"]').click();
  await waitFor(() => frames.find((f) => f.op === "delete" && f.room === ROOM && f.seqs.includes(ack1.seq)), 5000, "delete frame");
  await page.waitForSelector(`#feed li[data-seq="${ack1.seq}"].deleted`);

  step("holding messages with a keyword, from the keyword editor");
  await page.fill("#keywords", "needsreview");
  await page.selectOption("#kw-action", "hold");
  await page.click("#keywords-save");
  await page.waitForFunction(() => document.getElementById("toast").textContent === "keywords saved");

  const heldText = "this needsreview please " + Math.random().toString(36).slice(2, 6);
  const id2 = send(heldText);
  await ackOf(id2, (f) => f.held === true);
  const heldItem = page.locator('#held li[data-testid="held-item"]', { hasText: heldText });
  await heldItem.waitFor({ state: "attached" });
  const feedHeld = page.locator('#feed li[data-testid="feed-held"]', { hasText: heldText });
  await feedHeld.waitFor({ state: "attached" });
  assert.ok((await feedHeld.locator(".badge").textContent()).includes("keyword"), "the rule is shown");

  step("approving it; the viewer receives it in a batch and the sender an ack with its seq");
  await page.screenshot({ path: path.join(OUT, "dashboard-held.png") });
  await heldItem.locator('button[data-testid="approve"]').click();
  const batch = await waitFor(
    () => frames.find((f) => f.op === "batch" && f.room === ROOM && f.msgs.some((m) => m.text === heldText)),
    5000,
    "batch with the approved message",
  );
  const approved = batch.msgs.find((m) => m.text === heldText);
  assert.equal(approved.uid, "viewer-e2e");
  const ack2 = await ackOf(id2, (f) => f.seq > 0);
  assert.equal(ack2.seq, approved.seq);
  await page.locator(`#feed li[data-seq="${approved.seq}"]`).waitFor({ state: "attached" });
  await page.waitForFunction(() => document.querySelectorAll("#held li").length === 0);

  step("the audit log lists the actions, newest first");
  await page.click("#audit-refresh");
  await page.waitForFunction(() => document.querySelectorAll("#audit li").length >= 3);
  const actions = await page.$$eval("#audit li", (lis) => lis.map((li) => li.dataset.action));
  assert.deepEqual(actions.slice(0, 3), ["approve", "keywords", "delete"]);

  step("screenshot");
  await page.waitForTimeout(1100); // one chart tick
  const shot = path.join(OUT, "dashboard.png");
  await page.screenshot({ path: shot, fullPage: true });
  console.log("dashboard: screenshot " + shot);

  assert.ok(apiAuth.length > 0 && apiAuth.every(([a, c]) => a === "Bearer " + MOD && c === ""), "API calls carry the token only in Authorization");
  assert.deepEqual(problems, [], "no errors on the page");
  step("ok");
} finally {
  await browser.close();
  viewer.close();
}
