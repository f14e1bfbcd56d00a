// Timers between streamed model calls, as an event-loop agent makes them (Node, libuv): four
// streamed chat completions over fetch's kept-alive connection, each followed by a timer of 0, 1,
// 10 or 500 ms, after which the program prints both clocks. With `chain`, a second chain of
// timers runs beside it the whole time, as a tracing exporter's does: it posts to an endpoint
// that refuses it (the testbench denies the connect), backs off 10, 20, 40 … 160 ms, and tries
// again. Every line it prints is what a replay must print again.
import { setTimeout as sleep } from "node:timers/promises";

const base = process.env.OPENAI_BASE_URL.replace(/\/$/, "");
const chain = process.argv[2] === "chain";
const clocks = () => `wall=${new Date().toISOString()} mono=${performance.now().toFixed(3)}`;

async function streamedCall(turn) {
  const answer = await fetch(`${base}/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${process.env.OPENAI_API_KEY}` },
    body: JSON.stringify({ model: "standin-1", stream: true,
      messages: [{ role: "user", content: `turn ${turn}: tell the next step of the plan` }] }),
  });
  let events = 0;
  for await (const piece of answer.body) events += new TextDecoder().decode(piece).split("data: ").length - 1;
  return events;
}

let stopped = false;
let attempts = 0;
async function exporter() {
  for (let backoff = 10; !stopped; backoff = Math.min(backoff * 2, 160)) {
    try {
      await fetch("http://127.0.0.1:9/v1/traces", { method: "POST", body: "{}" });
    } catch {}
    attempts++;
    await sleep(backoff);
  }
}

const exporting = chain ? exporter() : null;
for (const [turn, ms] of [0, 1, 10, 500].entries()) {
  const events = await streamedCall(turn);
  await sleep(ms);
  console.log(`turn ${turn}: ${events} events, after a ${ms} ms timer: ${clocks()}`);
}
stopped = true;
await exporting;
console.log(`done: ${clocks()}${chain ? `, the exporter tried ${attempts} times` : ""}`);
