//go:build unix

package interop

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/kvgate/kvgate/internal/testutil"
	kvv1 "github.com/kvgate/kvgate/test/interop/gen/fastly/kv/v1"
	"github.com/kvgate/kvgate/upstream"
)

// watchTimeout bounds a WatchItems call of the tests, so that a change
// that never comes fails the test well before testTimeout. It only turns
// a hang into a failure.
const watchTimeout = 30 * time.Second

// TestGRPCItems drives the multi-key RPCs (GetItems, WatchItems,
// DeleteKeys, CopyItems) and the metadata reads (GetItem's views and
// conditional read, the listings' include_metadata) with grpc-go. kvgate
// runs in front of a store of its own process (kvlocal), as it runs in
// front of Fastly, so that WatchItems is shown changes made on the store
// itself, not through kvgate; its poll floor is lowered so the watch
// reports them within a fraction of a second.
func TestGRPCItems(t *testing.T) {
	t.Parallel()
	local := startKVLocal(t, "")
	p := startKVGateWith(t,
		[]string{"FASTLY_API_TOKEN=test", "FASTLY_API_URL=http://" + local.Addr},
		"-watch-min-interval", "100ms",
		// Low enough for testWatchTooManyKeys to cross with a few keys;
		// the other prefix watches cover at most two.
		"-watch-max-keys", "3")
	kv := kvv1.NewKVStoreServiceClient(dial(t, p.Addr))
	// The store's own REST API, as another writer of the same store
	// (a Fastly service, the CLI) would change it.
	direct, err := upstream.NewClient(upstream.ClientConfig{BaseURL: "http://" + local.Addr, Token: "test"})
	if err != nil {
		t.Fatal(err)
	}

	// Each subtest uses its own store ids, so they run in parallel
	// without seeing each other's keys.
	runParallel(t, kv, []kvSubtest{
		{"GetItems", testGetItems},
		{"GetItemsMetadataView", testGetItemsMetadataView},
		{"GetItemViews", testGetItemViews},
		{"ListKeysIncludeMetadata", testListKeysIncludeMetadata},
		{"StreamKeysIncludeMetadata", testStreamKeysIncludeMetadata},
		{"WatchItemsPrefix", func(t *testing.T, kv kvv1.KVStoreServiceClient) {
			testWatchItems(t, kv, direct, &kvv1.WatchItemsRequest{StoreId: "watch-prefix", Prefix: "w/"})
		}},
		{"WatchItemsKeys", func(t *testing.T, kv kvv1.KVStoreServiceClient) {
			testWatchItems(t, kv, direct, &kvv1.WatchItemsRequest{StoreId: "watch-keys", Keys: []string{"w/a", "w/b"}})
		}},
		{"WatchItemsTooManyKeys", testWatchTooManyKeys},
		{"DeleteKeys", testDeleteKeys},
		{"CopyItems", testCopyItems},
		{"InvalidArgument", testItemsInvalidArgument},
	})
}

// collectGetItems runs GetItems to its end and returns its answers by
// position, checking that each position of the request is answered
// exactly once, under its own key.
func collectGetItems(ctx context.Context, t *testing.T, kv kvv1.KVStoreServiceClient, req *kvv1.GetItemsRequest) []*kvv1.GetItemsResponse {
	t.Helper()
	stream, err := kv.GetItems(ctx, req)
	if err != nil {
		t.Fatalf("GetItems(%v): %v", req, err)
	}
	msgs, err := testutil.ReadStream(stream.Recv)
	if err != nil {
		t.Fatalf("GetItems(%v) after %d messages: %v", req, len(msgs), err)
	}
	byIndex := make([]*kvv1.GetItemsResponse, len(req.GetKeys()))
	for _, m := range msgs {
		i := int(m.GetIndex())
		switch {
		case i >= len(byIndex):
			t.Fatalf("GetItems answered index %d of %d keys: %v", i, len(byIndex), m)
		case byIndex[i] != nil:
			t.Fatalf("GetItems answered index %d twice: %v and %v", i, byIndex[i], m)
		case m.GetKey() != req.GetKeys()[i]:
			t.Errorf("GetItems answered index %d with key %q, want %q", i, m.GetKey(), req.GetKeys()[i])
		}
		byIndex[i] = m
	}
	for i, m := range byIndex {
		if m == nil {
			t.Fatalf("GetItems sent %d messages and none for index %d (%q)", len(msgs), i, req.GetKeys()[i])
		}
	}
	return byIndex
}

