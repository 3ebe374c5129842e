// Drives Debian's Chromium with playwright-core (which never downloads a
// browser) through the pages named on the command line, waits on each for
// the page script to publish window.kvgateResults, and prints them all as
// one JSON array on stdout. The browser's console and failed requests go
// to stderr, for the test log.
//
//   node test/browser/drive.mjs URL...
//
// CHROMIUM overrides the browser's path (default /usr/bin/chromium).

import { chromium } from "playwright-core";

const pageTimeoutMs = 30_000;

// The flags Chromium needs as root on a machine with no network but
// loopback: no sandbox, no GPU, and nothing that phones home. launch()
// gives every run a new empty profile (--user-data-dir) and --headless.
const args = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args,
  timeout: pageTimeoutMs,
});
try {
  const results = [];
  for (const url of process.argv.slice(2)) {
    const page = await browser.newPage();
    page.on("console", (msg) => console.error(`[console ${msg.type()}] ${msg.text()}`));
    page.on("pageerror", (err) => console.error(`[page error] ${err.message}`));
    page.on("requestfailed", (req) => console.error(`[request failed] ${req.method()} ${req.url()}: ${req.failure()?.errorText}`));
    await page.goto(url, { timeout: pageTimeoutMs });
    await page.waitForFunction(() => window.kvgateResults !== undefined, null, { timeout: pageTimeoutMs });
    results.push(await page.evaluate(() => window.kvgateResults));
    await page.close();
  }
  console.log(JSON.stringify(results));
} finally {
  await browser.close();
}
