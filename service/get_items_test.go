package service_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connecthttp"
	"google.golang.org/protobuf/proto"

	kvv1 "github.com/kvgate/kvgate/gen/go/fastly/kv/v1"
	"github.com/kvgate/kvgate/gen/go/fastly/kv/v1/kvv1connect"
	"github.com/kvgate/kvgate/internal/app"
	"github.com/kvgate/kvgate/internal/kvtest"
	"github.com/kvgate/kvgate/internal/testutil"
	"github.com/kvgate/kvgate/service"
	"github.com/kvgate/kvgate/upstream"
	"github.com/kvgate/kvgate/upstream/localstore"
)

// getItems reads a GetItems stream to its end and returns its messages and
// how it ended (nil for a clean end).
func getItems(ctx context.Context, client kvv1connect.KVStoreServiceClient, req *kvv1.GetItemsRequest) ([]*kvv1.GetItemsResponse, error) {
	stream, err := client.GetItems(ctx, req)
	if err != nil {
		return nil, err
	}
	defer stream.Close()
	return testutil.ReadStream(stream.Receive)
}

// byPosition indexes a GetItems answer by position, failing the test when
// a position is answered twice, out of range, under another key, or not
// at all.
func byPosition(t *testing.T, keys []string, msgs []*kvv1.GetItemsResponse) []*kvv1.GetItemsResponse {
	t.Helper()
	out := make([]*kvv1.GetItemsResponse, len(keys))
	for _, m := range msgs {
		i := int(m.GetIndex())
		switch {
		case i >= len(keys):
			t.Fatalf("message for position %d of %d keys", i, len(keys))
		case out[i] != nil:
			t.Fatalf("position %d answered twice", i)
		case m.GetKey() != keys[i]:
			t.Fatalf("position %d answered for key %q; it holds %q", i, m.GetKey(), keys[i])
		}
		out[i] = m
	}
	for i, m := range out {
		if m == nil {
			t.Fatalf("position %d (%q) not answered", i, keys[i])
		}
	}
	return out
}