// checkItem checks that got describes want's item: key, metadata,
// generation, size, and the value only when withValue (otherwise none).
func checkItem(t *testing.T, what string, got, want *kvv1.Item, withValue bool) {
	t.Helper()
	if got == nil {
		t.Errorf("%s: no item, want %v", what, want)
		return
	}
	if got.GetKey() != want.GetKey() || got.GetMetadata() != want.GetMetadata() || got.GetGeneration() != want.GetGeneration() {
		t.Errorf("%s: key %q metadata %q generation %d, want %q, %q, %d",
			what, got.GetKey(), got.GetMetadata(), got.GetGeneration(), want.GetKey(), want.GetMetadata(), want.GetGeneration())
	}
	if got.Size == nil || got.GetSize() != uint64(len(want.GetValue())) {
		t.Errorf("%s: size %v, want %d", what, got.Size, len(want.GetValue()))
	}
	switch {
	case withValue && string(got.GetValue()) != string(want.GetValue()):
		t.Errorf("%s: value %q, want %q", what, got.GetValue(), want.GetValue())
	case !withValue && len(got.GetValue()) != 0:
		t.Errorf("%s: value %q, want none", what, got.GetValue())
	}
	if lm := got.GetLastModified(); lm == nil || lm.CheckValid() != nil || lm.AsTime().Unix() <= 0 {
		t.Errorf("%s: last_modified %v, want the write time", what, lm)
	}
}

// putItems writes key/value pairs to store through kvgate, with the
// metadata "meta-" plus the key, and returns the items as GetItem reads
// them back.
func putItems(ctx context.Context, t *testing.T, kv kvv1.KVStoreServiceClient, store string, kvs ...string) map[string]*kvv1.Item {
	t.Helper()
	items := map[string]*kvv1.Item{}
	for i := 0; i+1 < len(kvs); i += 2 {
		key, value := kvs[i], kvs[i+1]
		mustPut(ctx, t, kv, &kvv1.PutItemRequest{StoreId: store, Key: key, Value: []byte(value), Metadata: "meta-" + key})
		items[key] = mustGet(ctx, t, kv, store, key)
	}
	return items
}

// testGetItems reads present, absent and repeated keys in one call.
func testGetItems(t *testing.T, kv kvv1.KVStoreServiceClient) {
	ctx := testContext(t)
	const store = "get-items"
	items := putItems(ctx, t, kv, store, "a", "value a", "b", "bee\x00") // a NUL: values are bytes
	keys := []string{"a", "nope", "a", "b"}
	got := collectGetItems(ctx, t, kv, &kvv1.GetItemsRequest{StoreId: store, Keys: keys})
	for i, key := range keys {
		what := fmt.Sprintf("GetItems index %d (%s)", i, key)
		want, present := items[key]
		if !present {
			if !got[i].GetAbsent() {
				t.Errorf("%s = %v, want absent", what, got[i])
			}
			continue
		}
		checkItem(t, what, got[i].GetItem(), want, true)
	}
}

// testGetItemsMetadataView reads items without their values.
func testGetItemsMetadataView(t *testing.T, kv kvv1.KVStoreServiceClient) {
	ctx := testContext(t)
	const store = "get-items-metadata"
	items := putItems(ctx, t, kv, store, "x", "twelve bytes", "y", "")
	keys := []string{"y", "x", "gone"}
	got := collectGetItems(ctx, t, kv, &kvv1.GetItemsRequest{StoreId: store, Keys: keys, View: kvv1.ItemView_ITEM_VIEW_METADATA})
	checkItem(t, "GetItems(metadata view) of y", got[0].GetItem(), items["y"], false)
	checkItem(t, "GetItems(metadata view) of x", got[1].GetItem(), items["x"], false)
	if !got[2].GetAbsent() {
		t.Errorf("GetItems(metadata view) of an absent key = %v, want absent", got[2])
	}
}

