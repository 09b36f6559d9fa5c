// Interop checks for the Go example, run by scripts/interop.sh (see examples/README.md):
//
//	anyllm-example check -addr HOST:PORT NAME...
//
// The script scripts the fake upstream before each check (the expected upstream behaviour is in
// each function's comment). Prints PASS/FAIL lines and a closing "N passed, N failed" line.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	sidecarv1 "github.com/anyllm/sidecar/gen/go/anyllm/sidecar/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

const (
	lang   = "go"
	prompt = "hello from " + lang
	echo   = "echo: " + prompt
)

var passed, failed int

func check(name string, ok bool, detail interface{}) {
	word := "PASS"
	if ok {
		passed++
	} else {
		failed++
		word = "FAIL"
	}
	fmt.Printf("%s %s %s -- %v\n", word, lang, name, detail)
}

func within(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}

func firstText(m *sidecarv1.Message) string {
	for _, b := range m.GetContent() {
		if t := b.GetText(); t != nil {
			return t.GetText()
		}
	}
	return ""
}

// Upstream: default answer. System prompt + tool, chain and request id in, backend out.
func checkUnary(c sidecarv1.MessagesServiceClient) {
	ctx, cancel := within(10 * time.Second)
	defer cancel()
	msg, tr, err := Create(WithChain(ctx, "default", "interop-go-unary"), c, WeatherRequest(prompt))
	if err != nil {
		check("unary", false, err)
		return
	}
	check("unary text", firstText(msg) == echo, fmt.Sprintf("%q", firstText(msg)))
	check("unary fields", msg.GetRole() == sidecarv1.Role_ROLE_ASSISTANT &&
		msg.GetStopReason() == sidecarv1.StopReason_STOP_REASON_END_TURN &&
		msg.GetUsage().GetOutputTokens() > 0 && msg.GetId() != "",
		fmt.Sprintf("role=%s stop=%s usage=%d", msg.GetRole(), msg.GetStopReason(), msg.GetUsage().GetOutputTokens()))
	check("unary metadata", First(tr, "x-anyllm-backend") == "primary" &&
		First(tr, "x-request-id") == "interop-go-unary", tr)
}

// Upstream: a get_weather tool call with {"city": "Paris", "days": 3}.
func checkTools(c sidecarv1.MessagesServiceClient) {
	ctx, cancel := within(10 * time.Second)
	defer cancel()
	msg, _, err := Create(ctx, c, WeatherRequest(prompt))
	if err != nil {
		check("tool_use block", false, err)
		return
	}
	var uses []*sidecarv1.ToolUseBlock
	for _, b := range msg.GetContent() {
		if u := b.GetToolUse(); u != nil {
			uses = append(uses, u)
		}
	}
	ok := msg.GetStopReason() == sidecarv1.StopReason_STOP_REASON_TOOL_USE && len(uses) == 1
	var input map[string]interface{}
	if ok {
		input = uses[0].GetInput().AsMap()
		ok = uses[0].GetName() == "get_weather" && uses[0].GetId() != "" &&
			input["city"] == "Paris" && input["days"] == float64(3)
	}
	check("tool_use block", ok, fmt.Sprintf("stop=%s input=%v", msg.GetStopReason(), input))
}

// Upstream: one 503. The primary fails, the secondary answers.
func checkFallback(c sidecarv1.MessagesServiceClient) {
	ctx, cancel := within(10 * time.Second)
	defer cancel()
	msg, tr, err := Create(ctx, c, WeatherRequest(prompt))
	check("fallback", err == nil && First(tr, "x-anyllm-backend") == "secondary" &&
		First(tr, "x-anyllm-attempts") == "2" && firstText(msg) == echo, fmt.Sprint(tr, err))
}

// Upstream: default answer, streamed word by word.
func checkStream(c sidecarv1.MessagesServiceClient) {
	ctx, cancel := within(10 * time.Second)
	defer cancel()
	var kinds []string
	var text strings.Builder
	header, err := Stream(WithChain(ctx, "default", ""), c, WeatherRequest(prompt), func(ev *sidecarv1.StreamEvent) bool {
		kinds = append(kinds, eventKind(ev))
		if d := ev.GetContentBlockDelta(); d != nil {
			text.WriteString(d.GetTextDelta())
		}
		return true
	})
	fmt.Println()
	check("stream text", err == nil && text.String() == echo, fmt.Sprintf("%q %v", text.String(), err))
	n := len(kinds)
	check("stream order", n >= 4 && kinds[0] == "message_start" && kinds[n-1] == "message_stop" &&
		index(kinds, "content_block_start") < index(kinds, "content_block_delta") && index(kinds, "message_delta") > 0,
		kinds)
	check("stream metadata", First(header, "x-anyllm-backend") == "primary", header)
}