// checkGetItemsMixed reads found, absent, repeated and binary items with
// GetItems, in the full and the metadata view, from the store "getitems":
// one message per position, one upstream read per distinct key, GETs for
// the full view and HEADs for the metadata view. An invalid request fails
// before any message.
func checkGetItemsMixed(t *testing.T, ctx context.Context, st *kvtest.Stack, client kvv1connect.KVStoreServiceClient) {
	t.Helper()
	const store = "getitems"
	binary := []byte{0, 1, 2, 0xff, 0xfe, '\n', 0}
	want := map[string]storedItem{
		"g/a":   {value: []byte("alpha"), metadata: `{"a":1}`},
		"g/bin": {value: binary},
		"g/big": {value: bytes.Repeat([]byte{0xc3, 0x28}, 40<<10), metadata: "big"}, // not UTF-8
	}
	gens := map[string]uint64{}
	for k, w := range want {
		if err := st.Client.PutItem(ctx, store, k, w.value, upstream.PutOptions{Metadata: w.metadata}); err != nil {
			t.Fatal(err)
		}
		it, err := st.Client.GetItem(ctx, store, k)
		if err != nil {
			t.Fatal(err)
		}
		gens[k] = it.Generation
	}
	keys := []string{"g/a", "g/missing", "g/bin", "g/a", "g/big", "g/gone", "g/a", "g/missing"}
	const distinct = 5

	for _, view := range []kvv1.ItemView{kvv1.ItemView_ITEM_VIEW_UNSPECIFIED, kvv1.ItemView_ITEM_VIEW_FULL, kvv1.ItemView_ITEM_VIEW_METADATA} {
		metadataOnly := view == kvv1.ItemView_ITEM_VIEW_METADATA
		gets, heads := st.Store.Count(localstore.RequestGet), st.Store.Count(localstore.RequestHead)
		msgs, err := getItems(ctx, client, &kvv1.GetItemsRequest{StoreId: store, Keys: keys, View: view})
		mustOK(t, "GetItems "+view.String(), err)
		for i, m := range byPosition(t, keys, msgs) {
			w, exists := want[keys[i]]
			if !exists {
				if _, ok := m.GetResult().(*kvv1.GetItemsResponse_Absent); !ok || !m.GetAbsent() {
					t.Errorf("%s: position %d (%q) = %v; want absent", view, i, keys[i], m)
				}
				continue
			}
			item := m.GetItem()
			if item == nil {
				t.Errorf("%s: position %d (%q) = %v; want the item", view, i, keys[i], m)
				continue
			}
			wantValue := w.value
			if metadataOnly {
				wantValue = nil
			}
			if item.GetKey() != keys[i] || !bytes.Equal(item.GetValue(), wantValue) || item.GetMetadata() != w.metadata ||
				item.GetGeneration() != gens[keys[i]] || item.GetLastModified() == nil || item.Size == nil || item.GetSize() != uint64(len(w.value)) {
				t.Errorf("%s: position %d = key %q, %d value bytes, metadata %q, generation %d, last_modified %v, size %v; want %q, %d bytes, %q, %d, set, %d",
					view, i, item.GetKey(), len(item.GetValue()), item.GetMetadata(), item.GetGeneration(), item.GetLastModified(), item.Size,
					keys[i], len(wantValue), w.metadata, gens[keys[i]], len(w.value))
			}
		}
		gets, heads = st.Store.Count(localstore.RequestGet)-gets, st.Store.Count(localstore.RequestHead)-heads
		wantGets, wantHeads := int64(distinct), int64(0)
		if metadataOnly {
			wantGets, wantHeads = 0, distinct
		}
		if gets != wantGets || heads != wantHeads {
			t.Errorf("%s: %d GETs and %d HEADs upstream; want %d and %d (one read per distinct key)", view, gets, heads, wantGets, wantHeads)
		}
	}

	before := st.Requests()
	msgs, err := getItems(ctx, client, &kvv1.GetItemsRequest{StoreId: store, Keys: []string{"ok", "bad|key"}})
	if len(msgs) != 0 {
		t.Errorf("GetItems with an invalid key sent %d messages before failing", len(msgs))
	}
	assertInvalidField(t, err, "keys[1]")
	if n := st.Requests() - before; n != 0 {
		t.Errorf("GetItems with an invalid key made %d upstream requests; want none", n)
	}
}

// getItemsCorpusCases are the bad-input corpus's GetItems requests: each
// must fail before any message, naming its fields.
func getItemsCorpusCases() []corpusCase {
	call := func(req *kvv1.GetItemsRequest) func(context.Context, kvv1connect.KVStoreServiceClient) error {
		return func(ctx context.Context, c kvv1connect.KVStoreServiceClient) error {
			msgs, err := getItems(ctx, c, req)
			if err == nil || len(msgs) != 0 {
				return fmt.Errorf("GetItems sent %d messages and ended with %v; want an error before any message", len(msgs), err)
			}
			return err
		}
	}
	tooMany := make([]string, service.MaxGetItemsKeys+1)
	for i := range tooMany {
		tooMany[i] = fmt.Sprintf("k%04d", i)
	}
	var cases []corpusCase
	add := func(category, name string, req *kvv1.GetItemsRequest, fields ...string) {
		cases = append(cases, corpusCase{rpc: "GetItems", category: category, name: name, call: call(req), fields: fields})
	}
	add("store_id", "empty", &kvv1.GetItemsRequest{Keys: []string{"k"}}, "store_id")
	add("store_id", "slash", &kvv1.GetItemsRequest{StoreId: "a/b", Keys: []string{"k"}}, "store_id")
	add("keys", "none", &kvv1.GetItemsRequest{StoreId: corpusStore}, "keys")
	add("keys", "1001 keys", &kvv1.GetItemsRequest{StoreId: corpusStore, Keys: tooMany}, "keys")
	for _, k := range []struct{ name, key string }{
		{"empty", ""}, {"pipe", "a|b"}, {"LF", "a\nb"}, {"dotdot", ".."}, {"acme path", ".well-known/acme-challenge/x"},
		{"single space", " "}, {"1025 bytes", strings.Repeat("k", 1025)},
	} {
		add("keys", "invalid key "+k.name+" at 2", &kvv1.GetItemsRequest{StoreId: corpusStore, Keys: []string{"a", "b", k.key, "d"}}, "keys[2]")
	}
	last := append(tooMany[:service.MaxGetItemsKeys-1:service.MaxGetItemsKeys-1], "x#y")
	add("keys", "invalid key at 999", &kvv1.GetItemsRequest{StoreId: corpusStore, Keys: last}, "keys[999]")
	add("keys", "two invalid keys", &kvv1.GetItemsRequest{StoreId: corpusStore, Keys: []string{"?", "ok", "a;b"}}, "keys[0]", "keys[2]")
	for _, v := range []kvv1.ItemView{3, -1} {
		add("enum", fmt.Sprintf("view %d", v), &kvv1.GetItemsRequest{StoreId: corpusStore, Keys: []string{"k"}, View: v}, "view")
	}
	add("multiple", "every field", &kvv1.GetItemsRequest{StoreId: "a b", Keys: []string{"ok", ""}, View: 9}, "store_id", "keys[1]", "view")
	return cases
}

