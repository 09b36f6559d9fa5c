// Command anyllm-example calls the anyllm sidecar over gRPC: a unary message with a system prompt
// and a tool, a streamed message printed as it arrives, per-call deadline and metadata, and the
// sidecar's rich error details (google.rpc.ErrorInfo / RetryInfo).
//
// Generate the stubs from the repository's proto/ (protoc, protoc-gen-go, protoc-gen-go-grpc) into
// a directory of your module, and import that directory (package sidecarv1):
//
//	protoc -I proto --go_out=internal/gen --go_opt=paths=source_relative \
//	    --go-grpc_out=internal/gen --go-grpc_opt=paths=source_relative \
//	    anyllm/sidecar/v1/messages.proto anyllm/sidecar/v1/messages_service.proto
//
// (scripts/interop.sh instead uses GOPATH mode and the proto's go_package path, imported below.)
// Written against grpc-go 1.33 (Debian 12) so it also
// builds with the oldest gRPC a user is likely to have; with grpc-go >= 1.63 prefer
// grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials())).
//
//	anyllm-example [-addr 127.0.0.1:50051] [-chain default] [-prompt "..."]   # demo
//	anyllm-example check -addr HOST:PORT NAME...                              # interop checks (check.go)
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	sidecarv1 "github.com/anyllm/sidecar/gen/go/anyllm/sidecar/v1"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"
)

// ErrorDomain is google.rpc.ErrorInfo.domain of every error the sidecar returns.
const ErrorDomain = "anyllm.dev"

// Dial connects to the sidecar (plaintext: it listens on localhost inside the pod).
func Dial(ctx context.Context, addr string) (*grpc.ClientConn, error) {
	return grpc.DialContext(ctx, addr, grpc.WithInsecure(), grpc.WithBlock())
}

// WeatherRequest is a request with a system prompt, one user turn and one tool.
func WeatherRequest(prompt string) *sidecarv1.CreateMessageRequest {
	schema, err := structpb.NewStruct(map[string]interface{}{
		"type": "object",
		"properties": map[string]interface{}{
			"city": map[string]interface{}{"type": "string", "description": "City name"},
			"days": map[string]interface{}{"type": "integer", "minimum": 1},
		},
		"required": []interface{}{"city"},
	})
	if err != nil {
		panic(err) // only for values structpb cannot represent
	}
	return &sidecarv1.CreateMessageRequest{
		Model:     "claude-sonnet-4-5",
		MaxTokens: 256,
		System:    "You are a weather bot.",
		Messages: []*sidecarv1.InputMessage{{
			Role: sidecarv1.Role_ROLE_USER,
			Content: []*sidecarv1.ContentBlock{{
				Block: &sidecarv1.ContentBlock_Text{Text: &sidecarv1.TextBlock{Text: prompt}},
			}},
		}},
		Tools: []*sidecarv1.Tool{{
			Name:        "get_weather",
			Description: "Get the weather forecast for a city",
			InputSchema: schema,
		}},
		ToolChoice: &sidecarv1.ToolChoice{Type: sidecarv1.ToolChoiceType_TOOL_CHOICE_TYPE_AUTO},
	}
}

// WithEscapeHatch adds what the proto does not model yet: an extra top-level request field
// (ExtraJson, merged into the request's JSON) and a block of a type the proto does not know (a
// Raw block: its JSON). An Anthropic upstream gets both as they are; a translating one names them
// in x-anyllm-degradation.
func WithEscapeHatch(req *sidecarv1.CreateMessageRequest) *sidecarv1.CreateMessageRequest {
	req.ExtraJson = `{"speed": "fast"}`
	raw := &sidecarv1.RawJson{Type: "tool_reference", Json: `{"type": "tool_reference", "tool_name": "get_weather"}`}
	turn := req.Messages[0]
	turn.Content = append(turn.Content, &sidecarv1.ContentBlock{Block: &sidecarv1.ContentBlock_Raw{Raw: raw}})
	return req
}

// DescribeBlock reads one answer block: typed cases by their fields, any other by its raw JSON.
func DescribeBlock(b *sidecarv1.ContentBlock) string {
	switch {
	case b.GetText() != nil:
		return "text: " + b.GetText().GetText()
	case b.GetServerToolUse() != nil:
		return fmt.Sprintf("server tool %s(%v)", b.GetServerToolUse().GetName(), b.GetServerToolUse().GetInput().AsMap())
	case b.GetWebSearchToolResult() != nil:
		return fmt.Sprintf("%d web search result(s)", len(b.GetWebSearchToolResult().GetContent().GetListValue().GetValues()))
	case b.GetRaw() != nil:
		return fmt.Sprintf("%s (not in this proto): %s", b.GetRaw().GetType(), b.GetRaw().GetJson())
	}
	return fmt.Sprintf("%T", b.GetBlock())
}

// WithChain adds the call metadata the sidecar reads: x-anyllm-chain picks a configured fallback
// chain (empty: routed by model), x-request-id tags its logs (empty: the sidecar makes one).
func WithChain(ctx context.Context, chain, requestID string) context.Context {
	if chain != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "x-anyllm-chain", chain)
	}
	if requestID != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "x-request-id", requestID)
	}
	return ctx
}

// First returns the first value of a metadata key ("" when absent).
func First(md metadata.MD, key string) string {
	if v := md.Get(key); len(v) > 0 {
		return v[0]
	}
	return ""
}

