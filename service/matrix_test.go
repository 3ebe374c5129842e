package service_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connecthttp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	kvv1 "github.com/kvgate/kvgate/gen/go/fastly/kv/v1"
	"github.com/kvgate/kvgate/gen/go/fastly/kv/v1/kvv1connect"
	"github.com/kvgate/kvgate/internal/kvtest"
)

// methodCounter counts the HTTP methods a client sends, to prove that
// Connect GET requests really went out as GETs.
type methodCounter struct {
	next      http.RoundTripper
	gets      atomic.Int64
	cacheable atomic.Int64 // GET responses without Cache-Control: no-store
}

func (m *methodCounter) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := m.next.RoundTrip(r)
	if r.Method == http.MethodGet {
		m.gets.Add(1)
		if err == nil && resp.Header.Get("Cache-Control") != "no-store" {
			m.cacheable.Add(1)
		}
	}
	return resp, err
}

// TestProtocolMatrix runs every unary RPC through connect-go clients in each
// protocol and codec kvgate serves, over HTTP/1.1 and cleartext HTTP/2,
// against the real server backed by the local store over HTTP.
func TestProtocolMatrix(t *testing.T) {
	t.Parallel()
	st := kvtest.Start(t, kvtest.Options{})

	type transport struct {
		name   string
		client func() *http.Client
	}
	h1 := transport{"http1", kvtest.HTTP1Client}
	h2c := transport{"h2c", kvtest.H2CClient}
	cases := []struct {
		name       string
		transports []transport
		opts       []connecthttp.Option
		get        bool // read RPCs go out as Connect GET requests
	}{
		{name: "connect_proto", transports: []transport{h1, h2c}},
		{name: "connect_json", transports: []transport{h1, h2c}, opts: []connecthttp.Option{connecthttp.WithProtoJSON()}},
		{name: "connect_proto_gzip", transports: []transport{h1, h2c}, opts: []connecthttp.Option{connecthttp.WithSendGzip()}},
		{name: "connect_get", transports: []transport{h1, h2c}, opts: []connecthttp.Option{connecthttp.WithHTTPGet()}, get: true},
		{name: "connect_get_json", transports: []transport{h1, h2c}, opts: []connecthttp.Option{connecthttp.WithHTTPGet(), connecthttp.WithProtoJSON()}, get: true},
		// gRPC needs HTTP/2.
		{name: "grpc", transports: []transport{h2c}, opts: []connecthttp.Option{connecthttp.WithGRPC()}},
		{name: "grpc_gzip", transports: []transport{h2c}, opts: []connecthttp.Option{connecthttp.WithGRPC(), connecthttp.WithSendGzip()}},
		{name: "grpcweb", transports: []transport{h1, h2c}, opts: []connecthttp.Option{connecthttp.WithGRPCWeb()}},
		{name: "grpcweb_json", transports: []transport{h1, h2c}, opts: []connecthttp.Option{connecthttp.WithGRPCWeb(), connecthttp.WithProtoJSON()}},
	}
	for _, tc := range cases {
		for _, tr := range tc.transports {
			t.Run(tc.name+"/"+tr.name, func(t *testing.T) {
				t.Parallel()
				hc := tr.client()
				counter := &methodCounter{next: hc.Transport}
				hc.Transport = counter
				client := st.NewClient(hc, tc.opts...)
				// Each combination gets its own store, so they run in parallel.
				runUnaryScenario(t, client, "matrix-"+tc.name+"-"+tr.name)
				if tc.get && counter.gets.Load() == 0 {
					t.Error("no request went out as a Connect GET")
				}
				if n := counter.cacheable.Load(); n != 0 {
					t.Errorf("%d GET responses lacked Cache-Control: no-store", n)
				}
				if !tc.get && counter.gets.Load() != 0 {
					t.Errorf("%d requests went out as GET without WithHTTPGet", counter.gets.Load())
				}
			})
		}
	}
}