// getItemsKeys are n keys under prefix.
func getItemsKeys(prefix string, n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("%s%04d", prefix, i)
	}
	return keys
}

// TestGetItemsCancel cancels a GetItems call of 1,000 keys read four at a
// time from a slow store: the reads stop.
func TestGetItemsCancel(t *testing.T) {
	t.Parallel()
	const concurrency = 4
	for _, p := range cancelProtocols {
		t.Run(p.name, func(t *testing.T) {
			t.Parallel()
			st := kvtest.Start(t, kvtest.Options{GetItemsConcurrency: concurrency})
			// 250 rounds of reads answered after 30ms: a call left running
			// would keep reading for seconds. The keys do not exist; each
			// answer is absent.
			st.Store.SetFaults(localstore.Faults{Latency: 30 * time.Millisecond})
			client := st.NewClient(p.client(), p.opts...)
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			sctx, scancel := context.WithCancel(ctx)
			defer scancel()
			stream, err := client.GetItems(sctx, &kvv1.GetItemsRequest{StoreId: "slow", Keys: getItemsKeys("c/", 1000)})
			mustOK(t, "GetItems", err)
			defer stream.Close()
			for i := range 3 {
				if _, err := stream.Receive(); err != nil {
					t.Fatalf("message %d: %v", i, err)
				}
			}
			scancel()
			atCancel := st.Store.Count(localstore.RequestGet)
			for range concurrency + 2 {
				if _, err := stream.Receive(); err != nil {
					break
				}
			}
			// The reads in flight at the cancel were counted as they arrived;
			// until the cancel reaches kvgate, each that completes may start
			// another: a round of them at most, unless the machine stalls
			// for a whole 30ms read, which a second round allows for.
			final := settle(t, func() int64 { return st.Store.Count(localstore.RequestGet) }, 500*time.Millisecond, 30*time.Second)
			if final-atCancel > 2*concurrency {
				t.Errorf("the store received %d GETs after the client cancelled (%d before); want at most %d", final-atCancel, atCancel, 2*concurrency)
			}
			if final >= 1000 {
				t.Errorf("every key was read (%d GETs)", final)
			}
		})
	}
}

