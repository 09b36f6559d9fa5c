package dev.anyllm.examples;

import com.google.protobuf.InvalidProtocolBufferException;
import com.google.protobuf.Struct;
import com.google.protobuf.util.JsonFormat;
import com.google.rpc.ErrorInfo;
import com.google.rpc.RetryInfo;
import dev.anyllm.sidecar.v1.ContentBlock;
import dev.anyllm.sidecar.v1.ContentBlockDeltaEvent;
import dev.anyllm.sidecar.v1.CreateMessageRequest;
import dev.anyllm.sidecar.v1.InputMessage;
import dev.anyllm.sidecar.v1.Message;
import dev.anyllm.sidecar.v1.MessagesServiceGrpc;
import dev.anyllm.sidecar.v1.RawJson;
import dev.anyllm.sidecar.v1.Role;
import dev.anyllm.sidecar.v1.StreamEvent;
import dev.anyllm.sidecar.v1.TextBlock;
import dev.anyllm.sidecar.v1.Tool;
import dev.anyllm.sidecar.v1.ToolChoice;
import dev.anyllm.sidecar.v1.ToolChoiceType;
import io.grpc.ConnectivityState;
import io.grpc.ManagedChannel;
import io.grpc.ManagedChannelBuilder;
import io.grpc.Metadata;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.protobuf.StatusProto;
import io.grpc.stub.MetadataUtils;
import java.time.Duration;
import java.util.Collections;
import java.util.Iterator;
import java.util.Map;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;
import java.util.function.Predicate;

/**
 * Calls the anyllm sidecar over gRPC: a unary message with a system prompt and a tool, a streamed
 * message printed as it arrives, a deadline and metadata per call, and the sidecar's rich error
 * details (google.rpc.ErrorInfo / RetryInfo).
 *
 * <p>Stubs: generate them from the repository's proto/ with protoc + protoc-gen-grpc-java (or the
 * protobuf Maven/Gradle plugin pointed at proto/): package {@code dev.anyllm.sidecar.v1}. Runtime:
 * grpc-netty (or grpc-netty-shaded), grpc-protobuf, grpc-stub, protobuf-java-util (JsonFormat) and
 * com.google.api.grpc:proto-google-common-protos (com.google.rpc.*). Written against grpc-java
 * 1.41 (Debian 12); newer versions work unchanged.
 *
 * <pre>java dev.anyllm.examples.SidecarExample [127.0.0.1:50051] [chain]</pre>
 */
public final class SidecarExample {
  /** google.rpc.ErrorInfo.domain of every error the sidecar returns. */
  public static final String ERROR_DOMAIN = "anyllm.dev";

  static final Metadata.Key<String> CHAIN = key("x-anyllm-chain");
  static final Metadata.Key<String> REQUEST_ID = key("x-request-id");
  static final Metadata.Key<String> BACKEND = key("x-anyllm-backend");
  static final Metadata.Key<String> ATTEMPTS = key("x-anyllm-attempts");
  static final Metadata.Key<String> EXHAUSTED = key("x-anyllm-fallback-exhausted");

  static Metadata.Key<String> key(String name) {
    return Metadata.Key.of(name, Metadata.ASCII_STRING_MARSHALLER);
  }

  private SidecarExample() {}

  /** A plaintext channel to the sidecar (it listens on localhost inside the pod). */
  public static ManagedChannel connect(String target) {
    return ManagedChannelBuilder.forTarget(target).usePlaintext().build();
  }

  /**
   * Connects now and waits until the channel is READY (a channel connects lazily, on its first
   * call, whose deadline then also pays for the connection and, in a fresh JVM, netty's start-up).
   */
  public static boolean awaitReady(ManagedChannel channel, Duration timeout)
      throws InterruptedException {
    long end = System.nanoTime() + timeout.toNanos();
    ConnectivityState state = channel.getState(true);
    while (state != ConnectivityState.READY && System.nanoTime() < end) {
      CountDownLatch changed = new CountDownLatch(1);
      channel.notifyWhenStateChanged(state, changed::countDown);
      changed.await(end - System.nanoTime(), TimeUnit.NANOSECONDS);
      state = channel.getState(true);
    }
    return state == ConnectivityState.READY;
  }

