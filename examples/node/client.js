// Call the anyllm sidecar over gRPC from Node: a unary message with a system prompt and a tool, a
// streamed message printed as it arrives, a deadline and metadata per call, and the sidecar's rich
// error details (google.rpc.ErrorInfo / RetryInfo).
//
//   npm install @grpc/grpc-js @grpc/proto-loader protobufjs
//   node examples/node/client.js [--addr 127.0.0.1:50051] [--chain default] [--proto proto]
//
// The service definition is loaded from the repository's proto/ at run time (@grpc/proto-loader),
// so there is no code generation step. Field names are camelCase (proto-loader's default), the
// same as in google.protobuf.Struct values (`stringValue`, `structValue`...), whose field names
// protobufjs keeps camelCase even with `keepCase: true`.
'use strict';
const path = require('path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const protobuf = require('protobufjs');

const ERROR_DOMAIN = 'anyllm.dev';

/** The MessagesService client constructor, loaded from proto/. */
function loadService(protoDir) {
  const definition = protoLoader.loadSync('anyllm/sidecar/v1/messages_service.proto', {
    includeDirs: [protoDir],
    longs: Number, // int64 -> number (the API has none today; token counts are int32)
    enums: String, // 'ROLE_USER', 'STOP_REASON_END_TURN'...
    defaults: true, // unset scalars read as '' / 0 / false, as in other languages
    oneofs: true, // a oneof's case name is set: event.event === 'contentBlockDelta'
  });
  return grpc.loadPackageDefinition(definition).anyllm.sidecar.v1.MessagesService;
}

/** A client on a plaintext channel (the sidecar listens on localhost inside the pod). */
function connect(addr, protoDir = path.join(__dirname, '..', '..', 'proto')) {
  const MessagesService = loadService(protoDir);
  return new MessagesService(addr, grpc.credentials.createInsecure());
}

// google.protobuf.Struct <-> plain JSON (proto-loader does not convert Struct by itself).
function toValue(v) {
  if (v === null || v === undefined) return { nullValue: 'NULL_VALUE' };
  if (typeof v === 'number') return { numberValue: v };
  if (typeof v === 'string') return { stringValue: v };
  if (typeof v === 'boolean') return { boolValue: v };
  if (Array.isArray(v)) return { listValue: { values: v.map(toValue) } };
  return { structValue: toStruct(v) };
}
function toStruct(obj) {
  return { fields: Object.fromEntries(Object.entries(obj).map(([k, v]) => [k, toValue(v)])) };
}
function fromValue(v) {
  switch (v.kind) { // the oneof's case name (oneofs: true)
    case 'numberValue': return v.numberValue;
    case 'stringValue': return v.stringValue;
    case 'boolValue': return v.boolValue;
    case 'listValue': return (v.listValue.values || []).map(fromValue);
    case 'structValue': return fromStruct(v.structValue);
    default: return null;
  }
}
function fromStruct(s) {
  return Object.fromEntries(Object.entries((s && s.fields) || {}).map(([k, v]) => [k, fromValue(v)]));
}

/** A request with a system prompt, one user turn and one tool. */
function weatherRequest(prompt) {
  return {
    model: 'claude-sonnet-4-5',
    maxTokens: 256,
    system: 'You are a weather bot.',
    messages: [{ role: 'ROLE_USER', content: [{ text: { text: prompt } }] }],
    tools: [{
      name: 'get_weather',
      description: 'Get the weather forecast for a city',
      inputSchema: toStruct({
        type: 'object',
        properties: { city: { type: 'string', description: 'City name' }, days: { type: 'integer', minimum: 1 } },
        required: ['city'],
      }),
    }],
    toolChoice: { type: 'TOOL_CHOICE_TYPE_AUTO' },
  };
}

/**
 * The escape hatch, for what the proto does not model yet: an extra top-level request field
 * (extraJson, merged into the request's JSON) and a block of a type the proto does not know (a
 * raw block: its JSON). An Anthropic upstream gets both as they are; a translating one names them
 * in x-anyllm-degradation.
 */
function withEscapeHatch(request) {
  const block = { type: 'tool_reference', tool_name: 'get_weather' };
  request.extraJson = JSON.stringify({ speed: 'fast' });
  request.messages[0].content.push({ raw: { type: block.type, json: JSON.stringify(block) } });
  return request;
}

/** One answer block: typed cases by their fields, any other by its raw JSON. */
function describeBlock(b) {
  switch (b.block) { // the oneof's case name (oneofs: true)
    case 'text': return `text: ${b.text.text}`;
    case 'serverToolUse': return `server tool ${b.serverToolUse.name}(${JSON.stringify(fromStruct(b.serverToolUse.input))})`;
    case 'webSearchToolResult': return `${fromValue(b.webSearchToolResult.content).length} web search result(s)`;
    case 'raw': return `${b.raw.type} (not in this proto): ${b.raw.json}`;
    default: return b.block;
  }
}

/** Call metadata: x-anyllm-chain picks a configured fallback chain, x-request-id tags logs. */
function callMetadata({ chain, requestId } = {}) {
  const md = new grpc.Metadata();
  if (chain) md.set('x-anyllm-chain', chain);
  if (requestId) md.set('x-request-id', requestId);
  return md;
}

/** The first value of a metadata key, as a string ('' when absent). */
const first = (md, key) => (md && md.get(key).length ? String(md.get(key)[0]) : '');

/**
 * CreateMessage with a deadline (the request's whole budget inside the sidecar, over every
 * fallback attempt). Resolves {message, trailers}; rejects with the ServiceError, whose
 * `.metadata` holds the trailers (x-anyllm-attempts, x-anyllm-fallback-exhausted...).
 */
function create(client, request, { metadata = new grpc.Metadata(), timeoutMs = 30000 } = {}) {
  return new Promise((resolve, reject) => {
    let message;
    const call = client.CreateMessage(request, metadata, { deadline: Date.now() + timeoutMs }, (err, res) => {
      if (err) reject(err);
      else message = res;
    });
    call.on('status', (status) => { if (status.code === grpc.status.OK) resolve({ message, trailers: status.metadata }); });
  });
}

/**
 * StreamMessage: prints text as it arrives and calls onEvent(event, call) for each event (call
 * `call.cancel()` to stop: the sidecar then cancels its upstream request at once). Resolves
 * {events, headers} when the stream ends OK; rejects with the ServiceError otherwise. The headers
 * (x-anyllm-backend...) come with the first event, once the answer has started.
 */
function stream(client, request, { metadata = new grpc.Metadata(), timeoutMs = 30000, onEvent } = {}) {
  return new Promise((resolve, reject) => {
    const events = [];
    let headers;
    const call = client.StreamMessage(request, metadata, { deadline: Date.now() + timeoutMs });
    call.on('metadata', (md) => { headers = md; });
    call.on('data', (event) => {
      events.push(event);
      if (event.event === 'contentBlockDelta' && event.contentBlockDelta.delta === 'textDelta') {
        process.stdout.write(event.contentBlockDelta.textDelta);
      }
      if (onEvent) onEvent(event, call);
    });
    call.on('error', reject); // a failure after the start is an error status, never a silent end
    call.on('end', () => resolve({ events, headers }));
  });
}

// google.rpc.Status and the two details the sidecar sends, declared inline (field numbers from
// googleapis' google/rpc/status.proto and error_details.proto) to decode grpc-status-details-bin.
const rpcRoot = protobuf.Root.fromJSON({
  nested: {
    google: {
      nested: {
        protobuf: {
          nested: {
            Any: { fields: { typeUrl: { type: 'string', id: 1 }, value: { type: 'bytes', id: 2 } } },
            Duration: { fields: { seconds: { type: 'int64', id: 1 }, nanos: { type: 'int32', id: 2 } } },
          },
        },
        rpc: {
          nested: {
            Status: {
              fields: {
                code: { type: 'int32', id: 1 },
                message: { type: 'string', id: 2 },
                details: { rule: 'repeated', type: 'google.protobuf.Any', id: 3 },
              },
            },
            ErrorInfo: {
              fields: {
                reason: { type: 'string', id: 1 },
                domain: { type: 'string', id: 2 },
                metadata: { keyType: 'string', type: 'string', id: 3 },
              },
            },
            RetryInfo: { fields: { retryDelay: { type: 'google.protobuf.Duration', id: 1 } } },
          },
        },
      },
    },
  },
});
const RpcStatus = rpcRoot.lookupType('google.rpc.Status');

/**
 * What a failed call tells: {code, codeName, message, reason, domain, info, retryDelayMs,
 * trailers}. `info` is ErrorInfo.metadata (error_type, backend, attempts...).
 */
function sidecarError(err) {
  const out = {
    code: err.code,
    codeName: Object.keys(grpc.status).find((k) => grpc.status[k] === err.code),
    message: err.details,
    reason: '',
    domain: '',
    info: {},
    retryDelayMs: null,
    trailers: err.metadata || new grpc.Metadata(),
  };
  const [bin] = out.trailers.get('grpc-status-details-bin');
  if (!bin) return out;
  for (const any of RpcStatus.decode(bin).details) {
    const typeName = any.typeUrl.slice(any.typeUrl.lastIndexOf('/') + 1);
    const type = rpcRoot.lookup(typeName);
    if (!type || !['google.rpc.ErrorInfo', 'google.rpc.RetryInfo'].includes(typeName)) continue;
    const detail = type.toObject(type.decode(any.value), { longs: Number, defaults: true });
    if (typeName === 'google.rpc.ErrorInfo') {
      Object.assign(out, { reason: detail.reason, domain: detail.domain, info: detail.metadata });
    } else {
      out.retryDelayMs = detail.retryDelay.seconds * 1000 + detail.retryDelay.nanos / 1e6;
    }
  }
  return out;
}

async function main(argv) {
  const arg = (name, dflt) => (argv.includes(name) ? argv[argv.indexOf(name) + 1] : dflt);
  const client = connect(arg('--addr', '127.0.0.1:50051'), arg('--proto', path.join(__dirname, '..', '..', 'proto')));
  const request = weatherRequest(arg('--prompt', "What's the weather in Paris?"));
  const metadata = callMetadata({ chain: arg('--chain'), requestId: 'example-node-1' });
  try {
    const { message, trailers } = await create(client, request, { metadata });
    console.log(`unary: backend=${first(trailers, 'x-anyllm-backend')} stop=${message.stopReason}`);
    for (const block of message.content) {
      if (block.block === 'text') console.log('  text:', block.text.text);
      if (block.block === 'toolUse') {
        const input = JSON.stringify(fromStruct(block.toolUse.input));
        console.log(`  tool_use: ${block.toolUse.name}(${input}) id=${block.toolUse.id}`);
      }
    }
    process.stdout.write('stream: ');
    const { headers } = await stream(client, request, { metadata });
    console.log(`\n  (answered by ${first(headers, 'x-anyllm-backend')})`);
    return 0;
  } catch (err) {
    if (err.code === undefined) throw err;
    const e = sidecarError(err);
    console.error(`error: ${e.codeName}: ${e.message} reason=${e.reason} info=${JSON.stringify(e.info)}`);
    if (e.retryDelayMs !== null) console.error(`  the sidecar suggests retrying after ${e.retryDelayMs} ms`);
    if (first(e.trailers, 'x-anyllm-fallback-exhausted') === 'true') console.error('  every backend of the chain failed');
    return 1;
  } finally {
    client.close();
  }
}

module.exports = {
  ERROR_DOMAIN, grpc, loadService, connect, toStruct, fromStruct, weatherRequest, callMetadata, first,
  create, stream, sidecarError, withEscapeHatch, describeBlock,
};

if (require.main === module) {
  main(process.argv.slice(2)).then((rc) => process.exit(rc), (e) => { console.error(e); process.exit(2); });
}
