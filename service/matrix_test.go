package service_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connecthttp"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	kvv1 "github.com/kvgate/kvgate/gen/go/fastly/kv/v1"
	"github.com/kvgate/kvgate/gen/go/fastly/kv/v1/kvv1connect"
	"github.com/kvgate/kvgate/internal/kvtest"
	"github.com/kvgate/kvgate/internal/testutil"
	"github.com/kvgate/kvgate/service"
)

// methodCounter counts the HTTP methods a client sends, to prove that
// Connect GET requests really went out as GETs.
type methodCounter struct {
	next       http.RoundTripper
	gets       atomic.Int64
	wrongCache atomic.Int64 // GET responses without their Cache-Control (see getItemCacheControl)
}

func (m *methodCounter) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := m.next.RoundTrip(r)
	if r.Method == http.MethodGet {
		m.gets.Add(1)
		if err == nil && resp.Header.Get("Cache-Control") != getItemCacheControl(r.URL.Path, resp.StatusCode) {
			m.wrongCache.Add(1)
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
				runGroupedPuts(t, client, "matrix-grouped-"+tc.name+"-"+tr.name)
				if tc.get && counter.gets.Load() == 0 {
					t.Error("no request went out as a Connect GET")
				}
				if n := counter.wrongCache.Load(); n != 0 {
					t.Errorf("%d GET responses lacked their Cache-Control (no-cache for GetItem's answers, else no-store)", n)
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
	checkGetItemViews(t, ctx, client, store, "users/42", value, item)

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
	testutil.WantCode(t, "PutItem add on existing key", err, connect.CodeAlreadyExists)
	_, err = client.PutItem(ctx, &kvv1.PutItemRequest{StoreId: store, Key: "users/42", IfGenerationMatch: proto.Uint64(gen + 1)})
	testutil.WantCode(t, "PutItem with stale generation", err, connect.CodeAborted)
	_, err = client.PutItem(ctx, &kvv1.PutItemRequest{StoreId: store, Key: "users/43", Value: []byte("x"), Mode: kvv1.PutMode_PUT_MODE_ADD})
	mustOK(t, "PutItem add on new key", err)
	_, err = client.PutItem(ctx, &kvv1.PutItemRequest{StoreId: store, Key: "usersX", Value: []byte("y")})
	mustOK(t, "PutItem usersX", err)

	list, err := client.ListKeys(ctx, &kvv1.ListKeysRequest{StoreId: store, Prefix: "users/"})
	mustOK(t, "ListKeys", err)
	if want := []string{"users/42", "users/43"}; !slices.Equal(list.GetKeys(), want) || list.GetNextCursor() != "" {
		t.Fatalf("ListKeys(prefix users/) = %q next %q; want %q and no cursor", list.GetKeys(), list.GetNextCursor(), want)
	}
	page, err := client.ListKeys(ctx, &kvv1.ListKeysRequest{StoreId: store, Limit: 2, Consistency: kvv1.Consistency_CONSISTENCY_EVENTUAL})
	mustOK(t, "ListKeys page 1", err)
	rest, err := client.ListKeys(ctx, &kvv1.ListKeysRequest{StoreId: store, Limit: 2, Cursor: page.GetNextCursor(), Consistency: kvv1.Consistency_CONSISTENCY_EVENTUAL})
	mustOK(t, "ListKeys page 2", err)
	if all := append(page.GetKeys(), rest.GetKeys()...); !slices.Equal(all, []string{"users/42", "users/43", "usersX"}) || rest.GetNextCursor() != "" {
		t.Fatalf("paged ListKeys = %q then %q (next %q)", page.GetKeys(), rest.GetKeys(), rest.GetNextCursor())
	}

	_, err = client.DeleteItem(ctx, &kvv1.DeleteItemRequest{StoreId: store, Key: "users/42", IfGenerationMatch: proto.Uint64(gen + 1)})
	testutil.WantCode(t, "DeleteItem with stale generation", err, connect.CodeAborted)
	_, err = client.DeleteItem(ctx, &kvv1.DeleteItemRequest{StoreId: store, Key: "users/42", IfGenerationMatch: proto.Uint64(gen)})
	mustOK(t, "DeleteItem", err)
	_, err = client.GetItem(ctx, &kvv1.GetItemRequest{StoreId: store, Key: "users/42"})
	testutil.WantCode(t, "GetItem after delete", err, connect.CodeNotFound)
	_, err = client.DeleteItem(ctx, &kvv1.DeleteItemRequest{StoreId: store, Key: "users/42"})
	testutil.WantCode(t, "DeleteItem of a missing key", err, connect.CodeNotFound)
	_, err = client.DeleteItem(ctx, &kvv1.DeleteItemRequest{StoreId: store, Key: "users/42", Force: true})
	mustOK(t, "DeleteItem force of a missing key", err)
	_, err = client.GetItem(ctx, &kvv1.GetItemRequest{StoreId: store, Key: "bad#key"})
	testutil.WantCode(t, "GetItem with an invalid key", err, connect.CodeInvalidArgument)
	checkListKeysMetadata(t, ctx, client, store)
}

func mustOK(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// connectGRPC selects the gRPC protocol, so error details travel in
// grpc-status-details-bin as they do for gRPC callers.
func connectGRPC() []connecthttp.Option { return []connecthttp.Option{connecthttp.WithGRPC()} }

// TestStreamsProtocols runs StreamKeys, BatchPutItems and PutItems through
// each protocol and codec kvgate serves, over HTTP/1.1 and cleartext
// HTTP/2 (gRPC over HTTP/2 only). Client streaming over HTTP/1.1 is
// half-duplex, which BatchPutItems needs no more than.
func TestStreamsProtocols(t *testing.T) {
	t.Parallel()
	json := connecthttp.WithProtoJSON()
	protocols := []rpcProtocol{
		{"connect_proto/http1", kvtest.HTTP1Client, nil},
		{"connect_proto/h2c", kvtest.H2CClient, nil},
		{"connect_json/http1", kvtest.HTTP1Client, []connecthttp.Option{json}},
		{"connect_json/h2c", kvtest.H2CClient, []connecthttp.Option{json}},
		{"connect_gzip/http1", kvtest.HTTP1Client, []connecthttp.Option{connecthttp.WithSendGzip()}},
		{"grpc/h2c", kvtest.H2CClient, connectGRPC()},
		{"grpc_json/h2c", kvtest.H2CClient, []connecthttp.Option{connecthttp.WithGRPC(), json}},
		{"grpcweb/http1", kvtest.HTTP1Client, []connecthttp.Option{connecthttp.WithGRPCWeb()}},
		{"grpcweb/h2c", kvtest.H2CClient, []connecthttp.Option{connecthttp.WithGRPCWeb()}},
		{"grpcweb_json/http1", kvtest.HTTP1Client, []connecthttp.Option{connecthttp.WithGRPCWeb(), json}},
	}
	for _, p := range protocols {
		t.Run(p.name, func(t *testing.T) {
			t.Parallel()
			st := kvtest.Start(t, kvtest.Options{Batch: service.BatchConfig{MaxLines: 4, Concurrency: 3}, Watch: service.WatchConfig{MinInterval: testWatchFloor}})
			client := st.NewClient(p.client(), p.opts...)
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()

			checkMixedBatchWrites(t, ctx, st, client)
			checkStreamKeysMixed(t, ctx, client)
			checkStreamKeysMetadata(t, ctx, client)
			checkPutItemsTooMany(t, ctx, st, client)
			checkGetItemsMixed(t, ctx, st, client)
			checkWatchItems(t, ctx, st, client)
			checkCopyItems(t, ctx, st, client)
			checkDeleteKeys(t, ctx, st, client)
		})
	}
}

// mixedBatch is a small mixed list of batch items: plain writes, a
// repeated key, modes, a generation check and invalid items, with what
// the store must hold after writing it and the failures it must report.
func mixedBatch() (items []*kvv1.BatchItem, wantStored map[string]storedItem, wantFails []wantFailure) {
	items = []*kvv1.BatchItem{
		{Key: "p/a", Value: []byte{0, 1, 2, 0xff}, Metadata: `{"x":1}`},
		{Key: "p/b", Value: []byte("b1"), TimeToLive: durationpb.New(time.Hour)},
		{Key: "p/a", Value: []byte("!"), Mode: kvv1.PutMode_PUT_MODE_APPEND},
		{Key: "p/c", Value: []byte("c"), Mode: kvv1.PutMode_PUT_MODE_ADD},
		{Key: "p/b", Value: []byte("b2"), Mode: kvv1.PutMode_PUT_MODE_ADD},
		{Key: "bad|key", Value: []byte("x")},
		{Key: "p/d", Value: []byte("d"), IfGenerationMatch: proto.Uint64(0)},
		{Key: "p/e", Value: []byte("e")},
		{Key: "p/b", Value: []byte("0"), Mode: kvv1.PutMode_PUT_MODE_PREPEND, Metadata: "pre"},
		{Key: "p/f", Value: []byte("f"), TimeToLive: durationpb.New(0)},
		{Key: "p/g", Value: []byte("g")},
		{Key: "q", Value: []byte("q")},
	}
	wantStored = map[string]storedItem{
		"p/a": {value: []byte{0, 1, 2, 0xff, '!'}},
		"p/b": {value: []byte("0b1"), metadata: "pre"},
		"p/c": {value: []byte("c")},
		"p/d": {value: []byte("d")},
		"p/e": {value: []byte("e")},
		"p/g": {value: []byte("g")},
		"q":   {value: []byte("q")},
	}
	wantFails = []wantFailure{
		{index: 4, key: "p/b", code: "already_exists", field: "exists"},
		{index: 5, key: "bad|key", code: "invalid_argument", field: "key"},
		{index: 9, key: "p/f", code: "invalid_argument", field: "time_to_live"},
	}
	return items, wantStored, wantFails
}

// checkMixedBatchWrites writes the mixed batch with BatchPutItems, in
// messages of five, to the store "stream", and with PutItems to the store
// "unary", checking each answer and what each store holds.
func checkMixedBatchWrites(t *testing.T, ctx context.Context, st *kvtest.Stack, client kvv1connect.KVStoreServiceClient) {
	t.Helper()
	items, wantStored, wantFails := mixedBatch()
	wantWritten := uint64(len(items) - len(wantFails))

	res, err := batchPut(ctx, client, batchMessages("stream", items, 5))
	mustOK(t, "BatchPutItems", err)
	checkFailures(t, res.GetFailures(), wantFails)
	if res.GetWritten() != wantWritten {
		t.Errorf("BatchPutItems written = %d; want %d", res.GetWritten(), wantWritten)
	}
	checkStored(t, ctx, st.Client, "stream", wantStored, []string{"p/f"})

	ures, err := client.PutItems(ctx, &kvv1.PutItemsRequest{StoreId: "unary", Items: items})
	mustOK(t, "PutItems", err)
	checkFailures(t, ures.GetFailures(), wantFails)
	if ures.GetWritten() != wantWritten {
		t.Errorf("PutItems written = %d; want %d", ures.GetWritten(), wantWritten)
	}
	checkStored(t, ctx, st.Client, "unary", wantStored, []string{"p/f"})
}

// checkStreamKeysMixed lists the store "stream", which holds the mixed
// batch, with StreamKeys: three keys a message, and a prefix kvgate
// filters itself. An invalid StreamKeys request fails before any message.
func checkStreamKeysMixed(t *testing.T, ctx context.Context, client kvv1connect.KVStoreServiceClient) {
	t.Helper()
	for _, tc := range []struct {
		prefix string
		want   []string
		msgs   int
	}{
		{"", []string{"p/a", "p/b", "p/c", "p/d", "p/e", "p/g", "q"}, 3},
		{"p/", []string{"p/a", "p/b", "p/c", "p/d", "p/e", "p/g"}, 2},
	} {
		msgs, err := streamKeys(ctx, client, &kvv1.StreamKeysRequest{StoreId: "stream", Prefix: tc.prefix, PageSize: 3})
		mustOK(t, "StreamKeys", err)
		if d := testutil.DiffKeys(keysOf(msgs), tc.want); d != "" || len(msgs) != tc.msgs {
			t.Errorf("StreamKeys(prefix %q) = %d messages: %s; want %d messages", tc.prefix, len(msgs), d, tc.msgs)
		}
	}
	_, err := streamKeys(ctx, client, &kvv1.StreamKeysRequest{StoreId: "stream", PageSize: 1001})
	asConnectError(t, "StreamKeys(page_size 1001)", err, connect.CodeInvalidArgument)
}

// checkPutItemsTooMany checks that PutItems refuses more than 10,000 items,
// naming the field items, and calls nothing upstream.
func checkPutItemsTooMany(t *testing.T, ctx context.Context, st *kvtest.Stack, client kvv1connect.KVStoreServiceClient) {
	t.Helper()
	before := st.Store.Requests()
	tooMany := make([]*kvv1.BatchItem, service.MaxPutItems+1)
	for i := range tooMany {
		tooMany[i] = &kvv1.BatchItem{Key: fmt.Sprintf("t/%05d", i), Value: []byte("v")}
	}
	_, err := client.PutItems(ctx, &kvv1.PutItemsRequest{StoreId: "unary", Items: tooMany})
	cerr := asConnectError(t, "PutItems with 10,001 items", err, connect.CodeInvalidArgument)
	br, _ := findDetail[*errdetails.BadRequest](detailsOf(cerr))
	if len(br.GetFieldViolations()) != 1 || br.GetFieldViolations()[0].GetField() != "items" {
		t.Errorf("PutItems with 10,001 items: BadRequest = %v; want the field items", br)
	}
	if n := st.Store.Requests() - before; n != 0 {
		t.Errorf("PutItems with 10,001 items made %d upstream requests; want none", n)
	}
}
