// A headless Chromium (Debian's /usr/bin/chromium) driven by playwright-core, taking orders from the Python test:
// one JSON object a line on stdin, one JSON reply a line on stdout ({"ok": true, "result": ...} or
// {"ok": false, "error": "..."}). The test decides what to do and asserts; this only does what a hand would.
//
//   {"op": "open", "url": "...", "width": 1024, "height": 768}
//   {"op": "goto", "url": "..."}                                 another page in the same browser
//   {"op": "eval", "js": "document.title"}                       a JS expression evaluated in the page
//   {"op": "wait", "js": "...", "timeout_ms": 20000}             until the expression is truthy; its value
//   {"op": "click", "selector": "#home"} / {"op": "fill", "selector": "#token", "text": "..."}
//   {"op": "files", "selector": "#run-protocol", "paths": ["/tmp/protocol.py"]}   files picked in a file input
//   {"op": "screenshot", "path": "...", "full_page": true}
//   {"op": "reload"} / {"op": "viewport", "width": 768, "height": 1024}
//   {"op": "problems"}                                           console errors and uncaught exceptions so far
//   {"op": "close"}
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { chromium } from "playwright-core";

const ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
  "--disable-component-update", "--disable-sync"];

let context = null;
let page = null;
let profile = null;
const problems = [];

async function open({ url, width = 1024, height = 768 }) {
  profile = mkdtempSync(join(tmpdir(), "benchbus-chromium-"));  // a fresh --user-data-dir every run
  context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium", headless: true, args: ARGS,
    viewport: { width, height }, deviceScaleFactor: 1,
  });
  page = context.pages()[0] || await context.newPage();
  page.on("console", (message) => {
    if (message.type() === "error") problems.push(`console: ${message.text()} (${message.location().url || "?"})`);
  });
  page.on("pageerror", (error) => problems.push(`exception: ${error.message}`));
  page.on("requestfailed", (request) => problems.push(`request failed: ${request.url()} ${request.failure()?.errorText}`));
  const response = await page.goto(url, { waitUntil: "load" });
  return { status: response ? response.status() : null };
}

async function handle(order) {
  switch (order.op) {
    case "open": return open(order);
    case "eval": return page.evaluate(order.js);
    case "wait": {
      const handle = await page.waitForFunction(order.js, null, { timeout: order.timeout_ms ?? 20000, polling: 100 });
      return handle.jsonValue();
    }
    case "click": await page.click(order.selector, { timeout: order.timeout_ms ?? 10000 }); return null;
    case "fill": await page.fill(order.selector, order.text); return null;
    case "files": await page.setInputFiles(order.selector, order.paths); return null;
    case "screenshot": await page.screenshot({ path: order.path, fullPage: order.full_page ?? false }); return order.path;
    case "viewport": await page.setViewportSize({ width: order.width, height: order.height }); return null;
    case "goto": return { status: (await page.goto(order.url, { waitUntil: "load" }))?.status() ?? null };
    case "reload": await page.reload({ waitUntil: "load" }); return null;
    case "problems": return problems;
    case "close": await shutdown(); return null;
    default: throw new Error(`unknown op ${order.op}`);
  }
}

async function shutdown() {
  if (context) await context.close();
  context = null;
  if (profile) rmSync(profile, { recursive: true, force: true });
  profile = null;
}

const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  if (!line.trim()) continue;
  let reply;
  try {
    reply = { ok: true, result: await handle(JSON.parse(line)) ?? null };
  } catch (error) {
    reply = { ok: false, error: String(error && error.message ? error.message : error) };
  }
  process.stdout.write(JSON.stringify(reply) + "\n");
}
await shutdown();
