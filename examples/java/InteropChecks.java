package dev.anyllm.examples;

import static dev.anyllm.examples.SidecarExample.ATTEMPTS;
import static dev.anyllm.examples.SidecarExample.BACKEND;
import static dev.anyllm.examples.SidecarExample.CHAIN;
import static dev.anyllm.examples.SidecarExample.ERROR_DOMAIN;
import static dev.anyllm.examples.SidecarExample.EXHAUSTED;
import static dev.anyllm.examples.SidecarExample.REQUEST_ID;

import com.google.protobuf.InvalidProtocolBufferException;
import com.google.protobuf.Struct;
import com.google.protobuf.Value;
import com.google.protobuf.util.JsonFormat;
import dev.anyllm.examples.SidecarExample.SidecarError;
import dev.anyllm.sidecar.v1.ContentBlock;
import dev.anyllm.sidecar.v1.CountTokensRequest;
import dev.anyllm.sidecar.v1.CountTokensResponse;
import dev.anyllm.sidecar.v1.CreateMessageRequest;
import dev.anyllm.sidecar.v1.Message;
import dev.anyllm.sidecar.v1.MessagesServiceGrpc.MessagesServiceBlockingStub;
import dev.anyllm.sidecar.v1.Role;
import dev.anyllm.sidecar.v1.StopReason;
import dev.anyllm.sidecar.v1.StreamEvent;
import dev.anyllm.sidecar.v1.ToolUseBlock;
import io.grpc.Context;
import io.grpc.ManagedChannel;
import io.grpc.Metadata;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;

/**
 * Interop checks for the Java example, run by scripts/interop.sh (see examples/README.md):
 * {@code java dev.anyllm.examples.InteropChecks --addr HOST:PORT NAME...}. The script scripts the
 * fake upstream before each check (the expected behaviour is in each method's comment). Prints
 * PASS/FAIL lines and a closing "N passed, N failed" line.
 */
public final class InteropChecks {
  static final String LANG = "java";
  static final String PROMPT = "hello from " + LANG;
  static final String ECHO = "echo: " + PROMPT;
  static int passed;
  static int failed;

  private final ManagedChannel channel;
  private final AtomicReference<Metadata> headers = new AtomicReference<>();
  private final AtomicReference<Metadata> trailers = new AtomicReference<>();

  InteropChecks(ManagedChannel channel) {
    this.channel = channel;
  }

  static void check(String name, boolean ok, Object detail) {
    if (ok) passed++; else failed++;
    System.out.println((ok ? "PASS " : "FAIL ") + LANG + " " + name + " -- " + detail);
  }

  MessagesServiceBlockingStub stub(String chain, String requestId) {
    headers.set(null);
    trailers.set(null);
    return SidecarExample.stub(channel, chain, requestId, headers, trailers);
  }

  static String firstText(Message m) {
    for (ContentBlock b : m.getContentList()) {
      if (b.hasText()) return b.getText().getText();
    }
    return "";
  }

  static CreateMessageRequest request() {
    return SidecarExample.weatherRequest(PROMPT);
  }

  static SidecarError errorOf(Runnable call) {
    try {
      call.run();
      return null;
    } catch (StatusRuntimeException e) {
      return SidecarError.from(e);
    }
  }

  /** Upstream: default answer. System prompt + tool, chain and request id in, backend out. */
  void unary() {
    Message m = stub("default", "interop-java-unary").withDeadlineAfter(10, TimeUnit.SECONDS)
        .createMessage(request());
    Metadata t = trailers.get();
    check("unary text", firstText(m).equals(ECHO), firstText(m));
    check("unary fields", m.getRole() == Role.ROLE_ASSISTANT
        && m.getStopReason() == StopReason.STOP_REASON_END_TURN
        && m.getUsage().getOutputTokens() > 0 && !m.getId().isEmpty(),
        "role=" + m.getRole() + " stop=" + m.getStopReason() + " usage=" + m.getUsage().getOutputTokens());
    check("unary metadata", "primary".equals(t.get(BACKEND))
        && "interop-java-unary".equals(t.get(REQUEST_ID)), t);
  }

  /** Upstream: a get_weather tool call with {"city": "Paris", "days": 3}. */
  void tools() {
    Message m = stub(null, null).withDeadlineAfter(10, TimeUnit.SECONDS).createMessage(request());
    List<ToolUseBlock> uses = new ArrayList<>();
    for (ContentBlock b : m.getContentList()) {
      if (b.getBlockCase() == ContentBlock.BlockCase.TOOL_USE) uses.add(b.getToolUse());
    }
    boolean ok = m.getStopReason() == StopReason.STOP_REASON_TOOL_USE && uses.size() == 1;
    Struct input = ok ? uses.get(0).getInput() : Struct.getDefaultInstance();
    ok = ok && uses.get(0).getName().equals("get_weather") && !uses.get(0).getId().isEmpty()
        && input.getFieldsOrThrow("city").getStringValue().equals("Paris")
        && input.getFieldsOrThrow("days").getNumberValue() == 3.0;
    check("tool_use block", ok, "stop=" + m.getStopReason() + " input="
        + input.getFieldsMap().toString().replace("\n", " "));
  }