// testGetItemViews checks GetItem's metadata view and its conditional
// read: not_modified for the generation held, the whole item otherwise.
func testGetItemViews(t *testing.T, kv kvv1.KVStoreServiceClient) {
	ctx := testContext(t)
	const store, key = "get-item-views", "doc"
	want := putItems(ctx, t, kv, store, key, "hello")[key]
	gen := want.GetGeneration()
	checkItem(t, "GetItem (full)", want, want, true)

	tests := []struct {
		name        string
		req         *kvv1.GetItemRequest
		notModified bool
		withValue   bool
	}{
		{"metadata view", &kvv1.GetItemRequest{View: kvv1.ItemView_ITEM_VIEW_METADATA}, false, false},
		{"explicit full view", &kvv1.GetItemRequest{View: kvv1.ItemView_ITEM_VIEW_FULL}, false, true},
		{"held generation", &kvv1.GetItemRequest{IfGenerationNotMatch: proto.Uint64(gen)}, true, false},
		{"held generation, metadata view", &kvv1.GetItemRequest{IfGenerationNotMatch: proto.Uint64(gen), View: kvv1.ItemView_ITEM_VIEW_METADATA}, true, false},
		{"stale generation", &kvv1.GetItemRequest{IfGenerationNotMatch: proto.Uint64(gen + 1)}, false, true},
	}
	for _, tt := range tests {
		req := proto.CloneOf(tt.req)
		req.StoreId, req.Key = store, key
		resp, err := kv.GetItem(ctx, req)
		if err != nil {
			t.Errorf("GetItem(%s): %v", tt.name, err)
			continue
		}
		if resp.GetNotModified() != tt.notModified {
			t.Errorf("GetItem(%s).not_modified = %v, want %v", tt.name, resp.GetNotModified(), tt.notModified)
		}
		checkItem(t, "GetItem("+tt.name+")", resp.GetItem(), want, tt.withValue)
	}

	// A held generation of an item that is gone is still NotFound.
	_, err := kv.GetItem(ctx, &kvv1.GetItemRequest{StoreId: store, Key: "absent", IfGenerationNotMatch: proto.Uint64(gen)})
	wantCode(t, "GetItem of an absent key with if_generation_not_match", err, codes.NotFound)
	_, err = kv.GetItem(ctx, &kvv1.GetItemRequest{StoreId: store, Key: "absent", View: kvv1.ItemView_ITEM_VIEW_METADATA})
	wantCode(t, "GetItem of an absent key with the metadata view", err, codes.NotFound)
}

// testListKeysIncludeMetadata checks that ListKeys' items are parallel to
// its keys, page by page, and absent without include_metadata.
func testListKeysIncludeMetadata(t *testing.T, kv kvv1.KVStoreServiceClient) {
	ctx := testContext(t)
	const store = "list-metadata"
	items := putItems(ctx, t, kv, store, "l/1", "one", "l/2", "two!", "l/3", "three", "other", "x")

	var keys []string
	cursor := ""
	for range 10 { // far more pages than keys: a cursor loop fails, not hangs
		resp, err := kv.ListKeys(ctx, &kvv1.ListKeysRequest{StoreId: store, Prefix: "l/", Limit: 2, Cursor: cursor, IncludeMetadata: true})
		if err != nil {
			t.Fatalf("ListKeys(include_metadata, cursor %q): %v", cursor, err)
		}
		checkParallelItems(t, "ListKeys(include_metadata)", resp.GetKeys(), resp.GetItems(), items)
		keys = append(keys, resp.GetKeys()...)
		if cursor = resp.GetNextCursor(); cursor == "" {
			break
		}
	}
	if want := []string{"l/1", "l/2", "l/3"}; cursor != "" || !slices.Equal(keys, want) {
		t.Errorf("ListKeys(include_metadata) two keys a page = %q (last cursor %q), want %q", keys, cursor, want)
	}

	resp, err := kv.ListKeys(ctx, &kvv1.ListKeysRequest{StoreId: store, Prefix: "l/"})
	if err != nil {
		t.Fatalf("ListKeys: %v", err)
	}
	if len(resp.GetItems()) != 0 {
		t.Errorf("ListKeys without include_metadata carries items %v, want none", resp.GetItems())
	}
}

