package telemetry_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"connectrpc.com/connect/v2"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	kvv1 "github.com/kvgate/kvgate/gen/go/fastly/kv/v1"
	"github.com/kvgate/kvgate/internal/app"
	"github.com/kvgate/kvgate/internal/kvtest"
	"github.com/kvgate/kvgate/internal/telemetry"
	"github.com/kvgate/kvgate/internal/testutil"
	"github.com/kvgate/kvgate/upstream/localstore"
)

// The secrets of TestTracesKeepSecrets: kvgate's Fastly token and a
// caller's Authorization header.
const (
	fastlySecret = "fastly-secret-token-9f3a"
	callerSecret = "caller-secret-bearer-77c1"
)

// firstAttemptFails is an upstream that answers the first request for an
// item 503 and hands the others (the readiness probe's listings among
// them) to next, so that one call is retried.
type firstAttemptFails struct {
	next http.Handler
	seen atomic.Int64
}

func (h *firstAttemptFails) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !strings.HasSuffix(r.URL.Path, "/keys") && h.seen.Add(1) == 1 {
		http.Error(w, "try again", http.StatusServiceUnavailable)
		return
	}
	h.next.ServeHTTP(w, r)
}

// startWithToken assembles kvgate as kvgate does, with a Fastly token,
// spans recorded in memory and logs in a buffer, and serves it and its
// admin endpoints on loopback; it returns kvgate's and the admin URL.
func startWithToken(t *testing.T, up http.Handler, tp *sdktrace.TracerProvider, logs *testutil.LockedBuffer) (string, string) {
	t.Helper()
	upSrv := httptest.NewServer(up)
	t.Cleanup(upSrv.Close)
	gw, err := app.NewGateway(app.GatewayConfig{
		UpstreamURL: upSrv.URL,
		Token:       fastlySecret,
		Logger:      slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Telemetry:   telemetry.Config{TracerProvider: tp},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	lns := make([]net.Listener, 2)
	for i := range lns {
		if lns[i], err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan error, 2)
	go func() { done <- gw.Serve(ctx, lns[0]) }()
	go func() { done <- gw.ServeAdmin(ctx, lns[1]) }()
	t.Cleanup(func() {
		cancel()
		for range 2 {
			if err := <-done; err != nil {
				t.Errorf("serve: %v", err)
			}
		}
	})
	return "http://" + lns[0].Addr().String(), "http://" + lns[1].Addr().String()
}

// TestTracesKeepSecrets checks the RPC span and its upstream attempt
// spans (a retry among them) with their attributes, and that neither
// kvgate's Fastly token nor a caller's Authorization header appears in
// any span, metric or log line.
func TestTracesKeepSecrets(t *testing.T) {
	t.Parallel()
	store, err := localstore.Open(localstore.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	spans := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))
	var logs testutil.LockedBuffer
	url, adminURL := startWithToken(t, &firstAttemptFails{next: store.Handler()}, tp, &logs)

	st := &kvtest.Stack{URL: url}
	kv := st.NewClient(kvtest.H2CClient())
	ctx, call := connect.NewClientContext(t.Context())
	call.RequestHeader().Set("Authorization", "Bearer "+callerSecret)
	call.RequestHeader().Set("X-Request-Id", "trace-test-1")
	_, err = kv.GetItem(ctx, &kvv1.GetItemRequest{StoreId: "s", Key: "k"})
	testutil.WantCode(t, "GetItem", err, connect.CodeNotFound)

	var rpc sdktrace.ReadOnlySpan
	var attempts []sdktrace.ReadOnlySpan
	for _, s := range spans.GetSpans().Snapshots() {
		switch s.Name() {
		case "fastly.kv.v1.KVStoreService/GetItem":
			rpc = s
		case "upstream get_item":
			attempts = append(attempts, s)
		}
	}
	if rpc == nil || len(attempts) != 2 {
		t.Fatalf("want the RPC span and 2 upstream attempt spans, got %v", spanNames(spans.GetSpans().Snapshots()))
	}
	wantAttrs(t, rpc, map[string]string{
		"rpc.method": "fastly.kv.v1.KVStoreService/GetItem", "rpc.response.status_code": "NOT_FOUND",
		"kvgate.request_id": "trace-test-1",
	})
	for i, a := range attempts {
		if a.Parent().SpanID() != rpc.SpanContext().SpanID() {
			t.Errorf("attempt %d is not a child of the RPC span", i+1)
		}
	}
	wantAttrs(t, attempts[0], map[string]string{"kvgate.upstream.op": "get_item", "http.request.method": "GET",
		"kvgate.upstream.attempt": "1", "http.response.status_code": "503", "kvgate.upstream.kind": "unavailable"})
	wantAttrs(t, attempts[1], map[string]string{"kvgate.upstream.attempt": "2", "http.response.status_code": "404"})

	_, metrics := getText(t, adminURL+"/metrics")
	if !strings.Contains(metrics, `kvgate_upstream_retries_total{op="get_item"} 1`) {
		t.Errorf("/metrics lacks the retry:\n%s", metrics)
	}
	everything := metrics + logs.String()
	for _, s := range spans.GetSpans().Snapshots() {
		everything += fmt.Sprint(s.Name(), s.Attributes(), s.Events(), s.Status(), s.Links())
	}
	for _, secret := range []string{fastlySecret, callerSecret} {
		if strings.Contains(everything, secret) {
			t.Errorf("a secret leaked into spans, metrics or logs: %q", secret)
		}
	}
}

func spanNames(spans []sdktrace.ReadOnlySpan) []string {
	names := make([]string, len(spans))
	for i, s := range spans {
		names[i] = s.Name()
	}
	return names
}

// wantAttrs checks that span has each attribute of want, as text.
func wantAttrs(t *testing.T, span sdktrace.ReadOnlySpan, want map[string]string) {
	t.Helper()
	got := make(map[attribute.Key]string)
	for _, kv := range span.Attributes() {
		got[kv.Key] = kv.Value.Emit()
	}
	for k, v := range want {
		if got[attribute.Key(k)] != v {
			t.Errorf("span %q: %s = %q, want %q (attributes %v)", span.Name(), k, got[attribute.Key(k)], v, span.Attributes())
		}
	}
}
