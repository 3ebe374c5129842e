package service_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect/v2"
	"google.golang.org/genproto/googleapis/rpc/errdetails"

	kvv1 "github.com/kvgate/kvgate/gen/go/fastly/kv/v1"
	"github.com/kvgate/kvgate/gen/go/fastly/kv/v1/kvv1connect"
	"github.com/kvgate/kvgate/internal/kvtest"
	"github.com/kvgate/kvgate/internal/testutil"
	"github.com/kvgate/kvgate/upstream"
	"github.com/kvgate/kvgate/upstream/localstore"
)

// wantItem is what an item listed with include_metadata must say.
type wantItem struct {
	metadata string
	size     uint64
}

// checkListedItems checks that items is parallel to keys and describes
// each key as want says, without a value.
func checkListedItems(t *testing.T, what string, keys []string, items []*kvv1.Item, want func(key string) wantItem) {
	t.Helper()
	if len(items) != len(keys) {
		t.Errorf("%s: %d items for %d keys", what, len(items), len(keys))
		return
	}
	bad := 0
	for i, it := range items {
		w := want(keys[i])
		if it.GetKey() != keys[i] || it.GetMetadata() != w.metadata || it.Size == nil || it.GetSize() != w.size ||
			len(it.GetValue()) != 0 || it.GetGeneration() == 0 || it.GetLastModified() == nil {
			if bad++; bad <= 3 {
				t.Errorf("%s: items[%d] = key %q metadata %q size %v, %d value bytes, generation %d, last_modified %v; want key %q metadata %q size %d",
					what, i, it.GetKey(), it.GetMetadata(), it.Size, len(it.GetValue()), it.GetGeneration(), it.GetLastModified(), keys[i], w.metadata, w.size)
			}
		}
	}
	if bad > 3 {
		t.Errorf("%s: %d items wrong in all", what, bad)
	}
}

// itemsOf concatenates the items of msgs.
func itemsOf(msgs []*kvv1.StreamKeysResponse) []*kvv1.Item {
	var items []*kvv1.Item
	for _, m := range msgs {
		items = append(items, m.GetItems()...)
	}
	return items
}

// checkListKeysMetadata is the unary scenario of include_metadata: five
// items written through kvgate, listed two a page under a prefix kvgate
// filters itself; each item agrees with GetItem. Without the option no
// items come back.
func checkListKeysMetadata(t *testing.T, ctx context.Context, client kvv1connect.KVStoreServiceClient, store string) {
	t.Helper()
	want := map[string]wantItem{}
	var all []string
	for i := range 5 {
		key, meta := fmt.Sprintf("lm/%d", i), fmt.Sprintf(`{"n":%d}`, i)
		if i == 2 {
			meta = ""
		}
		_, err := client.PutItem(ctx, &kvv1.PutItemRequest{StoreId: store, Key: key, Value: make([]byte, 10*i), Metadata: meta})
		mustOK(t, "PutItem "+key, err)
		want[key] = wantItem{metadata: meta, size: uint64(10 * i)}
		all = append(all, key)
	}
	var (
		keys   []string
		items  []*kvv1.Item
		cursor string
		pages  int
	)
	for {
		page, err := client.ListKeys(ctx, &kvv1.ListKeysRequest{StoreId: store, Prefix: "lm/", Limit: 2, Cursor: cursor, IncludeMetadata: true})
		mustOK(t, "ListKeys include_metadata", err)
		pages++
		checkListedItems(t, fmt.Sprintf("ListKeys include_metadata page %d", pages), page.GetKeys(), page.GetItems(), func(k string) wantItem { return want[k] })
		keys, items = append(keys, page.GetKeys()...), append(items, page.GetItems()...)
		if cursor = page.GetNextCursor(); cursor == "" || pages > 5 {
			break
		}
	}
	if !slices.Equal(keys, all) || pages != 3 {
		t.Fatalf("ListKeys include_metadata = %q in %d pages; want %q in 3", keys, pages, all)
	}
	for i, it := range items {
		got, err := client.GetItem(ctx, &kvv1.GetItemRequest{StoreId: store, Key: keys[i]})
		mustOK(t, "GetItem "+keys[i], err)
		if g := got.GetItem(); g.GetGeneration() != it.GetGeneration() || !g.GetLastModified().AsTime().Equal(it.GetLastModified().AsTime()) {
			t.Errorf("%s: listed generation %d, last_modified %v; GetItem says %d, %v", keys[i],
				it.GetGeneration(), it.GetLastModified().AsTime(), g.GetGeneration(), g.GetLastModified().AsTime())
		}
	}
	plain, err := client.ListKeys(ctx, &kvv1.ListKeysRequest{StoreId: store, Prefix: "lm/"})
	mustOK(t, "ListKeys", err)
	if !slices.Equal(plain.GetKeys(), all) || len(plain.GetItems()) != 0 {
		t.Errorf("ListKeys without include_metadata = %q with %d items; want %q and none", plain.GetKeys(), len(plain.GetItems()), all)
	}
}

