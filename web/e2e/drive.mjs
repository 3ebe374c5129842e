// Drives kvgate's browser app in Debian's Chromium with playwright-core
// (which never downloads a browser) through what a person does: open a
// store, create an item, find it by prefix, open it, edit it, meet the
// conflict after another writer changed it, delete it, upload two files,
// drop two more on the drop zone, download a value, and scroll a long
// key list. Elements are found as a person finds them: by role, label
// and text.
//
//   node web/e2e/drive.mjs URL STORE
//
// Each step done is printed on stdout as a JSON line {"step": NAME}; the
// page's load time as {"loadTime": {"domContentLoadedMs", "loadMs",
// "transferBytes"}}. At {"step": "wait-other-writer"} the script waits
// for a line on stdin: the test makes its change as another writer, then
// writes that line. On a failing step it saves a screenshot into
// $SCREENSHOTS, prints {"failed": NAME, "error": MESSAGE, "screenshot":
// PATH} and exits 1.
// CHROMIUM overrides the browser's path (default /usr/bin/chromium);
// DRIVE=token drives the bearer-token steps instead (see tokenSteps);
// DRIVE=keyboard the keyboard-only steps (see keyboardSteps).

import { createInterface } from "node:readline";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { chromium } from "playwright-core";

const [url, store] = process.argv.slice(2);
const timeout = 15_000;
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  // As root on a machine with only loopback: no sandbox, no GPU, nothing
  // that phones home.
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  timeout,
});
const page = await browser.newPage();
page.setDefaultTimeout(timeout);
page.on("console", (msg) => console.error(`[console ${msg.type()}] ${msg.text()}`));
page.on("pageerror", (err) => console.error(`[page error] ${err.message}`));

const status = page.getByRole("status");
const alert = page.getByRole("alert");
const keyList = page.getByRole("list", { name: "Keys" });
const value = page.getByLabel("Value", { exact: true });

async function expectText(locator, text) {
  await locator.filter({ hasText: text }).first().waitFor({ state: "visible" });
}