// testStreamKeysIncludeMetadata checks StreamKeys' items the same way.
func testStreamKeysIncludeMetadata(t *testing.T, kv kvv1.KVStoreServiceClient) {
	ctx := testContext(t)
	const store = "stream-metadata"
	items := putItems(ctx, t, kv, store, "s/a", "1", "s/b", "22", "s/c", "333")
	stream, err := kv.StreamKeys(ctx, &kvv1.StreamKeysRequest{StoreId: store, PageSize: 2, IncludeMetadata: true})
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := testutil.ReadStream(stream.Recv)
	if err != nil {
		t.Fatalf("StreamKeys(include_metadata) after %d messages: %v", len(msgs), err)
	}
	var keys []string
	for _, m := range msgs {
		checkParallelItems(t, "StreamKeys(include_metadata)", m.GetKeys(), m.GetItems(), items)
		keys = append(keys, m.GetKeys()...)
	}
	if want := []string{"s/a", "s/b", "s/c"}; !slices.Equal(keys, want) {
		t.Errorf("StreamKeys(include_metadata) = %q, want %q", keys, want)
	}
}

// checkParallelItems checks that items holds one item per key, in the
// order of keys, each as stored (want) but without its value.
func checkParallelItems(t *testing.T, what string, keys []string, items []*kvv1.Item, want map[string]*kvv1.Item) {
	t.Helper()
	if len(items) != len(keys) {
		t.Errorf("%s: %d items for %d keys %q", what, len(items), len(keys), keys)
		return
	}
	for i, key := range keys {
		checkItem(t, fmt.Sprintf("%s items[%d]", what, i), items[i], want[key], false)
	}
}

// watchStream is an open WatchItems call.
type watchStream struct {
	t      *testing.T
	what   string
	stream grpc.ServerStreamingClient[kvv1.WatchItemsResponse]
}

// next returns the next message that carries changes (or is the
// initial one), skipping any other.
func (w *watchStream) next() *kvv1.WatchItemsResponse {
	w.t.Helper()
	for {
		msg, err := w.stream.Recv()
		if err != nil {
			// The call's deadline ends a watch whose change never came.
			w.t.Fatalf("%s: Recv: %v", w.what, err)
		}
		if len(msg.GetChanges()) > 0 || msg.GetInitial() {
			return msg
		}
	}
}

// expect receives the next message with changes and checks that it holds
// exactly one change, of key and type, and returns it.
func (w *watchStream) expect(typ kvv1.ChangeType, key string) *kvv1.ItemChange {
	w.t.Helper()
	msg := w.next()
	if msg.GetInitial() {
		w.t.Errorf("%s: a later message has initial set: %v", w.what, msg)
	}
	if ch := msg.GetChanges(); len(ch) != 1 || ch[0].GetType() != typ || ch[0].GetKey() != key {
		w.t.Fatalf("%s: changes %v, want one %v of %s", w.what, ch, typ, key)
	}
	return msg.GetChanges()[0]
}

