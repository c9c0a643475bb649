// page.mjs is what the browser scripts of gateway/webtest and
// moderation/webtest share (Page.Script runs them with DANMAKU_HTTP,
// DANMAKU_WS, DANMAKU_CHROMIUM and DANMAKU_OUT set): launching Chromium,
// opening a page that records its errors, polling for a condition and
// calling a room's HTTP API.
//
// It imports no npm package: node resolves a bare import from the file's
// own folder, and node_modules lives in each script's folder. The scripts
// pass in what they imported (playwright-core's chromium).
import assert from "node:assert/strict";

// env is what Page.Script (DANMAKU_HTTP, DANMAKU_WS, DANMAKU_CHROMIUM,
// DANMAKU_OUT) and the Go tests pass the scripts: the room, tokens of each
// role and the viewport width (height 768 at 1024 px or less, else 900).
// A script reads the rest of its input from process.env itself.
const width = Number(process.env.DANMAKU_WIDTH || 1440);
export const env = {
  HTTP: process.env.DANMAKU_HTTP,
  WS: process.env.DANMAKU_WS,
  CHROMIUM: process.env.DANMAKU_CHROMIUM,
  OUT: process.env.DANMAKU_OUT,
  ROOM: process.env.DANMAKU_ROOM,
  MOD: process.env.DANMAKU_MOD_TOKEN,
  SERVICE: process.env.DANMAKU_SERVICE_TOKEN,
  VIEWER: process.env.DANMAKU_VIEWER_TOKEN,
  WIDTH: width,
  HEIGHT: width <= 1024 ? 768 : 900,
};
const { HTTP } = env;

// stepper returns a logger of test steps, each line prefixed with name.
export const stepper = (name) => (s) => console.log(name + ": " + s);

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// waitFor calls pred (which may return a promise) every `every` ms until it
// returns something truthy, and resolves with it; after ms it rejects,
// naming what.
export async function waitFor(pred, ms, what, every = 20) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await pred();
    if (v) return v;
    if (Date.now() > end) throw new Error("timed out waiting for " + what);
    await sleep(every);
  }
}

// call sends method DANMAKU_HTTP{path} with a bearer token and a JSON body
// (none when body is undefined); the answer must be a success, and call
// resolves with it parsed, or null for an empty one.
export async function call(method, path, token, body) {
  const res = await fetch(HTTP + path, {
    method,
    headers: { Authorization: "Bearer " + token, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  assert.ok(res.ok, `${method} ${path}: HTTP ${res.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

// watch connects a client of the "ws" package (its WebSocket class) to
// url, collects every frame it receives in frames, parsed, and resolves
// once the history frame of room arrived.
export async function watch(WebSocket, url, room) {
  const frames = [];
  const sock = new WebSocket(url);
  sock.on("message", (data) => frames.push(JSON.parse(data.toString())));
  await waitFor(() => frames.find((f) => f.op === "history" && f.room === room), 10000, "the history of " + room);
  return { sock, frames };
}

// batchWith resolves with the first batch frame of room in frames that
// holds a message of this text (frames as watch collects them).
export const batchWith = (frames, room, text) =>
  waitFor(() => frames.find((f) => f.op === "batch" && f.room === room && f.msgs.some((m) => m.text === text)), 5000, "a batch with " + text);

// roomAPI returns api(method, p, token, body): call of /api/rooms/{room}{p}.
export const roomAPI = (room) => (method, p, token, body) => call(method, `/api/rooms/${room}${p}`, token, body);

// launch starts headless DANMAKU_CHROMIUM through playwright-core's
// chromium.
export function launch(chromium) {
  return chromium.launch({
    executablePath: env.CHROMIUM,
    headless: true,
    timeout: 20000,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--no-first-run"],
  });
}

// openPage opens a page of width × height in browser, with timeout ms as
// its default wait, and adds to problems each uncaught page error, console
// error (but "Failed to load resource", which the HTTP line below
// reports), HTTP response of status 400 or more, and dialog (dismissed).
// A script asserts problems is empty at its end.
export async function openPage(browser, problems, { width, height, timeout = 10000 }) {
  const page = await browser.newPage({ viewport: { width, height } });
  page.setDefaultTimeout(timeout);
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
  return page;
}
