// Loads page.html in Debian's headless Chromium (driven by playwright-core) against the broker
// at ws URL argv[2], serving the page and MQTT.js's browser bundle from node_modules itself (no
// CDN). Prints the page's result as one JSON line; exits non-zero on failure. Bounded: 45 s.
import { createServer } from "node:http";
import { readFileSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
const broker = process.argv[2];
const files = {
  "/": ["text/html", readFileSync(join(here, "page.html"))],
  "/mqtt.min.js": ["text/javascript", readFileSync(join(here, "node_modules/mqtt/dist/mqtt.min.js"))],
};
const server = createServer((req, res) => {
  const file = files[new URL(req.url, "http://x").pathname];
  if (!file) { res.writeHead(404).end(); return; }
  res.writeHead(200, { "content-type": file[0] }).end(file[1]);
});
await new Promise((ok) => server.listen(0, "127.0.0.1", ok));
const page_url = `http://127.0.0.1:${server.address().port}/?broker=${encodeURIComponent(broker)}`;

const profile = mkdtempSync(join(tmpdir(), "warren-chromium-"));
const timer = setTimeout(() => { console.error("timed out"); process.exit(3); }, 45000);
let context;
try {
  context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  const page = context.pages()[0] ?? await context.newPage();
  page.on("console", (m) => console.error("page:", m.text()));
  await page.goto(page_url);
  await page.waitForFunction(() => window.result !== undefined, null, { timeout: 30000 });
  const result = await page.evaluate(() => window.result);
  console.log(JSON.stringify(result));
  if (result.error) process.exitCode = 1;
} catch (e) {
  console.error(String(e));
  process.exitCode = 2;
} finally {
  clearTimeout(timer);
  if (context) await context.close().catch(() => {});
  server.close();
  rmSync(profile, { recursive: true, force: true });
}