const steps = [
  ["load", async () => {
    // How long the page takes to load, from the browser's own navigation
    // timing, printed as {"loadTime": {...}} for the test's log.
    await page.goto(url);
    await page.waitForFunction(() => performance.getEntriesByType("navigation")[0]?.loadEventEnd > 0);
    const loadTime = await page.evaluate(() => {
      const nav = performance.getEntriesByType("navigation")[0];
      return { domContentLoadedMs: nav.domContentLoadedEventEnd, loadMs: nav.loadEventEnd, transferBytes: nav.transferSize };
    });
    console.log(JSON.stringify({ loadTime }));
  }],
  ["open-store", async () => {
    await page.getByLabel("Store id").fill(store);
    await page.getByLabel("Store id").press("Enter");
    await expectText(page.getByRole("button", { name: `Open recent store ${store}` }), store);
  }],
  ["create", async () => {
    await page.getByRole("button", { name: "New item" }).click();
    await page.getByLabel("Key", { exact: true }).fill("greet/hello");
    await value.fill("hello world");
    await page.getByLabel("Metadata").fill("m1");
    await page.getByRole("button", { name: "Save" }).click();
    await expectText(status, "Created greet/hello");
  }],
  ["bad-request", async () => {
    await page.getByRole("button", { name: "New item" }).click();
    await page.getByLabel("Key", { exact: true }).fill("a/../b");
    await page.getByRole("button", { name: "Save" }).click();
    await expectText(alert, "invalid_argument");
    await expectText(alert, "field key");
  }],
  ["find-by-prefix", async () => {
    await page.getByLabel("Key prefix").fill("greet/");
    await page.getByLabel("Key prefix").press("Enter");
    await expectText(page.locator("#key-count"), /^1 key$/);
    await keyList.getByRole("button", { name: "greet/hello" }).waitFor();
    if (await keyList.getByRole("button", { name: "other/seeded" }).count() !== 0) {
      throw new Error("a key outside the prefix is listed");
    }
  }],
  ["open", async () => {
    await keyList.getByRole("button", { name: "greet/hello" }).click();
    await expectText(status, "Opened greet/hello");
    if (await value.inputValue() !== "hello world") throw new Error(`value shown: ${await value.inputValue()}`);
    await expectText(page.locator("#item-facts"), "11 bytes");
    await expectText(page.locator("#item-facts"), "Generation");
    await expectText(page.locator("#item-facts"), "Last modified");
  }],
  ["edit", async () => {
    await value.fill("hello again");
    await page.getByRole("button", { name: "Save" }).click();
    await expectText(status, "Saved greet/hello");
  }],
  ["wait-other-writer", async () => {
    console.log(JSON.stringify({ step: "wait-other-writer" }));
    const next = await lines.next();
    if (next.done) throw new Error("the test closed stdin before the other writer wrote");
  }],
  ["conflict", async () => {
    await value.fill("my change");
    await page.getByRole("button", { name: "Save" }).click();
    await expectText(alert, "another writer changed greet/hello");
    await expectText(alert, "aborted");
  }],
  ["delete", async () => {
    await keyList.getByRole("button", { name: "greet/hello" }).click();
    await expectText(status, "Opened greet/hello");
    if (await value.inputValue() !== "from another writer") throw new Error(`value shown: ${await value.inputValue()}`);
    page.once("dialog", (d) => d.accept());
    await page.getByRole("button", { name: "Delete item" }).click();
    await expectText(status, "Deleted greet/hello");
  }],
  ["upload", async () => {
    await page.getByLabel("Files to upload").setInputFiles([
      { name: "a.txt", mimeType: "text/plain", buffer: Buffer.from("file a") },
      { name: "b.bin", mimeType: "application/octet-stream", buffer: Buffer.from([0, 255, 1]) },
    ]);
    const results = page.getByRole("list", { name: "Upload results" }).getByRole("listitem");
    await expectText(results, "a.txt: written as greet/a.txt");
    await expectText(results, "b.bin: written as greet/b.bin");
    await expectText(status, "Uploaded 2 of 2 files");
  }],
  ["drop", async () => {
    // A real drop event on the drop zone, its DataTransfer carrying File
    // objects made in the page, as a person's drag from the desktop does.
    const dataTransfer = await page.evaluateHandle(() => {
      const dt = new DataTransfer();
      dt.items.add(new File(["dropped c"], "c.txt", { type: "text/plain" }));
      dt.items.add(new File([new Uint8Array([7, 8, 9])], "d.bin"));
      return dt;
    });
    await page.locator("#drop-zone").dispatchEvent("drop", { dataTransfer });
    const results = page.getByRole("list", { name: "Upload results" }).getByRole("listitem");
    await expectText(results, "c.txt: written as greet/c.txt");
    await expectText(results, "d.bin: written as greet/d.bin");
    if (await results.filter({ hasText: "a.txt" }).count() !== 0) throw new Error("the earlier upload's results are still shown");
    await keyList.getByRole("button", { name: "greet/c.txt" }).waitFor();
  }],
  ["binary-as-hex", async () => {
    await keyList.getByRole("button", { name: "greet/b.bin" }).click();
    await expectText(status, "Opened greet/b.bin");
    if (await value.inputValue() !== "00 ff 01") throw new Error(`value shown: ${await value.inputValue()}`);
  }],
  ["download", async () => {
    // The item open is greet/b.bin: its download is its exact bytes.
    const [download] = await Promise.all([
      page.waitForEvent("download"),
      page.getByRole("button", { name: "Download value" }).click(),
    ]);
    if (download.suggestedFilename() !== "b.bin") throw new Error(`downloaded as ${download.suggestedFilename()}`);
    const got = await readFile(await download.path());
    if (!got.equals(Buffer.from([0, 255, 1]))) throw new Error(`downloaded bytes ${got.toString("hex")}, want 00ff01`);
  }],
  ["long-list", async () => {
    // Every key of the long list arrives through StreamKeys, yet only the
    // rows in view exist in the page, and the last key is a scroll away.
    const want = process.env.LONG_LIST_KEYS ?? "";
    await page.getByLabel("Key prefix").fill("many/");
    await page.getByLabel("Key prefix").press("Enter");
    await expectText(page.locator("#key-count"), new RegExp(`^${want} keys$`));
    const rows = await keyList.getByRole("listitem").count();
    if (rows > 100) throw new Error(`${rows} rows in the page: the list is not virtualised`);
    await keyList.evaluate((el) => { el.scrollTop = el.scrollHeight; });
    const last = process.env.LAST_KEY ?? "";
    await keyList.getByRole("button", { name: last, exact: true }).waitFor();
    const after = await keyList.getByRole("listitem").count();
    if (after > 100) throw new Error(`${after} rows in the page after scrolling`);
  }],
];

