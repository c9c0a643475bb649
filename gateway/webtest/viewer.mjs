// viewer.mjs checks the viewer page in headless Chromium at one width
// (DANMAKU_WIDTH): an empty room shows a hint, the sender of a held message
// learns whether a moderator approved or rejected it, and danmaku never
// overlap in a lane while a burst arrives on a busy page.
// webtest_test.go starts the server and passes:
//   DANMAKU_HTTP           http://127.0.0.1:P
//   DANMAKU_CHROMIUM       the browser binary
//   DANMAKU_OUT            where screenshots go
//   DANMAKU_ROOM           a fresh room
//   DANMAKU_MOD_TOKEN      a mod token for the room
//   DANMAKU_SERVICE_TOKEN  a service token (publishes the burst)
//   DANMAKU_WIDTH          viewport width in px
import { chromium } from "playwright-core";
import assert from "node:assert/strict";
import path from "node:path";
import { env, launch, openPage, roomAPI, sleep, stepper } from "../../pkg/testenv/page.mjs";

const { HTTP, OUT, ROOM, MOD, SERVICE, WIDTH, HEIGHT } = env;
const step = stepper(`viewer@${WIDTH}`);
const shot = (name) => path.join(OUT, `${name}-${WIDTH}.png`);
const api = roomAPI(ROOM);

async function heldEntry(text) {
  for (let i = 0; i < 100; i++) {
    const { held } = await api("GET", "/held", MOD);
    const h = held.find((x) => x.text === text);
    if (h) return h;
    await sleep(50);
  }
  throw new Error("not in the held queue: " + text);
}

