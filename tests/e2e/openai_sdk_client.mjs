// The official OpenAI Node SDK (npm `openai`) as a client of the sidecar's OpenAI door.
//
//   node openai_sdk_client.mjs BASE_URL SCENARIO CHAIN
//
// BASE_URL is the sidecar's http://host:port (the SDK is pointed at BASE_URL/v1); CHAIN goes in
// x-anyllm-chain. SCENARIO: create | stream | tools | cut. Prints one JSON object on stdout with
// what the SDK returned; exits 1 with {"error": ...} when it throws where it should not.
// NODE_PATH must point at the node_modules that hold `openai` (scripts/e2e-setup.sh openai-node).
import { createRequire } from "node:module";

const require = createRequire(process.env.NODE_PATH + "/");
const sdk = require("openai");
const OpenAI = sdk.default ?? sdk.OpenAI ?? sdk;

const [baseURL, scenario, chain] = process.argv.slice(2);
const client = new OpenAI({
  baseURL: `${baseURL}/v1`,
  apiKey: "sk-e2e-caller",
  maxRetries: 0,
  timeout: 120_000,
  defaultHeaders: { "x-anyllm-chain": chain },
});
const model = "gpt-e2e";
const weather = {
  type: "function",
  function: {
    name: "get_weather",
    description: "Current weather for a city.",
    parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
  },
};

async function streamed(params) {
  const stream = await client.chat.completions.create({ ...params, stream: true });
  const chunks = [];
  let text = "";
  const calls = {};
  for await (const chunk of stream) {
    chunks.push(chunk);
    for (const choice of chunk.choices) {
      text += choice.delta.content ?? "";
      for (const call of choice.delta.tool_calls ?? []) {
        const seen = (calls[call.index] ??= { id: call.id, name: "", arguments: "" });
        seen.name += call.function?.name ?? "";
        seen.arguments += call.function?.arguments ?? "";
      }
    }
  }
  const finish = chunks.flatMap((c) => c.choices).find((c) => c.finish_reason)?.finish_reason;
  const usage = chunks.filter((c) => c.choices.length === 0).map((c) => c.usage);
  return { text, calls: Object.values(calls), finish, usage, count: chunks.length };
}

async function run() {
  const hello = [{ role: "user", content: "hello there" }];
  if (scenario === "create") {
    const { data, response } = await client.chat.completions
      .create({ model, messages: hello, seed: 1 })
      .withResponse();
    return {
      completion: data,
      backend: response.headers.get("x-anyllm-backend"),
      degradation: response.headers.get("x-anyllm-degradation"),
    };
  }
  if (scenario === "stream") {
    return streamed({ model, messages: hello, stream_options: { include_usage: true } });
  }
  if (scenario === "tools") {
    const messages = [{ role: "user", content: "Weather in Paris and Rome?" }];
    const first = await streamed({ model, messages, tools: [weather] });
    messages.push({
      role: "assistant",
      content: null,
      tool_calls: first.calls.map((c) => ({
        id: c.id,
        type: "function",
        function: { name: c.name, arguments: c.arguments },
      })),
    });
    for (const call of first.calls) {
      messages.push({ role: "tool", tool_call_id: call.id, content: `sunny in ${call.arguments}` });
    }
    const second = await client.chat.completions.create({ model, messages, tools: [weather] });
    return { first, second };
  }
  if (scenario === "cut") {
    let text = "";
    try {
      const stream = await client.chat.completions.create({ model, messages: hello, stream: true });
      for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? "";
    } catch (err) {
      return { raised: err.constructor.name, isAPIError: err instanceof sdk.APIError, message: err.message, text };
    }
    return { raised: null, text };
  }
  throw new Error(`unknown scenario ${scenario}`);
}

run()
  .then((out) => console.log(JSON.stringify(out)))
  .catch((err) => {
    console.log(JSON.stringify({ error: String(err?.message ?? err), name: err?.constructor?.name }));
    process.exit(1);
  });