// checkStreamKeysMetadata streams the store "stream", which holds the mixed
// batch, with include_metadata: the keys of the plain listing, each with
// its item; max_keys stops inside a page and the rest follows from its
// cursor.
func checkStreamKeysMetadata(t *testing.T, ctx context.Context, client kvv1connect.KVStoreServiceClient) {
	t.Helper()
	_, stored, _ := mixedBatch()
	want := func(k string) wantItem {
		return wantItem{metadata: stored[k].metadata, size: uint64(len(stored[k].value))}
	}
	for _, prefix := range []string{"", "p/"} {
		plain, err := streamKeys(ctx, client, &kvv1.StreamKeysRequest{StoreId: "stream", Prefix: prefix, PageSize: 3})
		mustOK(t, "StreamKeys", err)
		msgs, err := streamKeys(ctx, client, &kvv1.StreamKeysRequest{StoreId: "stream", Prefix: prefix, PageSize: 3, IncludeMetadata: true})
		mustOK(t, "StreamKeys include_metadata", err)
		what := fmt.Sprintf("StreamKeys(prefix %q, include_metadata)", prefix)
		if d := testutil.DiffKeys(keysOf(msgs), keysOf(plain)); d != "" || len(msgs) != len(plain) {
			t.Errorf("%s = %d messages: %s; want %d messages", what, len(msgs), d, len(plain))
		}
		for i, m := range msgs {
			checkListedItems(t, fmt.Sprintf("%s message %d", what, i), m.GetKeys(), m.GetItems(), want)
		}
		if len(itemsOf(plain)) != 0 {
			t.Errorf("StreamKeys(prefix %q) without include_metadata carried items", prefix)
		}

		first, err := streamKeys(ctx, client, &kvv1.StreamKeysRequest{StoreId: "stream", Prefix: prefix, PageSize: 3, MaxKeys: 4, IncludeMetadata: true})
		mustOK(t, "StreamKeys include_metadata max_keys 4", err)
		rest, err := streamKeys(ctx, client, &kvv1.StreamKeysRequest{
			StoreId: "stream", Prefix: prefix, PageSize: 3, IncludeMetadata: true, Cursor: first[len(first)-1].GetCursor(),
		})
		mustOK(t, "StreamKeys include_metadata after max_keys", err)
		got := append(keysOf(first), keysOf(rest)...)
		if d := testutil.DiffKeys(got, keysOf(plain)); d != "" || len(keysOf(first)) != 4 {
			t.Errorf("%s: max_keys 4 gave %d keys, then from its cursor: %s", what, len(keysOf(first)), d)
		}
		checkListedItems(t, what+" resumed", got, append(itemsOf(first), itemsOf(rest)...), want)
	}
}

// metaFixture is a local store behind an upstream that can delete keys
// right after a listing shows them (before kvgate can read them) and fail
// the HEADs of one key, per store.
type metaFixture struct {
	store  *localstore.Store
	st     *kvtest.Stack
	client kvv1connect.KVStoreServiceClient
	rules  sync.Map // store id -> *storeRules
}

// storeRules is what the fixture's upstream does to one store.
type storeRules struct {
	// doomed keys are deleted once a listing has shown them.
	doomed map[string]bool
	// failKey's HEADs answer failStatus while failing is set.
	failKey    string
	failStatus int
	failing    atomic.Bool
}

