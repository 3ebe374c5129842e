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
	"connectrpc.com/connect/v2/connecthttp"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	kvv1 "github.com/kvgate/kvgate/gen/go/fastly/kv/v1"
	"github.com/kvgate/kvgate/internal/kvtest"
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

	items := make([]*kvv1.BatchItem, n)
	want := make(map[string]storedItem, n)
	all := make([]string, n)
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
	// Read the items back straight from the store's REST API, in
	// process: all of them, or under the race detector (which makes each
	// read several times slower) every seventh and the first and last
	// thousand. StreamKeys below proves every key is there either way.
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
	// A few through kvgate's own GetItem as well.
	for i := 0; i < n; i += 997 {
		got, err := client.GetItem(ctx, &kvv1.GetItemRequest{StoreId: store, Key: items[i].GetKey()})
		mustOK(t, "GetItem", err)
		if g := got.GetItem(); !bytes.Equal(g.GetValue(), items[i].GetValue()) || g.GetMetadata() != items[i].GetMetadata() {
			t.Errorf("GetItem(%q) = value %q metadata %q; want %q, %q", items[i].GetKey(), g.GetValue(), g.GetMetadata(), items[i].GetValue(), items[i].GetMetadata())
		}
	}

	// "b/00996" ends on the last key of an upstream page: the end shows up
	// on the next page, with no match, as a final empty message.
	for _, prefix := range []string{"", "a", "a/", "b/05", "b/0999", "b/00996", "c"} {
		t.Run("prefix="+prefix, func(t *testing.T) {
			// Not parallel: each case counts the list requests it causes.
			var wantKeys []string
			for _, k := range all {
				if strings.HasPrefix(k, prefix) {
					wantKeys = append(wantKeys, k)
				}
			}
			wantMsgs, wantLists := expectedPages(all, prefix, pageSize)
			before := st.Store.Count(localstore.RequestList)
			msgs, err := streamKeys(ctx, client, &kvv1.StreamKeysRequest{StoreId: store, Prefix: prefix, PageSize: pageSize})
			mustOK(t, "StreamKeys", err)
			if d := diffKeys(keysOf(msgs), wantKeys); d != "" {
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
		})
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

// TestBatchPutItemsItemFailures checks that a batch write accounts for
// each item: invalid ones are reported with their stream position, key,
// code and the field at fault, lines the store refuses are reported the
// same way, and every other item is written.
func TestBatchPutItemsItemFailures(t *testing.T) {
	t.Parallel()

	t.Run("invalid items", func(t *testing.T) {
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
		checkFailures(t, res.GetFailures(), wantFails)
		if want := uint64(len(items) - len(wantFails)); res.GetWritten() != want {
			t.Errorf("written = %d; want %d", res.GetWritten(), want)
		}
		checkStored(t, ctx, st.Client, "items", wantStored, absent)
	})

	t.Run("store refuses lines", func(t *testing.T) {
		t.Parallel()
		// kvgate accepts values up to 1 MiB, the store only up to 1 KiB:
		// the store refuses those lines of a batch (400 with errors[]),
		// and the single PUTs of such values (413).
		st := kvtest.Start(t, kvtest.Options{
			MaxValueBytes: 1 << 20,
			Store:         localstore.Options{MaxValueBytes: 1 << 10},
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
		checkFailures(t, res.GetFailures(), wantFails)
		if want := uint64(n - len(wantFails)); res.GetWritten() != want {
			t.Errorf("written = %d; want %d", res.GetWritten(), want)
		}
		checkStored(t, ctx, st.Client, "lines", wantStored, absent)
		// 21 batch lines in batches of 5: [0-4] [5-9] [10-14] [15-18 20]
		// [22]; the three holding a refused line are sent again without it.
		if got := st.Store.Count(localstore.RequestBatch); got != 5+3 {
			t.Errorf("the store received %d batch PUTs; want 8 (5 batches, 3 of them sent again)", got)
		}
		if got := st.Store.Count(localstore.RequestPut); got != 2 {
			t.Errorf("the store received %d single PUTs; want 2", got)
		}
	})
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
					checkFailures(t, res.GetFailures(), wantFails)
					if want := uint64(nItems - len(wantFails)); res.GetWritten() != want {
						t.Errorf("written = %d; want %d", res.GetWritten(), want)
					}
					checkStored(t, ctx, st.Client, store, model, absent)
				})

				// The same items in one PutItems call.
				ustore := fmt.Sprintf("unary-%d", seed)
				ures, err := client.PutItems(ctx, &kvv1.PutItemsRequest{StoreId: ustore, Items: items})
				mustOK(t, "PutItems", err)
				t.Run(fmt.Sprintf("seed%d/unary", seed), func(t *testing.T) {
					checkFailures(t, ures.GetFailures(), wantFails)
					if want := uint64(nItems - len(wantFails)); ures.GetWritten() != want {
						t.Errorf("written = %d; want %d", ures.GetWritten(), want)
					}
					checkStored(t, ctx, st.Client, ustore, model, absent)
				})
			}
		})
	}
}