// runUnaryScenario exercises GetItem, PutItem, DeleteItem and ListKeys and
// their main outcomes.
func runUnaryScenario(t *testing.T, client kvv1connect.KVStoreServiceClient, store string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()

	value := bytes.Repeat([]byte{0, 1, 2, 0xff}, 1024) // binary, not UTF-8
	_, err := client.PutItem(ctx, &kvv1.PutItemRequest{
		StoreId: store, Key: "users/42", Value: value, Metadata: `{"v":1}`,
		TimeToLive: durationpb.New(time.Hour),
	})
	mustOK(t, "PutItem", err)
	got, err := client.GetItem(ctx, &kvv1.GetItemRequest{StoreId: store, Key: "users/42"})
	mustOK(t, "GetItem", err)
	item := got.GetItem()
	if item.GetKey() != "users/42" || !bytes.Equal(item.GetValue(), value) || item.GetMetadata() != `{"v":1}` {
		t.Fatalf("GetItem = key %q, %d value bytes, metadata %q", item.GetKey(), len(item.GetValue()), item.GetMetadata())
	}
	if item.GetGeneration() == 0 || item.GetLastModified() == nil {
		t.Fatalf("GetItem: generation %d, last_modified %v: want both set", item.GetGeneration(), item.GetLastModified())
	}

	// Append clears metadata, as every Fastly write replaces it.
	_, err = client.PutItem(ctx, &kvv1.PutItemRequest{StoreId: store, Key: "users/42", Value: []byte("!"), Mode: kvv1.PutMode_PUT_MODE_APPEND})
	mustOK(t, "PutItem append", err)
	got, err = client.GetItem(ctx, &kvv1.GetItemRequest{StoreId: store, Key: "users/42"})
	mustOK(t, "GetItem after append", err)
	if g := got.GetItem(); len(g.GetValue()) != len(value)+1 || g.GetMetadata() != "" || g.GetGeneration() <= item.GetGeneration() {
		t.Fatalf("after append: %d bytes, metadata %q, generation %d (was %d)", len(g.GetValue()), g.GetMetadata(), g.GetGeneration(), item.GetGeneration())
	}
	gen := got.GetItem().GetGeneration()

	_, err = client.PutItem(ctx, &kvv1.PutItemRequest{StoreId: store, Key: "users/42", Mode: kvv1.PutMode_PUT_MODE_ADD})
	wantCode(t, "PutItem add on existing key", err, connect.CodeAlreadyExists)
	_, err = client.PutItem(ctx, &kvv1.PutItemRequest{StoreId: store, Key: "users/42", IfGenerationMatch: proto.Uint64(gen + 1)})
	wantCode(t, "PutItem with stale generation", err, connect.CodeAborted)
	_, err = client.PutItem(ctx, &kvv1.PutItemRequest{StoreId: store, Key: "users/43", Value: []byte("x"), Mode: kvv1.PutMode_PUT_MODE_ADD})
	mustOK(t, "PutItem add on new key", err)
	_, err = client.PutItem(ctx, &kvv1.PutItemRequest{StoreId: store, Key: "usersX", Value: []byte("y")})
	mustOK(t, "PutItem usersX", err)

	list, err := client.ListKeys(ctx, &kvv1.ListKeysRequest{StoreId: store, Prefix: "users/"})
	mustOK(t, "ListKeys", err)
	if want := []string{"users/42", "users/43"}; !equalStrings(list.GetKeys(), want) || list.GetNextCursor() != "" {
		t.Fatalf("ListKeys(prefix users/) = %q next %q; want %q and no cursor", list.GetKeys(), list.GetNextCursor(), want)
	}
	page, err := client.ListKeys(ctx, &kvv1.ListKeysRequest{StoreId: store, Limit: 2, Consistency: kvv1.Consistency_CONSISTENCY_EVENTUAL})
	mustOK(t, "ListKeys page 1", err)
	rest, err := client.ListKeys(ctx, &kvv1.ListKeysRequest{StoreId: store, Limit: 2, Cursor: page.GetNextCursor(), Consistency: kvv1.Consistency_CONSISTENCY_EVENTUAL})
	mustOK(t, "ListKeys page 2", err)
	if all := append(page.GetKeys(), rest.GetKeys()...); !equalStrings(all, []string{"users/42", "users/43", "usersX"}) || rest.GetNextCursor() != "" {
		t.Fatalf("paged ListKeys = %q then %q (next %q)", page.GetKeys(), rest.GetKeys(), rest.GetNextCursor())
	}

	_, err = client.DeleteItem(ctx, &kvv1.DeleteItemRequest{StoreId: store, Key: "users/42", IfGenerationMatch: proto.Uint64(gen + 1)})
	wantCode(t, "DeleteItem with stale generation", err, connect.CodeAborted)
	_, err = client.DeleteItem(ctx, &kvv1.DeleteItemRequest{StoreId: store, Key: "users/42", IfGenerationMatch: proto.Uint64(gen)})
	mustOK(t, "DeleteItem", err)
	_, err = client.GetItem(ctx, &kvv1.GetItemRequest{StoreId: store, Key: "users/42"})
	wantCode(t, "GetItem after delete", err, connect.CodeNotFound)
	_, err = client.DeleteItem(ctx, &kvv1.DeleteItemRequest{StoreId: store, Key: "users/42"})
	wantCode(t, "DeleteItem of a missing key", err, connect.CodeNotFound)
	_, err = client.DeleteItem(ctx, &kvv1.DeleteItemRequest{StoreId: store, Key: "users/42", Force: true})
	mustOK(t, "DeleteItem force of a missing key", err)
	_, err = client.GetItem(ctx, &kvv1.GetItemRequest{StoreId: store, Key: "bad#key"})
	wantCode(t, "GetItem with an invalid key", err, connect.CodeInvalidArgument)
}

func mustOK(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func wantCode(t *testing.T, what string, err error, want connect.Code) {
	t.Helper()
	var cerr *connect.Error
	if !errors.As(err, &cerr) || cerr.Code() != want {
		t.Fatalf("%s: got %v, want code %v", what, err, want)
	}
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// connectGRPC selects the gRPC protocol, so error details travel in
// grpc-status-details-bin as they do for gRPC callers.
func connectGRPC() []connecthttp.Option { return []connecthttp.Option{connecthttp.WithGRPC()} }
