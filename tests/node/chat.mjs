// Drives the gateway with the official `openai` npm package, unchanged.
// Env: GATEWAY_BASE_URL (…/v1), GATEWAY_API_KEY, MODEL, MARKER.
// Prints one JSON object with what each call returned; exits non-zero on any error.
import OpenAI from "openai";

const client = new OpenAI({
  apiKey: process.env.GATEWAY_API_KEY,
  baseURL: process.env.GATEWAY_BASE_URL,
  maxRetries: 0,
  timeout: 60_000,
});
const model = process.env.MODEL;
const marker = process.env.MARKER;

async function main() {
  const plain = await client.chat.completions.create({
    model,
    messages: [{ role: "user", content: `hello from node ${marker}` }],
  });

  const stream = await client.chat.completions.create({
    model,
    messages: [{ role: "user", content: `stream from node ${marker}` }],
    stream: true,
    fake: { chunks: 4 },
  });
  const pieces = [];
  for await (const chunk of stream) {
    const piece = chunk.choices[0]?.delta?.content;
    if (piece) pieces.push(piece);
  }

  const tools = [
    {
      type: "function",
      function: {
        name: "lookup",
        description: "Look something up.",
        parameters: { type: "object", properties: { query: { type: "string" } }, required: ["query"] },
      },
    },
  ];
  const messages = [{ role: "user", content: `use the tool ${marker}` }];
  const first = await client.chat.completions.create({ model, messages, tools });
  const call = first.choices[0].message.tool_calls[0];
  messages.push(first.choices[0].message);
  messages.push({ role: "tool", tool_call_id: call.id, content: `found it ${marker}` });
  const second = await client.chat.completions.create({ model, messages, tools });

  const models = [];
  for await (const entry of client.models.list()) models.push(entry);

  console.log(
    JSON.stringify({
      plain: plain.choices[0].message.content,
      stream: pieces,
      toolName: call.function.name,
      toolArguments: JSON.parse(call.function.arguments),
      signature: call.extra_content?.google?.thought_signature ?? null,
      afterTool: second.choices[0].message.content,
      models: models.map((m) => ({ id: m.id, vertex_id: m.vertex_id })),
    }),
  );
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