// TestStreamsCancel checks that a client going away stops the upstream
// work of a stream: no more list pages for StreamKeys, no more batch PUTs
// for BatchPutItems.
//
// Over HTTP/2 a cancelled stream is reset at once, so at most the requests
// already on their way reach the store. Over HTTP/1.1 an upload has no
// reset: the server reads what the client sent before it closed the
// connection (Go's server notices a closed connection only at the end of
// the body), so kvgate may still write items received before the cancel,
// but never more batches than the client sent messages, and then it stops.
func TestStreamsCancel(t *testing.T) {
	t.Parallel()
	protocols := []rpcProtocol{
		{"grpc_h2c", kvtest.H2CClient, connectGRPC()},
		{"connect_h2c", kvtest.H2CClient, nil},
		{"grpcweb_h2c", kvtest.H2CClient, []connecthttp.Option{connecthttp.WithGRPCWeb()}},
		{"connect_http1", kvtest.HTTP1Client, nil},
		{"grpcweb_http1", kvtest.HTTP1Client, []connecthttp.Option{connecthttp.WithGRPCWeb()}},
	}
	for _, p := range protocols {
		http2 := strings.HasSuffix(p.name, "_h2c")
		t.Run("StreamKeys/"+p.name, func(t *testing.T) {
			t.Parallel()
			st := kvtest.Start(t, kvtest.Options{})
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			keys := make([]string, 3000)
			for i := range keys {
				keys[i] = fmt.Sprintf("c/%05d", i)
			}
			fillStore(t, ctx, st.Client, "big", keys)
			// 300 pages of 10 keys, each answered after 30ms: a stream
			// left running would keep listing for seconds.
			st.Store.SetFaults(localstore.Faults{Latency: 30 * time.Millisecond})

			client := st.NewClient(p.client(), p.opts...)
			sctx, scancel := context.WithCancel(ctx)
			defer scancel()
			stream, err := client.StreamKeys(sctx, &kvv1.StreamKeysRequest{StoreId: "big", PageSize: 10})
			mustOK(t, "StreamKeys", err)
			defer stream.Close()
			for i := range 3 {
				if _, err := stream.Receive(); err != nil {
					t.Fatalf("message %d: %v", i, err)
				}
			}
			scancel()
			atCancel := st.Store.Count(localstore.RequestList)
			if _, err := stream.Receive(); err == nil {
				// One message may already be buffered; the next must fail.
				if _, err := stream.Receive(); err == nil {
					t.Error("the stream went on after its context was cancelled")
				}
			}
			final := settle(t, func() int64 { return st.Store.Count(localstore.RequestList) }, 500*time.Millisecond, 30*time.Second)
			if final-atCancel > 2 {
				t.Errorf("the store received %d list requests after the client cancelled (%d before); want at most 2", final-atCancel, atCancel)
			}
			if final >= 300 {
				t.Errorf("the whole listing was fetched (%d list requests)", final)
			}
		})
		t.Run("BatchPutItems/"+p.name, func(t *testing.T) {
			t.Parallel()
			st := kvtest.Start(t, kvtest.Options{Batch: service.BatchConfig{MaxLines: 5, Concurrency: 2}})
			st.Store.SetFaults(localstore.Faults{Latency: 10 * time.Millisecond})
			client := st.NewClient(p.client(), p.opts...)
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			sctx, scancel := context.WithCancel(ctx)
			defer scancel()
			stream, err := client.BatchPutItems(sctx)
			mustOK(t, "BatchPutItems", err)

			// A slow client: 5 items every 10ms, until it is cancelled.
			sent := make(chan error, 1)
			var sentMsgs atomic.Int64
			go func() {
				for i := 0; ; i++ {
					msg := &kvv1.BatchPutItemsRequest{StoreId: "up"}
					for j := range 5 {
						msg.Items = append(msg.Items, &kvv1.BatchItem{Key: fmt.Sprintf("u/%06d", i*5+j), Value: []byte("v")})
					}
					if err := stream.Send(msg); err != nil {
						sent <- err
						return
					}
					sentMsgs.Add(1)
					select {
					case <-sctx.Done():
						sent <- sctx.Err()
						return
					case <-time.After(10 * time.Millisecond):
					}
				}
			}()
			waitFor(t, "5 batch PUTs", 30*time.Second, func() bool { return st.Store.Count(localstore.RequestBatch) >= 5 })
			scancel()
			atCancel := st.Store.Count(localstore.RequestBatch)
			<-sent
			if _, err := stream.CloseAndReceive(); err == nil {
				t.Error("a cancelled BatchPutItems succeeded")
			}
			final := settle(t, func() int64 { return st.Store.Count(localstore.RequestBatch) }, 500*time.Millisecond, 30*time.Second)
			// Each message fills one batch: kvgate never sends more
			// batches than the client sent messages.
			if n := sentMsgs.Load(); final > n {
				t.Errorf("the store received %d batch PUTs; the client sent only %d messages of one batch each", final, n)
			}
			if http2 && final-atCancel > 2 {
				t.Errorf("the store received %d batch PUTs after the client cancelled (%d before); want at most 2", final-atCancel, atCancel)
			}
		})
	}
}