// testWatchItems watches req's keys, w/a and w/b, while the store itself
// is changed: the initial state, then an update, a creation and a
// deletion, each awaited before the next, so each is a poll of its own;
// then it resumes the watch from the state its changes built.
func testWatchItems(t *testing.T, kv kvv1.KVStoreServiceClient, direct *upstream.Client, req *kvv1.WatchItemsRequest) {
	ctx := testContext(t)
	store := req.GetStoreId()
	// Outside what either watch covers: it must never be reported.
	mustPut(ctx, t, kv, &kvv1.PutItemRequest{StoreId: store, Key: "other", Value: []byte("x")})
	initial := putItems(ctx, t, kv, store, "w/a", "1")["w/a"]

	watchCtx, cancel := context.WithTimeout(ctx, watchTimeout)
	defer cancel()
	req = proto.CloneOf(req)
	req.SendInitialState = true
	req.Interval = durationpb.New(100 * time.Millisecond)
	stream, err := kv.WatchItems(watchCtx, req)
	if err != nil {
		t.Fatalf("WatchItems(%v): %v", req, err)
	}
	w := &watchStream{t: t, what: fmt.Sprintf("WatchItems(%v)", req), stream: stream}

	first := w.next()
	if !first.GetInitial() {
		t.Errorf("the first message has initial unset: %v", first)
	}
	if first.GetObservedAt() == nil || first.GetObservedAt().CheckValid() != nil {
		t.Errorf("the first message's observed_at = %v, want the poll's time", first.GetObservedAt())
	}
	if ch := first.GetChanges(); len(ch) != 1 || ch[0].GetType() != kvv1.ChangeType_CHANGE_TYPE_PRESENT || ch[0].GetKey() != "w/a" {
		t.Fatalf("the initial state = %v, want w/a PRESENT alone", ch)
	}
	checkItem(t, "the initial state of w/a", first.GetChanges()[0].GetItem(), initial, false)

	// An update made on the store, not through kvgate.
	if err := direct.PutItem(ctx, store, "w/a", []byte("22"), upstream.PutOptions{Metadata: "v2"}); err != nil {
		t.Fatalf("PutItem on the store: %v", err)
	}
	updated := w.expect(kvv1.ChangeType_CHANGE_TYPE_UPDATED, "w/a")
	now := mustGet(ctx, t, kv, store, "w/a")
	if now.GetGeneration() == initial.GetGeneration() {
		t.Fatalf("the store's update left w/a's generation at %d", now.GetGeneration())
	}
	checkItem(t, "the UPDATED w/a", updated.GetItem(), now, false)

	if err := direct.PutItem(ctx, store, "w/b", []byte("new"), upstream.PutOptions{}); err != nil {
		t.Fatalf("PutItem on the store: %v", err)
	}
	created := w.expect(kvv1.ChangeType_CHANGE_TYPE_CREATED, "w/b")
	checkItem(t, "the CREATED w/b", created.GetItem(), mustGet(ctx, t, kv, store, "w/b"), false)

	if err := direct.DeleteItem(ctx, store, "w/a", upstream.DeleteOptions{}); err != nil {
		t.Fatalf("DeleteItem on the store: %v", err)
	}
	if deleted := w.expect(kvv1.ChangeType_CHANGE_TYPE_DELETED, "w/a"); deleted.GetItem() != nil {
		t.Errorf("the DELETED change carries an item: %v", deleted.GetItem())
	}
	cancel()

	// While no watch is open, w/a comes back and w/b changes. A watch
	// resumed from the state the changes built (w/b alone, at its
	// CREATED generation) reports both in its first message.
	known := []*kvv1.KeyGeneration{{Key: "w/b", Generation: created.GetItem().GetGeneration()}}
	if err := direct.PutItem(ctx, store, "w/a", []byte("back"), upstream.PutOptions{}); err != nil {
		t.Fatalf("PutItem on the store: %v", err)
	}
	if err := direct.PutItem(ctx, store, "w/b", []byte("changed"), upstream.PutOptions{}); err != nil {
		t.Fatalf("PutItem on the store: %v", err)
	}
	resumeCtx, cancelResume := context.WithTimeout(ctx, watchTimeout)
	defer cancelResume()
	req.SendInitialState = false
	req.Known = known
	stream, err = kv.WatchItems(resumeCtx, req)
	if err != nil {
		t.Fatalf("WatchItems(%v): %v", req, err)
	}
	w = &watchStream{t: t, what: fmt.Sprintf("WatchItems(%v)", req), stream: stream}
	resumed := w.next()
	var got []string
	for _, ch := range resumed.GetChanges() {
		got = append(got, ch.GetType().String()+" "+ch.GetKey())
	}
	if want := []string{"CHANGE_TYPE_CREATED w/a", "CHANGE_TYPE_UPDATED w/b"}; !resumed.GetInitial() || !slices.Equal(got, want) {
		t.Errorf("the resumed watch's first message: initial %v, changes %q; want initial and %q", resumed.GetInitial(), got, want)
	}
}