func newMetaFixture(t *testing.T, opts kvtest.Options) *metaFixture {
	t.Helper()
	store, err := localstore.Open(localstore.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	f := &metaFixture{store: store}
	opts.Upstream = http.HandlerFunc(f.serve)
	if opts.Retry.MaxAttempts == 0 {
		opts.Retry = upstream.RetryPolicy{MaxAttempts: 2, BaseDelay: time.Millisecond}
	}
	f.st = kvtest.Start(t, opts)
	f.client = f.st.NewClient(kvtest.H2CClient(), connectGRPC()...)
	return f
}

func (f *metaFixture) serve(w http.ResponseWriter, r *http.Request) {
	next := f.store.Handler()
	storeID, rest, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/resources/stores/kv/"), "/")
	v, ok := f.rules.Load(storeID)
	if !ok {
		next.ServeHTTP(w, r)
		return
	}
	rules := v.(*storeRules)
	if r.Method == http.MethodHead && rules.failing.Load() && rest == "keys/"+rules.failKey {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(rules.failStatus)
		return
	}
	if r.Method != http.MethodGet || rest != "keys" || len(rules.doomed) == 0 {
		next.ServeHTTP(w, r)
		return
	}
	// The listing is taken, then its doomed keys are deleted, and only
	// then does kvgate get the listing.
	rec := httptest.NewRecorder()
	next.ServeHTTP(rec, r)
	var page struct{ Data []string }
	_ = json.Unmarshal(rec.Body.Bytes(), &page)
	for _, k := range page.Data {
		if rules.doomed[k] {
			del := httptest.NewRequest(http.MethodDelete, "/resources/stores/kv/"+storeID+"/keys/"+k, nil)
			next.ServeHTTP(httptest.NewRecorder(), del)
		}
	}
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
	_, _ = w.Write(rec.Body.Bytes())
}

// metaKey and metaMeta name the fixture's keys and their metadata.
func metaKey(i int) string       { return fmt.Sprintf("k%03d", i) }
func metaMeta(key string) string { return "meta-" + key }

// fill writes n keys into a new store with its rules, each key its own
// value with metaMeta metadata, and returns the keys.
func (f *metaFixture) fill(t *testing.T, ctx context.Context, storeID string, n int, rules *storeRules) []string {
	t.Helper()
	var body []byte
	keys := make([]string, n)
	for i := range keys {
		keys[i] = metaKey(i)
		body = upstream.AppendBatchLine(body, upstream.BatchLine{Key: keys[i], Value: []byte(keys[i]), Metadata: metaMeta(keys[i])})
	}
	if res, err := f.st.Client.PutBatch(ctx, storeID, body); err != nil || len(res.LineErrors) > 0 {
		t.Fatalf("filling %s: %v %v", storeID, err, res)
	}
	f.rules.Store(storeID, rules)
	return keys
}

func metaWant(key string) wantItem { return wantItem{metadata: metaMeta(key), size: uint64(len(key))} }

// without returns keys less those in drop.
func without(keys []string, drop map[string]bool) []string {
	var out []string
	for _, k := range keys {
		if !drop[k] {
			out = append(out, k)
		}
	}
	return out
}

// doomedKeys are deleted between the listing and the HEADs in
// TestListMetadataDeletedKeys: single keys inside a page of 20, at a
// page's end and start, the whole second page and the whole last page.
func doomedKeys() map[string]bool {
	d := map[string]bool{metaKey(3): true, metaKey(19): true, metaKey(60): true}
	for i := 20; i < 40; i++ {
		d[metaKey(i)] = true
	}
	for i := 80; i < 100; i++ {
		d[metaKey(i)] = true
	}
	return d
}

// TestListMetadataDeletedKeys deletes keys after a listing showed them and
// before kvgate's HEADs: they are left out of keys and items alike, a page
// of only such keys sends no message (ListKeys goes on to the next page),
// max_keys counts the keys delivered, and every cursor resumes right after
// its message.
func TestListMetadataDeletedKeys(t *testing.T) {
	t.Parallel()
	f := newMetaFixture(t, kvtest.Options{ListMetadataConcurrency: 4})
	doomed := doomedKeys()
	for _, tc := range []struct {
		name      string
		maxKeys   uint64
		wantSizes []int // keys per message
	}{
		// The last page is all gone: the end comes as an empty message.
		{name: "whole listing", wantSizes: []int{18, 20, 19, 0}},
		// k003 is gone: the 10 keys delivered run to k010.
		{name: "max_keys 10", maxKeys: 10, wantSizes: []int{10}},
		// The second page is all gone: 21 keys run into the third.
		{name: "max_keys 21", maxKeys: 21, wantSizes: []int{18, 3}},
	} {
		t.Run("StreamKeys/"+tc.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			storeID := "del-" + strings.ReplaceAll(tc.name, " ", "-")
			all := f.fill(t, ctx, storeID, 100, &storeRules{doomed: doomed})
			live := without(all, doomed)
			msgs, err := streamKeys(ctx, f.client, &kvv1.StreamKeysRequest{StoreId: storeID, PageSize: 20, MaxKeys: tc.maxKeys, IncludeMetadata: true})
			mustOK(t, "StreamKeys", err)
			var sizes []int
			for i, m := range msgs {
				sizes = append(sizes, len(m.GetKeys()))
				checkListedItems(t, fmt.Sprintf("message %d", i), m.GetKeys(), m.GetItems(), metaWant)
			}
			wantKeys := live
			if tc.maxKeys > 0 {
				wantKeys = live[:tc.maxKeys]
			}
			if d := testutil.DiffKeys(keysOf(msgs), wantKeys); d != "" || !slices.Equal(sizes, tc.wantSizes) {
				t.Fatalf("StreamKeys: messages of %v keys: %s; want messages of %v", sizes, d, tc.wantSizes)
			}
			if last := msgs[len(msgs)-1].GetCursor(); (last == "") != (tc.maxKeys == 0) {
				t.Errorf("last cursor %q; want one only when keys follow", last)
			}
			delivered := 0
			for i, m := range msgs {
				delivered += len(m.GetKeys())
				if m.GetCursor() == "" {
					continue
				}
				rest, err := streamKeys(ctx, f.client, &kvv1.StreamKeysRequest{StoreId: storeID, PageSize: 20, IncludeMetadata: true, Cursor: m.GetCursor()})
				mustOK(t, "StreamKeys resumed", err)
				if d := testutil.DiffKeys(keysOf(rest), live[delivered:]); d != "" {
					t.Errorf("resumed after message %d: %s", i, d)
				}
				checkListedItems(t, fmt.Sprintf("resumed after message %d", i), keysOf(rest), itemsOf(rest), metaWant)
			}
		})
	}
	t.Run("ListKeys", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		all := f.fill(t, ctx, "del-list", 100, &storeRules{doomed: doomed})
		var (
			keys   []string
			sizes  []int
			cursor string
		)
		for range 20 {
			page, err := f.client.ListKeys(ctx, &kvv1.ListKeysRequest{StoreId: "del-list", Limit: 20, Cursor: cursor, IncludeMetadata: true})
			mustOK(t, "ListKeys", err)
			checkListedItems(t, fmt.Sprintf("page %d", len(sizes)), page.GetKeys(), page.GetItems(), metaWant)
			keys, sizes = append(keys, page.GetKeys()...), append(sizes, len(page.GetKeys()))
			if cursor = page.GetNextCursor(); cursor == "" {
				break
			}
		}
		// The second page is passed over; the last page, all gone, ends
		// the listing with no keys.
		if d := testutil.DiffKeys(keys, without(all, doomed)); d != "" || !slices.Equal(sizes, []int{18, 20, 19, 0}) {
			t.Errorf("ListKeys pages of %v keys: %s; want pages of [18 20 19 0]", sizes, d)
		}
	})
}