// TestGetItemsBoundedMemory reads 48 values of 1 MiB, four at a time,
// with a client that stops reading after the first message: kvgate stops
// starting reads (only what the transport buffers between the two sides
// gets ahead of the client), holds no more than four values at a time in
// its memory budget, and lets go of all of them when the call ends.
func TestGetItemsBoundedMemory(t *testing.T) {
	t.Parallel()
	const (
		concurrency = 4
		valueBytes  = 1 << 20
		n           = 48
		// transportSlack is how many values the transport may hold between
		// kvgate and a client that does not read: over HTTP/2 a stream
		// window of 4 MiB (Go's client) and the buffers on either side,
		// over HTTP/1.1 the sockets' buffers, which loopback autotuning
		// can grow to several MiB each.
		transportSlack = 16
	)
	st := kvtest.Start(t, kvtest.Options{
		MaxValueBytes:       valueBytes,
		MemoryBudget:        app.MemoryBudgetConfig{Bytes: 256 << 20},
		GetItemsConcurrency: concurrency,
	})
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	keys := getItemsKeys("m/", n)
	for i, k := range keys {
		if err := st.Client.PutItem(ctx, "mem", k, budgetValue(i, valueBytes), upstream.PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []rpcProtocol{
		{"grpc_h2c", kvtest.H2CClient, connectGRPC()},
		{"connect_http1", kvtest.HTTP1Client, nil},
	} {
		t.Run(p.name, func(t *testing.T) {
			gets := st.Store.Count(localstore.RequestGet)
			client := st.NewClient(p.client(), p.opts...)
			stream, err := client.GetItems(ctx, &kvv1.GetItemsRequest{StoreId: "mem", Keys: keys})
			mustOK(t, "GetItems", err)
			defer stream.Close()
			first, err := stream.Receive()
			mustOK(t, "first message", err)

			// The client reads no more: kvgate must stop reading.
			started := settle(t, func() int64 { return st.Store.Count(localstore.RequestGet) }, 300*time.Millisecond, 30*time.Second) - gets
			if limit := int64(1 + concurrency + transportSlack); started > limit {
				t.Errorf("with the client holding back after 1 message, kvgate read %d values; want at most %d", started, limit)
			}
			held := st.MemoryBudget.Stats().Held
			t.Logf("with the client holding back after 1 message: %d of %d values read, %d bytes held", started, n, held)
			if held <= 0 || held > concurrency*2*valueBytes+64<<10 {
				t.Errorf("while the client holds back, kvgate's budget holds %d bytes; want some, and at most %d values' worth (each value and its message)", held, concurrency)
			}

			msgs := []*kvv1.GetItemsResponse{first}
			for m, err := range testutil.Messages(stream.Receive) {
				mustOK(t, "GetItems", err)
				msgs = append(msgs, m)
			}
			for i, m := range byPosition(t, keys, msgs) {
				if !bytes.Equal(m.GetItem().GetValue(), budgetValue(i, valueBytes)) {
					t.Errorf("position %d: value differs", i)
				}
			}
		})
	}
	s := st.MemoryBudget.Stats()
	if limit := int64(concurrency*2*valueBytes + 64<<10); s.MaxHeld > limit {
		t.Errorf("kvgate's budget held %d bytes at most; want at most %d: %d values, each with its message", s.MaxHeld, limit, concurrency)
	}
	if s.MaxHeld < 2*valueBytes {
		t.Errorf("kvgate's budget held %d bytes at most; the values read were not reserved", s.MaxHeld)
	}
	checkBudgetReturned(t, st.MemoryBudget)
}

// TestGetItemsShutdown shuts kvgate down during a long GetItems call: once
// the grace period's first half is over, the call ends with UNAVAILABLE
// saying kvgate is shutting down, and the reads stop.
func TestGetItemsShutdown(t *testing.T) {
	t.Parallel()
	st := kvtest.Start(t, kvtest.Options{GetItemsConcurrency: 2, ShutdownTimeout: time.Second})
	st.Store.SetFaults(localstore.Faults{Latency: 20 * time.Millisecond})
	client := st.NewClient(kvtest.H2CClient(), connecthttp.WithGRPC())
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	stream, err := client.GetItems(ctx, &kvv1.GetItemsRequest{StoreId: "drain", Keys: getItemsKeys("d/", 1000)})
	mustOK(t, "GetItems", err)
	defer stream.Close()
	if _, err := stream.Receive(); err != nil {
		t.Fatal(err)
	}
	shut := make(chan error, 1)
	go func() { shut <- st.Shutdown() }()
	var n int
	for _, err = range testutil.Messages(stream.Receive) {
		if err != nil {
			break
		}
		n++
	}
	cerr := asConnectError(t, "GetItems during shutdown", err, connect.CodeUnavailable)
	if !strings.Contains(cerr.Message(), "shutting down") {
		t.Errorf("GetItems during shutdown: %v; want it to say kvgate is shutting down", cerr)
	}
	if n >= 999 {
		t.Errorf("the call answered every key (%d messages) though kvgate shut down", n+1)
	}
	if err := <-shut; err != nil {
		t.Errorf("shutdown: %v", err)
	}
}

// TestGetItemsUpstreamErrors checks how GetItems answers the upstream's
// failures: a failure of one key's read is that key's KeyError, with the
// Connect code GetItem would fail with, while a token Fastly refuses ends
// the call, since every key would be refused alike.
func TestGetItemsUpstreamErrors(t *testing.T) {
	t.Parallel()
	statuses := map[string]int{"busy": http.StatusServiceUnavailable, "limited": http.StatusTooManyRequests,
		"weird": http.StatusTeapot, "denied": http.StatusForbidden, "unauth": http.StatusUnauthorized}
	up := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:]
		if status, ok := statuses[key]; ok {
			w.WriteHeader(status)
			return
		}
		if key == "found" {
			w.Header().Set("Generation", "7")
			w.Header().Set("Metadata", "m")
			_, _ = w.Write([]byte("v"))
			return
		}
		w.WriteHeader(http.StatusNotFound)
	})
	st := kvtest.Start(t, kvtest.Options{Upstream: up, Retry: upstream.RetryPolicy{MaxAttempts: 1}})
	client := st.NewClient(kvtest.H2CClient(), connecthttp.WithGRPC())
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()

	keys := []string{"found", "busy", "nothing", "limited", "weird", "busy"}
	msgs, err := getItems(ctx, client, &kvv1.GetItemsRequest{StoreId: "s", Keys: keys})
	mustOK(t, "GetItems", err)
	wantCodes := map[string]connect.Code{"busy": connect.CodeUnavailable, "limited": connect.CodeResourceExhausted, "weird": connect.CodeUnknown}
	for i, m := range byPosition(t, keys, msgs) {
		switch key := keys[i]; key {
		case "found":
			if want := (&kvv1.Item{Key: "found", Value: []byte("v"), Metadata: "m", Generation: 7, Size: proto.Uint64(1)}); !proto.Equal(m.GetItem(), want) {
				t.Errorf("found = %v; want %v", m, want)
			}
		case "nothing":
			if !m.GetAbsent() {
				t.Errorf("nothing = %v; want absent", m)
			}
		default:
			if ke := m.GetError(); ke.GetCode() != wantCodes[key].String() || ke.GetReason() == "" {
				t.Errorf("%s = %v; want the error %s with a reason", key, m, wantCodes[key])
			}
		}
	}

	for key, code := range map[string]connect.Code{"denied": connect.CodePermissionDenied, "unauth": connect.CodeUnauthenticated} {
		_, err := getItems(ctx, client, &kvv1.GetItemsRequest{StoreId: "s", Keys: []string{key, "other", key}})
		testutil.WantCode(t, "GetItems with the token refused ("+key+")", err, code)
	}
}

