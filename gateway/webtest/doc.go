// Package webtest holds the browser tests of the viewer page and the
// JavaScript client (gateway/web): the Go tests build and start
// `danmaku all`, then run node scripts that drive headless Chromium through
// playwright-core and watch the same room with node's "ws" package:
// e2e.mjs (the page end to end), viewer.mjs (empty-room hint, held-message
// verdicts, lanes under load; at 1024 and 1440 px), crossorigin.mjs
// (embed/index.html on other origins against --origins), protocol.mjs
// (docs/protocol.md with node "ws") and client.test.mjs (danmaku.js and
// danmaku.d.ts, node's test runner). The browser scripts share
// pkg/testenv/page.mjs with moderation/webtest (launching Chromium, a page
// that records its errors, polling, the room API).
//
// Requirements: node and npm (the tests run `npm ci` here when node_modules
// is missing) and Chromium (/usr/bin/chromium, or DANMAKU_TEST_CHROMIUM).
// Without them the tests skip, unless CI=true, where they fail.
// Screenshots go to DANMAKU_TEST_ARTIFACTS, default gateway/webtest/out/.
package webtest
