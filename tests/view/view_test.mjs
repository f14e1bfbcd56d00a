// tapedeck view in Debian's headless Chromium, driven by playwright-core: the example's tape, a
// replay marked against it, a `tapedeck run` and its replay drawn alike, and a 100,000-record
// tape. Asserts on the page's DOM (lanes, event
// count, a click opening a payload), saves screenshots, and reports the big page's first paint.
// Usage: node view_test.mjs TAPEDECK RECORD_HOST TAPE_GEN ARTIFACT_DIR
import { execFileSync } from "node:child_process";
import { mkdtempSync, mkdirSync, readFileSync, writeFileSync, rmSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const [tapedeck, recordHost, tapeGen, artifacts] = process.argv.slice(2);
if (!artifacts) {
  console.error("usage: node view_test.mjs TAPEDECK RECORD_HOST TAPE_GEN ARTIFACT_DIR");
  process.exit(2);
}
let chromium;
try {
  ({ chromium } = await import("playwright-core"));
} catch {
  console.error("playwright-core is missing: run scripts/install-deps.sh (npm ci in tests/view)");
  process.exit(1);
}
if (!existsSync("/usr/bin/chromium")) {
  console.error("/usr/bin/chromium is missing: run scripts/install-deps.sh");
  process.exit(1);
}

const work = mkdtempSync(join(tmpdir(), "tapedeck-view-"));
mkdirSync(artifacts, { recursive: true });
let passed = 0, failed = 0;
const check = (name, ok, detail = "") => {
  if (ok) { passed++; console.log(`ok: ${name}`); }
  else { failed++; console.log(`FAIL: ${name} ${detail}`); }
};
const run = (...args) => execFileSync(args[0], args.slice(1), { stdio: ["ignore", "pipe", "pipe"] });

// Chromium as the probe found it works here: no sandbox as root, nothing reaching the network.
const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const open = async (html) => {
  const page = await browser.newPage({ viewport: { width: 1400, height: 820 } });
  const errors = [];
  page.on("pageerror", (error) => errors.push(error.message));
  const requests = [];
  page.on("request", (request) => { if (!request.url().startsWith("file:")) requests.push(request.url()); });
  const started = Date.now();
  await page.goto("file://" + html);
  await page.waitForSelector('body[data-ready="true"]', { timeout: 60000 });
  return { page, errors, requests, readyMs: Date.now() - started };
};
// Clicks an event as a person would: record order, zoomed in (mouse wheel) until the events
// around it are wide enough to tell apart.
const clickEvent = async (page, role, seq) => {
  await page.click("#axis-seq");
  const locate = () => page.evaluate(([r, s]) => window.tapedeckView.locate(r, s), [role, seq]);
  let at = await locate();
  for (let i = 0; i < 60 && at.width < 8; ++i) {
    await page.mouse.move(at.x, at.y);
    await page.mouse.wheel(0, -120);
    at = await locate();
  }
  await page.mouse.click(at.x, at.y);
};

try {
  // 1. The example's tape.
  const tape = join(work, "agent.tape");
  run(recordHost, tape);
  run(tapedeck, "view", tape, "-o", join(work, "agent.html"));
  {
    const { page, errors, requests } = await open(join(work, "agent.html"));
    const lanes = await page.$$eval('.lane[data-tape="recorded"]', (ls) => ls.map((l) => l.dataset.kind));
    check("a lane per kind", JSON.stringify(lanes) === JSON.stringify(
        ["clock_read", "clock_sleep", "llm_call", "file_read", "file_write", "file_delete", "process_spawn"]),
        JSON.stringify(lanes));
    check("event count shown", (await page.textContent("#event-count")) === "17");
    check("no script errors", errors.length === 0, errors.join("; "));
    check("nothing fetched from the network", requests.length === 0, requests.join(" "));
    // seq 11 is the LLM call whose 6000-byte answer lives in the CAS sidecar.
    await clickEvent(page, "recorded", 11);
    check("a click opens the event", (await page.textContent("#details")).includes("seq 11 · llm_call"));
    const payload = await page.textContent('[data-payload="response"] pre');
    check("the CAS payload is embedded", payload === "x".repeat(6000), `got ${payload?.length} chars`);
    // seq 1's answer is inline JSON: shown folded as a tree.
    await clickEvent(page, "recorded", 1);
    check("inline JSON is shown as a tree",
          (await page.textContent('[data-payload="response"] .json')).includes("choices"));
    await page.screenshot({ path: join(artifacts, "view-example.png") });
    await page.close();
  }

  // 2. A replay with one changed prompt, marked against the recording.
  const replay = join(work, "replay.tape");
  const lines = readFileSync(tape, "utf8").split("\n");
  lines[7] = lines[7].replace(/"request_digest":"[0-9a-f]+"/, `"request_digest":"${"0".repeat(64)}"`);
  writeFileSync(replay, lines.join("\n"));
  run(tapedeck, "view", tape, "--against", replay, "--mode", "byte-identical", "-o", join(work, "compare.html"));
  {
    const { page, errors } = await open(join(work, "compare.html"));
    check("both timelines", (await page.$$('.track')).length === 2);
    check("one divergence listed", (await page.$$("#divergences li")).length === 1);
    await page.click("#divergences li");
    check("the divergence opens its record",
          (await page.getAttribute("#details [data-divergence]", "data-divergence")) === "llm_request_digest");
    check("no script errors (compare)", errors.length === 0, errors.join("; "));
    await page.screenshot({ path: join(artifacts, "view-compare.png") });
    await page.close();
  }

  // 3. A program recorded under `tapedeck run` and replayed: the replay is stamped in the
  // recording's time (a span where it ends, the replay's k-th record with the recording's k-th
  // stamps), so for an identical replay both lanes draw the first and last event and the sleep
  // at the same place, within a pixel.
  {
    const workspace = join(work, "ws");
    mkdirSync(workspace);
    writeFileSync(join(workspace, "in.txt"), "hello\n");
    const program = ["python3", "-c",
      "import time, subprocess; time.time(); time.sleep(0.3); print(open('in.txt').read()); " +
      "subprocess.run(['true']); time.sleep(0.2); print(time.time())"];
    const recorded = join(work, "aligned.tape"), replayed = join(work, "aligned-replay.tape");
    execFileSync(tapedeck, ["run", "--emit-tape", recorded, "--", ...program],
                 { cwd: workspace, stdio: ["ignore", "pipe", "pipe"] });
    execFileSync(tapedeck, ["replay", recorded, "--emit-tape", replayed, "--", ...program],
                 { cwd: workspace, stdio: ["ignore", "pipe", "pipe"] });
    run(tapedeck, "view", recorded, "--against", replayed, "-o", join(work, "aligned.html"));
    const records = readFileSync(recorded, "utf8").trim().split("\n").slice(1).map(JSON.parse);
    const sleeps = records.filter((r) => r.kind.kind === "clock_sleep").map((r) => r.seq);
    const { page, errors } = await open(join(work, "aligned.html"));
    check("the time axis is drawn", (await page.evaluate(() => window.tapedeckView.axis)) === "time");
    for (const seq of [records[0].seq, ...sleeps, records[records.length - 1].seq]) {
      const [a, b] = await page.evaluate((s) => [window.tapedeckView.locate("recorded", s),
                                                 window.tapedeckView.locate("replay", s)], seq);
      const left = (at) => at.x - Math.max(3, at.width) / 2;
      check(`seq ${seq} (${records[seq].kind.kind}) sits at the same place in both lanes`,
            a && b && Math.abs(left(a) - left(b)) <= 1 && Math.abs(a.width - b.width) <= 1,
            JSON.stringify([a, b]));
    }
    check("both sleeps were compared", sleeps.length === 2, String(sleeps.length));
    check("no script errors (aligned)", errors.length === 0, errors.join("; "));
    await page.screenshot({ path: join(artifacts, "view-aligned.png") });
    await page.close();
  }

  // 4. 100,000 records (the anchor's full mix: every kind, CAS payloads).
  const big = join(work, "big.tape");
  run(tapeGen, "100000", "1", big);
  run(tapedeck, "view", big, "-o", join(work, "big.html"));
  {
    const { page, errors, readyMs } = await open(join(work, "big.html"));
    const timing = await page.evaluate(() => ({
      fcp: performance.getEntriesByName("first-contentful-paint")[0]?.startTime,
      draw: window.tapedeckView.firstDrawMs,
      count: window.tapedeckView.eventCount,
      lanes: window.tapedeckView.lanes.length,
    }));
    check("100,000 events", timing.count === 100000 && (await page.textContent("#event-count")) === "100000");
    check("7 lanes", timing.lanes === 7);
    await clickEvent(page, "recorded", 50000);
    check("a click in the middle opens its event", (await page.textContent("#details")).includes("seq 50000"));
    check("no script errors (100k)", errors.length === 0, errors.join("; "));
    console.log(`100,000-record page: first contentful paint ${Math.round(timing.fcp)} ms, ` +
                `timeline drawn ${Math.round(timing.draw)} ms after its script started, ` +
                `ready ${readyMs} ms after navigation (reported, not asserted; target 2000 ms)`);
    await page.screenshot({ path: join(artifacts, "view-100k.png") });
    await page.close();
  }
} catch (error) {
  failed++;
  console.log(`FAIL: ${error.stack || error}`);
} finally {
  await browser.close();
  rmSync(work, { recursive: true, force: true });
}
console.log(`screenshots in ${artifacts}`);
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
