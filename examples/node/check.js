// Interop checks for the Node example, run by scripts/interop.sh (see examples/README.md):
//
//   node examples/node/check.js [--proto DIR] --addr HOST:PORT NAME...
//
// The script scripts the fake upstream before each check (the expected upstream behaviour is in
// each function's comment). Prints PASS/FAIL lines and a closing "N passed, N failed" line.
'use strict';
const path = require('path');
const {
  ERROR_DOMAIN, grpc, connect, fromStruct, weatherRequest, callMetadata, first, create, stream, sidecarError,
  withEscapeHatch, describeBlock,
} = require('./client');

const LANG = 'node';
const PROMPT = `hello from ${LANG}`;
const ECHO = `echo: ${PROMPT}`;
let passed = 0;
let failed = 0;

function check(name, ok, detail) {
  if (ok) passed++; else failed++;
  console.log(`${ok ? 'PASS' : 'FAIL'} ${LANG} ${name} -- ${typeof detail === 'string' ? detail : JSON.stringify(detail)}`);
}
// Metadata as a plain object for messages, without the binary grpc-status-details-bin.
const mdObj = (md) => (md ? Object.fromEntries(Object.entries(md.getMap()).filter(([k]) => !k.endsWith('-bin'))) : null);
const firstText = (m) => ((m.content.find((b) => b.block === 'text') || {}).text || {}).text || '';
async function errorOf(promise) {
  try {
    await promise;
    return null;
  } catch (err) {
    if (err.code === undefined) throw err;
    return sidecarError(err);
  }
}
const describe = (e) => e && { code: e.codeName, message: e.message, reason: e.reason, info: e.info, retryDelayMs: e.retryDelayMs, trailers: mdObj(e.trailers) };

