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
//   DANMAKU_SERVICE_TOKEN a service token (publishes a burst of lines)
//   DANMAKU_WIDTH         viewport width in px (height follows: 1024→768, else 900)
//
// Layout is checked by measuring element boxes: a control counts as visible
// when its box lies inside its panel and the viewport and the element at
// its centre is the control itself (nothing covers it).
import { chromium } from "playwright-core";
import WebSocket from "ws";
import assert from "node:assert/strict";
import path from "node:path";
import { batchWith, env, launch, openPage, roomAPI, stepper, waitFor, watch } from "../../pkg/testenv/page.mjs";

const { HTTP, WS, OUT, ROOM, MOD, VIEWER, SERVICE, WIDTH, HEIGHT } = env;
const step = stepper(`dashboard@${WIDTH}`);
const shotPath = (name) => path.join(OUT, `${name}-${WIDTH}.png`);
const api = roomAPI(ROOM);

// box reports where el is and whether it can be seen and clicked: inside
// the viewport, inside the element matching within (when given), not
// covered by another element.
async function box(locator, within) {
  return locator.evaluate((el, within) => {
    const r = el.getBoundingClientRect();
    const c = within ? el.closest(within).getBoundingClientRect() : { left: 0, top: 0, right: innerWidth, bottom: innerHeight };
    const cx = r.left + r.width / 2, cy = r.top + r.height / 2;
    const hit = document.elementFromPoint(cx, cy);
    const lh = parseFloat(getComputedStyle(el).lineHeight) || 20;
    return {
      left: r.left, top: r.top, right: r.right, bottom: r.bottom, width: r.width, height: r.height,
      lines: Math.round(r.height / lh),
      inside: r.width > 0 && r.height > 0 && r.left >= c.left - 0.5 && r.right <= c.right + 0.5 && r.top >= c.top - 0.5 &&
        r.bottom <= c.bottom + 0.5 && r.left >= 0 && r.right <= innerWidth && r.top >= 0 && r.bottom <= innerHeight,
      uncovered: !!hit && (hit === el || el.contains(hit)),
    };
  }, within || null);
}

async function assertUsable(locator, within, what) {
  await locator.scrollIntoViewIfNeeded();
  const b = await box(locator, within);
  assert.ok(b.inside, `${what} is cut off: ${JSON.stringify(b)}`);
  assert.ok(b.uncovered, `${what} is covered by another element: ${JSON.stringify(b)}`);
  return b;
}

// text80 is a held message of exactly 80 runes with the hold keyword.
function text80() {
  const head = "needsreview is this ok to say in chat ";
  const tail = Math.random().toString(36).slice(2, 8);
  let s = head;
  const words = ["about", "the", "match", "tonight", "and", "the", "referee", "calls", "that", "were", "made"];
  for (let i = 0; s.length < 80 - tail.length - 1; i++) s += words[i % words.length] + " ";
  s = s.slice(0, 80 - tail.length - 1).trimEnd();
  s = s.padEnd(80 - tail.length - 1, "x") + " " + tail;
  assert.equal([...s].length, 80);
  return s;
}

// The viewer: sends and receives on one connection.
step("connecting the viewer");
const { sock: viewer, frames } = await watch(WebSocket, `${WS}?room=${ROOM}&token=${encodeURIComponent(VIEWER)}`, ROOM);
let nextId = 0;
function send(text) {
  const id = "v-" + ++nextId + "-" + Math.random().toString(36).slice(2, 8);
  viewer.send(JSON.stringify({ op: "send", room: ROOM, id, text }));
  return id;
}
const ackOf = (id, pred = () => true) =>
  waitFor(() => frames.find((f) => f.op === "ack" && f.id === id && pred(f)), 5000, "ack of " + id);

