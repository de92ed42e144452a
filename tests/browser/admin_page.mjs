// Drives /admin in Debian's headless Chromium, step by step with the Rust
// test (tests/tests/admin_page.rs), which writes commands on stdin:
//   node admin_page.mjs BASE_URL EMAIL PASSWORD SCREENSHOT SECRET
// Prints "ready N" once logged in with the queues shown (N turns pending),
// then waits for "enqueued N", sees the turns queue's pending count reach
// it ("depth N"). Then waits for "worked", and prints what the charts
// drew ("charts <turns completed> <turns failed> <latency> <depth>": data
// points); opens the dead batch job (its payload redacted: "redacted"),
// retries it and sees it leave the list; opens the dead turn job
// ("detail <attempts with their error>"); saves the screenshot, prints "done".
import { chromium } from "playwright-core";
import { createInterface } from "node:readline";

const [base, email, password, screenshot, secret] = process.argv.slice(2);
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
const fail = (message) => { console.error(message); process.exit(1); };
const command = async () => (await lines.next()).value || "";

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-dev-shm-usage"],
});
let page;
try {
  page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
  page.on("pageerror", (e) => fail("page error: " + e.message));
  // Everything the page loads comes from the API.
  page.on("request", (r) => { if (!r.url().startsWith(base)) fail("request outside the API: " + r.url()); });
  await page.goto(base + "/admin");
  await page.fill("#email", email);
  await page.fill("#password", password);
  await page.click("#login-form button");
  const cellOf = (queue, column) =>
    page.locator(`#queues tbody tr[data-queue="${queue}"] td`).nth(column);
  await cellOf("turns", 1).waitFor({ timeout: 10000 });
  const before = Number(await cellOf("turns", 1).textContent());
  console.log("ready " + before);

  const expected = Number((await command()).replace("enqueued ", "")) + before;
  // The page refreshes by itself every 2 s.
  await page.waitForFunction(
    ([selector, n]) => document.querySelector(selector)?.textContent === String(n),
    ['#queues tbody tr[data-queue="turns"] td:nth-child(2)', expected],
    { timeout: 15000 },
  );
  console.log("depth " + expected);

  if ((await command()) !== "worked") fail("expected 'worked'");
  // Data points each chart drew, counted in the page, once every chart has some.
  const drawn = () => {
    const points = (series) => document.querySelectorAll(`g[data-series="${series}"] circle.point`).length;
    const counts = [
      points("turns-completed"), points("turns-failed"), points("latency-p50") + points("latency-p95"),
      points("turns-dead") + points("batch-dead"),
    ];
    return counts.every((n) => n > 0) && counts;
  };
  const counts = await (await page.waitForFunction(drawn, null, { timeout: 15000 })).jsonValue();
  console.log("charts " + counts.join(" "));

  const deadRow = (queue) => page.locator(`#dead tbody tr[data-queue="${queue}"]`).first();
  await deadRow("batch").locator('button[data-action="details"]').click();
  await page.locator("#dead-detail:not([hidden])").waitFor({ timeout: 10000 });
  const payload = await page.locator("#detail-payload").textContent();
  if (!payload.includes('"api_key": "***"') || payload.includes(secret)) fail("not redacted: " + payload);
  console.log("redacted");

  const deadBefore = await page.locator("#dead tbody tr").count();
  await deadRow("batch").locator('button[data-action="retry"]').click();
  await page.waitForFunction(
    (n) => document.querySelectorAll("#dead tbody tr").length === n,
    deadBefore - 1,
    { timeout: 15000 },
  );
  await page.waitForFunction(
    () => document.querySelector("#dead-message")?.textContent.includes("retried"),
    null,
    { timeout: 5000 },
  );

  await deadRow("turns").locator('button[data-action="details"]').click();
  await page.waitForFunction(
    () => !document.querySelector("#dead-detail").hidden
      && document.querySelector("#detail-payload").textContent.includes("turn_id"),
    null,
    { timeout: 10000 },
  );
  const attempts = await page.locator("#detail-attempts tbody tr").evaluateAll((rows) =>
    rows.filter((tr) => tr.lastChild.textContent.trim() !== "–").length);
  console.log("detail " + attempts);
  await page.screenshot({ path: screenshot, fullPage: true });
  console.log("done");
} catch (e) {
  // What the page showed when it failed, beside the screenshot.
  await page?.screenshot({ path: screenshot.replace(/\.png$/, "-failed.png"), fullPage: true }).catch(() => {});
  fail(String(e));
} finally {
  await browser.close();
}
// The stdin reader would keep the process alive.
process.exit(0);
