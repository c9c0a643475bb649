// analytics.mjs checks the dashboard's analytics panel against a room with
// known traffic. analytics_test.go starts the server and passes:
//   DANMAKU_HTTP, DANMAKU_WS, DANMAKU_CHROMIUM, DANMAKU_OUT, DANMAKU_ROOM,
//   DANMAKU_MOD_TOKEN, DANMAKU_VIEWER_TOKEN, DANMAKU_SERVICE_TOKEN
import { chromium } from "playwright-core";
import WebSocket from "ws";
import assert from "node:assert/strict";
import path from "node:path";
import { env, launch, openPage, roomAPI, sleep, stepper, waitFor, watch } from "../../pkg/testenv/page.mjs";

const { HTTP, WS, OUT, ROOM, MOD, VIEWER, SERVICE } = env;
const step = stepper("analytics");
const api = roomAPI(ROOM);
const until = (what, fn, ms = 15000) => waitFor(fn, ms, what, 100);

// Known traffic: 12 published messages and 3 refused viewer sends.
step("seeding");
const texts = [["前方高能 gg", 5], ["hello world 😂", 4], ["nice 666", 3]];
let n = 0;
for (const [text, times] of texts) {
  for (let i = 0; i < times; i++) await api("POST", "/publish", SERVICE, { text, id: `an-${n++}` });
}
await api("PUT", "/keywords", MOD, { keywords: ["badword"], action: "block" });
const { sock: viewer, frames } = await watch(WebSocket, `${WS}?room=${ROOM}&token=${encodeURIComponent(VIEWER)}`, ROOM);
// Logic learns the keyword list from the control stream: send until the
// first refusal, then two more.
let refused = 0;
for (let i = 0; refused < 3 && i < 100; i++) {
  const id = `bad-${i}`;
  viewer.send(JSON.stringify({ op: "send", room: ROOM, id, text: "this is a badword" }));
  const f = await until("answer to " + id, () => frames.find((f) => f.id === id && (f.op === "ack" || f.op === "reject")), 5000);
  if (f.op === "reject") refused++;
  else await sleep(100);
}
assert.equal(refused, 3, "three sends refused by the keyword");
const accepted = frames.filter((f) => f.op === "ack" && String(f.id).startsWith("bad-")).length;
const total = 12 + accepted; // sends before the list reached logic were accepted
step(`seeded: 12 published, ${accepted} accepted before the keyword list applied, 3 refused`);

const browser = await launch(chromium);
const problems = [];
try {
  const page = await openPage(browser, problems, { width: 1440, height: 1000, timeout: 15000 });
  await page.goto(`${HTTP}/dashboard`);
  await page.fill("#room", ROOM);
  await page.fill("#token", MOD);
  await page.click("#connect");
  await page.waitForFunction(() => document.getElementById("status").textContent.startsWith("watching"));

  // Verdict counts reach the store within logic's 5 s flush: refresh until
  // the verdict chart shows them.
  await until("the verdict chart", async () => {
    await page.click("#analytics-refresh");
    await sleep(400);
    return (await page.locator("#an-verdicts rect.bar").count()) > 0;
  }, 20000);

  const summary = await page.locator("#an-summary").getAttribute("data-messages");
  assert.equal(Number(summary), total, "summary counts the room's messages");

  // The per-minute line: 60 points (last hour) adding up to the messages.
  const line = await page.evaluate(() => {
    const svg = document.getElementById("an-minutes");
    const max = Number(svg.dataset.max);
    const poly = svg.querySelector('polyline[data-series="messages"]');
    const ys = poly.getAttribute("points").trim().split(" ").map((p) => Number(p.split(",")[1]));
    // charts.js: y = 8 + (1 - v / max) * (150 - 8 - 18)
    return { points: ys.length, values: ys.map((y) => Math.round(max * (1 - (y - 8) / 124))), chatters: !!svg.querySelector('polyline[data-series="chatters"]') };
  });
  assert.ok(line.points === 60 || line.points === 61, `one point per minute of the last hour: ${line.points}`);
  assert.equal(line.values.reduce((a, b) => a + b, 0), total, `per-minute line adds up to the messages: ${line.values}`);
  assert.ok(line.chatters, "chatters are charted too");

  const bars = async (id) => page.$$eval(`#${id} rect.bar`, (rs) => rs.map((r) => [r.dataset.label, Number(r.dataset.value)]));
  const phrases = await bars("an-phrases");
  const want = [["gg", 5], ["前方", 5], ["方高", 5], ["高能", 5], ["hello", 4], ["world", 4], ["😂", 4], ["666", 3], ["nice", 3]];
  // Sends accepted before the keyword list applied add nothing: "this" and
  // "is" are stopwords, "badword" is the room's keyword.
  assert.deepEqual(phrases, want, "top phrases with their counts");
  assert.ok(!phrases.some(([p]) => p.includes("badword")), "the room's keyword is not a top phrase");
  const verdicts = await bars("an-verdicts");
  assert.deepEqual(verdicts, [["reject · keyword:room:badword", 3]], "verdicts per rule");
  // A minute of 10 or more after the quiet hour is a highlight, linked
  // into the replay page.
  const links = await page.$$eval("#an-highlights a", (as) => as.map((a) => a.getAttribute("href")));
  if (Math.max(...line.values) >= 10) {
    assert.equal(links.length, 1, "one highlight minute");
    assert.ok(links[0].startsWith("/replay?at=") && links[0].includes(`room=${ROOM}`), "the highlight links into the replay: " + links[0]);
    assert.equal(await page.locator('#an-minutes [data-testid="chart-highlight"]').count(), 1, "the highlight is marked on the chart");
  } else {
    assert.equal(links.length, 0, "no minute reached 10 messages: no highlight");
  }
  step(`charts: ${line.points} minutes, ${phrases.length} phrases, verdicts ${JSON.stringify(verdicts)}`);

  // Sessions from the panel: start, then end.
  await page.click("#session-start");
  await page.waitForFunction(() => !document.getElementById("session-end").hidden);
  const live = await api("GET", "/sessions", MOD);
  assert.equal(live.sessions.length, 1, "one session started");
  assert.equal(live.sessions[0].end, undefined, "it is live");
  await page.locator("#analytics-panel").screenshot({ path: path.join(OUT, "dashboard-analytics.png") });
  await page.click("#session-end");
  await page.waitForFunction(() => !document.getElementById("session-start").hidden);
  const ended = await api("GET", "/sessions", MOD);
  assert.ok(ended.sessions[0].end >= ended.sessions[0].start, "the session ended");
  assert.deepEqual(problems, [], "no page errors or failed requests");
  step("ok");
} finally {
  await browser.close();
  viewer.close();
}
