// The official OpenAI Node SDK through tapedeck's LLM proxy: recorded against a stand-in
// upstream (streaming and not), then replayed with the upstream gone. Same answers both times,
// and the API key never on the tape.
// Usage: node openai_sdk_test.mjs PROXY_HELPER
import { spawn } from "node:child_process";
import { createServer } from "node:http";
import { mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";

const helper = process.argv[2];
if (!helper) {
  console.error("usage: node openai_sdk_test.mjs PROXY_HELPER");
  process.exit(2);
}
let OpenAI;
try {
  ({ default: OpenAI } = await import("openai"));
} catch {
  console.error("the openai package is missing: run scripts/install-deps.sh (npm ci in tests/proxy)");
  process.exit(1);
}
const KEY = "sk-test-NEVER-ON-TAPE";
const work = mkdtempSync(join(tmpdir(), "tapedeck-sdk-"));
let passed = 0, failed = 0;
const check = (name, ok, detail = "") => {
  if (ok) { passed++; console.log(`ok: ${name}`); } else { failed++; console.log(`FAIL: ${name} ${detail}`); }
};

// A stand-in OpenAI upstream: chat completions, plain or as server-sent events.
let upstreamAuth = "";
let answers = 0;
const upstream = createServer((request, response) => {
  let body = "";
  request.on("data", (chunk) => { body += chunk; });
  request.on("end", () => {
    upstreamAuth = request.headers.authorization || "";
    const n = ++answers;
    const wanted = JSON.parse(body);
    if (wanted.stream) {
      response.writeHead(200, { "content-type": "text/event-stream" });
      const words = ["Hello", " from", " stream ", String(n)];
      words.forEach((word, i) => {
        response.write(`data: ${JSON.stringify({ id: "c" + n, object: "chat.completion.chunk", created: 1,
          model: wanted.model, choices: [{ index: 0, delta: { content: word }, finish_reason: null }] })}\n\n`);
      });
      response.end("data: [DONE]\n\n");
      return;
    }
    response.writeHead(200, { "content-type": "application/json" });
    response.end(JSON.stringify({ id: "c" + n, object: "chat.completion", created: 1, model: wanted.model,
      choices: [{ index: 0, message: { role: "assistant", content: `plain answer ${n}` }, finish_reason: "stop" }],
      usage: { prompt_tokens: 1, completion_tokens: 3, total_tokens: 4 } }));
  });
});
await new Promise((resolve) => upstream.listen(0, "127.0.0.1", resolve));
const upstreamBase = `http://127.0.0.1:${upstream.address().port}`;

// Starts the helper and resolves with {port, finish()} once it listens.
function startProxy(args) {
  const child = spawn(helper, args, { stdio: ["pipe", "pipe", "inherit"] });
  const lines = createInterface({ input: child.stdout });
  return new Promise((resolve, reject) => {
    child.on("error", reject);
    lines.once("line", (line) => {
      const port = Number(line.split(" ")[1]);
      resolve({
        port,
        finish: () => new Promise((done) => { child.on("exit", done); child.stdin.end(); }),
      });
    });
  });
}

async function conversation(port) {
  const client = new OpenAI({ apiKey: KEY, baseURL: `http://127.0.0.1:${port}/v1`, maxRetries: 0 });
  const plain = await client.chat.completions.create({
    model: "gpt-test", messages: [{ role: "user", content: "Say something." }] });
  const stream = await client.chat.completions.create({
    model: "gpt-test", stream: true, messages: [{ role: "user", content: "Stream something." }] });
  const deltas = [];
  for await (const chunk of stream) deltas.push(chunk.choices[0]?.delta?.content ?? "");
  return { plain: plain.choices[0].message.content, deltas };
}

try {
  const tape = join(work, "sdk.tape");
  const recording = await startProxy(["record", tape, upstreamBase]);
  const recorded = await conversation(recording.port);
  check("record exit", (await recording.finish()) === 0);
  check("the upstream answered", recorded.plain === "plain answer 1", JSON.stringify(recorded));
  check("the stream came through event by event", recorded.deltas.join("|") === "Hello| from| stream |2",
        JSON.stringify(recorded.deltas));
  check("the key reached the upstream", upstreamAuth === `Bearer ${KEY}`, upstreamAuth);
  await new Promise((resolve) => upstream.close(resolve));  // replay has no upstream

  const replaying = await startProxy(["replay", tape, join(work, "replay.tape")]);
  const replayed = await conversation(replaying.port);
  check("replay exit", (await replaying.finish()) === 0);
  check("replay serves the same plain answer", replayed.plain === recorded.plain, JSON.stringify(replayed));
  check("replay streams the same events", JSON.stringify(replayed.deltas) === JSON.stringify(recorded.deltas),
        JSON.stringify(replayed.deltas));

  const onTape = [readFileSync(tape, "utf8"), ...readdirSync(tape + ".cas").map((n) => readFileSync(join(tape + ".cas", n), "utf8"))];
  check("the key is nowhere on the tape", onTape.every((text) => !text.includes("NEVER-ON-TAPE")));
  const replayTape = readFileSync(join(work, "replay.tape"), "utf8");
  check("the replay's tape holds both calls", (replayTape.match(/"llm_call"/g) || []).length === 2);
} catch (error) {
  failed++;
  console.log(`FAIL: ${error.stack || error}`);
} finally {
  rmSync(work, { recursive: true, force: true });
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