const browser = await launch(chromium);
const problems = [];
try {
  const page = await openPage(browser, problems, { width: WIDTH, height: HEIGHT });

  step("an empty room shows a hint on the stage");
  await page.goto(`${HTTP}/?room=${ROOM}`);
  await page.waitForSelector('#conn[data-state="open"]');
  const hint = page.locator("#empty-hint");
  await hint.waitFor({ state: "visible" });
  assert.match(await hint.textContent(), new RegExp(`No danmaku in #${ROOM} yet`));
  const hb = await hint.boundingBox();
  const sb = await page.locator("#stage").boundingBox();
  assert.ok(hb.x >= sb.x && hb.x + hb.width <= sb.x + sb.width && hb.y >= sb.y && hb.y + hb.height <= sb.y + sb.height, "hint inside the stage");
  await page.screenshot({ path: shot("viewer-empty") });

  step("signing in as a guest; the room holds messages with a keyword");
  await page.fill("#guest-name", "held sender");
  await page.click("#guest-form button[type=submit]");
  await page.waitForFunction(() => document.getElementById("whoami").textContent.includes("held sender"));
  await api("PUT", "/keywords", MOD, { keywords: ["needsreview"], action: "hold" });
  await sleep(300); // the control event reaches logic

  const sendText = async (text) => {
    await page.fill("#send-input", text);
    await page.press("#send-input", "Enter");
  };
  // verdict sends text (held by the keyword), has the moderator approve or
  // reject it and checks the page tells the sender, the note styled cls.
  const verdict = async (text, action, cls) => {
    await sendText(text);
    await page.waitForFunction(() => document.getElementById("note").textContent.startsWith("your message is waiting for a moderator"));
    const h = await heldEntry(text);
    await api("POST", `/held/${h.id}/${action}`, MOD);
    const said = `a moderator ${action === "approve" ? "approved" : "rejected"} your message`;
    await page.waitForFunction((t) => document.getElementById("note").textContent === t, said);
    assert.ok((await page.getAttribute("#note", "class")).includes(cls));
  };
  step("a held message's sender sees it approved");
  const first = "needsreview please " + Math.random().toString(36).slice(2, 7);
  await verdict(first, "approve", "ok");
  await page.locator("#log li", { hasText: first }).waitFor({ state: "attached" });
  assert.ok(await hint.isHidden(), "the hint goes once a message arrived");
  await page.screenshot({ path: shot("viewer-approved") });

  step("a held message's sender sees it rejected");
  await sleep(1100); // the rate limit
  await verdict("needsreview again " + Math.random().toString(36).slice(2, 7), "reject", "bad");
  await page.screenshot({ path: shot("viewer-rejected") });

  step("display modes: top and bottom stay centred at their edge, sizes differ; a viewer may not use top");
  await sleep(1100); // the rate limit
  await page.selectOption("#send-mode", "top");
  await sendText("viewer on top");
  await page.waitForFunction(() => document.getElementById("note").textContent.startsWith("top and bottom danmaku are not open to you"));
  assert.equal(await page.inputValue("#send-input"), "viewer on top", "the refused text is kept for a resend");
  await page.fill("#send-input", "");
  await page.selectOption("#send-mode", "scroll");
  // Top and bottom items stay 4 s; on a loaded machine the checks below
  // may take longer.
  await page.evaluate(() => { globalThis.danmakuViewer.stage.fixedMs = 20000; });
  for (const body of [
    { text: "pinned on top", mode: "top", size: "large", kind: "highlight", color: "#ff6699" },
    { text: "down at the bottom", mode: "bottom", size: "small" },
    { text: "plain scroller for size" },
  ]) {
    await api("POST", "/publish", SERVICE, body);
  }
  const topEl = page.locator("#layer .dm.top.large", { hasText: "pinned on top" });
  const botEl = page.locator("#layer .dm.bottom.small", { hasText: "down at the bottom" });
  await topEl.waitFor({ state: "visible" });
  await botEl.waitFor({ state: "visible" });
  await page.locator("#layer .dm", { hasText: "plain scroller for size" }).waitFor({ state: "visible" });
  {
    const st = await page.locator("#layer").boundingBox();
    const tb = await topEl.boundingBox();
    const bb = await botEl.boundingBox();
    const center = (b) => b.x + b.width / 2;
    assert.ok(Math.abs(center(tb) - center(st)) < 3 && Math.abs(center(bb) - center(st)) < 3, "top and bottom are centred");
    assert.ok(tb.y - st.y < 60, `top danmaku at the top (y ${tb.y - st.y})`);
    assert.ok(st.y + st.height - (bb.y + bb.height) < 60, `bottom danmaku at the bottom (${st.y + st.height - (bb.y + bb.height)} px above)`);
    const fs = (sel) => page.locator(sel).first().evaluate((el) => parseFloat(getComputedStyle(el).fontSize));
    const big = await fs("#layer .dm.top.large");
    const small = await fs("#layer .dm.bottom.small");
    const normal = await page.locator("#layer .dm", { hasText: "plain scroller for size" }).evaluate((el) => parseFloat(getComputedStyle(el).fontSize));
    assert.ok(big > normal && normal > small, `sizes large ${big} > normal ${normal} > small ${small}`);
    // They stay put: 1 s later the top one has not moved.
    await page.waitForTimeout(1000);
    const tb2 = await topEl.boundingBox();
    assert.ok(Math.abs(tb2.x - tb.x) < 1, "top danmaku does not scroll");
  }
  await page.screenshot({ path: shot("viewer-modes") });
  await page.evaluate(() => {
    const { stage } = globalThis.danmakuViewer;
    stage.fixedMs = 4000;
    stage.removeWhere((el) => el.classList.contains("top") || el.classList.contains("bottom"));
  });

  step("a notice pushed to this user shows in the room, marked for them");
  {
    const uid = await page.evaluate(() => JSON.parse(sessionStorage.getItem("danmaku.me")).uid);
    const res = await fetch(`${HTTP}/api/users/${encodeURIComponent(uid)}/notice`, {
      method: "POST",
      headers: { Authorization: "Bearer " + SERVICE, "Content-Type": "application/json" },
      body: JSON.stringify({ text: "a notice just for you" }),
    });
    assert.equal(res.status, 202);
    const li = page.locator("#log li.system", { hasText: "a notice just for you" });
    await li.waitFor({ state: "attached" });
    assert.match(await li.textContent(), /to you/);
  }

  step("after a purge, a message of the purged user sent before the ban never shows");
  {
    const res = await fetch(`${HTTP}/api/rooms/${ROOM}/bans`, {
      method: "POST",
      headers: { Authorization: "Bearer " + MOD, "Content-Type": "application/json" },
      body: JSON.stringify({ uid: "late-sender", duration_s: 60 }),
    });
    assert.equal(res.status, 200);
    await page.waitForFunction(() => globalThis.danmakuViewer.retracted.purged.has("late-sender"));
    await page.evaluate((room) => {
      const { client, retracted } = globalThis.danmakuViewer;
      const u = retracted.purged.get("late-sender");
      client._emit("message", room, { seq: 1e9, uid: "late-sender", text: "late purged line", ts: u - 1 }, "live");
      client._emit("message", room, { seq: 1e9 + 1, uid: "late-sender", text: "back after the timeout", ts: u + 60000 }, "live");
    }, ROOM);
    await page.locator("#log li", { hasText: "back after the timeout" }).waitFor({ state: "attached" });
    assert.equal(await page.locator("#log li", { hasText: "late purged line" }).count(), 0, "the late purged message is not shown");
  }

  step("a burst on a busy page: no two danmaku overlap in a lane");
  // The page's main thread is kept busy 60 ms of every 100 (a slow
  // machine, a heavy page), and every frame the lanes are checked.
  await page.evaluate(() => {
    const overlaps = [];
    globalThis.__overlaps = overlaps;
    globalThis.__checked = 0;
    globalThis.__busy = setInterval(() => {
      const t = performance.now();
      while (performance.now() - t < 60);
    }, 100);
    const layer = document.getElementById("layer");
    const check = () => {
      const W = layer.clientWidth;
      const base = layer.getBoundingClientRect().left;
      const lanes = new Map();
      for (const el of layer.querySelectorAll(".dm")) {
        if (el.style.visibility === "hidden" || el.classList.contains("top") || el.classList.contains("bottom")) continue;
        const r = el.getBoundingClientRect();
        const x = r.left - base;
        if (x + r.width <= 0 || x >= W) continue; // off stage
        const lane = el.style.top;
        if (!lanes.has(lane)) lanes.set(lane, []);
        lanes.get(lane).push({ x, right: x + r.width, text: el.textContent });
      }
      for (const items of lanes.values()) {
        items.sort((a, b) => a.x - b.x);
        for (let i = 1; i < items.length; i++) {
          const over = items[i - 1].right - items[i].x;
          if (over > 1) overlaps.push({ a: items[i - 1].text, b: items[i].text, over: Math.round(over) });
        }
      }
      globalThis.__checked++;
      if (globalThis.__checking) requestAnimationFrame(check);
    };
    globalThis.__checking = true;
    requestAnimationFrame(check);
  });
  const words = ["gg", "前方高能!!", "what a play", "lol", "that was close", "8888888", "wow", "clutch!!!", "no way"];
  for (let b = 0; b < 8; b++) {
    await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        fetch(`${HTTP}/api/rooms/${ROOM}/publish`, {
          method: "POST",
          headers: { "Content-Type": "application/json", Authorization: "Bearer " + SERVICE },
          body: JSON.stringify({ text: `${words[(b * 20 + i) % words.length]} ${b}.${i}`.repeat(1 + ((b + i) % 3)) }),
        }).then((r) => assert.equal(r.status, 200)),
      ),
    );
    await sleep(150);
  }
  await page.waitForTimeout(5000);
  await page.screenshot({ path: shot("viewer-burst") });
  const { overlaps, checked } = await page.evaluate(() => {
    globalThis.__checking = false;
    clearInterval(globalThis.__busy);
    return { overlaps: globalThis.__overlaps, checked: globalThis.__checked };
  });
  assert.ok(checked > 10, `only ${checked} frames checked`);
  assert.deepEqual(overlaps.slice(0, 5), [], `${overlaps.length} overlaps in ${checked} frames`);

  assert.deepEqual(problems, [], "no errors on the page");
  step("ok");
} finally {
  await browser.close();
}