// TestListMetadataHeadFailure fails the HEADs of one key: the RPC fails
// with the upstream's mapping (never blamed on the caller's cursor), a
// stream's StreamKeysResume names the last message delivered, and
// resuming from it once the upstream recovers loses and repeats nothing.
func TestListMetadataHeadFailure(t *testing.T) {
	t.Parallel()
	f := newMetaFixture(t, kvtest.Options{ListMetadataConcurrency: 3})
	for _, tc := range []struct {
		name     string
		status   int
		code     connect.Code
		startMax uint64 // start from the cursor of a stream stopped after this many keys
	}{
		{name: "503", status: http.StatusServiceUnavailable, code: connect.CodeUnavailable},
		{name: "503 from a cursor", status: http.StatusServiceUnavailable, code: connect.CodeUnavailable, startMax: 30},
		{name: "400 from a cursor", status: http.StatusBadRequest, code: connect.CodeInvalidArgument, startMax: 45},
		{name: "403", status: http.StatusForbidden, code: connect.CodePermissionDenied},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			storeID := "fail-" + strings.ReplaceAll(tc.name, " ", "-")
			rules := &storeRules{failKey: metaKey(50), failStatus: tc.status}
			all := f.fill(t, ctx, storeID, 100, rules)
			start := ""
			if tc.startMax > 0 {
				msgs, err := streamKeys(ctx, f.client, &kvv1.StreamKeysRequest{StoreId: storeID, PageSize: 20, MaxKeys: tc.startMax, IncludeMetadata: true})
				mustOK(t, "StreamKeys to start from", err)
				start = msgs[len(msgs)-1].GetCursor()
			}
			rules.failing.Store(true)

			msgs, err := streamKeys(ctx, f.client, &kvv1.StreamKeysRequest{StoreId: storeID, PageSize: 20, IncludeMetadata: true, Cursor: start})
			cerr := asConnectError(t, "StreamKeys", err, tc.code)
			checkNotCursorBlamed(t, "StreamKeys", cerr)
			resume, ok := findDetail[*kvv1.StreamKeysResume](detailsOf(cerr))
			if !ok {
				t.Fatalf("error %v carries no StreamKeysResume", cerr)
			}
			got := keysOf(msgs)
			// Pages of 20 from k000 (or the start): the page holding k050
			// fails, so the keys up to k039 are delivered.
			if d := testutil.DiffKeys(got, all[tc.startMax:max(tc.startMax, 40)]); d != "" {
				t.Errorf("keys before the failure: %s", d)
			}
			checkListedItems(t, "before the failure", got, itemsOf(msgs), metaWant)
			wantCursor := start
			if len(msgs) > 0 {
				wantCursor = msgs[len(msgs)-1].GetCursor()
			}
			if resume.GetCursor() != wantCursor || resume.GetKeysDelivered() != uint64(len(got)) {
				t.Errorf("StreamKeysResume = cursor %q, %d keys; want the last message's cursor %q and %d keys",
					resume.GetCursor(), resume.GetKeysDelivered(), wantCursor, len(got))
			}

			_, err = f.client.ListKeys(ctx, &kvv1.ListKeysRequest{StoreId: storeID, Limit: 20, Cursor: resume.GetCursor(), IncludeMetadata: true})
			checkNotCursorBlamed(t, "ListKeys", asConnectError(t, "ListKeys", err, tc.code))

			rules.failing.Store(false)
			rest, err := streamKeys(ctx, f.client, &kvv1.StreamKeysRequest{StoreId: storeID, PageSize: 20, IncludeMetadata: true, Cursor: resume.GetCursor()})
			mustOK(t, "StreamKeys resumed", err)
			if d := testutil.DiffKeys(append(got, keysOf(rest)...), all[tc.startMax:]); d != "" {
				t.Errorf("received then resumed: %s", d)
			}
			checkListedItems(t, "resumed", keysOf(rest), itemsOf(rest), metaWant)
		})
	}
}

