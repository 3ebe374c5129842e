//go:build unix

package interop

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/kvgate/kvgate/internal/testutil"
	kvv1 "github.com/kvgate/kvgate/test/interop/gen/fastly/kv/v1"
)

const kvServiceName = "fastly.kv.v1.KVStoreService"

// dial connects grpc-go to kvgate in plaintext: kvgate serves cleartext
// HTTP/2 (h2c), which is what grpc-go speaks with insecure credentials.
func dial(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("grpc.NewClient(%s): %v", addr, err)
	}
	// Registered after startKVGate's cleanup, so it runs first and kvgate
	// is not left waiting on this connection while it shuts down.
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

func mustPut(ctx context.Context, t *testing.T, c kvv1.KVStoreServiceClient, req *kvv1.PutItemRequest) {
	t.Helper()
	if _, err := c.PutItem(ctx, req); err != nil {
		t.Fatalf("PutItem(%s/%s): %v", req.GetStoreId(), req.GetKey(), err)
	}
}

func mustGet(ctx context.Context, t *testing.T, c kvv1.KVStoreServiceClient, store, key string) *kvv1.Item {
	t.Helper()
	resp, err := c.GetItem(ctx, &kvv1.GetItemRequest{StoreId: store, Key: key})
	if err != nil {
		t.Fatalf("GetItem(%s/%s): %v", store, key, err)
	}
	if resp.GetItem() == nil {
		t.Fatalf("GetItem(%s/%s) returned no item", store, key)
	}
	return resp.GetItem()
}

// wantCode checks that err is a gRPC status with code want, and returns it
// for closer inspection.
func wantCode(t *testing.T, what string, err error, want codes.Code) *status.Status {
	t.Helper()
	testutil.WantCodeOf(t, what, err, want, grpcCode)
	return status.Convert(err)
}

// grpcCode reads the code and message of a grpc-go status error.
func grpcCode(err error) (codes.Code, string, bool) {
	st, ok := status.FromError(err)
	return st.Code(), st.Message(), ok
}

// kvSubtest is a named test against a shared kvgate.
type kvSubtest struct {
	name string
	test func(*testing.T, kvv1.KVStoreServiceClient)
}

// runParallel runs each test as a parallel subtest of t, calling kv.
func runParallel(t *testing.T, kv kvv1.KVStoreServiceClient, tests []kvSubtest) {
	t.Helper()
	for _, sub := range tests {
		t.Run(sub.name, func(t *testing.T) {
			t.Parallel()
			sub.test(t, kv)
		})
	}
}

// TestGRPC drives kvgate with grpc-go, the reference gRPC implementation,
// to prove kvgate's Connect-based server is wire-compatible with it:
// framing, trailers, status codes and binary error details.
func TestGRPC(t *testing.T) {
	t.Parallel()
	p := startKVGate(t, t.TempDir())
	conn := dial(t, p.Addr)
	kv := kvv1.NewKVStoreServiceClient(conn)

	// Each subtest writes to its own store id, so they run in parallel
	// without seeing each other's keys.
	runParallel(t, kv, []kvSubtest{
		{"PutGetDelete", testGRPCPutGetDelete},
		{"AddExistingKey", testGRPCAddExistingKey},
		{"GenerationMismatch", testGRPCGenerationMismatch},
		{"ListKeysPrefixWithSlash", testGRPCListKeysPrefixWithSlash},
		{"InvalidKey", testGRPCInvalidKey},
	})
	t.Run("Health", func(t *testing.T) {
		t.Parallel()
		testGRPCHealth(t, conn)
	})
}