  /** A request with a system prompt, one user turn and one tool. */
  public static CreateMessageRequest weatherRequest(String prompt) {
    Struct.Builder schema = Struct.newBuilder();
    try { // JSON Schema as google.protobuf.Struct: JsonFormat (protobuf-java-util) parses it
      JsonFormat.parser().merge("{\"type\": \"object\", \"properties\": {"
          + "\"city\": {\"type\": \"string\", \"description\": \"City name\"},"
          + "\"days\": {\"type\": \"integer\", \"minimum\": 1}}, \"required\": [\"city\"]}", schema);
    } catch (InvalidProtocolBufferException e) {
      throw new IllegalArgumentException(e);
    }
    return CreateMessageRequest.newBuilder()
        .setModel("claude-sonnet-4-5")
        .setMaxTokens(256)
        .setSystem("You are a weather bot.")
        .addMessages(InputMessage.newBuilder()
            .setRole(Role.ROLE_USER)
            .addContent(ContentBlock.newBuilder().setText(TextBlock.newBuilder().setText(prompt))))
        .addTools(Tool.newBuilder()
            .setName("get_weather")
            .setDescription("Get the weather forecast for a city")
            .setInputSchema(schema))
        .setToolChoice(ToolChoice.newBuilder().setType(ToolChoiceType.TOOL_CHOICE_TYPE_AUTO))
        .build();
  }

  /**
   * The escape hatch, for what the proto does not model yet: an extra top-level request field
   * ({@code extra_json}, merged into the request's JSON) and a block of a type the proto does not
   * know (a {@code raw} block: its JSON). An Anthropic upstream gets both as they are; a
   * translating one names them in x-anyllm-degradation.
   */
  public static CreateMessageRequest withEscapeHatch(CreateMessageRequest request) {
    CreateMessageRequest.Builder b = request.toBuilder().setExtraJson("{\"speed\": \"fast\"}");
    b.getMessagesBuilder(0).addContent(ContentBlock.newBuilder().setRaw(RawJson.newBuilder()
        .setType("tool_reference")
        .setJson("{\"type\": \"tool_reference\", \"tool_name\": \"get_weather\"}")));
    return b.build();
  }

  /** One answer block: typed cases by their fields, any other by its raw JSON. */
  public static String describeBlock(ContentBlock b) {
    switch (b.getBlockCase()) {
      case TEXT:
        return "text: " + b.getText().getText();
      case SERVER_TOOL_USE:
        return "server tool " + b.getServerToolUse().getName();
      case WEB_SEARCH_TOOL_RESULT:
        return b.getWebSearchToolResult().getContent().getListValue().getValuesCount()
            + " web search result(s)";
      case RAW:
        return b.getRaw().getType() + " (not in this proto): " + b.getRaw().getJson();
      default:
        return b.getBlockCase().toString();
    }
  }

  /**
   * A stub that sends {@code x-anyllm-chain} (a configured fallback chain; null: routed by model)
   * and {@code x-request-id} (null: the sidecar makes one), and captures the response metadata:
   * the headers of a stream (sent with its first event) and the trailers of a unary call or of any
   * error (x-anyllm-backend, x-anyllm-attempts, x-anyllm-fallback-exhausted...).
   */
  public static MessagesServiceGrpc.MessagesServiceBlockingStub stub(ManagedChannel channel,
      String chain, String requestId, AtomicReference<Metadata> headers,
      AtomicReference<Metadata> trailers) {
    Metadata out = new Metadata();
    if (chain != null) out.put(CHAIN, chain);
    if (requestId != null) out.put(REQUEST_ID, requestId);
    return MessagesServiceGrpc.newBlockingStub(channel).withInterceptors(
        MetadataUtils.newAttachHeadersInterceptor(out),
        MetadataUtils.newCaptureMetadataInterceptor(headers, trailers));
  }

  /**
   * Streams a message, printing text as it arrives; {@code onEvent} returning false stops early.
   * The deadline is the request's whole budget inside the sidecar, over every fallback attempt. A
   * failure after the start ends the stream with a StatusRuntimeException, never a silent end.
   * To cancel from another thread, run this inside a {@code Context.CancellableContext}.
   */
  public static void stream(MessagesServiceGrpc.MessagesServiceBlockingStub stub,
      CreateMessageRequest request, Duration deadline, Predicate<StreamEvent> onEvent) {
    Iterator<StreamEvent> events = stub.withDeadlineAfter(deadline.toMillis(), TimeUnit.MILLISECONDS)
        .streamMessage(request);
    while (events.hasNext()) {
      StreamEvent event = events.next();
      if (event.getEventCase() == StreamEvent.EventCase.CONTENT_BLOCK_DELTA
          && event.getContentBlockDelta().getDeltaCase() == ContentBlockDeltaEvent.DeltaCase.TEXT_DELTA) {
        System.out.print(event.getContentBlockDelta().getTextDelta());
        System.out.flush();
      }
      if (onEvent != null && !onEvent.test(event)) {
        return; // leaving the iterator unfinished: cancel the call's Context to free it at once
      }
    }
  }