// checkNotCursorBlamed fails when cerr names the request's cursor: a HEAD
// that failed says nothing about it.
func checkNotCursorBlamed(t *testing.T, what string, cerr *connect.Error) {
	t.Helper()
	if br, ok := findDetail[*errdetails.BadRequest](detailsOf(cerr)); ok {
		for _, v := range br.GetFieldViolations() {
			if v.GetField() == "cursor" {
				t.Errorf("%s: a failed HEAD was reported as a bad cursor: %v", what, cerr)
			}
		}
	}
}

// TestListMetadataOrder lists 500 keys whose HEADs answer in a random
// order (the store adds jitter), in pages that do not divide them: every
// page's items follow its keys, and the stream resumes right from each
// message's cursor.
func TestListMetadataOrder(t *testing.T) {
	t.Parallel()
	f := newMetaFixture(t, kvtest.Options{ListMetadataConcurrency: 8})
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	all := f.fill(t, ctx, "order", 500, &storeRules{})
	f.store.SetFaults(localstore.Faults{Jitter: 3 * time.Millisecond})

	msgs, err := streamKeys(ctx, f.client, &kvv1.StreamKeysRequest{StoreId: "order", PageSize: 97, IncludeMetadata: true})
	mustOK(t, "StreamKeys", err)
	if d := testutil.DiffKeys(keysOf(msgs), all); d != "" || len(msgs) != 6 {
		t.Fatalf("StreamKeys in %d messages: %s; want 6", len(msgs), d)
	}
	delivered := 0
	for i, m := range msgs {
		checkListedItems(t, fmt.Sprintf("message %d", i), m.GetKeys(), m.GetItems(), metaWant)
		delivered += len(m.GetKeys())
		if m.GetCursor() == "" {
			continue
		}
		rest, err := streamKeys(ctx, f.client, &kvv1.StreamKeysRequest{StoreId: "order", PageSize: 97, IncludeMetadata: true, Cursor: m.GetCursor(), MaxKeys: 120})
		mustOK(t, "StreamKeys resumed", err)
		if d := testutil.DiffKeys(keysOf(rest), all[delivered:min(delivered+120, len(all))]); d != "" {
			t.Errorf("resumed after message %d: %s", i, d)
		}
		checkListedItems(t, fmt.Sprintf("resumed after message %d", i), keysOf(rest), itemsOf(rest), metaWant)
	}

	var keys []string
	cursor := ""
	for range 10 {
		page, err := f.client.ListKeys(ctx, &kvv1.ListKeysRequest{StoreId: "order", Limit: 97, Cursor: cursor, IncludeMetadata: true})
		mustOK(t, "ListKeys", err)
		checkListedItems(t, "ListKeys page", page.GetKeys(), page.GetItems(), metaWant)
		keys = append(keys, page.GetKeys()...)
		if cursor = page.GetNextCursor(); cursor == "" {
			break
		}
	}
	if d := testutil.DiffKeys(keys, all); d != "" {
		t.Errorf("ListKeys pages: %s", d)
	}
}

