// Drives Debian's Chromium with playwright-core (which never downloads a
// browser) through the pages named on the command line, waits on each for
// the page script to publish window.kvgateResults, and prints them all as
// one JSON array on stdout: for each page, {result, responses}, where
// responses are the answers the browser got from other origins than the
// page's, in order, as the network saw them (a revalidated cache entry is
// the 304 that kvgate sent, though the page's script sees the kept 200).
// The browser's console and failed requests go to stderr, for the test
// log.
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
    const network = await watchNetwork(page, new URL(url).origin);
    await page.goto(url, { timeout: pageTimeoutMs });
    await page.waitForFunction(() => window.kvgateResults !== undefined, null, { timeout: pageTimeoutMs });
    const result = await page.evaluate(() => window.kvgateResults);
    results.push({ result, responses: network.responses() });
    await page.close();
  }
  console.log(JSON.stringify(results));
} finally {
  await browser.close();
}

// watchNetwork records, through the DevTools protocol, the requests page
// sends to other origins than origin and the responses the network gave
// them. Playwright's own response events report what the page's script
// sees, which for a cache entry the browser revalidated is the kept 200;
// the protocol's ExtraInfo events carry what crossed the wire: the
// If-None-Match the cache added and kvgate's 304.
async function watchNetwork(page, origin) {
  const cdp = await page.context().newCDPSession(page);
  const byId = new Map();
  const entry = (id) => {
    if (!byId.has(id)) {
      byId.set(id, { method: "", url: "", ifNoneMatch: "", status: 0, etag: "", cacheControl: "", encodedBytes: 0 });
    }
    return byId.get(id);
  };
  const header = (headers, name) => {
    for (const [k, v] of Object.entries(headers ?? {})) {
      if (k.toLowerCase() === name) return v;
    }
    return "";
  };
  cdp.on("Network.requestWillBeSent", (e) => {
    Object.assign(entry(e.requestId), { method: e.request.method, url: e.request.url });
  });
  cdp.on("Network.requestWillBeSentExtraInfo", (e) => {
    entry(e.requestId).ifNoneMatch = header(e.headers, "if-none-match");
  });
  cdp.on("Network.responseReceivedExtraInfo", (e) => {
    Object.assign(entry(e.requestId), {
      status: e.statusCode,
      etag: header(e.headers, "etag"),
      cacheControl: header(e.headers, "cache-control"),
    });
  });
  cdp.on("Network.loadingFinished", (e) => {
    entry(e.requestId).encodedBytes = e.encodedDataLength;
  });
  await cdp.send("Network.enable");
  return {
    // responses are the answered requests to other origins, in the order
    // they were sent.
    responses: () => [...byId.values()].filter((r) => r.url !== "" && r.status !== 0 && new URL(r.url).origin !== origin),
  };
}