  /** Upstream: one 503. The primary fails, the secondary answers. */
  void fallback() {
    Message m = stub(null, null).withDeadlineAfter(10, TimeUnit.SECONDS).createMessage(request());
    Metadata t = trailers.get();
    check("fallback", "secondary".equals(t.get(BACKEND)) && "2".equals(t.get(ATTEMPTS))
        && firstText(m).equals(ECHO), t);
  }

  /** Upstream: default answer, streamed word by word. */
  void stream() {
    List<StreamEvent.EventCase> kinds = new ArrayList<>();
    StringBuilder text = new StringBuilder();
    SidecarExample.stream(stub("default", null), request(), Duration.ofSeconds(10), ev -> {
      kinds.add(ev.getEventCase());
      if (ev.hasContentBlockDelta()) text.append(ev.getContentBlockDelta().getTextDelta());
      return true;
    });
    System.out.println();
    int n = kinds.size();
    check("stream text", text.toString().equals(ECHO), text);
    check("stream order", n >= 4 && kinds.get(0) == StreamEvent.EventCase.MESSAGE_START
        && kinds.get(n - 1) == StreamEvent.EventCase.MESSAGE_STOP
        && kinds.indexOf(StreamEvent.EventCase.CONTENT_BLOCK_START)
            < kinds.indexOf(StreamEvent.EventCase.CONTENT_BLOCK_DELTA)
        && kinds.contains(StreamEvent.EventCase.MESSAGE_DELTA), kinds);
    Metadata h = headers.get();
    check("stream metadata", h != null && "primary".equals(h.get(BACKEND)), h);
  }

  /** Upstream: waits 5 s before answering. The 1 s deadline passes first. */
  void deadline() {
    long t0 = System.nanoTime();
    SidecarError e = errorOf(() -> stub(null, null).withDeadlineAfter(1, TimeUnit.SECONDS)
        .createMessage(request()));
    long ms = (System.nanoTime() - t0) / 1_000_000;
    check("deadline", e != null && e.code == Status.Code.DEADLINE_EXCEEDED && ms < 3000,
        "after " + ms + "ms: " + e);
  }

  /** Upstream: 400 {"error": {"message": "bad", "type": "invalid_request_error"}}. */
  void invalid() {
    SidecarError e = errorOf(() -> stub(null, null).withDeadlineAfter(10, TimeUnit.SECONDS)
        .createMessage(request()));
    check("invalid code", e != null && e.code == Status.Code.INVALID_ARGUMENT, e);
    check("invalid details", e != null && ERROR_DOMAIN.equals(e.domain)
        && "UPSTREAM_HTTP_400".equals(e.reason)
        && "invalid_request_error".equals(e.info.get("error_type"))
        && "1".equals(e.trailers.get(ATTEMPTS)) && e.trailers.get(EXHAUSTED) == null,
        e == null ? null : e.info + " " + e.trailers);
  }

  /** Upstream: 503 with retry-after: 2, twice. Both targets of the default chain fail. */
  void exhausted() {
    SidecarError e = errorOf(() -> stub(null, null).withDeadlineAfter(10, TimeUnit.SECONDS)
        .createMessage(request()));
    check("exhausted code", e != null && e.code == Status.Code.UNAVAILABLE, e);
    check("exhausted details", e != null && "FALLBACK_EXHAUSTED".equals(e.reason)
        && ERROR_DOMAIN.equals(e.domain) && "true".equals(e.trailers.get(EXHAUSTED))
        && "2".equals(e.trailers.get(ATTEMPTS)) && Duration.ofSeconds(2).equals(e.retryDelay),
        e == null ? null : e.info + " retry=" + e.retryDelay + " " + e.trailers);
  }

  /** Upstream: one 503. x-anyllm-chain only-primary has no second target to fall back to. */
  void chain() {
    SidecarError e = errorOf(() -> stub("only-primary", null)
        .withDeadlineAfter(10, TimeUnit.SECONDS).createMessage(request()));
    check("chain metadata", e != null && e.code == Status.Code.UNAVAILABLE
        && "only-primary".equals(e.trailers.get(CHAIN)) && "1".equals(e.trailers.get(ATTEMPTS))
        && "true".equals(e.trailers.get(EXHAUSTED)), e == null ? null : e.trailers);
  }

