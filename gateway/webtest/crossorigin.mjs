// crossorigin.mjs opens a page of another origin that uses danmaku.js and
// the public API of a danmaku server started with --origins listing it
// (embed/index.html), and the same page from an origin not in the list.
// webtest_test.go passes:
//   DANMAKU_HTTP         http://127.0.0.1:P (the danmaku server)
//   DANMAKU_CHROMIUM     the browser binary
//   DANMAKU_OUT          where the screenshot goes
//   DANMAKU_ALLOWED      http://127.0.0.1:A, serving embed/ (in --origins)
//   DANMAKU_REFUSED      http://127.0.0.1:B, serving embed/ (not in it)
//   DANMAKU_ROOM         the room
//   DANMAKU_SEEN         a message already in the room's history
import { chromium } from "playwright-core";
import assert from "node:assert/strict";
import path from "node:path";
import { env, launch, stepper } from "../../pkg/testenv/page.mjs";

const { HTTP, OUT, ROOM } = env;
const step = stepper("crossorigin");

const browser = await launch(chromium);
try {
  const open = async (origin) => {
    const page = await browser.newPage({ viewport: { width: 1024, height: 700 } });
    const errors = [];
    page.on("pageerror", (e) => errors.push(e.message));
    await page.goto(`${origin}/index.html?server=${encodeURIComponent(HTTP)}&room=${ROOM}`);
    await page.waitForFunction(() => globalThis.result && (globalThis.result.done || globalThis.result.error), null, { timeout: 15000 });
    return { page, errors, result: await page.evaluate(() => globalThis.result) };
  };

  step("a page of an allowed origin loads danmaku.js, calls the API and chats");
  const ok = await open(process.env.DANMAKU_ALLOWED);
  assert.equal(ok.result.error, undefined, "error: " + ok.result.error);
  assert.ok(ok.result.history.some((m) => m.text === process.env.DANMAKU_SEEN), "history read across origins");
  assert.equal(typeof ok.result.online, "number");
  assert.equal(ok.result.ack.op, "ack");
  assert.ok(ok.result.ack.seq > 0, JSON.stringify(ok.result.ack));
  await ok.page.waitForFunction(() => globalThis.result.messages.some((m) => m.text === "hello from another origin" && m.source === "live"));
  const seen = await ok.page.evaluate(() => globalThis.result.messages.map((m) => m.text));
  assert.ok(seen.includes(process.env.DANMAKU_SEEN), "the history arrives over the WebSocket too");
  assert.deepEqual(ok.errors, []);
  await ok.page.screenshot({ path: path.join(OUT, "crossorigin.png") });

  step("the same page from an origin not in --origins is refused by the browser");
  const bad = await open(process.env.DANMAKU_REFUSED);
  assert.ok(bad.result.error, "a refused origin must not get through");
  step("refused with: " + bad.result.error);
  step("ok");
} finally {
  await browser.close();
}