// testGRPCPutGetDelete writes an item with every field set, reads it back,
// and deletes it: a second delete is NotFound unless forced.
func testGRPCPutGetDelete(t *testing.T, kv kvv1.KVStoreServiceClient) {
	ctx := testContext(t)
	const store, key = "grpc-lifecycle", "greeting"
	value := []byte("hello, \x00world") // a NUL proves the value is bytes, not text
	mustPut(ctx, t, kv, &kvv1.PutItemRequest{
		StoreId:    store,
		Key:        key,
		Value:      value,
		Metadata:   `{"lang":"en"}`,
		Mode:       kvv1.PutMode_PUT_MODE_ADD, // the key is new, so add must succeed
		TimeToLive: durationpb.New(time.Hour),
	})

	item := mustGet(ctx, t, kv, store, key)
	if item.GetKey() != key {
		t.Errorf("item.key = %q, want %q", item.GetKey(), key)
	}
	if !bytes.Equal(item.GetValue(), value) {
		t.Errorf("item.value = %q, want %q", item.GetValue(), value)
	}
	if got, want := item.GetMetadata(), `{"lang":"en"}`; got != want {
		t.Errorf("item.metadata = %q, want %q", got, want)
	}
	if item.GetGeneration() == 0 {
		t.Error("item.generation = 0, want the store's generation marker")
	}
	if lm := item.GetLastModified(); lm == nil || lm.CheckValid() != nil || lm.AsTime().IsZero() || lm.AsTime().Unix() <= 0 {
		t.Errorf("item.last_modified = %v, want the write time", lm)
	}

	if _, err := kv.DeleteItem(ctx, &kvv1.DeleteItemRequest{StoreId: store, Key: key}); err != nil {
		t.Fatalf("DeleteItem: %v", err)
	}
	_, err := kv.GetItem(ctx, &kvv1.GetItemRequest{StoreId: store, Key: key})
	wantCode(t, "GetItem after DeleteItem", err, codes.NotFound)
	// Deleting again is NotFound unless force says absence is fine.
	_, err = kv.DeleteItem(ctx, &kvv1.DeleteItemRequest{StoreId: store, Key: key})
	wantCode(t, "DeleteItem of a deleted key", err, codes.NotFound)
	if _, err := kv.DeleteItem(ctx, &kvv1.DeleteItemRequest{StoreId: store, Key: key, Force: true}); err != nil {
		t.Errorf("DeleteItem with force of a deleted key: %v", err)
	}
}

// testGRPCAddExistingKey checks that PUT_MODE_ADD on a taken key is
// AlreadyExists and writes nothing.
func testGRPCAddExistingKey(t *testing.T, kv kvv1.KVStoreServiceClient) {
	ctx := testContext(t)
	const store, key = "grpc-add", "taken"
	mustPut(ctx, t, kv, &kvv1.PutItemRequest{StoreId: store, Key: key, Value: []byte("first")})
	_, err := kv.PutItem(ctx, &kvv1.PutItemRequest{
		StoreId: store, Key: key, Value: []byte("second"), Mode: kvv1.PutMode_PUT_MODE_ADD,
	})
	wantCode(t, "PutItem with PUT_MODE_ADD on an existing key", err, codes.AlreadyExists)
	// The refused add must not have written anything.
	if got := mustGet(ctx, t, kv, store, key).GetValue(); string(got) != "first" {
		t.Errorf("value after refused add = %q, want %q", got, "first")
	}
}

// testGRPCGenerationMismatch checks that a stale if_generation_match aborts
// PutItem and DeleteItem, and that the current one is accepted.
func testGRPCGenerationMismatch(t *testing.T, kv kvv1.KVStoreServiceClient) {
	ctx := testContext(t)
	const store, key = "grpc-generation", "counter"
	mustPut(ctx, t, kv, &kvv1.PutItemRequest{StoreId: store, Key: key, Value: []byte("1")})
	before := mustGet(ctx, t, kv, store, key)
	stale := before.GetGeneration() + 1 // any value but the current one

	_, err := kv.PutItem(ctx, &kvv1.PutItemRequest{
		StoreId: store, Key: key, Value: []byte("2"), IfGenerationMatch: proto.Uint64(stale),
	})
	wantCode(t, "PutItem with a mismatched if_generation_match", err, codes.Aborted)
	_, err = kv.DeleteItem(ctx, &kvv1.DeleteItemRequest{
		StoreId: store, Key: key, IfGenerationMatch: proto.Uint64(stale),
	})
	wantCode(t, "DeleteItem with a mismatched if_generation_match", err, codes.Aborted)

	after := mustGet(ctx, t, kv, store, key)
	if string(after.GetValue()) != "1" || after.GetGeneration() != before.GetGeneration() {
		t.Errorf("item after refused writes = %q generation %d, want %q generation %d",
			after.GetValue(), after.GetGeneration(), "1", before.GetGeneration())
	}
	// The matching generation must be accepted, or Aborted above would
	// prove nothing about the check itself.
	mustPut(ctx, t, kv, &kvv1.PutItemRequest{
		StoreId: store, Key: key, Value: []byte("2"), IfGenerationMatch: proto.Uint64(before.GetGeneration()),
	})
	if got := mustGet(ctx, t, kv, store, key); string(got.GetValue()) != "2" || got.GetGeneration() == before.GetGeneration() {
		t.Errorf("item after conditional write = %q generation %d, want %q and a new generation",
			got.GetValue(), got.GetGeneration(), "2")
	}
}

