// The web console in headless Chromium, as a user would use it: open /ui, be refused with a
// wrong token, sign in, see the VM listed, open its console, type a command and read its
// output off the page's DOM, then resize the window and see the guest learn the new size.
//
// Usage: node console_test.mjs GATEWAY_URL TOKEN VM
import { chromium } from "playwright-core";

const [url, token, vm] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const fail = async (message) => {
  console.error(message);
  await browser.close();
  process.exit(1);
};

try {
  const page = await browser.newPage({ viewport: { width: 1000, height: 700 } });
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  const resp = await page.goto(url + "/ui");
  if (!resp.ok()) await fail(`GET /ui: ${resp.status()}`);
  if (!(resp.headers()["content-security-policy"] || "").includes("script-src 'self'"))
    await fail("/ui has no content security policy");

  // A wrong token is refused, on the page.
  await page.fill("#token", "noid_not-a-token");
  await page.click("#sign-in button[type=submit]");
  await page.waitForFunction(() =>
    document.getElementById("sign-in-error").textContent.includes("does not know this token"));

  await page.fill("#token", token);
  await page.click("#sign-in button[type=submit]");
  const row = `tr[data-vm="${vm}"]`;
  await page.waitForSelector(`${row} td.state-running`, { timeout: 20000 });
  if (page.url().includes(token)) await fail("the token is in the page's URL");

  await page.click(`${row} .open-console`);
  await page.waitForFunction(
    () => document.getElementById("console-state").textContent === "connected",
    null, { timeout: 20000 });

  // The screen's text, row by row, as the page shows it.
  const screen = () => page.$$eval(".xterm-rows > div", (rows) => rows.map((r) => r.textContent));
  const waitFor = async (pattern, what) => {
    const deadline = Date.now() + 20000;
    while (Date.now() < deadline) {
      const lines = await screen();
      const hit = lines.map((l) => l.match(pattern)).find((m) => m);
      if (hit) return hit;
      await page.waitForTimeout(100);
    }
    await fail(`${what} never appeared on the page:\n${(await screen()).join("\n")}`);
  };
  const type = async (line) => {
    await page.keyboard.type(line);
    await page.keyboard.press("Enter");
  };

  // The console's shell answers what is typed into the page (echo cannot show 42 itself).
  await type("echo typed-$((40+2))");
  await waitFor(/typed-42/, "the command's output");

  // The terminal's size reaches the guest, and so does a resize of the window. Each answer
  // carries a number its question does not show.
  let attempt = 0;
  const guestSize = async () => {
    attempt += 1;
    await type(`echo size-$(stty size | tr ' ' x)-answer-$((1000+${attempt}))`);
    const m = await waitFor(new RegExp(`size-(\\d+)x(\\d+)-answer-${1000 + attempt}`), "stty size");
    return [Number(m[1]), Number(m[2])];
  };
  const domRows = async () => (await screen()).length;
  let [rows, cols] = await guestSize();
  if (rows !== await domRows()) await fail(`guest has ${rows} rows, the page ${await domRows()}`);
  await page.setViewportSize({ width: 1400, height: 1000 });
  const deadline = Date.now() + 20000;
  for (;;) {
    const [r, c] = await guestSize();
    if (r !== rows && c > cols && r === await domRows()) break;
    if (Date.now() > deadline) await fail(`the resize never reached the guest (${r}x${c})`);
    await page.waitForTimeout(200);
  }
  if (errors.length) await fail("page errors: " + errors.join("; "));
  console.log("web console: ok");
} catch (e) {
  await fail(String(e.stack || e));
}
await browser.close();
