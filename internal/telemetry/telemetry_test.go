package telemetry_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connecthttp"

	kvv1 "github.com/kvgate/kvgate/gen/go/fastly/kv/v1"
	"github.com/kvgate/kvgate/internal/crossorigin"
	"github.com/kvgate/kvgate/internal/kvtest"
	"github.com/kvgate/kvgate/internal/telemetry"
	"github.com/kvgate/kvgate/internal/testutil"
	"github.com/kvgate/kvgate/upstream"
	"github.com/kvgate/kvgate/upstream/localstore"
)

// adminLoopback serves a test stack's admin endpoints on a free loopback
// port.
const adminLoopback = "127.0.0.1:0"

// getText fetches url and returns its status and body.
func getText(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading %s: %v", url, err)
	}
	return resp.StatusCode, string(body)
}

// TestMetricsShowRPCs makes RPCs over Connect and gRPC and finds them on
// /metrics by procedure and code, beside the upstream requests they caused
// by status. CORS preflights are not counted as RPCs.
func TestMetricsShowRPCs(t *testing.T) {
	t.Parallel()
	st := kvtest.Start(t, kvtest.Options{
		Telemetry: telemetry.Config{AdminListen: adminLoopback},
		CORS:      crossorigin.Config{Origins: []string{"http://localhost:5173"}},
	})
	ctx := t.Context()
	preflight(t, st.URL+"/fastly.kv.v1.KVStoreService/PutItem", "http://localhost:5173")
	for _, opts := range [][]connecthttp.Option{nil, {connecthttp.WithGRPC()}} {
		kv := st.NewClient(kvtest.H2CClient(), opts...)
		if _, err := kv.PutItem(ctx, &kvv1.PutItemRequest{StoreId: "s", Key: "k", Value: []byte("v")}); err != nil {
			t.Fatalf("PutItem: %v", err)
		}
		_, err := kv.GetItem(ctx, &kvv1.GetItemRequest{StoreId: "s", Key: "missing"})
		testutil.WantCode(t, "GetItem of a missing key", err, connect.CodeNotFound)
	}
	status, body := getText(t, st.AdminURL+"/metrics")
	if status != http.StatusOK {
		t.Fatalf("/metrics answered %d", status)
	}
	for _, want := range []string{
		`kvgate_rpc_requests_total{code="ok",procedure="/fastly.kv.v1.KVStoreService/PutItem"} 2`,
		`kvgate_rpc_requests_total{code="not_found",procedure="/fastly.kv.v1.KVStoreService/GetItem"} 2`,
		`kvgate_rpc_in_flight{procedure="/fastly.kv.v1.KVStoreService/GetItem"} 0`,
		`rpc_server_call_duration_seconds_count{error_type="NOT_FOUND",rpc_method="fastly.kv.v1.KVStoreService/GetItem",rpc_response_status_code="NOT_FOUND",rpc_system_name="grpc"} 1`,
		`rpc_server_call_duration_seconds_count{rpc_method="fastly.kv.v1.KVStoreService/PutItem",rpc_response_status_code="OK",rpc_system_name="connectrpc"} 1`,
		`kvgate_upstream_requests_total{method="PUT",op="put_item",status="200"} 2`,
		`kvgate_upstream_requests_total{method="GET",op="get_item",status="404"} 2`,
		`kvgate_upstream_request_duration_seconds_count{op="get_item"} 2`,
		`kvgate_batch_buffered_bytes 0`,
		`kvgate_group_commit_queued 0`,
		`kvgate_watch_pollers 0`,
		"# TYPE kvgate_ready gauge",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if t.Failed() {
		t.Logf("/metrics:\n%s", body)
	}
}

// preflight sends a CORS preflight for a POST to url from origin.
func preflight(t *testing.T, url, origin string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodOptions, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Origin", origin)
	req.Header.Set("Access-Control-Request-Method", http.MethodPost)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("preflight answered %d", resp.StatusCode)
	}
}

// TestHealthAndReadiness checks /healthz, and that /readyz follows the
// upstream: ready while it answers, not ready while it fails, ready again
// once it is back.
func TestHealthAndReadiness(t *testing.T) {
	t.Parallel()
	st := kvtest.Start(t, kvtest.Options{
		Retry:     upstream.RetryPolicy{MaxAttempts: 1},
		Telemetry: telemetry.Config{AdminListen: adminLoopback, ReadyProbeInterval: 20 * time.Millisecond},
	})
	if status, body := getText(t, st.AdminURL+"/healthz"); status != http.StatusOK || body != "ok\n" {
		t.Fatalf("/healthz = %d %q, want 200 ok", status, body)
	}
	waitReady := func(want int) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			status, body := getText(t, st.AdminURL+"/readyz")
			if status == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("/readyz stayed %d %q, want %d", status, body, want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitReady(http.StatusOK)
	faults, err := localstore.ParseFaults("503=1")
	if err != nil {
		t.Fatal(err)
	}
	st.Store.SetFaults(faults)
	waitReady(http.StatusServiceUnavailable)
	st.Store.SetFaults(localstore.Faults{})
	waitReady(http.StatusOK)
}

// TestAdminPprof checks that the profiling endpoints are on the admin
// listener only when asked for.
func TestAdminPprof(t *testing.T) {
	t.Parallel()
	for _, on := range []bool{false, true} {
		t.Run(fmt.Sprint("pprof=", on), func(t *testing.T) {
			t.Parallel()
			st := kvtest.Start(t, kvtest.Options{Telemetry: telemetry.Config{AdminListen: adminLoopback, AdminPprof: on}})
			want := http.StatusNotFound
			if on {
				want = http.StatusOK
			}
			for _, path := range []string{"/debug/pprof/", "/debug/pprof/heap", "/debug/pprof/profile?seconds=1"} {
				if status, _ := getText(t, st.AdminURL+path); status != want {
					t.Errorf("%s answered %d, want %d", path, status, want)
				}
			}
		})
	}
}

// headerRecorder is an upstream that records the X-Request-Id of every
// request before the local store handles it.
type headerRecorder struct {
	next http.Handler
	mu   sync.Mutex
	ids  []string
}

func (h *headerRecorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	h.ids = append(h.ids, r.Header.Get(upstream.RequestIDHeader))
	h.mu.Unlock()
	h.next.ServeHTTP(w, r)
}

func (h *headerRecorder) seen() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.ids...)
}