// testGRPCListKeysPrefixWithSlash lists under a prefix ending in '/', whole
// and one key a page.
func testGRPCListKeysPrefixWithSlash(t *testing.T, kv kvv1.KVStoreServiceClient) {
	ctx := testContext(t)
	const store = "grpc-list"
	// "usersX" and "users" share the prefix's letters but not its '/',
	// which Fastly's own prefix query refuses: kvgate must filter them.
	for _, key := range []string{"users/1", "users/2", "usersX", "users", "a"} {
		mustPut(ctx, t, kv, &kvv1.PutItemRequest{StoreId: store, Key: key, Value: []byte(key)})
	}
	resp, err := kv.ListKeys(ctx, &kvv1.ListKeysRequest{StoreId: store, Prefix: "users/"})
	if err != nil {
		t.Fatalf("ListKeys: %v", err)
	}
	if want := []string{"users/1", "users/2"}; !slices.Equal(resp.GetKeys(), want) {
		t.Errorf("ListKeys(prefix %q) = %q, want %q", "users/", resp.GetKeys(), want)
	}
	if resp.GetNextCursor() != "" {
		t.Errorf("ListKeys next_cursor = %q, want empty on the only page", resp.GetNextCursor())
	}

	// Page by page, the filtering kvgate does itself must still hand
	// out cursors that resume correctly. Pages may be empty while more
	// follow, so only the collected keys are compared.
	var paged []string
	cursor := ""
	for range 10 { // far more pages than keys: a cursor loop fails, not hangs
		resp, err := kv.ListKeys(ctx, &kvv1.ListKeysRequest{StoreId: store, Prefix: "users/", Limit: 1, Cursor: cursor})
		if err != nil {
			t.Fatalf("ListKeys(limit 1, cursor %q): %v", cursor, err)
		}
		if len(resp.GetKeys()) > 1 {
			t.Errorf("ListKeys(limit 1) returned %q", resp.GetKeys())
		}
		paged = append(paged, resp.GetKeys()...)
		if cursor = resp.GetNextCursor(); cursor == "" {
			break
		}
	}
	if want := []string{"users/1", "users/2"}; cursor != "" || !slices.Equal(paged, want) {
		t.Errorf("ListKeys(prefix %q) one key a page = %q (last cursor %q), want %q and an empty cursor", "users/", paged, cursor, want)
	}
}

// testGRPCInvalidKey checks that each unary item RPC refuses a key outside
// Fastly's rules with InvalidArgument and a BadRequest detail naming it.
func testGRPCInvalidKey(t *testing.T, kv kvv1.KVStoreServiceClient) {
	const store, key = "grpc-invalid", "a#b" // '#' is outside Fastly's key rules
	calls := map[string]func(context.Context) error{
		"GetItem": func(ctx context.Context) error {
			_, err := kv.GetItem(ctx, &kvv1.GetItemRequest{StoreId: store, Key: key})
			return err
		},
		"PutItem": func(ctx context.Context) error {
			_, err := kv.PutItem(ctx, &kvv1.PutItemRequest{StoreId: store, Key: key, Value: []byte("x")})
			return err
		},
		"DeleteItem": func(ctx context.Context) error {
			_, err := kv.DeleteItem(ctx, &kvv1.DeleteItemRequest{StoreId: store, Key: key})
			return err
		},
	}
	for name, call := range calls {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			st := wantCode(t, name+" with key "+key, call(testContext(t)), codes.InvalidArgument)
			// grpc-go decodes grpc-status-details-bin; finding the
			// detail proves kvgate encodes it the way gRPC expects.
			if fields := badRequestFields(st); !slices.Contains(fields, "key") {
				t.Errorf("BadRequest field violations = %q (details %v), want one naming %q", fields, st.Details(), "key")
			}
		})
	}
}