  /** Upstream: sends 3 stream events, then stalls. The client cancels after the first text. */
  void cancel() {
    Context.CancellableContext ctx = Context.current().withCancellation();
    Context previous = ctx.attach();
    boolean gotText = false;
    Status status = null;
    try {
      Iterator<StreamEvent> events = stub(null, null).withDeadlineAfter(10, TimeUnit.SECONDS)
          .streamMessage(request());
      while (!gotText && events.hasNext()) gotText = events.next().hasContentBlockDelta();
      ctx.cancel(null); // cancels the call: the sidecar cancels its upstream request
      // Messages that arrived before the cancel are still handed out; then CANCELLED is thrown.
      for (int i = 0; i < 1000 && events.hasNext(); i++) events.next();
    } catch (StatusRuntimeException e) {
      status = e.getStatus();
    } finally {
      ctx.detach(previous);
    }
    check("cancel", gotText && status != null && status.getCode() == Status.Code.CANCELLED, status);
  }

  /** Upstream: not called for an OpenAI-kind backend (the sidecar estimates). */
  void count() {
    CreateMessageRequest r = request();
    CountTokensResponse res = stub("default", null).withDeadlineAfter(10, TimeUnit.SECONDS)
        .countTokens(CountTokensRequest.newBuilder().setModel(r.getModel())
            .addAllMessages(r.getMessagesList()).setSystem(r.getSystem())
            .addAllTools(r.getToolsList()).setToolChoice(r.getToolChoice()).build());
    Metadata t = trailers.get();
    check("count tokens", res.getInputTokens() > 0 && "primary".equals(t.get(BACKEND)),
        "input_tokens=" + res.getInputTokens() + " estimated=" + res.getEstimated() + " " + t);
  }

  /**
   * Upstream (Anthropic protocol): server_tool_use, web_search_tool_result, a "future_block",
   * text; stop reason model_context_window_exceeded. Sent: the escape hatch (extra field, raw block).
   */
  void servertools() {
    Message m = stub("native", null).withDeadlineAfter(10, TimeUnit.SECONDS)
        .createMessage(SidecarExample.withEscapeHatch(request()));
    Metadata t = trailers.get();
    List<String> described = new ArrayList<>();
    for (ContentBlock b : m.getContentList()) described.add(SidecarExample.describeBlock(b));
    boolean ok = m.getContentCount() == 4
        && m.getContent(0).getServerToolUse().getName().equals("web_search")
        && m.getContent(1).getWebSearchToolResult().getToolUseId().equals("srvtoolu_1")
        && m.getContent(2).getBlockCase() == ContentBlock.BlockCase.RAW
        && m.getContent(3).getText().getText().equals("Sunny.")
        && m.getUsage().getServerToolUse().getWebSearchRequests() == 1;
    check("server tool blocks typed", ok, described);
    Struct.Builder raw = Struct.newBuilder();
    if (m.getContentCount() > 2 && m.getContent(2).hasRaw()) {
      try {
        JsonFormat.parser().merge(m.getContent(2).getRaw().getJson(), raw);
      } catch (InvalidProtocolBufferException e) {
        check("unknown block as raw JSON", false, e);
        return;
      }
    }
    check("unknown block as raw JSON",
        raw.getFieldsOrDefault("type", Value.getDefaultInstance()).getStringValue().equals("future_block")
            && raw.getFieldsOrDefault("answer", Value.getDefaultInstance()).getNumberValue() == 42,
        raw.build().toString().replace("\n", " "));
    check("new stop reason", m.getStopReason() == StopReason.STOP_REASON_MODEL_CONTEXT_WINDOW_EXCEEDED
        && m.getRawStopReason().equals("model_context_window_exceeded") && "native".equals(t.get(BACKEND)),
        m.getStopReason() + " " + m.getRawStopReason() + " " + t.get(BACKEND));
  }

  public static void main(String[] args) throws Exception {
    String addr = "127.0.0.1:50051";
    List<String> names = new ArrayList<>();
    for (int i = 0; i < args.length; i++) {
      if (args[i].equals("--addr") && i + 1 < args.length) addr = args[++i];
      else names.add(args[i]);
    }
    ManagedChannel channel = SidecarExample.connect(addr);
    InteropChecks checks = new InteropChecks(channel);
    try {
      // Connected before the first check, so that a deadline measures the sidecar, not the JVM.
      if (!SidecarExample.awaitReady(channel, Duration.ofSeconds(10))) check("connect", false, addr);
      for (String name : names) {
        try {
          switch (name) {
            case "unary": checks.unary(); break;
            case "tools": checks.tools(); break;
            case "fallback": checks.fallback(); break;
            case "stream": checks.stream(); break;
            case "deadline": checks.deadline(); break;
            case "invalid": checks.invalid(); break;
            case "exhausted": checks.exhausted(); break;
            case "chain": checks.chain(); break;
            case "cancel": checks.cancel(); break;
            case "count": checks.count(); break;
            case "servertools": checks.servertools(); break;
            default:
              System.err.println("unknown check " + name);
              System.exit(2);
          }
        } catch (RuntimeException e) { // an unexpected error is a failed check, not a crash
          check(name, false, e);
        }
      }
    } finally {
      channel.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
    }
    System.out.println(passed + " passed, " + failed + " failed");
    System.exit(failed == 0 ? 0 : 1);
  }
}
