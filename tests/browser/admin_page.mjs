// Drives /admin in Debian's headless Chromium, step by step with the Rust
// test (tests/tests/admin_page.rs), which writes commands on stdin:
//   node admin_page.mjs BASE_URL EMAIL PASSWORD SCREENSHOT
// Prints "ready" once logged in with the queues shown, then waits for
// "enqueued N", sees the turns queue's pending count reach N, retries the
// dead job, sees it leave the dead list, saves the screenshot, prints "done".
import { chromium } from "playwright-core";
import { createInterface } from "node:readline";

const [base, email, password, screenshot] = process.argv.slice(2);
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
const fail = (message) => { console.error(message); process.exit(1); };

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-dev-shm-usage"],
});
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
  page.on("pageerror", (e) => fail("page error: " + e.message));
  await page.goto(base + "/admin");
  await page.fill("#email", email);
  await page.fill("#password", password);
  await page.click("#login-form button");
  const cellOf = (queue, column) =>
    page.locator(`#queues tbody tr[data-queue="${queue}"] td`).nth(column);
  await cellOf("turns", 1).waitFor({ timeout: 10000 });
  const before = Number(await cellOf("turns", 1).textContent());
  console.log("ready " + before);

  const command = (await lines.next()).value || "";
  const expected = Number(command.replace("enqueued ", "")) + before;
  // The page refreshes by itself every 2 s.
  await page.waitForFunction(
    ([selector, n]) => document.querySelector(selector)?.textContent === String(n),
    ['#queues tbody tr[data-queue="turns"] td:nth-child(2)', expected],
    { timeout: 15000 },
  );
  console.log("depth " + expected);

  const dead = page.locator("#dead tbody tr");
  await dead.first().waitFor({ timeout: 10000 });
  const deadBefore = await dead.count();
  await dead.first().locator('button[data-action="retry"]').click();
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
  await page.screenshot({ path: screenshot, fullPage: true });
  console.log("done");
} catch (e) {
  fail(String(e));
} finally {
  await browser.close();
}
// The stdin reader would keep the process alive.
process.exit(0);
