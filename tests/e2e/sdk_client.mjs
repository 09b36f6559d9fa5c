// The official TypeScript SDK (@anthropic-ai/sdk) as an HTTP client of the sidecar.
//
//   node sdk_client.mjs BASE_URL SCENARIO MODEL
//
// SCENARIO: create | stream | tools | tool_choice. Prints one JSON object on stdout with what the
// SDK returned (and, for streams, the event types in order); exits 1 with {"error": ...} when
// the SDK throws. NODE_PATH must point at the node_modules that hold @anthropic-ai/sdk (the e2e
// cache: scripts/e2e-setup.sh).
import { createRequire } from "node:module";

const require = createRequire(process.env.NODE_PATH + "/");
const sdk = require("@anthropic-ai/sdk");
const Anthropic = sdk.default ?? sdk.Anthropic ?? sdk;

const [baseURL, scenario, model] = process.argv.slice(2);
const client = new Anthropic({ baseURL, apiKey: "sk-e2e-caller", maxRetries: 0, timeout: 120_000 });

const weather = {
  name: "get_weather",
  description: "Current weather for a city.",
  input_schema: {
    type: "object",
    properties: { city: { type: "string" } },
    required: ["city"],
  },
};

async function run() {
  const maxTokens = Number(process.env.E2E_MAX_TOKENS ?? 40);
  if (scenario === "create") {
    const { data, response } = await client.messages
      .create({ model, max_tokens: maxTokens, messages: [{ role: "user", content: "hello there" }] })
      .withResponse();
    return { message: data, backend: response.headers.get("x-anyllm-backend") };
  }
  if (scenario === "stream") {
    const stream = client.messages.stream({
      model,
      max_tokens: maxTokens,
      messages: [{ role: "user", content: "one two three" }],
    });
    const types = [];
    let text = "";
    stream.on("streamEvent", (event) => types.push(event.type));
    stream.on("text", (delta) => (text += delta));
    const message = await stream.finalMessage();
    return { message, types, text };
  }
  if (scenario === "tools" || scenario === "tool_choice") {
    const messages = [{ role: "user", content: "What is the weather in Paris?" }];
    const tool_choice =
      scenario === "tool_choice" ? { type: "tool", name: "get_weather" } : undefined;
    const first = await client.messages.create({
      model,
      max_tokens: maxTokens,
      tools: [weather],
      tool_choice,
      messages,
    });
    const use = first.content.find((b) => b.type === "tool_use");
    if (!use) return { first };
    messages.push({ role: "assistant", content: first.content });
    messages.push({
      role: "user",
      content: [{ type: "tool_result", tool_use_id: use.id, content: "sunny, 21 C" }],
    });
    // Streamed this time: the SDK accumulates the answer from the events.
    const second = await client.messages
      .stream({ model, max_tokens: maxTokens, tools: [weather], messages })
      .finalMessage();
    return { first, second };
  }
  throw new Error(`unknown scenario ${scenario}`);
}

try {
  process.stdout.write(JSON.stringify(await run()) + "\n");
} catch (err) {
  process.stdout.write(
    JSON.stringify({ error: String(err), status: err?.status ?? null, body: err?.error ?? null }) +
      "\n",
  );
  process.exit(1);
}