// TestRequestIDs checks that a caller's X-Request-Id comes back, reaches
// the upstream and is in the RPC's log line; that a traceparent's trace id
// serves when none is given; and that an id is made when neither is, or
// the given one is not acceptable.
func TestRequestIDs(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name        string
		header      map[string]string
		want        string
		wantMadeOne bool
	}{
		{name: "given", header: map[string]string{"X-Request-Id": "req-42.abc"}, want: "req-42.abc"},
		{name: "from traceparent", header: map[string]string{"Traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
			want: "4bf92f3577b34da6a3ce929d0e0e4736"},
		{name: "made", wantMadeOne: true},
		{name: "too long", header: map[string]string{"X-Request-Id": strings.Repeat("x", 129)}, wantMadeOne: true},
		{name: "not printable", header: map[string]string{"X-Request-Id": "a b"}, wantMadeOne: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			store, err := localstore.Open(localstore.Config{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = store.Close() })
			rec := &headerRecorder{next: store.Handler()}
			var logs testutil.LockedBuffer
			st := kvtest.Start(t, kvtest.Options{Upstream: rec, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			kv := st.NewClient(kvtest.HTTP1Client())
			ctx, call := connect.NewClientContext(t.Context())
			for k, v := range tc.header {
				call.RequestHeader().Set(k, v)
			}
			_, err = kv.GetItem(ctx, &kvv1.GetItemRequest{StoreId: "s", Key: "k"})
			testutil.WantCode(t, "GetItem", err, connect.CodeNotFound)
			got := call.ResponseHeader().Get("X-Request-Id")
			if tc.wantMadeOne {
				if len(got) != 32 || got == tc.header["X-Request-Id"] {
					t.Fatalf("X-Request-Id = %q, want a made 32-hex-digit id", got)
				}
			} else if got != tc.want {
				t.Fatalf("X-Request-Id = %q, want %q", got, tc.want)
			}
			if seen := rec.seen(); len(seen) != 1 || seen[0] != got {
				t.Errorf("upstream saw X-Request-Id %q, want [%s]", seen, got)
			}
			if line := logs.String(); !strings.Contains(line, "msg=rpc") || !strings.Contains(line, "request_id="+got) {
				t.Errorf("RPC log line lacks request_id=%s:\n%s", got, line)
			}
		})
	}
}

// TestRPCLogLevel checks which RPCs each -rpc-log-level keeps.
func TestRPCLogLevel(t *testing.T) {
	t.Parallel()
	cases := []struct {
		level        string
		wantOK       bool // a successful RPC logged
		wantNotFound bool // a failure the caller caused logged
	}{
		{level: "info", wantOK: true, wantNotFound: true},
		{level: "warn"},
		{level: "off"},
	}
	for _, tc := range cases {
		t.Run(tc.level, func(t *testing.T) {
			t.Parallel()
			level, err := parseLevel(tc.level)
			if err != nil {
				t.Fatal(err)
			}
			var logs testutil.LockedBuffer
			st := kvtest.Start(t, kvtest.Options{
				Logger:    slog.New(slog.NewTextHandler(&logs, nil)),
				Telemetry: telemetry.Config{RPCLogLevel: level},
			})
			kv := st.NewClient(kvtest.HTTP1Client())
			ctx := context.Background()
			if _, err := kv.PutItem(ctx, &kvv1.PutItemRequest{StoreId: "s", Key: "k", Value: []byte("v")}); err != nil {
				t.Fatal(err)
			}
			_, err = kv.GetItem(ctx, &kvv1.GetItemRequest{StoreId: "s", Key: "missing"})
			testutil.WantCode(t, "GetItem", err, connect.CodeNotFound)
			out := logs.String()
			if got := strings.Contains(out, "code=ok"); got != tc.wantOK {
				t.Errorf("successful RPC logged = %v, want %v:\n%s", got, tc.wantOK, out)
			}
			if got := strings.Contains(out, "code=not_found"); got != tc.wantNotFound {
				t.Errorf("not_found RPC logged = %v, want %v:\n%s", got, tc.wantNotFound, out)
			}
		})
	}
}