// resumeFixture is a store with keys under several prefixes, listed
// through kvgate, with an upstream that can be made to fail list requests.
type resumeFixture struct {
	st    *kvtest.Stack
	all   []string // every key, sorted
	lists atomic.Int64
	// budget is how many list requests succeed from when it is set, in
	// lists; negative means no limit.
	budget atomic.Int64
}

func newResumeFixture(t *testing.T) *resumeFixture {
	t.Helper()
	store, err := localstore.Open(localstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	f := &resumeFixture{}
	f.budget.Store(-1)
	next := store.Handler()
	flaky := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/keys") {
			if n := f.lists.Add(1); f.budget.Load() >= 0 && n > f.budget.Load() {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusServiceUnavailable)
				_, _ = w.Write([]byte(`{"msg":"unavailable"}`))
				return
			}
		}
		next.ServeHTTP(w, r)
	})
	// Few, quick retries: a failed list request is tried again (it is
	// safe to replay) and fails again while the budget is spent.
	f.st = kvtest.Start(t, kvtest.Options{Upstream: flaky, Retry: upstream.RetryPolicy{MaxAttempts: 2, BaseDelay: time.Millisecond}})
	for i := range 2500 {
		f.all = append(f.all, fmt.Sprintf("r/%05d", i))
	}
	for i := range 150 {
		f.all = append(f.all, fmt.Sprintf("q%03d", i), fmt.Sprintf("r%03d", i), fmt.Sprintf("s%03d", i))
	}
	slices.Sort(f.all)
	fillStore(t, t.Context(), f.st.Client, "res", f.all)
	return f
}

// failAfter makes list requests fail once n more have succeeded; n < 0
// lets every one through.
func (f *resumeFixture) failAfter(n int64) {
	f.budget.Store(-1)
	f.lists.Store(0)
	f.budget.Store(n)
}

func (f *resumeFixture) keys(prefix string) []string {
	var out []string
	for _, k := range f.all {
		if strings.HasPrefix(k, prefix) {
			out = append(out, k)
		}
	}
	return out
}

