package service_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect/v2"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	kvv1 "github.com/kvgate/kvgate/gen/go/fastly/kv/v1"
	"github.com/kvgate/kvgate/gen/go/fastly/kv/v1/kvv1connect"
	"github.com/kvgate/kvgate/internal/kvtest"
	"github.com/kvgate/kvgate/internal/testutil"
	"github.com/kvgate/kvgate/service"
	"github.com/kvgate/kvgate/upstream"
	"github.com/kvgate/kvgate/upstream/localstore"
)

// TestBatchPutItems100k streams 100,000 items through BatchPutItems over
// gRPC in messages of 500, reads them back from the store (every one, or a
// seventh of them under the race detector), and enumerates them with
// StreamKeys with and without prefixes, in pages of 997 that cross the
// batches' boundaries, counting messages and upstream list requests.
func TestBatchPutItems100k(t *testing.T) {
	t.Parallel()
	const (
		n        = 100_000
		store    = "bulk"
		perMsg   = 500
		pageSize = 997
	)
	st := kvtest.Start(t, kvtest.Options{})
	client := st.NewClient(kvtest.H2CClient(), connectGRPC()...)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()

	items, want, all := bulkItems(n)

	res, err := batchPut(ctx, client, batchMessages(store, items, perMsg))
	mustOK(t, "BatchPutItems", err)
	if res.GetWritten() != n || len(res.GetFailures()) != 0 {
		t.Fatalf("BatchPutItems = written %d, %d failures (first %v); want %d written, none failed",
			res.GetWritten(), len(res.GetFailures()), res.GetFailures()[:min(3, len(res.GetFailures()))], n)
	}
	// Plain upserts with unique keys ride full batches of the default
	// 1000 lines; none needs a single PUT.
	if b, p := st.Store.Count(localstore.RequestBatch), st.Store.Count(localstore.RequestPut); b != n/1000 || p != 0 {
		t.Errorf("the store received %d batch PUTs and %d single PUTs; want %d and 0", b, p, n/1000)
	}
	checkBulkReadBack(t, ctx, st, client, store, items, want)

	// "b/00996" ends on the last key of an upstream page: the end shows up
	// on the next page, with no match, as a final empty message.
	for _, prefix := range []string{"", "a", "a/", "b/05", "b/0999", "b/00996", "c"} {
		t.Run("prefix="+prefix, func(t *testing.T) {
			// Not parallel: each case counts the list requests it causes.
			checkBulkStreamKeys(t, ctx, st, client, store, all, prefix, pageSize)
		})
	}
}

// bulkItems builds n items, alternating between the prefixes "a/" and
// "b/", with values of varying length holding NUL and 0xff, metadata on
// four in five, a time to live on one in eleven and background fetch on
// one in thirteen. It returns the items, what each key must hold, and
// every key, sorted.
func bulkItems(n int) (items []*kvv1.BatchItem, want map[string]storedItem, all []string) {
	items = make([]*kvv1.BatchItem, n)
	want = make(map[string]storedItem, n)
	all = make([]string, n)
	for i := range n {
		prefix := "a"
		if i%2 == 1 {
			prefix = "b"
		}
		it := &kvv1.BatchItem{
			Key:   fmt.Sprintf("%s/%06d", prefix, i),
			Value: fmt.Appendf(nil, "value-%d-%s\x00\xff", i, strings.Repeat("x", i%7)),
		}
		if i%5 != 0 {
			it.Metadata = fmt.Sprintf(`{"i":%d}`, i)
		}
		if i%11 == 0 {
			it.TimeToLive = durationpb.New(time.Hour)
		}
		it.BackgroundFetch = i%13 == 0
		items[i] = it
		want[it.Key] = storedItem{value: it.Value, metadata: it.Metadata}
		all[i] = it.Key
	}
	slices.Sort(all)
	return items, want, all
}