// With DRIVE=token the script drives kvgate asking for a bearer token
// instead: the store is refused until the person enters TOKEN.
const tokenSteps = [
  ["refused-without-token", async () => {
    await page.goto(url);
    await page.getByLabel("Store id").fill(store);
    await page.getByLabel("Store id").press("Enter");
    await expectText(alert, "unauthenticated");
    if (await keyList.getByRole("listitem").count() !== 0) throw new Error("keys listed without a token");
  }],
  ["works-with-token", async () => {
    await page.getByLabel("Bearer token").fill(process.env.TOKEN ?? "");
    await page.getByLabel("Store id").press("Enter");
    await expectText(page.locator("#key-count"), /^1 key$/);
    await keyList.getByRole("button", { name: "seen/with-token" }).waitFor();
    await alert.waitFor({ state: "hidden" });
  }],
];

// tabTo presses Tab until the focused element satisfies want (given the
// element's id, data-key and text), failing after max presses.
async function tabTo(what, want, max = 40) {
  for (let i = 0; i < max; i++) {
    await page.keyboard.press("Tab");
    const focused = await page.evaluate(() => {
      const el = document.activeElement;
      return { id: el?.id ?? "", key: el?.dataset?.key ?? "", text: el?.textContent?.trim() ?? "" };
    });
    if (want(focused)) return;
  }
  throw new Error(`${what} not reached after ${max} presses of Tab`);
}

// With DRIVE=keyboard the script uses the app with the keyboard alone:
// open the store, open KEY from the key list, edit its value and save it,
// reaching every control with Tab.
const keyboardSteps = [
  ["keyboard-only", async () => {
    const key = process.env.KEY ?? "";
    await page.goto(url);
    await tabTo("the store id field", (f) => f.id === "store-id");
    await page.keyboard.type(store);
    await page.keyboard.press("Enter");
    await expectText(page.locator("#key-count"), /^\d+ keys?$/);
    await tabTo(`the key ${key} in the list`, (f) => f.key === key);
    await page.keyboard.press("Enter");
    await expectText(status, `Opened ${key}`);
    await expectText(page.locator("#item-heading"), `Item ${key}`);
    await expectText(page.locator("#item-facts"), "Generation");
    if (await page.evaluate(() => document.activeElement?.id) !== "item-value") {
      await tabTo("the value field", (f) => f.id === "item-value");
    }
    await page.keyboard.press("ControlOrMeta+A");
    await page.keyboard.type("typed without a mouse");
    await tabTo("the Save button", (f) => f.id === "save");
    await page.keyboard.press("Enter");
    await expectText(status, `Saved ${key}`);
    if (await value.inputValue() !== "typed without a mouse") throw new Error(`value shown: ${await value.inputValue()}`);
    await expectText(page.locator("#item-facts"), "21 bytes");
  }],
];

let failed = false;
try {
  for (const [name, run] of { token: tokenSteps, keyboard: keyboardSteps }[process.env.DRIVE] ?? steps) {
    try {
      await run();
      if (name !== "wait-other-writer") console.log(JSON.stringify({ step: name }));
    } catch (err) {
      const screenshot = join(process.env.SCREENSHOTS || ".", `${name}.png`);
      await page.screenshot({ path: screenshot, fullPage: true }).catch((e) => console.error(`screenshot: ${e}`));
      console.log(JSON.stringify({ failed: name, error: String(err?.message ?? err), screenshot }));
      failed = true;
      break;
    }
  }
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