// Create sends a unary CreateMessage. The context's deadline is the request's whole budget inside
// the sidecar, over every fallback attempt. The trailer (x-anyllm-backend, x-anyllm-attempts,
// x-anyllm-fallback-exhausted...) is filled in on success and on error alike.
func Create(ctx context.Context, c sidecarv1.MessagesServiceClient, req *sidecarv1.CreateMessageRequest) (*sidecarv1.Message, metadata.MD, error) {
	var trailer metadata.MD
	msg, err := c.CreateMessage(ctx, req, grpc.Trailer(&trailer))
	return msg, trailer, err
}

// Stream sends StreamMessage and calls onEvent for each event, printing text deltas as they
// arrive; onEvent returning false stops early (cancel the context to cancel the call: the sidecar
// then cancels its upstream request at once). It returns the stream's header metadata, which the
// sidecar sends with the first event, once the answer has started.
func Stream(ctx context.Context, c sidecarv1.MessagesServiceClient, req *sidecarv1.CreateMessageRequest,
	onEvent func(*sidecarv1.StreamEvent) bool) (metadata.MD, error) {
	stream, err := c.StreamMessage(ctx, req)
	if err != nil {
		return nil, err
	}
	var header metadata.MD
	for {
		ev, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return header, nil // the status was OK: the answer is complete
		}
		if err != nil {
			return header, err // a failure after the start ends the stream with an error status
		}
		if header == nil {
			header, _ = stream.Header()
		}
		if d := ev.GetContentBlockDelta(); d != nil {
			if t, ok := d.Delta.(*sidecarv1.ContentBlockDeltaEvent_TextDelta); ok {
				fmt.Print(t.TextDelta)
			}
		}
		if onEvent != nil && !onEvent(ev) {
			return header, nil
		}
	}
}

// SidecarError is what a failed call tells: its status, the sidecar's ErrorInfo and RetryInfo.
type SidecarError struct {
	Code       codes.Code
	Message    string
	Reason     string            // e.g. "FALLBACK_EXHAUSTED", "UPSTREAM_HTTP_400"
	Domain     string            // "anyllm.dev"
	Info       map[string]string // error_type, backend, attempts, upstream_status...
	RetryDelay time.Duration     // > 0 when the sidecar knows how long to wait
}

func (e *SidecarError) Error() string {
	return fmt.Sprintf("%s: %s (reason=%s info=%v retry=%s)", e.Code, e.Message, e.Reason, e.Info, e.RetryDelay)
}

// AsSidecarError decodes a gRPC error's status and details.
func AsSidecarError(err error) *SidecarError {
	st := status.Convert(err)
	out := &SidecarError{Code: st.Code(), Message: st.Message(), Info: map[string]string{}}
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.ErrorInfo:
			out.Reason, out.Domain, out.Info = d.GetReason(), d.GetDomain(), d.GetMetadata()
		case *errdetails.RetryInfo:
			out.RetryDelay = d.GetRetryDelay().AsDuration()
		}
	}
	return out
}

func demo(addr, chain, prompt string) int {
	dctx, dcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer dcancel()
	conn, err := Dial(dctx, addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "dial:", err)
		return 2
	}
	defer conn.Close()
	client := sidecarv1.NewMessagesServiceClient(conn)
	req := WeatherRequest(prompt)

	ctx, cancel := context.WithTimeout(WithChain(context.Background(), chain, "example-go-1"), 30*time.Second)
	defer cancel()
	msg, trailer, err := Create(ctx, client, req)
	if err != nil {
		return report(err, trailer)
	}
	fmt.Printf("unary: backend=%s stop=%s\n", First(trailer, "x-anyllm-backend"), msg.GetStopReason())
	for _, b := range msg.GetContent() {
		switch blk := b.Block.(type) {
		case *sidecarv1.ContentBlock_Text:
			fmt.Println("  text:", blk.Text.GetText())
		case *sidecarv1.ContentBlock_ToolUse:
			// Struct -> map; JSON numbers come back as float64.
			fmt.Printf("  tool_use: %s(%v) id=%s\n", blk.ToolUse.GetName(), blk.ToolUse.GetInput().AsMap(), blk.ToolUse.GetId())
		}
	}

	fmt.Print("stream: ")
	header, err := Stream(ctx, client, req, nil)
	if err != nil {
		return report(err, nil)
	}
	fmt.Printf("\n  (answered by %s)\n", First(header, "x-anyllm-backend"))
	return 0
}

func report(err error, trailer metadata.MD) int {
	e := AsSidecarError(err)
	fmt.Fprintln(os.Stderr, "error:", e)
	if e.RetryDelay > 0 {
		fmt.Fprintln(os.Stderr, "  the sidecar suggests retrying after", e.RetryDelay)
	}
	if First(trailer, "x-anyllm-fallback-exhausted") == "true" {
		fmt.Fprintln(os.Stderr, "  every backend of the chain failed")
	}
	return 1
}

func main() {
	addr := flag.String("addr", "127.0.0.1:50051", "the sidecar's gRPC address")
	chain := flag.String("chain", "", "x-anyllm-chain (default: routed by model)")
	prompt := flag.String("prompt", "What's the weather in Paris?", "the user's message")
	flag.Parse()
	if flag.Arg(0) == "check" {
		os.Exit(runChecks(flag.Args()[1:]))
	}
	os.Exit(demo(*addr, *chain, *prompt))
}