// checkBulkReadBack reads the items of store back straight from the
// store's REST API, in process: all of them, or under the race detector
// (which makes each read several times slower) every seventh and the
// first and last thousand. StreamKeys proves every key is there either
// way. It reads a few through kvgate's own GetItem as well.
func checkBulkReadBack(t *testing.T, ctx context.Context, st *kvtest.Stack, client kvv1connect.KVStoreServiceClient, store string, items []*kvv1.BatchItem, want map[string]storedItem) {
	t.Helper()
	n := len(items)
	check := want
	if raceEnabled() {
		check = make(map[string]storedItem)
		for i, it := range items {
			if i%7 == 0 || i < 1000 || i >= n-1000 {
				check[it.Key] = want[it.Key]
			}
		}
	}
	checkStored(t, ctx, inProcessClient(t, st.Store), store, check, nil)
	for i := 0; i < n; i += 997 {
		got, err := client.GetItem(ctx, &kvv1.GetItemRequest{StoreId: store, Key: items[i].GetKey()})
		mustOK(t, "GetItem", err)
		if g := got.GetItem(); !bytes.Equal(g.GetValue(), items[i].GetValue()) || g.GetMetadata() != items[i].GetMetadata() {
			t.Errorf("GetItem(%q) = value %q metadata %q; want %q, %q", items[i].GetKey(), g.GetValue(), g.GetMetadata(), items[i].GetValue(), items[i].GetMetadata())
		}
	}
}

// checkBulkStreamKeys enumerates the keys of store under prefix with
// StreamKeys in pages of pageSize and checks the keys (all holds every
// key of store, sorted), the messages, and the upstream list requests the
// call causes.
func checkBulkStreamKeys(t *testing.T, ctx context.Context, st *kvtest.Stack, client kvv1connect.KVStoreServiceClient, store string, all []string, prefix string, pageSize int) {
	t.Helper()
	var wantKeys []string
	for _, k := range all {
		if strings.HasPrefix(k, prefix) {
			wantKeys = append(wantKeys, k)
		}
	}
	wantMsgs, wantLists := expectedPages(all, prefix, pageSize)
	before := st.Store.Count(localstore.RequestList)
	msgs, err := streamKeys(ctx, client, &kvv1.StreamKeysRequest{StoreId: store, Prefix: prefix, PageSize: uint32(pageSize)})
	mustOK(t, "StreamKeys", err)
	if d := testutil.DiffKeys(keysOf(msgs), wantKeys); d != "" {
		t.Fatalf("StreamKeys(prefix %q): %s", prefix, d)
	}
	if len(msgs) != wantMsgs {
		t.Errorf("StreamKeys(prefix %q) sent %d messages; want %d, one per upstream page holding matches", prefix, len(msgs), wantMsgs)
	}
	for i, m := range msgs {
		last := i == len(msgs)-1
		if (len(m.GetKeys()) == 0 && !last) || len(m.GetKeys()) > pageSize {
			t.Errorf("message %d of %d holds %d keys; want 1 to %d", i, len(msgs), len(m.GetKeys()), pageSize)
		}
		if last != (m.GetCursor() == "") {
			t.Errorf("message %d of %d has cursor %q; only the last may be empty and it must be", i, len(msgs), m.GetCursor())
		}
	}
	if got := st.Store.Count(localstore.RequestList) - before; got != int64(wantLists) {
		t.Errorf("StreamKeys(prefix %q) made %d upstream list requests; want %d", prefix, got, wantLists)
	}
}