// testGRPCHealth checks that the gRPC health service reports SERVING for
// the KV service and for the whole server.
func testGRPCHealth(t *testing.T, conn *grpc.ClientConn) {
	ctx := testContext(t)
	health := healthpb.NewHealthClient(conn)
	// "" is the whole server, as Kubernetes' and grpc-health-probe's
	// default checks ask.
	for _, service := range []string{kvServiceName, ""} {
		resp, err := health.Check(ctx, &healthpb.HealthCheckRequest{Service: service})
		if err != nil {
			t.Errorf("Health.Check(%q): %v", service, err)
			continue
		}
		if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("Health.Check(%q) = %v, want SERVING", service, resp.GetStatus())
		}
	}
}

// grpcurlPath finds grpcurl: KVGATE_GRPCURL, else the copy the Makefile
// builds into bin/. Without it the test is skipped on a workstation, but
// fails in CI, where a missing tool must not pass silently.
func grpcurlPath(t *testing.T) string {
	t.Helper()
	path := os.Getenv("KVGATE_GRPCURL")
	if path == "" {
		path = filepath.Join(repoRoot, "bin", "grpcurl")
	}
	if _, err := os.Stat(path); err != nil {
		msg := "grpcurl not found at " + path + " (build it with `cd tools && go build -o ../bin/ tool`, or set KVGATE_GRPCURL)"
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return path
}

// runGRPCurl runs grpcurl against addr in plaintext and returns its
// combined output, which is what a person would read.
func runGRPCurl(ctx context.Context, grpcurl string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, grpcurl, args...)
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		return string(out), ctx.Err()
	}
	return string(out), err
}

// TestGRPCurl drives kvgate with grpcurl, which knows nothing of kvgate's
// schema beforehand: everything it does depends on server reflection, and
// its JSON shows the wire format a shell user sees.
func TestGRPCurl(t *testing.T) {
	t.Parallel()
	grpcurl := grpcurlPath(t)
	p := startKVGate(t, t.TempDir())

	t.Run("List", func(t *testing.T) {
		t.Parallel()
		out, err := runGRPCurl(testContext(t), grpcurl, "-plaintext", p.Addr, "list")
		if err != nil {
			t.Fatalf("grpcurl list: %v\n%s", err, out)
		}
		services := strings.Fields(out)
		for _, want := range []string{kvServiceName, "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection"} {
			if !slices.Contains(services, want) {
				t.Errorf("grpcurl list lacks %s; it printed:\n%s", want, out)
			}
		}
	})

	t.Run("Describe", func(t *testing.T) {
		t.Parallel()
		out, err := runGRPCurl(testContext(t), grpcurl, "-plaintext", p.Addr, "describe", kvServiceName)
		if err != nil {
			t.Fatalf("grpcurl describe: %v\n%s", err, out)
		}
		rpcs := []string{
			"GetItem", "PutItem", "DeleteItem", "ListKeys", "StreamKeys", "BatchPutItems", "PutItems",
			"GetItems", "WatchItems", "DeleteKeys", "CopyItems",
		}
		for _, rpc := range rpcs {
			if !strings.Contains(out, "rpc "+rpc+" ") {
				t.Errorf("grpcurl describe %s lacks rpc %s; it printed:\n%s", kvServiceName, rpc, out)
			}
		}
	})

	t.Run("PutThenGet", func(t *testing.T) {
		t.Parallel()
		ctx := testContext(t)
		// "aGVsbG8=" is base64 for "hello": JSON carries bytes as base64.
		out, err := runGRPCurl(ctx, grpcurl, "-plaintext",
			"-d", `{"storeId":"demo","key":"greeting","value":"aGVsbG8="}`,
			p.Addr, kvServiceName+"/PutItem")
		if err != nil {
			t.Fatalf("grpcurl PutItem: %v\n%s", err, out)
		}
		out, err = runGRPCurl(ctx, grpcurl, "-plaintext",
			"-d", `{"storeId":"demo","key":"greeting"}`,
			p.Addr, kvServiceName+"/GetItem")
		if err != nil {
			t.Fatalf("grpcurl GetItem: %v\n%s", err, out)
		}
		// Decoded loosely (into any) so that the JSON types themselves are
		// checked: a uint64 must arrive as a string, per proto3 JSON.
		var resp struct {
			Item map[string]any `json:"item"`
		}
		if err := json.Unmarshal([]byte(out), &resp); err != nil {
			t.Fatalf("grpcurl GetItem printed non-JSON (%v):\n%s", err, out)
		}
		if got := resp.Item["value"]; got != "aGVsbG8=" {
			t.Errorf("item.value = %#v, want %q; grpcurl printed:\n%s", got, "aGVsbG8=", out)
		}
		gen, ok := resp.Item["generation"].(string)
		if !ok {
			t.Fatalf("item.generation = %#v, want a decimal string; grpcurl printed:\n%s", resp.Item["generation"], out)
		}
		if n, err := strconv.ParseUint(gen, 10, 64); err != nil || n == 0 || strconv.FormatUint(n, 10) != gen {
			t.Errorf("item.generation = %q, want a canonical non-zero decimal uint64", gen)
		}
	})

	t.Run("InvalidArgument", func(t *testing.T) {
		t.Parallel()
		out, err := runGRPCurl(testContext(t), grpcurl, "-plaintext",
			"-d", `{"storeId":"demo","key":"a#b"}`,
			p.Addr, kvServiceName+"/GetItem")
		var exitErr *exec.ExitError
		if !errors.As(err, &exitErr) {
			t.Fatalf("grpcurl GetItem with an invalid key: err = %v, want a non-zero exit; it printed:\n%s", err, out)
		}
		if !strings.Contains(out, "InvalidArgument") {
			t.Errorf("grpcurl output lacks InvalidArgument; it printed:\n%s", out)
		}
	})
}