const checks = {
  // Upstream (Anthropic protocol): server_tool_use, web_search_tool_result, a "future_block",
  // text; stop reason model_context_window_exceeded. Sent: the escape hatch (extra, raw block).
  async servertools(client) {
    const metadata = callMetadata({ chain: 'native' });
    const { message: m, trailers } = await create(client, withEscapeHatch(weatherRequest(PROMPT)), { metadata, timeoutMs: 10000 });
    const c = m.content;
    check('server tool blocks typed', c.length === 4 && c[0].block === 'serverToolUse' &&
      c[0].serverToolUse.name === 'web_search' && c[1].block === 'webSearchToolResult' &&
      c[1].webSearchToolResult.toolUseId === 'srvtoolu_1' && c[2].block === 'raw' &&
      c[3].text.text === 'Sunny.' && m.usage.serverToolUse.webSearchRequests === 1, c.map(describeBlock));
    const raw = c.length > 2 && c[2].block === 'raw' ? JSON.parse(c[2].raw.json) : null;
    check('unknown block as raw JSON', raw !== null && raw.type === 'future_block' && raw.answer === 42, raw);
    check('new stop reason', m.stopReason === 'STOP_REASON_MODEL_CONTEXT_WINDOW_EXCEEDED' &&
      m.rawStopReason === 'model_context_window_exceeded' && first(trailers, 'x-anyllm-backend') === 'native',
    `${m.stopReason} ${m.rawStopReason} ${first(trailers, 'x-anyllm-backend')}`);
  },

  // Upstream: default answer. System prompt + tool, chain and request id in, backend out.
  async unary(client) {
    const metadata = callMetadata({ chain: 'default', requestId: 'interop-node-unary' });
    const { message: m, trailers } = await create(client, weatherRequest(PROMPT), { metadata, timeoutMs: 10000 });
    check('unary text', firstText(m) === ECHO, JSON.stringify(firstText(m)));
    check('unary fields', m.role === 'ROLE_ASSISTANT' && m.stopReason === 'STOP_REASON_END_TURN' &&
      m.usage.outputTokens > 0 && m.id !== '', `role=${m.role} stop=${m.stopReason} usage=${m.usage.outputTokens}`);
    check('unary metadata', first(trailers, 'x-anyllm-backend') === 'primary' &&
      first(trailers, 'x-request-id') === 'interop-node-unary', mdObj(trailers));
  },

  // Upstream: a get_weather tool call with {"city": "Paris", "days": 3}.
  async tools(client) {
    const { message: m } = await create(client, weatherRequest(PROMPT), { timeoutMs: 10000 });
    const uses = m.content.filter((b) => b.block === 'toolUse').map((b) => b.toolUse);
    const input = uses.length === 1 ? fromStruct(uses[0].input) : null;
    check('tool_use block', m.stopReason === 'STOP_REASON_TOOL_USE' && uses.length === 1 &&
      uses[0].name === 'get_weather' && uses[0].id !== '' && input.city === 'Paris' && input.days === 3,
    `stop=${m.stopReason} input=${JSON.stringify(input)}`);
  },

  // Upstream: one 503. The primary fails, the secondary answers.
  async fallback(client) {
    const { message: m, trailers } = await create(client, weatherRequest(PROMPT), { timeoutMs: 10000 });
    check('fallback', first(trailers, 'x-anyllm-backend') === 'secondary' &&
      first(trailers, 'x-anyllm-attempts') === '2' && firstText(m) === ECHO, mdObj(trailers));
  },

  // Upstream: default answer, streamed word by word.
  async stream(client) {
    const { events, headers } = await stream(client, weatherRequest(PROMPT), {
      metadata: callMetadata({ chain: 'default' }), timeoutMs: 10000,
    });
    console.log();
    const kinds = events.map((e) => e.event);
    const text = events.filter((e) => e.event === 'contentBlockDelta').map((e) => e.contentBlockDelta.textDelta).join('');
    check('stream text', text === ECHO, JSON.stringify(text));
    check('stream order', kinds.length >= 4 && kinds[0] === 'messageStart' && kinds[kinds.length - 1] === 'messageStop' &&
      kinds.indexOf('contentBlockStart') < kinds.indexOf('contentBlockDelta') && kinds.includes('messageDelta'), kinds);
    check('stream metadata', first(headers, 'x-anyllm-backend') === 'primary', mdObj(headers));
  },

  // Upstream: waits 5 s before answering. The 1 s deadline passes first.
  async deadline(client) {
    const t0 = Date.now();
    const e = await errorOf(create(client, weatherRequest(PROMPT), { timeoutMs: 1000 }));
    const ms = Date.now() - t0;
    check('deadline', e !== null && e.code === grpc.status.DEADLINE_EXCEEDED && ms < 3000, `after ${ms}ms: ${e && e.message}`);
  },

  // Upstream: 400 {"error": {"message": "bad", "type": "invalid_request_error"}}.
  async invalid(client) {
    const e = await errorOf(create(client, weatherRequest(PROMPT), { timeoutMs: 10000 }));
    check('invalid code', e !== null && e.code === grpc.status.INVALID_ARGUMENT, describe(e));
    check('invalid details', e !== null && e.domain === ERROR_DOMAIN && e.reason === 'UPSTREAM_HTTP_400' &&
      e.info.error_type === 'invalid_request_error' && first(e.trailers, 'x-anyllm-attempts') === '1' &&
      first(e.trailers, 'x-anyllm-fallback-exhausted') === '', describe(e));
  },

  // Upstream: 503 with retry-after: 2, twice. Both targets of the default chain fail.
  async exhausted(client) {
    const e = await errorOf(create(client, weatherRequest(PROMPT), { timeoutMs: 10000 }));
    check('exhausted code', e !== null && e.code === grpc.status.UNAVAILABLE, describe(e));
    check('exhausted details', e !== null && e.reason === 'FALLBACK_EXHAUSTED' && e.domain === ERROR_DOMAIN &&
      first(e.trailers, 'x-anyllm-fallback-exhausted') === 'true' && first(e.trailers, 'x-anyllm-attempts') === '2' &&
      e.retryDelayMs === 2000, describe(e));
  },

  // Upstream: one 503. x-anyllm-chain only-primary has no second target to fall back to.
  async chain(client) {
    const metadata = callMetadata({ chain: 'only-primary' });
    const e = await errorOf(create(client, weatherRequest(PROMPT), { metadata, timeoutMs: 10000 }));
    check('chain metadata', e !== null && e.code === grpc.status.UNAVAILABLE &&
      first(e.trailers, 'x-anyllm-chain') === 'only-primary' && first(e.trailers, 'x-anyllm-attempts') === '1' &&
      first(e.trailers, 'x-anyllm-fallback-exhausted') === 'true', describe(e));
  },

  // Upstream: sends 3 stream events, then stalls. The client cancels after the first text.
  async cancel(client) {
    let gotText = false;
    const e = await errorOf(stream(client, weatherRequest(PROMPT), {
      timeoutMs: 10000,
      onEvent: (event, call) => {
        if (event.event === 'contentBlockDelta' && !gotText) {
          gotText = true;
          call.cancel();
        }
      },
    }));
    console.log();
    check('cancel', gotText && e !== null && e.code === grpc.status.CANCELLED, e ? e.codeName : 'no error');
  },

  // Upstream: not called for an OpenAI-kind backend (the sidecar estimates).
  async count(client) {
    const { model, messages, system, tools, toolChoice } = weatherRequest(PROMPT);
    const { res, trailers } = await new Promise((resolve, reject) => {
      let res;
      const call = client.CountTokens({ model, messages, system, tools, toolChoice }, callMetadata({ chain: 'default' }),
        { deadline: Date.now() + 10000 }, (err, r) => { if (err) reject(err); else res = r; });
      call.on('status', (st) => { if (st.code === grpc.status.OK) resolve({ res, trailers: st.metadata }); });
    });
    check('count tokens', res.inputTokens > 0 && first(trailers, 'x-anyllm-backend') === 'primary',
      `input_tokens=${res.inputTokens} estimated=${res.estimated} ${JSON.stringify(mdObj(trailers))}`);
  },
};

async function main(argv) {
  let addr = '127.0.0.1:50051';
  let protoDir = path.join(__dirname, '..', '..', 'proto');
  const names = [];
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--addr') addr = argv[++i];
    else if (argv[i] === '--proto') protoDir = argv[++i];
    else if (checks[argv[i]]) names.push(argv[i]);
    else { console.error(`unknown check ${argv[i]} (one of ${Object.keys(checks).join(' ')})`); return 2; }
  }
  const client = connect(addr, protoDir);
  // Connected before the first check, so that a deadline measures the sidecar, not the dial.
  await new Promise((resolve) => client.waitForReady(Date.now() + 10000, (err) => {
    if (err) check('connect', false, String(err));
    resolve();
  }));
  for (const name of names) {
    try {
      await checks[name](client);
    } catch (err) { // an unexpected error is a failed check, not a crash
      check(name, false, String(err && err.stack ? err.stack.split('\n').slice(0, 3).join(' ') : err));
    }
  }
  client.close();
  console.log(`${passed} passed, ${failed} failed`);
  return failed === 0 ? 0 : 1;
}

main(process.argv.slice(2)).then((rc) => process.exit(rc), (e) => { console.error(e); process.exit(2); });
