// Renders the API's docs page (Swagger UI) in Debian's headless Chromium
// with every request that leaves the API refused, as on a machine without
// internet access (tests/tests/openapi.rs):
//   node docs_page.mjs BASE_URL SCREENSHOT
// Prints "operations N external M": the operations rendered, and the
// requests that tried to leave the API.
import { chromium } from "playwright-core";

const [base, screenshot] = process.argv.slice(2);
const fail = (message) => { console.error(message); process.exit(1); };

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-dev-shm-usage"],
});
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
  page.on("pageerror", (e) => fail("page error: " + e.message));
  let external = 0;
  await page.route("**/*", (route) => {
    if (route.request().url().startsWith(base)) return route.continue();
    external += 1;
    return route.abort();
  });
  await page.goto(base + "/api/v1/docs/");
  await page.locator(".swagger-ui .opblock").first().waitFor({ timeout: 15000 });
  const operations = await page.locator(".swagger-ui .opblock").count();
  await page.screenshot({ path: screenshot, fullPage: false });
  console.log(`operations ${operations} external ${external}`);
} finally {
  await browser.close();
}