func eventKind(ev *sidecarv1.StreamEvent) string {
	switch ev.Event.(type) {
	case *sidecarv1.StreamEvent_MessageStart:
		return "message_start"
	case *sidecarv1.StreamEvent_ContentBlockStart:
		return "content_block_start"
	case *sidecarv1.StreamEvent_ContentBlockDelta:
		return "content_block_delta"
	case *sidecarv1.StreamEvent_ContentBlockStop:
		return "content_block_stop"
	case *sidecarv1.StreamEvent_MessageDelta:
		return "message_delta"
	case *sidecarv1.StreamEvent_MessageStop:
		return "message_stop"
	case *sidecarv1.StreamEvent_Ping:
		return "ping"
	case *sidecarv1.StreamEvent_Error:
		return "error"
	}
	return "unknown"
}

func index(xs []string, x string) int {
	for i, v := range xs {
		if v == x {
			return i
		}
	}
	return -1
}

// Upstream: waits 5 s before answering. The 1 s deadline passes first.
func checkDeadline(c sidecarv1.MessagesServiceClient) {
	t0 := time.Now()
	ctx, cancel := within(time.Second)
	defer cancel()
	_, _, err := Create(ctx, c, WeatherRequest(prompt))
	elapsed := time.Since(t0)
	check("deadline", status.Code(err) == codes.DeadlineExceeded && elapsed < 3*time.Second,
		fmt.Sprintf("after %s: %v", elapsed.Round(time.Millisecond), err))
}

// Upstream: 400 {"error": {"message": "bad", "type": "invalid_request_error"}}.
func checkInvalid(c sidecarv1.MessagesServiceClient) {
	ctx, cancel := within(10 * time.Second)
	defer cancel()
	_, tr, err := Create(ctx, c, WeatherRequest(prompt))
	e := AsSidecarError(err)
	check("invalid code", err != nil && e.Code == codes.InvalidArgument, e)
	check("invalid details", err != nil && e.Domain == ErrorDomain && e.Reason == "UPSTREAM_HTTP_400" &&
		e.Info["error_type"] == "invalid_request_error" && First(tr, "x-anyllm-attempts") == "1" &&
		len(tr.Get("x-anyllm-fallback-exhausted")) == 0, fmt.Sprint(e.Info, tr))
}

// Upstream: 503 with retry-after: 2, twice. Both targets of the default chain fail.
func checkExhausted(c sidecarv1.MessagesServiceClient) {
	ctx, cancel := within(10 * time.Second)
	defer cancel()
	_, tr, err := Create(ctx, c, WeatherRequest(prompt))
	e := AsSidecarError(err)
	check("exhausted code", err != nil && e.Code == codes.Unavailable, e)
	check("exhausted details", err != nil && e.Reason == "FALLBACK_EXHAUSTED" && e.Domain == ErrorDomain &&
		First(tr, "x-anyllm-fallback-exhausted") == "true" && First(tr, "x-anyllm-attempts") == "2" &&
		e.RetryDelay == 2*time.Second, fmt.Sprint(e.Info, " retry=", e.RetryDelay, " ", tr))
}

// Upstream: one 503. x-anyllm-chain only-primary has no second target to fall back to.
func checkChain(c sidecarv1.MessagesServiceClient) {
	ctx, cancel := within(10 * time.Second)
	defer cancel()
	_, tr, err := Create(WithChain(ctx, "only-primary", ""), c, WeatherRequest(prompt))
	check("chain metadata", status.Code(err) == codes.Unavailable && First(tr, "x-anyllm-chain") == "only-primary" &&
		First(tr, "x-anyllm-attempts") == "1" && First(tr, "x-anyllm-fallback-exhausted") == "true", fmt.Sprint(tr, err))
}

// Upstream: sends 3 stream events, then stalls. The client cancels after the first text.
func checkCancel(c sidecarv1.MessagesServiceClient) {
	ctx, cancel := within(10 * time.Second)
	defer cancel()
	ctx, stop := context.WithCancel(ctx)
	stream, err := c.StreamMessage(ctx, WeatherRequest(prompt))
	gotText := false
	for err == nil && !gotText {
		var ev *sidecarv1.StreamEvent
		ev, err = stream.Recv()
		gotText = ev.GetContentBlockDelta() != nil
	}
	stop() // cancel the call
	// Messages already delivered before the cancel are still handed out (under load the
	// sidecar's later events may be buffered); then Recv reports Canceled. The upstream stalls
	// after 3 events, so a few reads at most come before the status.
	for n := 0; err == nil && n < 10; n++ {
		_, err = stream.Recv()
	}
	check("cancel", gotText && status.Code(err) == codes.Canceled, err)
}

