// The official openai npm package against `awares serve` (run by tests/test_serve_node.py).
// Reads AWARES_BASE_URL, AWARES_MODEL and AWARES_IMAGE (a data: URI); prints one JSON object of what it saw.
import OpenAI from "openai";

const client = new OpenAI({ baseURL: process.env.AWARES_BASE_URL, apiKey: "unused", maxRetries: 0 });
const request = {
  model: process.env.AWARES_MODEL,
  messages: [
    {
      role: "user",
      content: [
        { type: "image_url", image_url: { url: process.env.AWARES_IMAGE } },
        { type: "text", text: "What is written on the page?" },
      ],
    },
  ],
};
const seen = {};

const { data, response } = await client.chat.completions.create(request).withResponse();
seen.whole = {
  content: data.choices[0].message.content,
  usage: data.usage,
  awares: data.awares,
  rtrHeader: response.headers.get("x-awares-rtr"),
};

const stream = await client.chat.completions.create({
  ...request,
  stream: true,
  stream_options: { include_usage: true },
});
seen.stream = { text: "", deltas: 0, awares: null, usage: null };
for await (const chunk of stream) {
  const content = chunk.choices[0]?.delta?.content;
  if (content) {
    seen.stream.text += content;
    seen.stream.deltas += 1;
  }
  if (chunk.awares) seen.stream.awares = chunk.awares;
  if (chunk.usage) seen.stream.usage = chunk.usage;
}

try {
  await client.chat.completions.create({ ...request, awares: { policy: "oracle" } });
  seen.refused = null;
} catch (error) {
  seen.refused = { status: error.status, code: error.code, type: error.type };
}

console.log(JSON.stringify(seen));