// expectedPages is how many StreamKeys messages a listing of keys (sorted)
// under prefix takes with pages of pageSize, and how many upstream pages
// kvgate fetches for it. Fastly filters the part of the prefix it accepts
// and kvgate the rest, stopping at the first page that passes the prefix;
// each page holding matches is one message, and when the end shows up only
// on a page without matches after a message was sent, a final empty
// message carries the empty cursor.
func expectedPages(keys []string, prefix string, pageSize int) (msgs, lists int) {
	query, rest := upstream.SplitPrefix(prefix)
	var listing []string
	for _, k := range keys {
		if strings.HasPrefix(k, query) {
			listing = append(listing, k)
		}
	}
	sent := false
	for start := 0; ; start += pageSize {
		lists++
		matched, passed := 0, false
		for _, k := range listing[start:min(start+pageSize, len(listing))] {
			if strings.HasPrefix(k, prefix) {
				matched++
			} else if rest != "" && k > prefix {
				passed = true
				break
			}
		}
		end := passed || start+pageSize >= len(listing)
		if matched > 0 || (end && sent) {
			msgs++
			sent = true
		}
		if end {
			return msgs, lists
		}
	}
}

// TestBatchPutItemsInvalidItems checks that a batch write accounts for
// each item: invalid ones are reported with their stream position, key,
// code and the field at fault, and every other item is written.
func TestBatchPutItemsInvalidItems(t *testing.T) {
	t.Parallel()
	const maxValue = 1 << 10
	st := kvtest.Start(t, kvtest.Options{MaxValueBytes: maxValue, Batch: service.BatchConfig{MaxLines: 4}})
	client := st.NewClient(kvtest.H2CClient(), connectGRPC()...)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()

	bigOK := make([]byte, maxValue)
	for i := range bigOK {
		bigOK[i] = byte(i)
	}
	entries := []struct {
		item  *kvv1.BatchItem
		field string // the field at fault; "" for a valid item
	}{
		{&kvv1.BatchItem{Key: "ok/0", Value: []byte("v0"), Metadata: "m0"}, ""},
		{&kvv1.BatchItem{Key: "bad#key", Value: []byte("x")}, "key"},
		{&kvv1.BatchItem{Key: "ok/1", Value: []byte("v1")}, ""},
		{&kvv1.BatchItem{Key: "", Value: []byte("x")}, "key"},
		{&kvv1.BatchItem{Key: "ok/2", Value: []byte("v2"), TimeToLive: durationpb.New(time.Hour)}, ""},
		{&kvv1.BatchItem{Key: "meta/long", Value: []byte("x"), Metadata: strings.Repeat("m", 2001)}, "metadata"},
		{&kvv1.BatchItem{Key: "meta/lf", Value: []byte("x"), Metadata: "a\nb"}, "metadata"},
		{&kvv1.BatchItem{Key: "ok/3", Value: bigOK, Metadata: strings.Repeat("m", 2000)}, ""},
		{&kvv1.BatchItem{Key: "ttl/zero", Value: []byte("x"), TimeToLive: durationpb.New(0)}, "time_to_live"},
		{&kvv1.BatchItem{Key: "ttl/fraction", Value: []byte("x"), TimeToLive: durationpb.New(1500 * time.Millisecond)}, "time_to_live"},
		{&kvv1.BatchItem{Key: "ok/4", Value: []byte("v4"), Mode: kvv1.PutMode_PUT_MODE_APPEND}, ""},
		{&kvv1.BatchItem{Key: "value/big", Value: make([]byte, maxValue+1)}, "value"},
		{&kvv1.BatchItem{Key: "mode/unknown", Value: []byte("x"), Mode: 9}, "mode"},
		{&kvv1.BatchItem{Key: "add/gen", Value: []byte("x"), Mode: kvv1.PutMode_PUT_MODE_ADD, IfGenerationMatch: proto.Uint64(0)}, "if_generation_match"},
		{&kvv1.BatchItem{Key: "ok/5", Value: []byte("v5"), Mode: kvv1.PutMode_PUT_MODE_ADD}, ""},
		{&kvv1.BatchItem{Key: "dots/../x", Value: []byte("x")}, "key"},
		{&kvv1.BatchItem{Key: "ok/0", Value: []byte("v0b"), Metadata: "m0b"}, ""},
		{&kvv1.BatchItem{Key: "ok/6", Value: []byte("v6"), IfGenerationMatch: proto.Uint64(0)}, ""},
		{&kvv1.BatchItem{Key: "ttl/negative", Value: []byte("x"), TimeToLive: durationpb.New(-time.Second)}, "time_to_live"},
		{&kvv1.BatchItem{Key: "ok/7", Value: nil}, ""},
	}
	var (
		items      []*kvv1.BatchItem
		wantFails  []wantFailure
		wantStored = map[string]storedItem{}
		absent     []string
	)
	for i, e := range entries {
		items = append(items, e.item)
		if e.field == "" {
			wantStored[e.item.GetKey()] = storedItem{value: e.item.GetValue(), metadata: e.item.GetMetadata()}
			continue
		}
		wantFails = append(wantFails, wantFailure{index: uint64(i), key: e.item.GetKey(), code: "invalid_argument", field: e.field})
		if upstream.CheckKey(e.item.GetKey()) == nil {
			absent = append(absent, e.item.GetKey())
		}
	}
	res, err := batchPut(ctx, client, batchMessages("items", items, 3))
	mustOK(t, "BatchPutItems", err)
	checkOutcome(t, ctx, st.Client, "items", res, len(items), wantFails, wantStored, absent)
}