// TestGetItemsConcurrency reads 200 keys five at a time from an upstream
// that takes 10ms per read: never more than five reads are in flight,
// and every key is read once.
func TestGetItemsConcurrency(t *testing.T) {
	t.Parallel()
	const concurrency = 5
	var (
		mu                     sync.Mutex
		inFlight, most, served int
	)
	up := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		inFlight++
		served++
		most = max(most, inFlight)
		mu.Unlock()
		time.Sleep(10 * time.Millisecond)
		mu.Lock()
		inFlight--
		mu.Unlock()
		w.WriteHeader(http.StatusNotFound)
	})
	st := kvtest.Start(t, kvtest.Options{Upstream: up, GetItemsConcurrency: concurrency})
	client := st.NewClient(kvtest.H2CClient(), connecthttp.WithGRPC())
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	keys := getItemsKeys("n/", 200)
	msgs, err := getItems(ctx, client, &kvv1.GetItemsRequest{StoreId: "s", Keys: append(keys, keys[:50]...)})
	mustOK(t, "GetItems", err)
	byPosition(t, append(keys, keys[:50]...), msgs)
	mu.Lock()
	defer mu.Unlock()
	if most > concurrency || most < 2 {
		t.Errorf("at most %d reads were in flight at once; want up to %d, and more than one", most, concurrency)
	}
	if served != len(keys) {
		t.Errorf("the upstream served %d reads; want %d, one per distinct key", served, len(keys))
	}
}
