// The UI in a real browser: Debian's chromium (/usr/bin/chromium) driven by playwright-core.
// Started by tests/ui_browser.rs with the service already serving ingested calls; it prints
// `LIVE_READY` when the live page is open (the Rust side then publishes a call) and exits non-zero
// on the first failed check. Screenshots of every page go to $SHOTS.
import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";

const env = (k) => { const v = process.env[k]; if (v === undefined) throw new Error(`${k} not set`); return v; };
const BASE = env("BASE");
const SESSION = env("SESSION_ID");
const CALLS = env("CALL_IDS").split(",");
const TURNS = +env("TURNS");
const ISSUES = env("ISSUES").split(",").filter(Boolean);
const LIVE_CALL = env("LIVE_CALL_ID");
const LONG = env("LONG_SESSION_ID");
const SHOTS = env("SHOTS");
mkdirSync(SHOTS, { recursive: true });

const consoleErrors = [];
let step = "start";
let page = null;
const check = (cond, what) => { if (!cond) throw new Error(`${step}: ${what}`); };
const log = (...a) => console.log(`[${step}]`, ...a);

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--autoplay-policy=no-user-gesture-required", "--mute-audio"],
});
try {
  const context = await browser.newContext({ viewport: { width: 1400, height: 1000 } });
  page = await context.newPage();
  page.on("framenavigated", (f) => { if (f === page.mainFrame()) log("navigated to", new URL(f.url()).pathname); });
  page.on("console", (m) => { if (m.type() === "error") consoleErrors.push(`${page.url()}: ${m.text()}`); });
  page.on("pageerror", (e) => consoleErrors.push(`${page.url()}: ${e.message}`));
  const shot = async (name, opts = {}) => { await page.screenshot({ path: `${SHOTS}/${name}.png`, ...opts }); log("screenshot", name); };

  // The sessions list shows the ingested calls.
  step = "sessions list";
  await page.goto(BASE + "/", { waitUntil: "networkidle" });
  for (const c of CALLS) check(await page.locator(`tr[data-call-id="${c}"]`).count() === 1, `row of ${c}`);
  await shot("sessions");

  // The session page shows every turn and every issue; the page is usable quickly.
  step = "session page";
  const t0 = Date.now();
  await page.goto(`${BASE}/sessions/${SESSION}`, { waitUntil: "domcontentloaded" });
  log("DOMContentLoaded after", Date.now() - t0, "ms");
  await page.waitForLoadState("networkidle");
  check(await page.locator("li.turn[data-turn-index]").count() === TURNS, `${TURNS} turns`);
  for (const code of ISSUES) check(await page.locator(`[data-issue-code="${code}"]`).count() >= 1, `issue ${code}`);
  check(await page.locator("svg[data-waterfall]").count() >= 1, "a waterfall");
  for (const r of ["pre_rnnoise", "post_rnnoise", "stt_input"]) check(await page.locator(`audio[data-rendition="${r}"]`).count() === 1, `player ${r}`);
  // wavesurfer draws the server's peaks into each full recording's box.
  await page.waitForFunction(() => document.querySelectorAll(".wave[data-peaks] > div").length >= 2, null, { timeout: 10000 });
  await shot("session", { fullPage: true });

  // A 200-turn call: how long until the page is usable (printed; the suite asserts no timings).
  step = "200 turns";
  const l0 = Date.now();
  await page.goto(`${BASE}/sessions/${LONG}`, { waitUntil: "domcontentloaded" });
  const dcl = Date.now() - l0;
  await page.locator('li.turn[data-turn-index="199"]').waitFor();
  await page.waitForLoadState("load");
  const load = Date.now() - l0;
  check(await page.locator("li.turn[data-turn-index]").count() === 200, "200 turns");
  await page.keyboard.press("j");
  check(await page.locator('li.turn[data-turn-index="0"].selected').count() === 1, "j selects the first turn");
  log(`200-turn page: DOMContentLoaded ${dcl} ms, load ${load} ms`);
  await page.goto(`${BASE}/sessions/${SESSION}`, { waitUntil: "networkidle" });

  // A rendition plays: its currentTime advances.
  step = "playback";
  await page.locator('input[name="rendition"][value="post_rnnoise"]').check();
  await page.locator('li.turn[data-turn-index="2"] [data-play-turn]').click();
  const post = 'audio[data-rendition="post_rnnoise"]';
  await page.waitForFunction((s) => { const a = document.querySelector(s); return a && !a.paused && !a.error && a.currentTime > 0.3; }, post, { timeout: 15000 });
  const started = await page.$eval(post, (a) => a.currentTime);
  check(started >= 3.9, `turn 2 starts at 4.0 s, playback began at ${started}`);
  await page.waitForFunction(([s, t]) => document.querySelector(s).currentTime > t + 0.3, [post, started], { timeout: 15000 });
  log("playing from", started.toFixed(2), "s");
  check(await page.locator('li.turn[data-turn-index="2"].selected').count() === 1, "the played turn is selected");
  // Switching rendition continues at the same moment on the other recording.
  await page.locator('input[name="rendition"][value="pre_rnnoise"]').check();
  const pre = 'audio[data-rendition="pre_rnnoise"]';
  await page.waitForFunction(([p, q]) => { const a = document.querySelector(p), b = document.querySelector(q); return !a.paused && b.paused && a.currentTime > 4.0; }, [pre, post], { timeout: 15000 });
  await page.$eval(pre, (a) => a.pause());

  // Seeking to a turn lands there (HTTP ranges), and the URL records the moment.
  step = "seek to a turn";
  await page.locator('li.turn[data-turn-index="4"] a[data-select-turn]').click();
  await page.waitForFunction((s) => Math.abs(document.querySelector(s).currentTime - 8.0) < 0.25, post, { timeout: 10000 });
  check(new URL(page.url()).searchParams.get("turn") === "4", `URL names turn 4: ${page.url()}`);
  // j moves to the next turn.
  await page.keyboard.press("j");
  check(await page.locator('li.turn[data-turn-index="5"].selected').count() === 1, "j selects turn 5");

  // A pasted moment opens at that moment.
  step = "deep link";
  await page.goto(`${BASE}/sessions/${SESSION}?turn=2&t=4.5&rendition=pre_rnnoise`, { waitUntil: "networkidle" });
  await page.waitForFunction((s) => Math.abs(document.querySelector(s).currentTime - 4.5) < 0.25, pre, { timeout: 10000 });
  check(await page.locator('li.turn[data-turn-index="2"].selected').count() === 1, "turn 2 selected");
  check(await page.locator('input[name="rendition"][value="pre_rnnoise"]').isChecked(), "pre_rnnoise chosen");

  // The STT grid: run it from the page, watch it fill in, click a wrong word to hear it.
  step = "stt grid";
  await page.goto(`${BASE}/sessions/${SESSION}`, { waitUntil: "networkidle" });
  await page.locator("#stt button[type=submit]").click();
  await page.locator("table.stt-grid td.cell").first().waitFor({ timeout: 30000 });
  await page.waitForFunction(() => !document.querySelector("#stt").hasAttribute("hx-trigger"), null, { timeout: 30000 });
  const wrong = page.locator('td.cell[data-provider="deepgram"] .w.del').first();
  check(await wrong.count() === 1, "Deepgram's dropped word is marked");
  const at = +(await wrong.getAttribute("data-seek-s"));
  await wrong.click();
  await page.waitForFunction((t) => {
    const a = Array.from(document.querySelectorAll("audio[data-rendition]")).find((x) => !x.paused);
    return a && Math.abs(a.currentTime + (+a.dataset.offsetMs || 0) / 1000 - t) < 1.5;
  }, at, { timeout: 15000 });
  log("a wrong word plays at", at, "s");
  await page.$$eval("audio", (as) => as.forEach((a) => a.pause()));
  await page.locator("#stt").screenshot({ path: `${SHOTS}/stt-grid.png` });

  // Report an STT issue from a user turn: it lands in the reports list with its clip.
  step = "report";
  await page.locator('li.turn[data-turn-index="2"] details.report summary').click();
  await page.locator('li.turn[data-turn-index="2"] textarea[name="expected_output"]').fill("My account number is four five six seven.");
  await page.locator('li.turn[data-turn-index="2"] select[name="issue_type"]').selectOption("missing_words");
  await page.locator('li.turn[data-turn-index="2"] details.report button[type=submit]').click();
  await page.waitForURL(/\/reports\?session_id=/);
  check(await page.locator("li.report-item audio[data-report-clip]").count() === 1, "the report's clip");
  await page.locator("li.report-item form[action$='/analyze'] button").click();
  await page.locator("li.report-item table.compact td").first().waitFor({ timeout: 30000 });

  // A batch from the sessions filter, with its progress until done.
  step = "batch";
  await page.goto(`${BASE}/?tenant_id=acme`, { waitUntil: "networkidle" });
  await page.locator("details.batch-start summary").click();
  await page.locator("details.batch-start button[type=submit]").click();
  await page.waitForURL(/\/batches\/[0-9a-f-]+$/);
  await page.locator("#job > p > .tag.completed").waitFor({ timeout: 60000 });
  await shot("batch");

  // Dark mode reads too.
  step = "dark mode";
  await page.emulateMedia({ colorScheme: "dark" });
  await page.goto(`${BASE}/sessions/${SESSION}`, { waitUntil: "networkidle" });
  await page.waitForFunction(() => document.querySelectorAll(".wave[data-peaks] > div").length >= 2, null, { timeout: 10000 });
  await shot("session-dark");
  await page.emulateMedia({ colorScheme: "light" });

  // Every other page renders without errors.
  // Dashboards: the fixture calls' charts are drawn (uPlot) beside their tables.
  step = "dashboards";
  await page.goto(BASE + "/dashboards?days=90", { waitUntil: "networkidle" });
  check(await page.locator(".chart .uplot").count() === 2, "two charts drawn");
  check(await page.locator("table.compact tbody tr td.num").count() > 0, "numbers beside them");
  await shot("dashboards", { fullPage: true });

  // Review: one key per field, Enter saves and the next call comes up.
  step = "review";
  await page.goto(BASE + "/review", { waitUntil: "networkidle" });
  check(await page.locator("fieldset[data-field]").count() === 10, "every reviewable field");
  await shot("review", { fullPage: true });
  await page.keyboard.press("y");
  await page.keyboard.press("y");
  await page.keyboard.press("n");
  await page.keyboard.type("-0.2");
  await page.locator("[data-review-form] button[type=submit]").click();
  await page.waitForURL(/\/review\?done=/);
  check(await page.locator("p.ok[role=status]").count() === 1, "the review was saved");

  for (const [name, path, sel] of [["batches", "/batches", "table.jobs"], ["reports", "/reports", "ul.reports"]]) {
    step = name;
    await page.goto(BASE + path, { waitUntil: "networkidle" });
    check(await page.locator(sel).count() >= 1, `${sel} on ${path}`);
    await shot(name, { fullPage: true });
  }

  // The live page shows a call published after it opened.
  step = "live";
  await page.goto(BASE + "/live", { waitUntil: "domcontentloaded" });
  await page.waitForTimeout(500);
  console.log("LIVE_READY");
  await page.locator(`tr[data-live-call="${LIVE_CALL}"]`).waitFor({ timeout: 30000 });
  await page.locator("[data-live-feed] li").first().waitFor({ timeout: 10000 });
  await shot("live");

  step = "console";
  check(consoleErrors.length === 0, "console errors:\n" + consoleErrors.join("\n"));

  // The connection is cut (the Rust side stops the proxy in front of the service, publishes a call
  // meanwhile, then brings it back): the page says so, reconnects with a renewed token and its last
  // event id, and shows the call it missed without a reload.
  step = "live-reconnect";
  const status = page.locator("[data-live-status]");
  // Every banner the page shows from here on ("Reconnected" clears itself after 4 s, which a busy
  // machine can take between two checks).
  await page.evaluate(() => {
    const el = document.querySelector("[data-live-status]");
    window.__banners = [];
    new MutationObserver(() => window.__banners.push(el.textContent)).observe(el, { childList: true, characterData: true, subtree: true });
  });
  console.log("LIVE_CUT");
  await page.waitForFunction(() => /reconnecting/i.test(document.querySelector("[data-live-status]")?.textContent || ""), null, { timeout: 20000 });
  await shot("live-reconnecting");
  await page.locator(`tr[data-live-call="${LIVE_CALL}-missed"]`).waitFor({ timeout: 40000 });
  await shot("live-reconnected");
  await page.waitForFunction(() => (window.__banners || []).some((t) => /reconnected/i.test(t)), null, { timeout: 10000 })
    .catch(async () => { throw new Error(`no reconnect banner; banners seen: ${JSON.stringify(await page.evaluate(() => window.__banners ?? "none: the page was reloaded"))}`); });
  check(await page.evaluate(() => window.__banners.some((t) => /missed events were replayed/i.test(t))), "the reconnect banner");
  // While the service was unreachable the browser reports the failed requests; nothing else.
  const unexpected = consoleErrors.filter((e) => !/ERR_CONNECTION|Failed to load resource|EventSource/i.test(e));
  check(unexpected.length === 0, "console errors during the reconnect:\n" + unexpected.join("\n"));
  console.log("BROWSER_OK");
} catch (e) {
  console.error("BROWSER_FAIL", e.message);
  // What the page showed when it failed, for whoever reads the CI log.
  if (page) {
    try {
      await page.screenshot({ path: `${SHOTS}/failure.png` });
      console.error(`at ${page.url()}: screenshot failure.png; banner: ${JSON.stringify(await page.locator("[data-live-status]").textContent({ timeout: 1000 }).catch(() => null))}`);
    } catch { /* the page is gone */ }
  }
  if (consoleErrors.length) console.error("console errors:\n" + consoleErrors.join("\n"));
  process.exitCode = 1;
} finally {
  await browser.close();
}