// TestBatchPutItemsStoreRefusesLines checks that lines the store refuses
// are reported as invalid items are, and that the rest of their batch is
// sent again and written.
func TestBatchPutItemsStoreRefusesLines(t *testing.T) {
	t.Parallel()
	// kvgate accepts values up to 1 MiB, the store only up to 1 KiB:
	// the store refuses those lines of a batch (400 with errors[]),
	// and the single PUTs of such values (413).
	st := kvtest.Start(t, kvtest.Options{
		MaxValueBytes: 1 << 20,
		Store:         localstore.Config{MaxValueBytes: 1 << 10},
		Batch:         service.BatchConfig{MaxLines: 5, MaxBytes: 8 << 10},
	})
	client := st.NewClient(kvtest.H2CClient(), connectGRPC()...)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()

	const n = 23
	lineRefused := map[int]bool{2: true, 7: true, 8: true, 14: true}
	var (
		items      []*kvv1.BatchItem
		wantFails  []wantFailure
		wantStored = map[string]storedItem{}
		absent     []string
	)
	for i := range n {
		it := &kvv1.BatchItem{Key: fmt.Sprintf("line/%02d", i), Value: []byte(fmt.Sprintf("%03d", i) + strings.Repeat("v", 97)), Metadata: fmt.Sprint(i)}
		refused := false
		switch {
		case lineRefused[i]:
			it.Value = make([]byte, 1500) // in a batch: the store refuses the line
			refused = true
		case i == 19:
			it.Value = make([]byte, 10_000) // over MaxBytes on its own: a single PUT, 413
			refused = true
		case i == 21:
			it.Value = make([]byte, 1500) // append: a single PUT, 413
			it.Mode = kvv1.PutMode_PUT_MODE_APPEND
			refused = true
		}
		items = append(items, it)
		if refused {
			wantFails = append(wantFails, wantFailure{index: uint64(i), key: it.Key, code: "invalid_argument", field: "value"})
			absent = append(absent, it.Key)
		} else {
			wantStored[it.Key] = storedItem{value: it.Value, metadata: it.Metadata}
		}
	}
	res, err := batchPut(ctx, client, batchMessages("lines", items, 4))
	mustOK(t, "BatchPutItems", err)
	checkOutcome(t, ctx, st.Client, "lines", res, n, wantFails, wantStored, absent)
	// 21 batch lines in batches of 5: [0-4] [5-9] [10-14] [15-18 20]
	// [22]; the three holding a refused line are sent again without it.
	if got := st.Store.Count(localstore.RequestBatch); got != 5+3 {
		t.Errorf("the store received %d batch PUTs; want 8 (5 batches, 3 of them sent again)", got)
	}
	if got := st.Store.Count(localstore.RequestPut); got != 2 {
		t.Errorf("the store received %d single PUTs; want 2", got)
	}
}

