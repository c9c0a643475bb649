// Package webtest holds the browser tests of the viewer page and the
// JavaScript client (gateway/web): the Go tests build and start
// `danmaku all`, then run node scripts that drive headless Chromium through
// playwright-core and watch the same room with node's "ws" package.
//
// Requirements: node and npm (the tests run `npm ci` here when node_modules
// is missing) and Chromium (/usr/bin/chromium, or DANMAKU_TEST_CHROMIUM).
// Without them the tests skip, unless CI=true, where they fail.
// Screenshots go to DANMAKU_TEST_ARTIFACTS, default gateway/webtest/out/.
package webtest
