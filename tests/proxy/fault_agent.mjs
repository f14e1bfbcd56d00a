// An agent on the official OpenAI Node SDK for `tapedeck replay --fault`: one chat completion
// (plain, or streamed with `stream` as its argument), the answer or the error it gave up with on
// stdout. The SDK retries rate limits, server errors, dropped connections and timeouts on its
// own, with a backoff, as it would in production.
import OpenAI from "openai";

const client = new OpenAI();
const streamed = process.argv[2] === "stream";
try {
  if (!streamed) {
    const plain = await client.chat.completions.create({
      model: "standin-1",
      messages: [{ role: "user", content: "Name one thing to test first." }],
    });
    console.log("plain:", plain.choices[0].message.content);
  } else {
    const stream = await client.chat.completions.create({
      model: "standin-1",
      stream: true,
      messages: [{ role: "user", content: "Say it again, streamed." }],
    });
    let text = "";
    let events = 0;
    let first = 0;
    for await (const chunk of stream) {
      if (events++ === 0) first = Date.now();
      text += chunk.choices[0]?.delta?.content ?? "";
    }
    // How long the events took to come, on the program's clock, to the tenth of a second.
    const spread = Math.round((Date.now() - first) / 100) / 10;
    console.log(`streamed (${events} events over ${spread} s):`, text);
  }
} catch (error) {
  console.log("gave up:", error.constructor.name, error.status ?? "");
}