// lwModel is the store as writing items one by one, in order, leaves it.
type lwModel map[string]storedItem

// apply writes item number index into the model the way Fastly would, and
// returns the failure it causes, if any.
func (m lwModel) apply(index int, item *kvv1.BatchItem) *wantFailure {
	cur, exists := m[item.GetKey()]
	if item.GetMode() == kvv1.PutMode_PUT_MODE_ADD && exists {
		return &wantFailure{index: uint64(index), key: item.GetKey(), code: "already_exists", field: "exists"}
	}
	if item.IfGenerationMatch != nil && exists {
		// The tests only ever send 0, which matches a missing item only.
		return &wantFailure{index: uint64(index), key: item.GetKey(), code: "aborted", field: "generation"}
	}
	next := storedItem{value: item.GetValue(), metadata: item.GetMetadata()}
	if exists {
		switch item.GetMode() {
		case kvv1.PutMode_PUT_MODE_APPEND:
			next.value = append(slices.Clone(cur.value), item.GetValue()...)
		case kvv1.PutMode_PUT_MODE_PREPEND:
			next.value = append(slices.Clone(item.GetValue()), cur.value...)
		}
	}
	m[item.GetKey()] = next
	return nil
}

// randomItems makes n writes to a few keys: overwrites, appends,
// prepends, adds and generation-0 writes, with values of varied length.
func randomItems(r *rand.Rand, n, nKeys int) []*kvv1.BatchItem {
	items := make([]*kvv1.BatchItem, n)
	for i := range items {
		k := r.IntN(nKeys)
		key := fmt.Sprintf("k%02d", k)
		if k%2 == 0 {
			key = fmt.Sprintf("dir/k%02d", k)
		}
		it := &kvv1.BatchItem{Key: key, Value: fmt.Appendf(nil, "<%d%s>", i, strings.Repeat(".", r.IntN(150)))}
		if r.IntN(3) > 0 {
			it.Metadata = fmt.Sprintf("m%d", i)
		}
		switch p := r.IntN(100); {
		case p < 40: // overwrite
			if r.IntN(4) == 0 {
				it.TimeToLive = durationpb.New(time.Duration(1+r.IntN(48)) * time.Hour)
			}
		case p < 55:
			it.Mode = kvv1.PutMode_PUT_MODE_APPEND
		case p < 65:
			it.Mode = kvv1.PutMode_PUT_MODE_PREPEND
		case p < 78:
			it.Mode = kvv1.PutMode_PUT_MODE_ADD
		case p < 90:
			it.IfGenerationMatch = proto.Uint64(0)
		default:
			it.IfGenerationMatch = proto.Uint64(0)
			it.Mode = kvv1.PutMode_PUT_MODE_APPEND
		}
		items[i] = it
	}
	return items
}

