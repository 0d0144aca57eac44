// Recordings in a real browser: upload a two-channel call through the page's form (the bytes stream
// with a progress bar), follow it until it is analysed, then read the recorded call's page — both
// channels' waveforms on one time axis with the silence and the talk-over marked, the conversation
// metrics beside the diagnosis, the turns, the transcript versions — and switch the channel map.
// Started by tests/ui_browser.rs; screenshots go to $SHOTS.
import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";

const env = (k) => { const v = process.env[k]; if (v === undefined) throw new Error(`${k} not set`); return v; };
const BASE = env("BASE");
const FILE = env("RECORDING_FILE");
const TURNS = +env("TURNS");
const SHOTS = env("SHOTS");
mkdirSync(SHOTS, { recursive: true });

const consoleErrors = [];
let step = "start";
let page = null;
const check = (cond, what) => { if (!cond) throw new Error(`${step}: ${what}`); };
const log = (...a) => console.log(`[${step}]`, ...a);

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--mute-audio", "--autoplay-policy=no-user-gesture-required"],
});
try {
  const context = await browser.newContext({ viewport: { width: 1400, height: 1000 } });
  page = await context.newPage();
  page.on("console", (m) => { if (m.type() === "error") consoleErrors.push(`${page.url()}: ${m.text()}`); });
  page.on("pageerror", (e) => consoleErrors.push(`${page.url()}: ${e.message}`));
  const shot = async (name, opts = {}) => { await page.screenshot({ path: `${SHOTS}/${name}.png`, ...opts }); log("screenshot", name); };

  step = "upload";
  await page.goto(BASE + "/recordings", { waitUntil: "networkidle" });
  await page.setInputFiles('form[data-upload] input[name="file"]', FILE);
  await page.fill('form[data-upload] input[name="call_id"]', "browser-recording-1");
  await shot("recordings-upload");
  await page.click('form[data-upload] button[type="submit"]');
  await page.waitForURL(/\/recordings\/[0-9a-f-]{36}$/, { timeout: 30000 });
  log("uploaded, following", page.url());
  // The status page refreshes itself until the recording is analysed, then opens the session.
  step = "analysis";
  await page.waitForURL(/\/sessions\/[0-9a-f-]{36}/, { timeout: 90000 });
  await page.locator("section.recording svg.rec-wave").waitFor();
  check(await page.locator("svg.rec-wave path.ch-wave").count() === 2, "a waveform per channel");
  check(await page.locator("svg.rec-wave rect.silence").count() === 1, "the planted silence is marked");
  check(await page.locator("svg.rec-wave rect.talk-over").count() === 1, "the talk-over is marked");
  check(await page.locator("[data-turn-index]").count() === TURNS, `${TURNS} turns`);
  const metrics = await page.locator("[data-conversation-metrics]").innerText();
  check(/Talk time/.test(metrics) && /Dead air 15/.test(metrics), "conversation metrics: " + metrics);
  for (const code of ["dead_air", "talk_over", "long_monologue", "slow_response"]) {
    check(await page.locator(`[data-issue-code="${code}"]`).count() > 0, `the ${code} issue`);
  }
  check(await page.locator("[data-transcript-versions] tr[data-version]").count() === 1, "one transcript version");
  // ▶ on a turn plays the recording from that turn.
  const third = page.locator("li.turn[data-turn-index='2']");
  const start = +(await third.getAttribute("data-start-ms")) / 1000;
  await third.locator("[data-play-turn]").click();
  await page.waitForFunction((t) => {
    const a = document.querySelector("audio[data-rendition='recording']");
    return a && !a.paused && a.currentTime >= t - 0.2 && a.currentTime < t + 3;
  }, start, { timeout: 15000 }).catch(async () => {
    throw new Error("turn 2 did not play from the recording: at " + await page.evaluate(() => document.querySelector("audio[data-rendition='recording']")?.currentTime));
  });
  await page.evaluate(() => document.querySelector("audio[data-rendition='recording']").pause());
  await shot("recording-session");
  await page.locator("section.recording").screenshot({ path: `${SHOTS}/recording-panel.png` });

  step = "channel map";
  await page.locator("details.roles summary").click();
  await page.selectOption('details.roles select[name="channel_0"]', "agent");
  await page.selectOption('details.roles select[name="channel_1"]', "customer");
  await page.click('details.roles button[type="submit"]');
  await page.waitForURL(/\/sessions\/[0-9a-f-]{36}/, { timeout: 90000 });
  await page.waitForFunction(() => {
    const first = document.querySelector("[data-turn-index] .role");
    return first && first.textContent.trim() === "user";
  }, null, { timeout: 60000 }).catch(async () => { throw new Error("the turns did not swap roles: " + await page.locator("[data-turn-index] .role").first().innerText()); });
  check(/customer \/ agent|agent \/ customer/.test(await page.locator("details.roles summary").innerText()), "the map shown");

  step = "sessions list";
  await page.goto(BASE + "/?source=recording", { waitUntil: "networkidle" });
  check(await page.locator("tr[data-call-id='browser-recording-1'] .rec-tag").count() === 1, "the recorded call in the list, tagged");
  await page.goto(BASE + "/recordings", { waitUntil: "networkidle" });
  check(await page.locator("tr[data-recording-id][data-status='completed']").count() === 1, "the recording completed in the list");
  await shot("recordings");
  const unexpected = consoleErrors.filter((e) => !/Failed to load resource/i.test(e));
  check(unexpected.length === 0, "console errors:\n" + unexpected.join("\n"));
  console.log("BROWSER_OK");
} catch (e) {
  console.error("BROWSER_FAIL", e.message);
  if (page) {
    try { await page.screenshot({ path: `${SHOTS}/recordings-failure.png` }); console.error(`at ${page.url()}: screenshot recordings-failure.png`); } catch { /* gone */ }
  }
  if (consoleErrors.length) console.error("console errors:\n" + consoleErrors.join("\n"));
  process.exitCode = 1;
} finally {
  await browser.close();
}
