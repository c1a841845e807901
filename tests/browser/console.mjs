// Drives Warren's web console in Debian's headless Chromium (playwright-core): argv[2] is the
// admin URL, argv[3] the bearer token, argv[4] the client id to kick, argv[5] the screenshot
// directory. Logs in with the token, waits for the overview's chart to update, searches the
// client list, opens the client, kicks it. Prints one JSON line; exits non-zero on failure.
// Bounded: 45 s.
import { mkdtempSync, mkdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

const [admin, token, victim, shots] = process.argv.slice(2);
mkdirSync(shots, { recursive: true });
const profile = mkdtempSync(join(tmpdir(), "warren-chromium-"));
const timer = setTimeout(() => { console.error("timed out"); process.exit(3); }, 45000);
let context;
const result = {};
try {
  context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    viewport: { width: 1100, height: 800 },
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  const page = context.pages()[0] ?? await context.newPage();
  page.on("console", (m) => console.error("page:", m.text()));
  page.on("pageerror", (e) => { result.page_error = String(e); });
  await page.goto(admin + "/");
  // The API wants a token: the console asks for it.
  await page.locator("#login").waitFor({ state: "visible", timeout: 10000 });
  await page.fill("#token", token);
  await page.click("#login button");
  // The overview updates by itself: the chart gains points.
  await page.waitForFunction(() => Number(document.querySelector("#chart").dataset.points) >= 1, null, { timeout: 10000 });
  const before = Number(await page.locator("#chart").getAttribute("data-points"));
  await page.waitForFunction((n) => Number(document.querySelector("#chart").dataset.points) > n, before, { timeout: 10000 });
  result.chart_updates = true;
  result.connections_card = await page.locator(".card b").first().textContent();
  await page.screenshot({ path: join(shots, "console-overview.png") });
  // Find the client.
  await page.click('nav a[data-view="clients"]');
  const prefix = victim.slice(0, 4);
  await page.fill("#search", prefix);
  await page.click("#client-search button");
  // The unfiltered list may be on screen already: wait for the searched one (every row
  // matching the prefix) before counting.
  await page.waitForFunction((p) => {
    const rows = [...document.querySelectorAll("#clients tbody tr")];
    return rows.length > 0 && rows.every((tr) => tr.textContent.includes(p));
  }, prefix, { timeout: 10000 });
  const row = page.locator("#clients tbody a", { hasText: victim });
  await row.waitFor({ timeout: 10000 });
  result.listed = await page.locator("#clients tbody tr").count();
  await row.click();
  await page.locator("#client-title", { hasText: victim }).waitFor({ timeout: 10000 });
  result.subscriptions = await page.locator("#client-subs tbody tr").count();
  await page.screenshot({ path: join(shots, "console-client.png") });
  // Kick it.
  await page.click("#kick");
  await page.locator("#message.ok", { hasText: "Kicked " + victim }).waitFor({ timeout: 10000 });
  result.kicked = true;
  await page.screenshot({ path: join(shots, "console-kicked.png") });
  console.log(JSON.stringify(result));
  if (result.page_error) process.exitCode = 1;
} catch (e) {
  console.error(String(e));
  console.log(JSON.stringify(result));
  process.exitCode = 2;
} finally {
  clearTimeout(timer);
  if (context) await context.close().catch(() => {});
  rmSync(profile, { recursive: true, force: true });
}