// TestBatchPutItemsLastWins writes random streams of overwrites, appends,
// prepends, adds and generation checks to a few keys, under batch
// configurations that cut them differently, through BatchPutItems and
// PutItems, and compares the store and the failures with writing the items
// one by one in order.
func TestBatchPutItemsLastWins(t *testing.T) {
	t.Parallel()
	configs := []struct {
		name string
		cfg  service.BatchConfig
	}{
		{"lines3_conc4", service.BatchConfig{MaxLines: 3, Concurrency: 4}},
		{"lines1_conc8", service.BatchConfig{MaxLines: 1, Concurrency: 8}},
		{"lines5_conc2_bytes256", service.BatchConfig{MaxLines: 5, Concurrency: 2, MaxBytes: 256}},
		{"lines2_conc1", service.BatchConfig{MaxLines: 2, Concurrency: 1}},
		{"defaults", service.BatchConfig{}},
	}
	const (
		nItems = 300
		nKeys  = 12
	)
	for ci, c := range configs {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			st := kvtest.Start(t, kvtest.Options{Batch: c.cfg})
			client := st.NewClient(kvtest.H2CClient(), connectGRPC()...)
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
			defer cancel()
			for seed := range uint64(3) {
				r := rand.New(rand.NewPCG(seed, uint64(ci)))
				items := randomItems(r, nItems, nKeys)
				model := lwModel{}
				var wantFails []wantFailure
				for i, it := range items {
					if f := model.apply(i, it); f != nil {
						wantFails = append(wantFails, *f)
					}
				}
				var absent []string
				for k := range nKeys {
					for _, key := range []string{fmt.Sprintf("k%02d", k), fmt.Sprintf("dir/k%02d", k)} {
						if _, ok := model[key]; !ok {
							absent = append(absent, key)
						}
					}
				}

				// The stream, in messages of random sizes.
				store := fmt.Sprintf("stream-%d", seed)
				var msgs []*kvv1.BatchPutItemsRequest
				for i := 0; i < len(items); {
					n := 1 + r.IntN(7)
					msgs = append(msgs, &kvv1.BatchPutItemsRequest{StoreId: store, Items: items[i:min(i+n, len(items))]})
					i += n
				}
				res, err := batchPut(ctx, client, msgs)
				mustOK(t, "BatchPutItems", err)
				t.Run(fmt.Sprintf("seed%d/stream", seed), func(t *testing.T) {
					checkOutcome(t, ctx, st.Client, store, res, nItems, wantFails, model, absent)
				})

				// The same items in one PutItems call.
				ustore := fmt.Sprintf("unary-%d", seed)
				ures, err := client.PutItems(ctx, &kvv1.PutItemsRequest{StoreId: ustore, Items: items})
				mustOK(t, "PutItems", err)
				t.Run(fmt.Sprintf("seed%d/unary", seed), func(t *testing.T) {
					checkOutcome(t, ctx, st.Client, ustore, ures, nItems, wantFails, model, absent)
				})
			}
		})
	}
}

// TestBatchPutItemsStoreChange covers a stream that changes its store: the
// batch write fails as a whole, with a BatchProgress detail that accounts
// for what was written before.
func TestBatchPutItemsStoreChange(t *testing.T) {
	t.Parallel()
	st := kvtest.Start(t, kvtest.Options{Batch: service.BatchConfig{MaxLines: 2, Concurrency: 2}})
	client := st.NewClient(kvtest.H2CClient(), connectGRPC()...)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	var items []*kvv1.BatchItem
	for i := range 9 {
		items = append(items, &kvv1.BatchItem{Key: fmt.Sprintf("s/%d", i), Value: []byte(fmt.Sprint(i))})
	}
	items[3].Key = "bad#key" // fails on its own before the call fails
	msgs := []*kvv1.BatchPutItemsRequest{
		{StoreId: "one", Items: items[0:4]},
		{StoreId: "one", Items: items[4:7]},
		{StoreId: "two", Items: items[7:9]},
	}
	_, err := batchPut(ctx, client, msgs)
	cerr, progress := batchProgress(t, "BatchPutItems changing store_id", err, connect.CodeInvalidArgument)
	br, _ := findDetail[*errdetails.BadRequest](detailsOf(cerr))
	if len(br.GetFieldViolations()) == 0 || br.GetFieldViolations()[0].GetField() != "store_id" || !strings.Contains(cerr.Message(), "store_id") {
		t.Errorf("error %v with BadRequest %v; want it to name store_id", cerr, br)
	}
	if progress.GetReceived() != 7 {
		t.Errorf("BatchProgress.received = %d; want 7 (the items before the message naming another store)", progress.GetReceived())
	}
	checkFailures(t, progress.GetFailures(), []wantFailure{{index: 3, key: "bad#key", code: "invalid_argument", field: "key"}})
	written := writtenIndexes(t, progress)
	want := map[string]storedItem{}
	for _, i := range written {
		if i == 3 {
			t.Errorf("BatchProgress.written holds 3, which failed")
		}
		want[items[i].GetKey()] = storedItem{value: items[i].GetValue()}
	}
	checkStored(t, ctx, st.Client, "one", want, nil)
	if _, err := st.Client.ListKeys(ctx, "two", upstream.ListOptions{}); err == nil {
		t.Error("store two was written")
	}
}