  /** What a failed call tells: its status, the sidecar's ErrorInfo and RetryInfo, the trailers. */
  public static final class SidecarError {
    public final Status.Code code;
    public final String message;
    public String reason = ""; // e.g. "FALLBACK_EXHAUSTED", "UPSTREAM_HTTP_400"
    public String domain = ""; // "anyllm.dev"
    public Map<String, String> info = Collections.emptyMap(); // error_type, backend, attempts...
    public Duration retryDelay; // null unless the sidecar knows how long to wait
    public final Metadata trailers;

    SidecarError(StatusRuntimeException e) {
      code = e.getStatus().getCode();
      message = e.getStatus().getDescription();
      Metadata t = Status.trailersFromThrowable(e);
      trailers = t != null ? t : new Metadata();
      com.google.rpc.Status status = StatusProto.fromThrowable(e); // grpc-status-details-bin
      if (status == null) return;
      for (com.google.protobuf.Any detail : status.getDetailsList()) {
        try {
          if (detail.is(ErrorInfo.class)) {
            ErrorInfo ei = detail.unpack(ErrorInfo.class);
            reason = ei.getReason();
            domain = ei.getDomain();
            info = ei.getMetadataMap();
          } else if (detail.is(RetryInfo.class)) {
            com.google.protobuf.Duration d = detail.unpack(RetryInfo.class).getRetryDelay();
            retryDelay = Duration.ofSeconds(d.getSeconds(), d.getNanos());
          }
        } catch (InvalidProtocolBufferException ignored) {
          // a malformed detail: keep what the status itself says
        }
      }
    }

    public static SidecarError from(StatusRuntimeException e) {
      return new SidecarError(e);
    }

    @Override
    public String toString() {
      return code + ": " + message + " reason=" + reason + " info=" + info
          + (retryDelay != null ? " retry_after=" + retryDelay : "");
    }
  }

  public static void main(String[] args) throws Exception {
    String target = args.length > 0 ? args[0] : "127.0.0.1:50051";
    String chain = args.length > 1 ? args[1] : null;
    ManagedChannel channel = connect(target);
    if (!awaitReady(channel, Duration.ofSeconds(5))) {
      System.err.println("cannot connect to " + target);
      System.exit(2);
    }
    AtomicReference<Metadata> headers = new AtomicReference<>();
    AtomicReference<Metadata> trailers = new AtomicReference<>();
    MessagesServiceGrpc.MessagesServiceBlockingStub stub =
        stub(channel, chain, "example-java-1", headers, trailers);
    CreateMessageRequest request = weatherRequest("What's the weather in Paris?");
    int rc = 0;
    try {
      Message message = stub.withDeadlineAfter(30, TimeUnit.SECONDS).createMessage(request);
      System.out.println("unary: backend=" + trailers.get().get(BACKEND)
          + " stop=" + message.getStopReason());
      for (ContentBlock block : message.getContentList()) {
        switch (block.getBlockCase()) {
          case TEXT:
            System.out.println("  text: " + block.getText().getText());
            break;
          case TOOL_USE:
            System.out.println("  tool_use: " + block.getToolUse().getName() + "("
                + JsonFormat.printer().omittingInsignificantWhitespace()
                    .print(block.getToolUse().getInput()) + ") id=" + block.getToolUse().getId());
            break;
          default:
            break;
        }
      }
      System.out.print("stream: ");
      stream(stub, request, Duration.ofSeconds(30), null);
      System.out.println("\n  (answered by " + headers.get().get(BACKEND) + ")");
    } catch (StatusRuntimeException e) {
      SidecarError error = SidecarError.from(e);
      System.err.println("error: " + error);
      if (error.retryDelay != null) {
        System.err.println("  the sidecar suggests retrying after " + error.retryDelay);
      }
      if ("true".equals(error.trailers.get(EXHAUSTED))) {
        System.err.println("  every backend of the chain failed");
      }
      rc = 1;
    } finally {
      channel.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
    }
    System.exit(rc);
  }
}
