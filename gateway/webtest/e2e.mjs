// e2e.mjs drives the viewer page in headless Chromium and watches the same
// room with a second, independent WebSocket client (the "ws" package).
// webtest_test.go starts the server and passes its addresses:
//   DANMAKU_HTTP           http://127.0.0.1:P
//   DANMAKU_WS             ws://127.0.0.1:Q/ws
//   DANMAKU_CHROMIUM       the browser binary
//   DANMAKU_OUT            where the screenshot goes
//   DANMAKU_SERVICE_TOKEN  a service token for POST /api/rooms/{room}/publish
import { chromium } from "playwright-core";
import WebSocket from "ws";
import assert from "node:assert/strict";
import path from "node:path";
import { batchWith, env, launch, openPage, roomAPI, stepper, watch } from "../../pkg/testenv/page.mjs";

const { HTTP, WS, OUT, SERVICE } = env;
const ROOM = "e2e1";
const step = stepper("e2e");
const api = roomAPI(ROOM);
const publish = (body) => api("POST", "/publish", SERVICE, body);

// (b) A client the project did not write.
step("connecting the ws client");
const { sock, frames } = await watch(WebSocket, `${WS}?room=${ROOM}`, ROOM);
assert.equal(frames[0].op, "joined", "the first frame is joined");

// (a) The page in a real browser.
step("launching chromium " + env.CHROMIUM);
const browser = await launch(chromium);
const problems = [];
try {
  const page = await openPage(browser, problems, { width: 1280, height: 800 });

  step("opening the viewer");
  await page.goto(`${HTTP}/?room=${ROOM}`);
  await page.waitForSelector('#conn[data-state="open"]');
  assert.equal(await page.textContent("#room-name"), "#" + ROOM);

  step("signing in as a guest");
  await page.fill("#guest-name", "e2e tester");
  await page.click("#guest-form button[type=submit]");
  await page.waitForFunction(() => document.getElementById("whoami").textContent.includes("e2e tester"));
  await page.waitForSelector('#conn[data-state="open"]');

  step("sending a message with Enter");
  const text = "hello from the browser " + Math.random().toString(36).slice(2, 8);
  await page.fill("#send-input", text);
  await page.press("#send-input", "Enter");
  const dm = page.locator("#layer .dm", { hasText: text });
  await dm.waitFor({ state: "attached" });
  assert.equal(await dm.count(), 1, "rendered exactly once on the stage");
  assert.ok((await dm.getAttribute("class")).includes("mine"), "own message is marked");
  await page.locator("#log li", { hasText: text }).waitFor({ state: "attached" });

  step("the ws client received it in a batch");
  const got = await batchWith(frames, ROOM, text);
  const m = got.msgs.find((x) => x.text === text);
  assert.equal(m.name, "e2e tester");
  assert.ok(m.seq > 0 && m.uid.startsWith("guest-"), JSON.stringify(m));

  step("highlighted, paid and markup-looking messages");
  await publish({ text: "★ highlight from e2e ★", kind: "highlight", color: "#ffcc00" });
  await publish({ text: "thanks for the gift!", kind: "paid", name: "sponsor" });
  const markup = '<img src=x onerror=alert(1)><b>not bold</b>';
  await publish({ text: markup, name: "mallory" });
  const hl = page.locator("#layer .dm.highlight", { hasText: "highlight from e2e" });
  await hl.waitFor({ state: "attached" });
  assert.equal(await hl.evaluate((el) => getComputedStyle(el).color), "rgb(255, 204, 0)");
  await page.locator("#layer .dm.paid", { hasText: "thanks for the gift!" }).waitFor({ state: "attached" });
  const mk = page.locator("#layer .dm", { hasText: "not bold" });
  await mk.waitFor({ state: "attached" });
  assert.equal(await mk.locator(".text").textContent(), markup, "markup is shown as text");
  assert.equal(await page.locator("#layer img, #log img, #layer b, #log b").count(), 0, "no markup was parsed");

  step("screenshot");
  await page.waitForTimeout(1800); // let the lines fly in
  const box = await dm.boundingBox();
  const stage = await page.locator("#stage").boundingBox();
  assert.ok(box && stage && box.x < stage.x + stage.width && box.x + box.width > stage.x, "message is on the stage");
  const shot = path.join(OUT, "viewer.png");
  await page.screenshot({ path: shot });
  console.log("e2e: screenshot " + shot);

  step("a burst is rate limited and the page says why");
  for (let i = 0; i < 5; i++) {
    await page.fill("#send-input", `burst ${i} ${Math.random().toString(36).slice(2, 6)}`);
    await page.press("#send-input", "Enter");
  }
  await page.waitForFunction(() => document.getElementById("note").textContent.startsWith("slow down — try again in"));
  assert.ok((await page.getAttribute("#note", "class")).includes("bad"));
  await page.screenshot({ path: path.join(OUT, "viewer-rate-limited.png") });

  step("anonymous viewers are told to sign in");
  await page.click("#signout");
  await page.waitForSelector('#conn[data-state="open"]');
  await page.fill("#send-input", "anonymous hello");
  await page.press("#send-input", "Enter");
  await page.waitForFunction(() => document.getElementById("note").textContent.startsWith("sign in to send"));

  step("switching rooms clears the stage and joins the new room");
  await page.fill("#room-input", "e2e2");
  await page.press("#room-input", "Enter");
  await page.waitForFunction(() => location.search.includes("room=e2e2"));
  assert.equal(await page.locator("#log li").count(), 0);
  await page.waitForFunction(() => globalThis.danmakuViewer.client.rooms().join() === "e2e2");

  assert.deepEqual(problems, [], "no errors on the page");
  step("ok");
} finally {
  await browser.close();
  sock.close();
}
