// Package webtest holds the browser test of the moderation dashboard
// (moderation/web): the Go test builds and starts `danmaku all`, then runs
// dashboard.mjs, which drives headless Chromium through playwright-core
// while a viewer in the same room, written with node's "ws" package, sends
// messages and watches what the moderator's actions do to them;
// analytics.mjs checks the analytics panel. The scripts share
// pkg/testenv/page.mjs with gateway/webtest.
//
// Requirements: node and npm (the test runs `npm ci` here when
// node_modules is missing) and Chromium (/usr/bin/chromium, or
// DANMAKU_TEST_CHROMIUM). Without them the test skips, unless CI=true,
// where it fails. The screenshot goes to DANMAKU_TEST_ARTIFACTS, default
// moderation/webtest/out/.
package webtest