// testWatchTooManyKeys checks that a prefix watch over more keys than
// -watch-max-keys ends with FailedPrecondition and an ErrorInfo detail
// that grpc-go decodes.
func testWatchTooManyKeys(t *testing.T, kv kvv1.KVStoreServiceClient) {
	ctx := testContext(t)
	const store = "watch-too-many"
	putItems(ctx, t, kv, store, "m/1", "1", "m/2", "2", "m/3", "3", "m/4", "4")
	stream, err := kv.WatchItems(ctx, &kvv1.WatchItemsRequest{StoreId: store, Prefix: "m/", SendInitialState: true})
	if err == nil {
		var msg *kvv1.WatchItemsResponse
		if msg, err = stream.Recv(); err == nil {
			t.Fatalf("WatchItems of a prefix over -watch-max-keys sent %v, want an error", msg)
		}
	}
	st := wantCode(t, "WatchItems of a prefix over -watch-max-keys", err, codes.FailedPrecondition)
	var reasons []string
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			reasons = append(reasons, info.GetDomain()+"/"+info.GetReason())
		}
	}
	if want := []string{"kvgate/WATCH_TOO_MANY_KEYS"}; !slices.Equal(reasons, want) {
		t.Errorf("ErrorInfo details = %q (details %v), want %q", reasons, st.Details(), want)
	}
}

// collectDeleteKeys runs DeleteKeys to its end and returns the keys it
// reported deleted and not found, in order, and its last message.
func collectDeleteKeys(ctx context.Context, t *testing.T, kv kvv1.KVStoreServiceClient, req *kvv1.DeleteKeysRequest) (deleted, notFound []string, last *kvv1.DeleteKeysResponse) {
	t.Helper()
	stream, err := kv.DeleteKeys(ctx, req)
	if err != nil {
		t.Fatalf("DeleteKeys(%v): %v", req, err)
	}
	msgs, err := testutil.ReadStream(stream.Recv)
	if err != nil {
		t.Fatalf("DeleteKeys(%v) after %d messages: %v", req, len(msgs), err)
	}
	if len(msgs) == 0 {
		t.Fatalf("DeleteKeys(%v) sent no message", req)
	}
	for _, m := range msgs {
		if len(m.GetFailures()) > 0 {
			t.Errorf("DeleteKeys(%v) failures: %v", req, m.GetFailures())
		}
		deleted = append(deleted, m.GetDeleted()...)
		notFound = append(notFound, m.GetNotFound()...)
	}
	last = msgs[len(msgs)-1]
	if !last.GetDone() || last.GetCursor() != "" {
		t.Errorf("DeleteKeys(%v) last message: done %v cursor %q, want done and no cursor", req, last.GetDone(), last.GetCursor())
	}
	return deleted, notFound, last
}

// listAll lists every key of store.
func listAll(ctx context.Context, t *testing.T, kv kvv1.KVStoreServiceClient, store string) []string {
	t.Helper()
	resp, err := kv.ListKeys(ctx, &kvv1.ListKeysRequest{StoreId: store})
	if err != nil {
		t.Fatalf("ListKeys(%s): %v", store, err)
	}
	return resp.GetKeys()
}

// testDeleteKeys deletes a prefix, first as a dry run, then for real, and
// then a list of keys, one of them absent.
func testDeleteKeys(t *testing.T, kv kvv1.KVStoreServiceClient) {
	ctx := testContext(t)
	const store = "delete-keys"
	putItems(ctx, t, kv, store, "tmp/1", "1", "tmp/2", "2", "tmp/3", "3", "tmpX", "4", "keep", "5")
	all := []string{"keep", "tmp/1", "tmp/2", "tmp/3", "tmpX"}
	want := []string{"tmp/1", "tmp/2", "tmp/3"}

	deleted, notFound, last := collectDeleteKeys(ctx, t, kv, &kvv1.DeleteKeysRequest{StoreId: store, Prefix: "tmp/", DryRun: true})
	if !slices.Equal(deleted, want) || len(notFound) != 0 || last.GetTotals().GetDeleted() != 3 {
		t.Errorf("DeleteKeys(dry run) reported deleted %q, not found %q, totals %v; want %q deleted", deleted, notFound, last.GetTotals(), want)
	}
	if got := listAll(ctx, t, kv, store); !slices.Equal(got, all) {
		t.Fatalf("keys after the dry run = %q, want all of %q", got, all)
	}

	deleted, notFound, last = collectDeleteKeys(ctx, t, kv, &kvv1.DeleteKeysRequest{StoreId: store, Prefix: "tmp/"})
	if !slices.Equal(deleted, want) || len(notFound) != 0 || last.GetTotals().GetDeleted() != 3 {
		t.Errorf("DeleteKeys reported deleted %q, not found %q, totals %v; want %q deleted", deleted, notFound, last.GetTotals(), want)
	}
	if got, want := listAll(ctx, t, kv, store), []string{"keep", "tmpX"}; !slices.Equal(got, want) {
		t.Errorf("keys after DeleteKeys(prefix tmp/) = %q, want %q", got, want)
	}

	deleted, notFound, last = collectDeleteKeys(ctx, t, kv, &kvv1.DeleteKeysRequest{StoreId: store, Keys: []string{"tmp/1", "keep"}})
	if !slices.Equal(deleted, []string{"keep"}) || !slices.Equal(notFound, []string{"tmp/1"}) ||
		last.GetTotals().GetDeleted() != 1 || last.GetTotals().GetNotFound() != 1 {
		t.Errorf("DeleteKeys(keys) reported deleted %q, not found %q, totals %v; want keep deleted and tmp/1 not found",
			deleted, notFound, last.GetTotals())
	}
	if got, want := listAll(ctx, t, kv, store), []string{"tmpX"}; !slices.Equal(got, want) {
		t.Errorf("keys after DeleteKeys(keys) = %q, want %q", got, want)
	}
}