// TestBatchPutItemsUpstreamRefuses covers an upstream that refuses the
// batch calls: the batch write fails as a whole, with a BatchProgress
// detail that accounts for what was written before.
func TestBatchPutItemsUpstreamRefuses(t *testing.T) {
	t.Parallel()

	// The upstream refuses batch PUTs after the first two; with one write
	// in flight at a time, exactly the items of those two are written. A
	// refusal that may pass (503) is tried again, as batch upserts are
	// safe to replay; the others are final.
	const attempts = 3
	for _, tc := range []struct {
		status int
		want   connect.Code
		tries  int64
	}{
		{http.StatusUnauthorized, connect.CodeUnauthenticated, 1},
		{http.StatusForbidden, connect.CodePermissionDenied, 1},
		{http.StatusNotFound, connect.CodeNotFound, 1},
		{http.StatusServiceUnavailable, connect.CodeUnavailable, attempts},
	} {
		t.Run(fmt.Sprintf("upstream %d", tc.status), func(t *testing.T) {
			t.Parallel()
			store, err := localstore.Open(localstore.Config{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = store.Close() })
			var batches atomic.Int64
			next := store.Handler()
			refusing := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Method == http.MethodPut && strings.HasSuffix(r.URL.Path, "/batch") && batches.Add(1) > 2 {
					w.Header().Set("Content-Type", "application/json")
					w.WriteHeader(tc.status)
					_, _ = w.Write([]byte(`{"msg":"refused"}`))
					return
				}
				next.ServeHTTP(w, r)
			})
			st := kvtest.Start(t, kvtest.Options{
				Upstream: refusing,
				Batch:    service.BatchConfig{MaxLines: 5, Concurrency: 1},
				Retry:    upstream.RetryPolicy{MaxAttempts: attempts, BaseDelay: time.Millisecond},
			})
			client := st.NewClient(kvtest.H2CClient(), connectGRPC()...)
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			var items []*kvv1.BatchItem
			for i := range 40 {
				items = append(items, &kvv1.BatchItem{Key: fmt.Sprintf("f/%02d", i), Value: []byte(fmt.Sprint(i))})
			}
			_, err = batchPut(ctx, client, batchMessages("fail", items, 5))
			_, progress := batchProgress(t, "BatchPutItems", err, tc.want)
			written := writtenIndexes(t, progress)
			if !slices.Equal(written, []uint64{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}) || len(progress.GetFailures()) != 0 {
				t.Errorf("BatchProgress = written %v, failures %v; want items 0 to 9 written and no failure", progress.GetWritten(), progress.GetFailures())
			}
			if r := progress.GetReceived(); r < 15 || r > 40 {
				t.Errorf("BatchProgress.received = %d; want 15 to 40 (the third batch was cut)", r)
			}
			want := map[string]storedItem{}
			var absent []string
			for i, it := range items {
				if i < 10 {
					want[it.Key] = storedItem{value: it.Value}
				} else {
					absent = append(absent, it.Key)
				}
			}
			checkStored(t, ctx, st.Client, "fail", want, absent)
			if n := batches.Load(); n != 2+tc.tries {
				t.Errorf("kvgate sent %d batch PUTs; want %d: 2 accepted, the refused one sent %d times, none after", n, 2+tc.tries, tc.tries)
			}
		})
	}
}