step("launching chromium " + env.CHROMIUM);
const browser = await launch(chromium);
const problems = [];
try {
  const page = await openPage(browser, problems, { width: WIDTH, height: HEIGHT });
  const apiAuth = [];
  page.on("request", (r) => {
    if (r.url().includes("/api/rooms/")) apiAuth.push([r.headers()["authorization"] || "", r.headers()["cookie"] || ""]);
  });

  step("opening the dashboard at /dashboard/ (trailing slash) with a mod token");
  const nav = await page.goto(`${HTTP}/dashboard/`);
  assert.equal(nav.status(), 200, "/dashboard/ serves the dashboard");
  await page.fill("#room", ROOM);
  await page.fill("#token", MOD);
  await page.click("#connect");
  await page.waitForFunction(() => document.getElementById("status").textContent.startsWith("watching"));
  assert.equal(await page.evaluate(() => sessionStorage.getItem("danmaku.mod.token")), MOD, "token kept in sessionStorage");
  assert.equal(await page.evaluate(() => document.cookie), "", "no cookies");

  step("the signed-in moderator is shown; the dashboard is not counted online");
  const who = await page.locator("#whoami").textContent();
  assert.ok(who.includes("Mod E2E") && who.includes("mod-e2e"), "whoami: " + who);
  await assertUsable(page.locator("#whoami"), null, "signed-in moderator");
  // Only the viewer is online: the dashboard's own connection observes.
  await page.waitForFunction(() => document.getElementById("online").textContent === "1", null, { timeout: 8000 }).catch(async () => {
    throw new Error("online shows " + (await page.locator("#online").textContent()) + ", want 1 (the viewer only)");
  });

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

  const heldText = text80();
  const id2 = send(heldText);
  await ackOf(id2, (f) => f.held === true);
  const heldItem = page.locator('#held li[data-testid="held-item"]', { hasText: heldText });
  await heldItem.waitFor({ state: "attached" });
  const feedHeld = page.locator('#feed li[data-testid="feed-held"]', { hasText: heldText });
  await feedHeld.waitFor({ state: "attached" });
  assert.ok((await feedHeld.locator(".badge").textContent()).includes("keyword"), "the rule is shown");

  step("the held card is readable: 80 runes on one or two lines, approve and reject visible");
  await page.screenshot({ path: shotPath("dashboard-held") });
  const tb = await assertUsable(heldItem.locator(".text"), "#held", "held text");
  assert.ok(tb.lines <= 2, `held text of 80 runes takes ${tb.lines} lines: ${JSON.stringify(tb)}`);
  assert.ok(tb.width >= 250, `held text squeezed to ${tb.width}px`);
  await assertUsable(heldItem.locator('button[data-testid="approve"]'), "#held", "approve button");
  await assertUsable(heldItem.locator('button[data-testid="reject"]'), "#held", "reject button");

  step("approving it; the viewer receives it in a batch and the sender an ack with its seq");
  await heldItem.locator('button[data-testid="approve"]').click();
  await page.waitForFunction(() => document.getElementById("toast").textContent === "approved held message of Viewer E2E");
  const batch = await batchWith(frames, ROOM, heldText);
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

  step("rejecting a held message: the sender gets a reject, the toast says so");
  const heldText2 = "needsreview second one " + Math.random().toString(36).slice(2, 6);
  const id3 = send(heldText2);
  await ackOf(id3, (f) => f.held === true);
  const heldItem2 = page.locator('#held li[data-testid="held-item"]', { hasText: heldText2 });
  await heldItem2.waitFor({ state: "attached" });
  await assertUsable(heldItem2.locator('button[data-testid="ban"]'), "#held", "ban button on a held card");
  await heldItem2.locator('button[data-testid="reject"]').click();
  await page.waitForFunction(() => document.getElementById("toast").textContent === "rejected held message of Viewer E2E");
  const rej = await waitFor(() => frames.find((f) => f.op === "reject" && f.id === id3), 5000, "reject of the held message");
  assert.equal(rej.code, "blocked");
  assert.equal(rej.message, "rejected by a moderator");

  step("a burst of lines: the feed keeps the newest one on screen");
  for (let i = 1; i <= 40; i++) {
    const res = await fetch(`${HTTP}/api/rooms/${ROOM}/publish`, {
      method: "POST",
      headers: { Authorization: "Bearer " + SERVICE, "Content-Type": "application/json" },
      body: JSON.stringify({ text: `burst line ${i} of 40 ` + "lorem ipsum ".repeat(i % 4) }),
    });
    assert.equal(res.status, 200, `publish ${i}: ${await res.text()}`);
  }
  await page.locator("#feed li", { hasText: "burst line 40 of 40" }).waitFor({ state: "attached" });
  await page.waitForTimeout(300);
  const lastRow = page.locator("#feed li").last();
  assert.ok((await lastRow.textContent()).includes("burst line 40 of 40"), "the newest line is last");
  const lb = await box(lastRow, "#feed");
  assert.ok(lb.inside && lb.uncovered, `the newest feed line is off screen: ${JSON.stringify(lb)}`);

  step("bot rows offer no ban, and say why");
  const botRow = page.locator('#feed li[data-uid="dashboard-bot"]').last();
  assert.equal(await botRow.locator('button[data-testid="ban"]').count(), 0, "no ban button on a bot row");
  assert.equal(await botRow.locator('[data-testid="bot-note"]').textContent(), "bot: not bannable");
  const viewerRow = page.locator('#feed li[data-uid="viewer-e2e"]:not(.deleted)').last();
  await assertUsable(viewerRow.locator('button[data-testid="ban"]'), "#feed", "ban button on a viewer row");

  step("finding a user by name: the card lists their recent messages");
  await page.fill("#user-q", "viewer e2");
  const hit = page.locator('#users li[data-uid="viewer-e2e"]');
  await hit.waitFor();
  assert.equal(await page.locator('#users li[data-testid="user"]').count(), 1, "only the matching chatter is listed");
  await hit.click();
  const card = page.locator("#user-card");
  await page.waitForFunction(() => document.getElementById("uc-name").textContent === "Viewer E2E" && !document.getElementById("user-card").hidden);
  const ucMsgs = page.locator("#uc-msgs li");
  await page.waitForFunction(() => document.querySelectorAll("#uc-msgs li").length === 2);
  assert.equal(await ucMsgs.nth(0).locator(".text").textContent(), heldText, "newest first: the approved held message");
  assert.equal(await ucMsgs.nth(1).locator(".text").textContent(), markup, "then the deleted one, as text");
  assert.ok(await ucMsgs.nth(1).evaluate((li) => li.classList.contains("deleted")), "the deleted message is marked");
  const mb = await assertUsable(ucMsgs.nth(0).locator(".text"), "#user-card", "a message in the user card");
  assert.ok(mb.lines <= 2, `user card message takes ${mb.lines} lines`);
  await page.screenshot({ path: shotPath("dashboard-user") });

  step("a ban asks for confirmation, a duration and a reason; Cancel bans nobody");
  const banPosts = [];
  page.on("request", (r) => {
    if (r.method() === "POST" && r.url().endsWith("/bans")) banPosts.push(r.postDataJSON());
  });
  const dialog = page.locator("#ban-dialog");
  await card.locator('button[data-testid="ban"]').click();
  await dialog.waitFor({ state: "visible" });
  const durations = await page.$$eval("#ban-duration option", (os) => os.map((o) => [o.value, o.textContent]));
  assert.deepEqual(durations.map(([v]) => v), ["60", "600", "3600", "86400", "604800", "0"], "timeouts and permanent");
  assert.ok(durations.find(([v]) => v === "0")[1].includes("permanent"));
  assert.equal(await page.locator("#ban-reason").getAttribute("required"), "", "a reason is required");
  await assertUsable(page.locator("#ban-confirm"), "#ban-dialog", "confirm button");
  await assertUsable(page.locator("#ban-cancel"), "#ban-dialog", "cancel button");
  await page.click("#ban-cancel");
  await dialog.waitFor({ state: "hidden" });
  await card.locator('button[data-testid="ban"]').click();
  await dialog.waitFor({ state: "visible" });
  await page.click("#ban-confirm"); // no reason yet: nothing happens
  assert.ok(await dialog.isVisible(), "the dialog stays open without a reason");
  const reason = "spamming links to a scam site in every message for the last ten minutes";
  await page.selectOption("#ban-duration", "3600");
  await page.fill("#ban-reason", reason);
  assert.equal(await page.locator("#ban-confirm").textContent(), "Time out for 1 hour");
  await page.screenshot({ path: shotPath("dashboard-ban") });
  await page.click("#ban-confirm");
  await dialog.waitFor({ state: "hidden" });
  await page.waitForFunction(() => document.getElementById("toast").textContent === "timed out Viewer E2E for 1 hour");
  assert.deepEqual(banPosts, [{ uid: "viewer-e2e", duration_s: 3600, reason }], "one ban, after confirmation");
  await waitFor(() => frames.find((f) => f.op === "purge" && f.uid === "viewer-e2e"), 5000, "purge frame for the viewer");
  await page.waitForFunction(() => (document.getElementById("uc-ban").textContent || "").startsWith("timed out until"));

  step("a ban reason reads as a sentence, not one letter per line");
  const banCard = page.locator('#bans li[data-uid="viewer-e2e"]');
  await banCard.waitFor({ state: "attached" });
  const rb = await assertUsable(banCard.locator(".reason"), "#bans", "ban reason");
  assert.equal(await banCard.locator(".reason").textContent(), reason);
  assert.ok(rb.lines <= 3 && rb.width >= 250, `ban reason wraps badly: ${JSON.stringify(rb)}`);
  await assertUsable(banCard.locator('button[data-testid="unban"]'), "#bans", "unban button");

  step("banning by uid, a user without recent messages, permanently");
  const troll = "troll-" + WIDTH;
  await page.fill("#user-q", troll);
  await page.locator('#users li[data-testid="open-uid"]', { hasText: troll }).click();
  await page.waitForFunction((u) => document.getElementById("uc-uid").textContent === u, troll);
  assert.ok((await page.locator("#uc-count").textContent()).startsWith("no messages"));
  await card.locator('button[data-testid="ban"]').click();
  await dialog.waitFor({ state: "visible" });
  await page.selectOption("#ban-duration", "0");
  await page.fill("#ban-reason", "ban evasion");
  assert.equal(await page.locator("#ban-confirm").textContent(), "Ban permanently");
  await page.click("#ban-confirm");
  await page.locator(`#bans li[data-uid="${troll}"]`, { hasText: "permanent" }).waitFor();
  assert.deepEqual(banPosts[1], { uid: troll, duration_s: 0, reason: "ban evasion" });

  step("the settings-saved toast does not cover the Save button; display policies are saved");
  assert.equal(await page.inputValue("#s-modes"), "privileged");
  assert.equal(await page.inputValue("#s-sizes"), "all");
  await page.selectOption("#s-modes", "all");
  await page.selectOption("#s-sizes", "privileged");
  const save = page.locator("#settings-save");
  await save.scrollIntoViewIfNeeded();
  await save.click();
  await page.waitForFunction(() => document.getElementById("toast").textContent === "settings saved");
  {
    const s = await api("GET", "/settings", MOD);
    assert.equal(s.mode_policy, "all");
    assert.equal(s.size_policy, "privileged");
  }
  const sb = await assertUsable(save, null, "Save settings button (toast shown)");
  const toastBox = await box(page.locator("#toast"));
  const overlaps = !(toastBox.right <= sb.left || toastBox.left >= sb.right || toastBox.bottom <= sb.top || toastBox.top >= sb.bottom);
  assert.ok(!overlaps, `toast ${JSON.stringify(toastBox)} overlaps Save ${JSON.stringify(sb)}`);

  step("screenshot");
  await page.waitForTimeout(1100); // one chart tick
  await page.evaluate(() => { document.querySelector(".side").scrollTop = 0; });
  const shot = shotPath("dashboard");
  await page.screenshot({ path: shot, fullPage: true });
  console.log("dashboard: screenshot " + shot);

  assert.ok(apiAuth.length > 0 && apiAuth.every(([a, c]) => a === "Bearer " + MOD && c === ""), "API calls carry the token only in Authorization");
  assert.deepEqual(problems, [], "no errors on the page");
  step("ok");
} finally {
  await browser.close();
  viewer.close();
}