// testCopyItems copies a prefix into another store, overwriting an item
// there, and reads the copies back.
func testCopyItems(t *testing.T, kv kvv1.KVStoreServiceClient) {
	ctx := testContext(t)
	const source, target = "copy-source", "copy-target"
	src := putItems(ctx, t, kv, source, "p/1", "one", "p/2", "two", "p:3", "not copied", "q", "not copied")
	putItems(ctx, t, kv, target, "p/1", "old", "t", "target's own")

	stream, err := kv.CopyItems(ctx, &kvv1.CopyItemsRequest{SourceStoreId: source, TargetStoreId: target, Prefix: "p/"})
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := testutil.ReadStream(stream.Recv)
	if err != nil {
		t.Fatalf("CopyItems after %d messages: %v", len(msgs), err)
	}
	if len(msgs) == 0 {
		t.Fatal("CopyItems sent no message")
	}
	for _, m := range msgs {
		if len(m.GetFailures()) > 0 {
			t.Errorf("CopyItems failures: %v", m.GetFailures())
		}
	}
	last := msgs[len(msgs)-1]
	if !last.GetDone() || last.GetCursor() != "" || last.GetCopied() != 2 || last.GetSkipped() != 0 || last.GetFailed() != 0 {
		t.Errorf("CopyItems' last message = %v, want done, 2 copied, no cursor, nothing skipped or failed", last)
	}

	keys := []string{"p/1", "p/2", "p:3", "q", "t"}
	got := collectGetItems(ctx, t, kv, &kvv1.GetItemsRequest{StoreId: target, Keys: keys})
	for i, key := range keys[:2] {
		item := got[i].GetItem()
		if string(item.GetValue()) != string(src[key].GetValue()) || item.GetMetadata() != src[key].GetMetadata() {
			t.Errorf("copied %s = %q with metadata %q, want %q with %q",
				key, item.GetValue(), item.GetMetadata(), src[key].GetValue(), src[key].GetMetadata())
		}
	}
	for i := 2; i < 4; i++ {
		if !got[i].GetAbsent() {
			t.Errorf("%s outside the prefix reached the target: %v", keys[i], got[i])
		}
	}
	if string(got[4].GetItem().GetValue()) != "target's own" {
		t.Errorf("the target's own item t = %v, want it untouched", got[4])
	}
}

// firstError returns the error of a server stream's start or of its first
// message: grpc-go reports a refused call at Recv.
func firstError[T any](stream grpc.ServerStreamingClient[T], err error) error {
	if err != nil {
		return err
	}
	_, err = stream.Recv()
	return err
}

