// A small agent written against the official OpenAI Node SDK, for `tapedeck run`: the SDK reads
// OPENAI_BASE_URL (tapedeck's proxy) and OPENAI_API_KEY from the environment, as it would in
// production. One plain and one streamed chat completion; the answers go to stdout.
import OpenAI from "openai";

const client = new OpenAI();
const plain = await client.chat.completions.create({
  model: "standin-1",
  messages: [{ role: "user", content: "Name one thing to test first." }],
});
console.log("plain:", plain.choices[0].message.content);
const stream = await client.chat.completions.create({
  model: "standin-1",
  stream: true,
  messages: [{ role: "user", content: "Say it again, streamed." }],
});
let text = "";
let events = 0;
for await (const chunk of stream) {
  events++;
  text += chunk.choices[0]?.delta?.content ?? "";
}
console.log(`streamed (${events} events):`, text);