// Upstream: not called for an OpenAI-kind backend (the sidecar estimates).
func checkCount(c sidecarv1.MessagesServiceClient) {
	ctx, cancel := within(10 * time.Second)
	defer cancel()
	r := WeatherRequest(prompt)
	var tr metadata.MD
	res, err := c.CountTokens(WithChain(ctx, "default", ""), &sidecarv1.CountTokensRequest{
		Model: r.Model, Messages: r.Messages, System: r.System, Tools: r.Tools, ToolChoice: r.ToolChoice,
	}, grpc.Trailer(&tr))
	check("count tokens", err == nil && res.GetInputTokens() > 0 && First(tr, "x-anyllm-backend") == "primary",
		fmt.Sprintf("input_tokens=%d estimated=%v %v %v", res.GetInputTokens(), res.GetEstimated(), tr, err))
}

// Upstream (Anthropic protocol): server_tool_use, web_search_tool_result, a "future_block", text;
// stop reason model_context_window_exceeded. Sent: the escape hatch (an extra field, a raw block).
func checkServerTools(c sidecarv1.MessagesServiceClient) {
	ctx, cancel := within(10 * time.Second)
	defer cancel()
	msg, tr, err := Create(WithChain(ctx, "native", ""), c, WithEscapeHatch(WeatherRequest(prompt)))
	if err != nil {
		check("server tool blocks typed", false, err)
		return
	}
	blocks := msg.GetContent()
	var described []string
	for _, b := range blocks {
		described = append(described, DescribeBlock(b))
	}
	ok := len(blocks) == 4 && blocks[0].GetServerToolUse().GetName() == "web_search" &&
		blocks[1].GetWebSearchToolResult().GetToolUseId() == "srvtoolu_1" &&
		blocks[2].GetRaw() != nil && blocks[3].GetText().GetText() == "Sunny." &&
		msg.GetUsage().GetServerToolUse().GetWebSearchRequests() == 1
	check("server tool blocks typed", ok, described)
	var raw map[string]interface{}
	if len(blocks) > 2 && blocks[2].GetRaw() != nil {
		_ = json.Unmarshal([]byte(blocks[2].GetRaw().GetJson()), &raw)
	}
	check("unknown block as raw JSON", raw["type"] == "future_block" && raw["answer"] == float64(42), raw)
	check("new stop reason", msg.GetStopReason() == sidecarv1.StopReason_STOP_REASON_MODEL_CONTEXT_WINDOW_EXCEEDED &&
		msg.GetRawStopReason() == "model_context_window_exceeded" && First(tr, "x-anyllm-backend") == "native",
		fmt.Sprintf("%s %q %s", msg.GetStopReason(), msg.GetRawStopReason(), First(tr, "x-anyllm-backend")))
}

var checks = map[string]func(sidecarv1.MessagesServiceClient){
	"unary": checkUnary, "tools": checkTools, "fallback": checkFallback, "stream": checkStream,
	"deadline": checkDeadline, "invalid": checkInvalid, "exhausted": checkExhausted,
	"chain": checkChain, "cancel": checkCancel, "count": checkCount, "servertools": checkServerTools,
}

func runChecks(args []string) int {
	fs := flag.NewFlagSet("check", flag.ExitOnError)
	addr := fs.String("addr", "127.0.0.1:50051", "the sidecar's gRPC address")
	_ = fs.Parse(args)
	names := fs.Args()
	for _, n := range names {
		if checks[n] == nil {
			var all []string
			for k := range checks {
				all = append(all, k)
			}
			sort.Strings(all)
			fmt.Fprintf(os.Stderr, "unknown check %q (one of %v)\n", n, all)
			return 2
		}
	}
	dctx, dcancel := within(5 * time.Second)
	defer dcancel()
	conn, err := Dial(dctx, *addr)
	if err != nil {
		check("dial", false, err)
	} else {
		defer conn.Close()
		client := sidecarv1.NewMessagesServiceClient(conn)
		for _, n := range names {
			checks[n](client)
		}
	}
	fmt.Printf("%d passed, %d failed\n", passed, failed)
	if failed > 0 {
		return 1
	}
	return 0
}