// testItemsInvalidArgument checks that one bad input to each new RPC or
// field is InvalidArgument with a BadRequest detail naming the field,
// decoded by grpc-go from grpc-status-details-bin.
func testItemsInvalidArgument(t *testing.T, kv kvv1.KVStoreServiceClient) {
	const store = "items-invalid"
	tests := []struct {
		name  string
		call  func(context.Context) error
		field string
	}{
		{"GetItems invalid key", func(ctx context.Context) error {
			return firstError(kv.GetItems(ctx, &kvv1.GetItemsRequest{StoreId: store, Keys: []string{"ok", "a#b"}}))
		}, "keys[1]"},
		{"GetItems no keys", func(ctx context.Context) error {
			return firstError(kv.GetItems(ctx, &kvv1.GetItemsRequest{StoreId: store}))
		}, "keys"},
		{"GetItem unknown view", func(ctx context.Context) error {
			_, err := kv.GetItem(ctx, &kvv1.GetItemRequest{StoreId: store, Key: "k", View: kvv1.ItemView(9)})
			return err
		}, "view"},
		{"ListKeys include_metadata limit over 1000", func(ctx context.Context) error {
			_, err := kv.ListKeys(ctx, &kvv1.ListKeysRequest{StoreId: store, IncludeMetadata: true, Limit: 1001})
			return err
		}, "limit"},
		{"WatchItems keys and prefix", func(ctx context.Context) error {
			return firstError(kv.WatchItems(ctx, &kvv1.WatchItemsRequest{StoreId: store, Keys: []string{"k"}, Prefix: "p"}))
		}, "prefix"},
		{"WatchItems invalid key", func(ctx context.Context) error {
			return firstError(kv.WatchItems(ctx, &kvv1.WatchItemsRequest{StoreId: store, Keys: []string{"k", "l", "a#b"}}))
		}, "keys[2]"},
		{"DeleteKeys no selection", func(ctx context.Context) error {
			return firstError(kv.DeleteKeys(ctx, &kvv1.DeleteKeysRequest{StoreId: store}))
		}, "prefix"},
		{"DeleteKeys repeated key", func(ctx context.Context) error {
			return firstError(kv.DeleteKeys(ctx, &kvv1.DeleteKeysRequest{StoreId: store, Keys: []string{"k", "k"}, DryRun: true}))
		}, "keys[1]"},
		{"CopyItems into its source", func(ctx context.Context) error {
			return firstError(kv.CopyItems(ctx, &kvv1.CopyItemsRequest{SourceStoreId: store, TargetStoreId: store}))
		}, "target_store_id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			st := wantCode(t, tt.name, tt.call(testContext(t)), codes.InvalidArgument)
			if fields := badRequestFields(st); !slices.Contains(fields, tt.field) {
				t.Errorf("BadRequest field violations = %q (details %v), want one naming %q", fields, st.Details(), tt.field)
			}
		})
	}
}

// TestGRPCWatchItemsShutdown checks that a watch ends without an error
// when kvgate shuts down, as the contract promises: grpc-go's Recv
// reports io.EOF, the clean end of a stream with status OK.
func TestGRPCWatchItemsShutdown(t *testing.T) {
	t.Parallel()
	p := startKVGate(t, t.TempDir())
	kv := kvv1.NewKVStoreServiceClient(dial(t, p.Addr))
	ctx, cancel := context.WithTimeout(testContext(t), watchTimeout+stopTimeout)
	defer cancel()
	const store = "watch-shutdown"
	mustPut(ctx, t, kv, &kvv1.PutItemRequest{StoreId: store, Key: "k", Value: []byte("v")})
	stream, err := kv.WatchItems(ctx, &kvv1.WatchItemsRequest{StoreId: store, Keys: []string{"k"}, SendInitialState: true})
	if err != nil {
		t.Fatal(err)
	}
	// The initial state proves the watch is under way before SIGTERM.
	if first, err := stream.Recv(); err != nil || !first.GetInitial() {
		t.Fatalf("WatchItems' first message = %v, %v; want the initial state", first, err)
	}

	p.Stop(t) // SIGTERM; checks the exit is clean
	msgs, err := testutil.ReadStream(stream.Recv)
	if err != nil {
		t.Errorf("WatchItems after SIGTERM ended with %v (code %v), want a clean end", err, status.Code(err))
	}
	for _, m := range msgs {
		if len(m.GetChanges()) > 0 {
			t.Errorf("WatchItems after SIGTERM sent changes %v, but nothing changed", m.GetChanges())
		}
	}
}