// TestListMetadataCancel cancels a StreamKeys with include_metadata: its
// HEADs stop.
func TestListMetadataCancel(t *testing.T) {
	t.Parallel()
	const concurrency = 4
	f := newMetaFixture(t, kvtest.Options{ListMetadataConcurrency: concurrency})
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	f.fill(t, ctx, "cancel", 1000, &storeRules{})
	// 1000 HEADs, 4 at a time, each answered after 20ms: a stream left
	// running would go on for seconds.
	f.store.SetFaults(localstore.Faults{Latency: 20 * time.Millisecond})

	sctx, scancel := context.WithCancel(ctx)
	defer scancel()
	stream, err := f.client.StreamKeys(sctx, &kvv1.StreamKeysRequest{StoreId: "cancel", PageSize: 10, IncludeMetadata: true})
	mustOK(t, "StreamKeys", err)
	defer stream.Close()
	for i := range 2 {
		if _, err := stream.Receive(); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
	}
	scancel()
	atCancel := f.store.Count(localstore.RequestHead)
	final := settle(t, func() int64 { return f.store.Count(localstore.RequestHead) }, 300*time.Millisecond, 30*time.Second)
	if final-atCancel > concurrency {
		t.Errorf("the store received %d HEADs after the client cancelled (%d before); want at most %d", final-atCancel, atCancel, concurrency)
	}
	if final >= 1000 {
		t.Errorf("every key was read (%d HEADs)", final)
	}
}

// TestListMetadataDrain shuts kvgate down while a StreamKeys with
// include_metadata runs: it ends UNAVAILABLE with the cursor that resumes
// it elsewhere.
func TestListMetadataDrain(t *testing.T) {
	t.Parallel()
	f := newMetaFixture(t, kvtest.Options{ListMetadataConcurrency: 2, ShutdownTimeout: 200 * time.Millisecond})
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	all := f.fill(t, ctx, "drain", 400, &storeRules{})
	f.store.SetFaults(localstore.Faults{Latency: 10 * time.Millisecond})

	stream, err := f.client.StreamKeys(ctx, &kvv1.StreamKeysRequest{StoreId: "drain", PageSize: 10, IncludeMetadata: true})
	mustOK(t, "StreamKeys", err)
	defer stream.Close()
	var got []string
	cursor := ""
	msg, err := stream.Receive()
	mustOK(t, "first message", err)
	got, cursor = append(got, msg.GetKeys()...), msg.GetCursor()
	shut := make(chan error, 1)
	go func() { shut <- f.st.Shutdown() }()
	for {
		msg, err := stream.Receive()
		if err != nil {
			cerr := asConnectError(t, "StreamKeys during shutdown", err, connect.CodeUnavailable)
			resume, ok := findDetail[*kvv1.StreamKeysResume](detailsOf(cerr))
			if !ok || resume.GetCursor() != cursor || resume.GetKeysDelivered() != uint64(len(got)) {
				t.Errorf("StreamKeysResume = %v; want cursor %q and %d keys", resume, cursor, len(got))
			}
			break
		}
		got, cursor = append(got, msg.GetKeys()...), msg.GetCursor()
	}
	if err := <-shut; err != nil {
		t.Errorf("shutdown: %v", err)
	}
	if d := testutil.DiffKeys(got, all[:len(got)]); d != "" || len(got) == len(all) {
		t.Errorf("keys before the shutdown (%d of %d): %s", len(got), len(all), d)
	}
}