// TestRestartKeepsItems proves the local store's data directory survives a
// graceful restart: the items, their metadata and their generations, so
// that if_generation_match values clients hold stay valid, and that later
// writes still move the generation forward.
func TestRestartKeepsItems(t *testing.T) {
	t.Parallel()
	dataDir := t.TempDir()
	const store = "restart"
	binary := make([]byte, 256)
	for i := range binary {
		binary[i] = byte(i)
	}
	writes := []*kvv1.PutItemRequest{
		{StoreId: store, Key: "config/app", Value: []byte(`{"debug":false}`), Metadata: "content-type=application/json"},
		{StoreId: store, Key: "blob", Value: binary},
		{StoreId: store, Key: "session/1", Value: []byte("token"), Metadata: "ttl", TimeToLive: durationpb.New(time.Hour)},
	}

	first := startKVGate(t, dataDir)
	ctx := testContext(t)
	conn := dial(t, first.Addr)
	kv := kvv1.NewKVStoreServiceClient(conn)
	before := map[string]*kvv1.Item{}
	for _, w := range writes {
		mustPut(ctx, t, kv, w)
		before[w.GetKey()] = mustGet(ctx, t, kv, store, w.GetKey())
	}
	_ = conn.Close()
	// Stop waits for the exit, so bbolt's file lock is free for the next
	// process; it also checks the shutdown was clean.
	first.Stop(t)
	if t.Failed() {
		t.FailNow()
	}

	second := startKVGate(t, dataDir)
	kv = kvv1.NewKVStoreServiceClient(dial(t, second.Addr))
	for _, w := range writes {
		want := before[w.GetKey()]
		got := mustGet(ctx, t, kv, store, w.GetKey())
		if !proto.Equal(got, want) {
			t.Errorf("after restart, %s = %v, want %v as before", w.GetKey(), got, want)
		}
	}
	list, err := kv.ListKeys(ctx, &kvv1.ListKeysRequest{StoreId: store})
	if err != nil {
		t.Fatalf("ListKeys after restart: %v", err)
	}
	if want := []string{"blob", "config/app", "session/1"}; !slices.Equal(list.GetKeys(), want) {
		t.Errorf("ListKeys after restart = %q, want %q", list.GetKeys(), want)
	}

	// The generation counter must resume past what was stored, or a
	// client's old generation could match a newer item.
	rewrite := proto.CloneOf(writes[0])
	rewrite.Value = []byte(`{"debug":true}`)
	mustPut(ctx, t, kv, rewrite)
	old := before[rewrite.GetKey()].GetGeneration()
	if got := mustGet(ctx, t, kv, store, rewrite.GetKey()).GetGeneration(); got <= old {
		t.Errorf("generation after rewriting %s = %d, want more than %d from before the restart", rewrite.GetKey(), got, old)
	}
}
