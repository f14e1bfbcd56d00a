// An agent on the official OpenAI Agents SDK (@openai/agents, pinned in package-lock.json): a
// streamed run on the Responses API with three function tools, each an input a replay must serve
// as recorded: a file read, a subprocess (`date +%s%N`), and a 500 ms timer after which the tool
// answers with the time and a random UUID. Each tool's output goes back to the model, so a replay
// that serves another value sends another request. With `tracing`, the SDK's exporter runs too:
// its posts are refused (the testbench allows no other host) and it retries with backoff.
import { execSync } from "node:child_process";
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { Agent, run, tool, setTracingDisabled } from "@openai/agents";

const tracing = process.argv[2] === "tracing";
setTracingDisabled(!tracing);

const noArguments = { type: "object", properties: {}, required: [], additionalProperties: false };
const readNotes = tool({
  name: "read_notes",
  description: "Read the project's notes.",
  parameters: noArguments,
  strict: true,
  execute: async () => readFileSync("notes.txt", "utf8").trim(),
});
const runDate = tool({
  name: "run_date",
  description: "The system's time, from the date command.",
  parameters: noArguments,
  strict: true,
  execute: async () => execSync("date +%s%N").toString().trim(),
});
const waitThenTime = tool({
  name: "wait_then_time",
  description: "Wait half a second, then say the time and a fresh id.",
  parameters: noArguments,
  strict: true,
  execute: async () => {
    await new Promise((resolve) => setTimeout(resolve, 500));
    return `${new Date().toISOString()} ${randomUUID()}`;
  },
});

const agent = new Agent({
  name: "planner",
  instructions: "Use every tool once, then report what the last one said.",
  model: "standin-1",
  tools: [readNotes, runDate, waitThenTime],
});

const result = await run(agent, "What do the notes, the date and a short wait say?", { stream: true });
for await (const event of result) {
  if (event.type === "run_item_stream_event" && event.name === "tool_output") {
    console.log(`${event.item.rawItem.name}: ${event.item.output}`);
  }
}
await result.completed;
console.log(`final: ${result.finalOutput}`);