// TestStreamKeysResume checks that cursors resume a listing without loss
// or repeats: from each message of a stream, from a stream that max_keys
// stopped inside a page, from ListKeys' next_cursor and the other way
// round, with page sizes that differ between the two calls, and from the
// StreamKeysResume detail of a stream the upstream broke.
func TestStreamKeysResume(t *testing.T) {
	t.Parallel()
	f := newResumeFixture(t)
	client := f.st.NewClient(kvtest.H2CClient(), connectGRPC()...)
	const store = "res"

	// listFrom continues a listing from cursor with ListKeys pages of
	// limit keys until it ends or holds at least want keys.
	listFrom := func(t *testing.T, ctx context.Context, prefix, cursor string, limit uint32, want int) []string {
		t.Helper()
		var keys []string
		for range 10_000 {
			page, err := client.ListKeys(ctx, &kvv1.ListKeysRequest{StoreId: store, Prefix: prefix, Cursor: cursor, Limit: limit})
			mustOK(t, "ListKeys", err)
			keys = append(keys, page.GetKeys()...)
			if cursor = page.GetNextCursor(); cursor == "" || len(keys) >= want {
				return keys
			}
		}
		t.Fatal("ListKeys never ended")
		return nil
	}

	for _, prefix := range []string{"", "r", "r/", "r/01"} {
		t.Run("prefix="+prefix, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
			defer cancel()
			all := f.keys(prefix)

			t.Run("from each message", func(t *testing.T) {
				msgs, err := streamKeys(ctx, client, &kvv1.StreamKeysRequest{StoreId: store, Prefix: prefix, PageSize: 300})
				mustOK(t, "StreamKeys", err)
				if d := diffKeys(keysOf(msgs), all); d != "" {
					t.Fatalf("full stream: %s", d)
				}
				delivered := 0
				for i, m := range msgs {
					delivered += len(m.GetKeys())
					if m.GetCursor() == "" {
						if i != len(msgs)-1 {
							t.Fatalf("message %d of %d has no cursor", i, len(msgs))
						}
						continue
					}
					rest, err := streamKeys(ctx, client, &kvv1.StreamKeysRequest{StoreId: store, Prefix: prefix, PageSize: 300, Cursor: m.GetCursor()})
					mustOK(t, "StreamKeys resumed", err)
					if d := diffKeys(keysOf(rest), all[delivered:]); d != "" {
						t.Errorf("resumed after message %d: %s", i, d)
					}
				}
			})

			// A stream stopped by max_keys inside a page, resumed by
			// another call with the same or another page size.
			type resumer struct {
				name   string
				resume func(t *testing.T, cursor string) []string
			}
			// Each resumer reads on from a cursor for at least 400 keys
			// (or to the end), enough to cross the seam and a few pages;
			// the walk below and the resumes from each message read to
			// the end.
			const span = 400
			viaStream := func(pageSize uint32) resumer {
				return resumer{fmt.Sprintf("StreamKeys_page%d", pageSize), func(t *testing.T, cursor string) []string {
					msgs, err := streamKeys(ctx, client, &kvv1.StreamKeysRequest{StoreId: store, Prefix: prefix, PageSize: pageSize, Cursor: cursor, MaxKeys: span})
					mustOK(t, "StreamKeys resumed", err)
					return keysOf(msgs)
				}}
			}
			viaList := func(limit uint32) resumer {
				return resumer{fmt.Sprintf("ListKeys_limit%d", limit), func(t *testing.T, cursor string) []string {
					return listFrom(t, ctx, prefix, cursor, limit, span)
				}}
			}
			for _, maxKeys := range []uint64{1, 250, 299, 300, 301, 777} {
				if maxKeys >= uint64(len(all)) {
					continue
				}
				// A page size larger than, equal to and smaller than the
				// stopped stream's 100.
				for _, r := range []resumer{viaStream(100), viaStream(1000), viaStream(30), viaList(0), viaList(100), viaList(30)} {
					t.Run(fmt.Sprintf("max%d/%s", maxKeys, r.name), func(t *testing.T) {
						msgs, err := streamKeys(ctx, client, &kvv1.StreamKeysRequest{StoreId: store, Prefix: prefix, PageSize: 100, MaxKeys: maxKeys})
						mustOK(t, "StreamKeys", err)
						head := keysOf(msgs)
						if d := diffKeys(head, all[:maxKeys]); d != "" {
							t.Fatalf("StreamKeys(max_keys %d): %s", maxKeys, d)
						}
						if want := int(maxKeys+99) / 100; len(msgs) != want {
							t.Errorf("StreamKeys(max_keys %d) sent %d messages; want %d", maxKeys, len(msgs), want)
						}
						cursor := msgs[len(msgs)-1].GetCursor()
						if cursor == "" {
							t.Fatalf("StreamKeys(max_keys %d) ended without a cursor though keys follow", maxKeys)
						}
						rest := all[maxKeys:]
						got := r.resume(t, cursor)
						if len(got) < min(span, len(rest)) {
							t.Fatalf("resumed from max_keys %d: %d keys; want at least %d", maxKeys, len(got), min(span, len(rest)))
						}
						if d := diffKeys(got, rest[:min(len(got), len(rest))]); d != "" || len(got) > len(rest) {
							t.Errorf("resumed from max_keys %d: %s (%d keys follow)", maxKeys, d, len(rest))
						}
					})
				}
			}

			t.Run("walk with max_keys", func(t *testing.T) {
				var got []string
				cursor := ""
				for range 1000 {
					msgs, err := streamKeys(ctx, client, &kvv1.StreamKeysRequest{StoreId: store, Prefix: prefix, PageSize: 100, MaxKeys: 333, Cursor: cursor})
					mustOK(t, "StreamKeys", err)
					got = append(got, keysOf(msgs)...)
					if len(msgs) == 0 {
						break
					}
					if cursor = msgs[len(msgs)-1].GetCursor(); cursor == "" {
						break
					}
				}
				if d := diffKeys(got, all); d != "" {
					t.Errorf("walking in steps of 333: %s", d)
				}
			})

			t.Run("from ListKeys", func(t *testing.T) {
				for _, limit := range []uint32{1, 450, 1000} {
					page, err := client.ListKeys(ctx, &kvv1.ListKeysRequest{StoreId: store, Prefix: prefix, Limit: limit})
					mustOK(t, "ListKeys", err)
					if page.GetNextCursor() == "" {
						continue
					}
					n := len(page.GetKeys())
					if d := diffKeys(page.GetKeys(), all[:n]); d != "" {
						t.Fatalf("ListKeys(limit %d): %s", limit, d)
					}
					msgs, err := streamKeys(ctx, client, &kvv1.StreamKeysRequest{StoreId: store, Prefix: prefix, PageSize: 997, Cursor: page.GetNextCursor()})
					mustOK(t, "StreamKeys from a ListKeys cursor", err)
					if d := diffKeys(keysOf(msgs), all[n:]); d != "" {
						t.Errorf("StreamKeys from ListKeys(limit %d).next_cursor: %s", limit, d)
					}
				}
			})
		})
	}

	// The upstream fails after some list requests; the error carries a
	// cursor that resumes right after the last key delivered.
	t.Run("upstream failure", func(t *testing.T) {
		// Not parallel: the cases switch the shared upstream's failures,
		// and this subtest runs to its end before the parallel ones above
		// resume (they wait for the parent to return).
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
		defer cancel()
		cases := []struct {
			name     string
			prefix   string
			pageSize uint32
			budget   int64  // list requests that succeed
			startMax uint64 // when set, start from the cursor of a stream stopped after this many keys
		}{
			{name: "after 3 pages", pageSize: 100, budget: 3},
			{name: "on the first page", pageSize: 100, budget: 0},
			{name: "local prefix after 4 pages", prefix: "r/", pageSize: 97, budget: 4},
			{name: "from a cursor inside a page", prefix: "r/", pageSize: 100, budget: 2, startMax: 150},
			{name: "from a cursor, at once", pageSize: 100, budget: 0, startMax: 150},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				defer f.failAfter(-1)
				all := f.keys(tc.prefix)
				start := ""
				var skipped uint64
				if tc.startMax > 0 {
					f.failAfter(-1)
					msgs, err := streamKeys(ctx, client, &kvv1.StreamKeysRequest{StoreId: store, Prefix: tc.prefix, PageSize: tc.pageSize, MaxKeys: tc.startMax})
					mustOK(t, "StreamKeys", err)
					start, skipped = msgs[len(msgs)-1].GetCursor(), tc.startMax
				}
				f.failAfter(tc.budget)
				msgs, err := streamKeys(ctx, client, &kvv1.StreamKeysRequest{StoreId: store, Prefix: tc.prefix, PageSize: tc.pageSize, Cursor: start})
				cerr := asConnectError(t, "StreamKeys with a failing upstream", err, connect.CodeUnavailable)
				resume, ok := findDetail[*kvv1.StreamKeysResume](detailsOf(cerr))
				if !ok {
					t.Fatalf("error %v carries no StreamKeysResume detail", cerr)
				}
				got := keysOf(msgs)
				if d := diffKeys(got, all[skipped:skipped+uint64(len(got))]); d != "" {
					t.Fatalf("keys before the failure: %s", d)
				}
				if tc.budget > 0 && len(got) == 0 {
					t.Errorf("no keys delivered before the failure though %d pages succeeded", tc.budget)
				}
				if resume.GetKeysDelivered() != uint64(len(got)) {
					t.Errorf("StreamKeysResume.keys_delivered = %d; %d keys were received", resume.GetKeysDelivered(), len(got))
				}
				wantCursor := start
				if len(msgs) > 0 {
					wantCursor = msgs[len(msgs)-1].GetCursor()
				}
				if resume.GetCursor() != wantCursor {
					t.Errorf("StreamKeysResume.cursor = %q; want the last message's cursor %q", resume.GetCursor(), wantCursor)
				}
				f.failAfter(-1) // the upstream recovers
				rest, err := streamKeys(ctx, client, &kvv1.StreamKeysRequest{StoreId: store, Prefix: tc.prefix, PageSize: tc.pageSize, Cursor: resume.GetCursor()})
				mustOK(t, "StreamKeys resumed", err)
				if d := diffKeys(append(got, keysOf(rest)...), all[skipped:]); d != "" {
					t.Errorf("received then resumed: %s", d)
				}
			})
		}
	})
}

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
			st := kvtest.Start(t, kvtest.Options{Batch: service.BatchConfig{MaxLines: 4, Concurrency: 3}})
			client := st.NewClient(p.client(), p.opts...)
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()

			// A small mixed list: plain writes, a repeated key, modes,
			// a generation check and invalid items.
			items := []*kvv1.BatchItem{
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
			wantStored := map[string]storedItem{
				"p/a": {value: []byte{0, 1, 2, 0xff, '!'}},
				"p/b": {value: []byte("0b1"), metadata: "pre"},
				"p/c": {value: []byte("c")},
				"p/d": {value: []byte("d")},
				"p/e": {value: []byte("e")},
				"p/g": {value: []byte("g")},
				"q":   {value: []byte("q")},
			}
			wantFails := []wantFailure{
				{index: 4, key: "p/b", code: "already_exists", field: "exists"},
				{index: 5, key: "bad|key", code: "invalid_argument", field: "key"},
				{index: 9, key: "p/f", code: "invalid_argument", field: "time_to_live"},
			}
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

			// StreamKeys: three keys a message, and a prefix kvgate
			// filters itself.
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
				if d := diffKeys(keysOf(msgs), tc.want); d != "" || len(msgs) != tc.msgs {
					t.Errorf("StreamKeys(prefix %q) = %d messages: %s; want %d messages", tc.prefix, len(msgs), d, tc.msgs)
				}
			}
			// An invalid StreamKeys request fails before any message.
			_, err = streamKeys(ctx, client, &kvv1.StreamKeysRequest{StoreId: "stream", PageSize: 1001})
			asConnectError(t, "StreamKeys(page_size 1001)", err, connect.CodeInvalidArgument)

			// PutItems refuses more than 10,000 items and calls nothing.
			before := st.Store.Requests()
			tooMany := make([]*kvv1.BatchItem, service.MaxPutItems+1)
			for i := range tooMany {
				tooMany[i] = &kvv1.BatchItem{Key: fmt.Sprintf("t/%05d", i), Value: []byte("v")}
			}
			_, err = client.PutItems(ctx, &kvv1.PutItemsRequest{StoreId: "unary", Items: tooMany})
			cerr := asConnectError(t, "PutItems with 10,001 items", err, connect.CodeInvalidArgument)
			br, _ := findDetail[*errdetails.BadRequest](detailsOf(cerr))
			if len(br.GetFieldViolations()) != 1 || br.GetFieldViolations()[0].GetField() != "items" {
				t.Errorf("PutItems with 10,001 items: BadRequest = %v; want the field items", br)
			}
			if n := st.Store.Requests() - before; n != 0 {
				t.Errorf("PutItems with 10,001 items made %d upstream requests; want none", n)
			}
		})
	}
}

// TestBatchPutItemsCallFailures covers batch writes that fail as a whole:
// a stream that changes its store, and an upstream that refuses the batch
// calls. The error carries a BatchProgress detail that accounts for what
// was written before.
func TestBatchPutItemsCallFailures(t *testing.T) {
	t.Parallel()

	t.Run("store_id changes", func(t *testing.T) {
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
	})

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
			store, err := localstore.Open(localstore.Options{})
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
