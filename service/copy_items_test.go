package service_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connecthttp"
	"golang.org/x/sync/errgroup"

	kvv1 "github.com/kvgate/kvgate/gen/go/fastly/kv/v1"
	"github.com/kvgate/kvgate/gen/go/fastly/kv/v1/kvv1connect"
	"github.com/kvgate/kvgate/internal/kvtest"
	"github.com/kvgate/kvgate/internal/testutil"
	"github.com/kvgate/kvgate/service"
	"github.com/kvgate/kvgate/upstream"
	"github.com/kvgate/kvgate/upstream/localstore"
)

// copyItems runs a CopyItems call to its end and returns its messages.
func copyItems(ctx context.Context, client kvv1connect.KVStoreServiceClient, req *kvv1.CopyItemsRequest) ([]*kvv1.CopyItemsResponse, error) {
	stream, err := client.CopyItems(ctx, req)
	if err != nil {
		return nil, err
	}
	defer stream.Close()
	return testutil.ReadStream(stream.Receive)
}

// checkCopyMessages checks a complete copy's messages: cumulative counts
// that never go back, cursors on every message but the last, done only on
// the last, and the totals and failures it ends with.
func checkCopyMessages(t *testing.T, what string, msgs []*kvv1.CopyItemsResponse, copied, skipped uint64) {
	t.Helper()
	if len(msgs) == 0 {
		t.Fatalf("%s: no messages", what)
	}
	var prev *kvv1.CopyItemsResponse
	for i, m := range msgs {
		last := i == len(msgs)-1
		if m.GetDone() != last || last != (m.GetCursor() == "") {
			t.Errorf("%s: message %d of %d has done %v and cursor %q", what, i, len(msgs), m.GetDone(), m.GetCursor())
		}
		if prev != nil && (m.GetCopied() < prev.GetCopied() || m.GetSkipped() < prev.GetSkipped() || m.GetFailed() < prev.GetFailed()) {
			t.Errorf("%s: message %d went back: %v after %v", what, i, m, prev)
		}
		prev = m
	}
	if prev.GetCopied() != copied || prev.GetSkipped() != skipped || prev.GetFailed() != 0 {
		t.Errorf("%s: ended with copied %d, skipped %d, failed %d; want %d, %d, 0", what, prev.GetCopied(), prev.GetSkipped(), prev.GetFailed(), copied, skipped)
	}
	for _, m := range msgs {
		if len(m.GetFailures()) != 0 {
			t.Errorf("%s: failures %v; want none", what, m.GetFailures())
		}
	}
}

// storeKeys lists every key of store straight from the upstream.
func storeKeys(t *testing.T, ctx context.Context, kv *upstream.Client, store string) []string {
	t.Helper()
	var keys []string
	cursor := ""
	for {
		page, err := kv.ListKeys(ctx, store, upstream.ListOptions{Cursor: cursor})
		if err != nil {
			t.Fatalf("listing %s: %v", store, err)
		}
		keys = append(keys, page.Keys...)
		if page.NextCursor == "" {
			return keys
		}
		cursor = page.NextCursor
	}
}

// putItems writes items straight into store, a few at a time.
func putItems(t *testing.T, ctx context.Context, kv *upstream.Client, store string, items map[string]storedItem) {
	t.Helper()
	var g errgroup.Group
	g.SetLimit(8)
	for key, it := range items {
		g.Go(func() error {
			return kv.PutItem(ctx, store, key, it.value, upstream.PutOptions{Metadata: it.metadata})
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatalf("filling %s: %v", store, err)
	}
}

// copySource is a source store's items: under the prefix c/ (which Fastly
// cannot filter, so kvgate filters the listing itself) with binary values
// and metadata, and around it.
func copySource(n int) (inside, outside map[string]storedItem) {
	inside = map[string]storedItem{}
	for i := range n {
		inside[fmt.Sprintf("c/%03d", i)] = storedItem{value: []byte{byte(i), 0, 0xff, '\n', byte(i >> 8)}, metadata: fmt.Sprintf(`{"i":%d}`, i)}
	}
	outside = map[string]storedItem{
		"c":    {value: []byte("no slash")},
		"c-/x": {value: []byte("other prefix")},
		"d/x":  {value: []byte{0xfe}, metadata: "d"},
	}
	return inside, outside
}

// checkCopyItems runs CopyItems through one protocol: a prefix with binary
// values and metadata into a target that already holds some keys, an
// empty source, and a copy cut short and resumed from its cursor.
func checkCopyItems(t *testing.T, ctx context.Context, st *kvtest.Stack, client kvv1connect.KVStoreServiceClient) {
	t.Helper()
	inside, outside := copySource(30)
	putItems(t, ctx, st.Client, "copy-src", inside)
	putItems(t, ctx, st.Client, "copy-src", outside)
	// The target holds one of the keys already (overwritten) and keys
	// outside the prefix (untouched).
	untouched := map[string]storedItem{"d/y": {value: []byte("stays"), metadata: "m"}, "c": {value: []byte("target's own")}}
	putItems(t, ctx, st.Client, "copy-dst", untouched)
	putItems(t, ctx, st.Client, "copy-dst", map[string]storedItem{"c/007": {value: []byte("old"), metadata: "old"}})

	msgs, err := copyItems(ctx, client, &kvv1.CopyItemsRequest{SourceStoreId: "copy-src", TargetStoreId: "copy-dst", Prefix: "c/"})
	mustOK(t, "CopyItems", err)
	checkCopyMessages(t, "CopyItems", msgs, uint64(len(inside)), 0)
	checkStored(t, ctx, st.Client, "copy-dst", inside, []string{"d/x", "c-/x"})
	checkStored(t, ctx, st.Client, "copy-dst", untouched, nil)
	checkStored(t, ctx, st.Client, "copy-src", outside, nil)

	msgs, err = copyItems(ctx, client, &kvv1.CopyItemsRequest{SourceStoreId: "copy-src", TargetStoreId: "copy-dst", Prefix: "e/"})
	mustOK(t, "CopyItems of an empty prefix", err)
	if len(msgs) != 1 {
		t.Errorf("CopyItems of an empty prefix sent %d messages; want the one final message", len(msgs))
	}
	checkCopyMessages(t, "CopyItems of an empty prefix", msgs, 0, 0)

	// A source that does not exist fails the call, with where to resume.
	msgs, err = copyItems(ctx, client, &kvv1.CopyItemsRequest{SourceStoreId: "copy-none", TargetStoreId: "copy-dst"})
	cerr := asConnectError(t, "CopyItems from a store that does not exist", err, connect.CodeNotFound)
	if p := copyResume(cerr); len(msgs) != 0 || p == nil || p.GetCursor() != "" || p.GetCopied() != 0 {
		t.Errorf("CopyItems from a store that does not exist: %d messages, resume detail %v; want none and an empty cursor", len(msgs), p)
	}

	checkCopyResume(t, ctx, st, client)
}

// checkCopyResume cuts a copy short once its cursor has moved, empties
// the target, and resumes: the resumed call copies exactly the keys after
// the cursor, and the first call had reported the keys before it copied.
func checkCopyResume(t *testing.T, ctx context.Context, st *kvtest.Stack, client kvv1connect.KVStoreServiceClient) {
	t.Helper()
	const n = 80
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("r/%03d", i)
	}
	fillStore(t, ctx, st.Client, "copy-resume-src", keys)

	callCtx, cancel := context.WithCancel(ctx)
	stream, err := client.CopyItems(callCtx, &kvv1.CopyItemsRequest{SourceStoreId: "copy-resume-src", TargetStoreId: "copy-resume-dst", Prefix: "r/"})
	mustOK(t, "CopyItems", err)
	var last *kvv1.CopyItemsResponse
	for last == nil || last.GetCursor() == "" {
		msg, err := stream.Receive()
		if err != nil {
			t.Fatalf("CopyItems ended before its cursor moved: %v", err)
		}
		if msg.GetDone() {
			t.Fatalf("CopyItems completed before it could be cut short: %v", msg)
		}
		last = msg
	}
	cancel()
	_ = stream.Close()
	// Let the writes the cancellation cut short end, then empty the
	// target, so that it shows what the resumed call copies.
	settle(t, st.Store.Requests, 200*time.Millisecond, 10*time.Second)
	for _, k := range storeKeys(t, ctx, st.Client, "copy-resume-dst") {
		mustOK(t, "emptying the target", st.Client.DeleteItem(ctx, "copy-resume-dst", k, upstream.DeleteOptions{}))
	}

	msgs, err := copyItems(ctx, client, &kvv1.CopyItemsRequest{SourceStoreId: "copy-resume-src", TargetStoreId: "copy-resume-dst", Prefix: "r/", Cursor: last.GetCursor()})
	mustOK(t, "CopyItems from the cursor", err)
	end := msgs[len(msgs)-1]
	rest := int(end.GetCopied())
	checkCopyMessages(t, "CopyItems from the cursor", msgs, uint64(rest), 0)
	if rest == 0 || rest >= n {
		t.Fatalf("the resumed copy copied %d of %d items; want some, not all", rest, n)
	}
	if d := testutil.DiffKeys(storeKeys(t, ctx, st.Client, "copy-resume-dst"), keys[n-rest:]); d != "" {
		t.Errorf("the resumed copy wrote other keys than those after the cursor: %s", d)
	}
	if before := uint64(n - rest); last.GetCopied() < before {
		t.Errorf("the cursor resumes after %d items but the call had reported only %d copied", before, last.GetCopied())
	}

	// A cursor resumes only the copy it came from.
	_, err = copyItems(ctx, client, &kvv1.CopyItemsRequest{SourceStoreId: "copy-resume-src", TargetStoreId: "elsewhere", Prefix: "r/", Cursor: last.GetCursor()})
	assertInvalidField(t, err, "cursor")
}

// copyResume is the CopyItemsResponse detail of a failed copy, nil when
// there is none.
func copyResume(cerr *connect.Error) *kvv1.CopyItemsResponse {
	for _, d := range detailsOf(cerr) {
		if p, ok := d.(*kvv1.CopyItemsResponse); ok {
			return p
		}
	}
	return nil
}

// copyItemsCorpus is CopyItems' part of the bad-input corpus: bad store
// ids on either side, the same store on both, prefixes Fastly's key rules
// refuse, and cursors that are not a copy's own.
func copyItemsCorpus(cur kvgateCursors) []corpusCase {
	var cases []corpusCase
	call := func(req *kvv1.CopyItemsRequest) func(context.Context, kvv1connect.KVStoreServiceClient) error {
		return func(ctx context.Context, c kvv1connect.KVStoreServiceClient) error {
			msgs, err := copyItems(ctx, c, req)
			if err == nil || len(msgs) != 0 {
				return fmt.Errorf("CopyItems sent %d messages and ended with %v; want an error before any message", len(msgs), err)
			}
			return err
		}
	}
	add := func(category, name string, req *kvv1.CopyItemsRequest, fields ...string) {
		cases = append(cases, corpusCase{rpc: "CopyItems", category: category, name: name, call: call(req), fields: fields})
	}
	for _, s := range []struct{ name, id string }{
		{"empty", ""}, {"too long", strings.Repeat("s", 129)}, {"slash", "a/b"}, {"unicode", "störe"}, {"percent", "a%2Fb"},
	} {
		add("source_store_id", s.name, &kvv1.CopyItemsRequest{SourceStoreId: s.id, TargetStoreId: corpusStore}, "source_store_id")
		add("target_store_id", s.name, &kvv1.CopyItemsRequest{SourceStoreId: corpusStore, TargetStoreId: s.id}, "target_store_id")
	}
	add("target_store_id", "same as the source", &kvv1.CopyItemsRequest{SourceStoreId: corpusStore, TargetStoreId: corpusStore}, "target_store_id")
	for _, p := range []struct{ name, prefix string }{
		{"CR", "a\r"}, {"hash", "#"}, {"pipe", "a|"}, {"question mark", "?"}, {"1025 bytes", strings.Repeat("p", 1025)},
	} {
		add("prefix", p.name, &kvv1.CopyItemsRequest{SourceStoreId: corpusStore, TargetStoreId: "t", Prefix: p.prefix}, "prefix")
	}
	randomBytes := []byte{0x9c, 0x13, 0xe0, 0x7a, 0x41, 0xfe, 0x02, 0xb8, 0x55, 0x6d}
	for _, c := range []struct{ name, source, prefix, cursor string }{
		{"garbage", corpusStore, "", "!!not a cursor!!"},
		{"random base64url", corpusStore, "", base64.RawURLEncoding.EncodeToString(randomBytes)},
		{"fastly raw cursor", corpusStore, "", "CgdiYXRjaC0y"},
		{"json without scope", corpusStore, "", base64.RawURLEncoding.EncodeToString([]byte(`{"u":"CgdiYXRjaC0y"}`))},
		{"list cursor of the source", "other", "a", cur.list},
		{"stream cursor of the source", "other", "a", cur.stream},
	} {
		add("cursor", c.name, &kvv1.CopyItemsRequest{SourceStoreId: c.source, TargetStoreId: "t", Prefix: c.prefix, Cursor: c.cursor}, "cursor")
	}
	add("multiple", "every field", &kvv1.CopyItemsRequest{SourceStoreId: "a b", TargetStoreId: "", Prefix: "#", Cursor: "garbage!"},
		"source_store_id", "target_store_id", "prefix", "cursor")
	return cases
}

// TestCopyItemsMemoryBudget copies more bytes than the memory budget
// holds, twice at once, large values among them (some too large for a
// batch body, which ride PUTs of their own): every item is copied, and the
// budget never held more than its size and is all returned.
func TestCopyItemsMemoryBudget(t *testing.T) {
	t.Parallel()
	st := startBudgetStack(t)
	client := st.NewClient(kvtest.H2CClient(), connecthttp.WithGRPC())
	ctx := t.Context()
	want := map[string]storedItem{}
	for i := range 40 {
		want[fmt.Sprintf("big/%02d", i)] = storedItem{value: budgetValue(i, 256<<10), metadata: fmt.Sprint(i)}
	}
	for i := range 4 {
		want[fmt.Sprintf("big/max%d", i)] = storedItem{value: budgetValue(i, budgetMaxValue), metadata: "largest"}
	}
	putItems(t, ctx, st.Client, "budget-src", want)

	var g errgroup.Group
	for _, target := range []string{"budget-dst1", "budget-dst2"} {
		g.Go(func() error {
			msgs, err := copyItems(ctx, client, &kvv1.CopyItemsRequest{SourceStoreId: "budget-src", TargetStoreId: target, Prefix: "big/"})
			if err != nil {
				return fmt.Errorf("copy into %s: %w", target, err)
			}
			if end := msgs[len(msgs)-1]; !end.GetDone() || end.GetCopied() != uint64(len(want)) {
				return fmt.Errorf("copy into %s ended with %v; want all %d copied", target, end, len(want))
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	checkStored(t, ctx, st.Client, "budget-dst1", want, nil)
	checkStored(t, ctx, st.Client, "budget-dst2", want, nil)
	checkBudgetReturned(t, st.MemoryBudget)
}

// TestCopyItemsDrain shuts kvgate down in the middle of a copy: the call
// ends UNAVAILABLE with a CopyItemsResponse detail whose cursor another
// kvgate, on the same store, resumes the copy from to its end.
func TestCopyItemsDrain(t *testing.T) {
	t.Parallel()
	st := kvtest.Start(t, kvtest.Options{
		Store:           localstore.Config{Faults: localstore.Faults{Latency: 10 * time.Millisecond}},
		Batch:           service.BatchConfig{MaxLines: 10},
		CopyConcurrency: 2,
		ShutdownTimeout: time.Second,
	})
	ctx := t.Context()
	const n = 300
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("k%03d", i)
	}
	fillStore(t, ctx, st.Client, "drain-src", keys)

	client := st.NewClient(kvtest.H2CClient(), connecthttp.WithGRPC())
	stream, err := client.CopyItems(ctx, &kvv1.CopyItemsRequest{SourceStoreId: "drain-src", TargetStoreId: "drain-dst"})
	mustOK(t, "CopyItems", err)
	if _, err := stream.Receive(); err != nil {
		t.Fatalf("CopyItems ended before its first message: %v", err)
	}
	shut := make(chan error, 1)
	go func() { shut <- st.Shutdown() }()
	var last *kvv1.CopyItemsResponse
	for {
		msg, err := stream.Receive()
		if err != nil {
			cerr := asConnectError(t, "CopyItems while kvgate shuts down", err, connect.CodeUnavailable)
			last = copyResume(cerr)
			break
		}
		if msg.GetDone() {
			t.Fatal("the copy completed before kvgate shut down")
		}
	}
	_ = stream.Close()
	if err := <-shut; err != nil {
		t.Errorf("shutdown: %v", err)
	}
	if last == nil || last.GetCursor() == "" || last.GetCopied() == 0 {
		t.Fatalf("the shutdown's resume detail is %v; want a cursor and items copied", last)
	}

	again := kvtest.Start(t, kvtest.Options{Upstream: st.Store.Handler()})
	msgs, err := copyItems(ctx, again.NewClient(kvtest.H2CClient()), &kvv1.CopyItemsRequest{SourceStoreId: "drain-src", TargetStoreId: "drain-dst", Cursor: last.GetCursor()})
	mustOK(t, "CopyItems resumed on another kvgate", err)
	// The cursor resumes after items the first call copied, no more.
	if end := msgs[len(msgs)-1]; !end.GetDone() || end.GetCopied() >= n || end.GetCopied() < n-last.GetCopied() {
		t.Errorf("the resumed copy ended with %v; want the rest of %d items after %d copied", end, n, last.GetCopied())
	}
	if d := testutil.DiffKeys(storeKeys(t, ctx, st.Client, "drain-dst"), keys); d != "" {
		t.Errorf("the target after the resumed copy: %s", d)
	}
}

// TestCopyItemsTargetRefused copies into a target whose batch PUTs all
// fail: the call ends with the mapped code and a resume detail that
// copied nothing and resumes from the start, after reading no more than
// its window.
func TestCopyItemsTargetRefused(t *testing.T) {
	t.Parallel()
	faults, err := localstore.ParseFaults("503=1,kinds=batch")
	if err != nil {
		t.Fatal(err)
	}
	st := kvtest.Start(t, kvtest.Options{
		Retry: upstream.RetryPolicy{MaxAttempts: 2, BaseDelay: time.Millisecond, MaxDelay: time.Millisecond},
		Batch: service.BatchConfig{MaxLines: 5, Concurrency: 1},
	})
	ctx := t.Context()
	keys := make([]string, 50)
	for i := range keys {
		keys[i] = fmt.Sprintf("k%02d", i)
	}
	fillStore(t, ctx, st.Client, "refused-src", keys)
	st.Store.SetFaults(faults)
	client := st.NewClient(kvtest.H2CClient())
	before := st.Store.Requests()
	msgs, err := copyItems(ctx, client, &kvv1.CopyItemsRequest{SourceStoreId: "refused-src", TargetStoreId: "refused-dst"})
	// The window is 16 reads and 2 batches of 5 past the first unsettled
	// item, which never settles: a listing, at most 26 GETs and the PUTs
	// of 2 batches, 2 tries each.
	if n := settle(t, st.Store.Requests, 100*time.Millisecond, 10*time.Second) - before; n > 1+26+4 {
		t.Errorf("the copy sent %d requests upstream; its window allows at most 31", n)
	}
	cerr := asConnectError(t, "CopyItems into a target that refuses", err, connect.CodeUnavailable)
	p := copyResume(cerr)
	if len(msgs) != 0 || p == nil || p.GetCursor() != "" || p.GetCopied() != 0 || p.GetFailed() != 0 {
		t.Errorf("CopyItems into a target that refuses: %d messages, resume detail %v; want none, nothing copied or failed, and the empty cursor", len(msgs), p)
	}
	st.Store.SetFaults(localstore.Faults{})
	if got := storeKeys(t, ctx, st.Client, "refused-src"); len(got) != len(keys) {
		t.Errorf("the source holds %d keys after the copy; want %d", len(got), len(keys))
	}
}

// TestCopyItemsSkipsVanishedKeys deletes half the listed keys while their
// GETs are on their way (each GET waits 3 seconds in the store, ample
// time for the deletes): those are skipped, the others copied.
func TestCopyItemsSkipsVanishedKeys(t *testing.T) {
	t.Parallel()
	st := kvtest.Start(t, kvtest.Options{})
	ctx := t.Context()
	keys := make([]string, 10)
	for i := range keys {
		keys[i] = fmt.Sprintf("s/%d", i)
	}
	fillStore(t, ctx, st.Client, "vanish-src", keys)
	faults, err := localstore.ParseFaults("latency=3s,kinds=get")
	if err != nil {
		t.Fatal(err)
	}
	st.Store.SetFaults(faults)
	before := st.Store.Requests()

	client := st.NewClient(kvtest.H2CClient())
	type outcome struct {
		msgs []*kvv1.CopyItemsResponse
		err  error
	}
	done := make(chan outcome, 1)
	go func() {
		msgs, err := copyItems(ctx, client, &kvv1.CopyItemsRequest{SourceStoreId: "vanish-src", TargetStoreId: "vanish-dst", Prefix: "s/"})
		done <- outcome{msgs, err}
	}()
	// The listing and the 10 GETs have arrived; the GETs wait.
	waitFor(t, "the copy's GETs", 10*time.Second, func() bool { return st.Store.Requests()-before >= 11 })
	var kept []string
	for i, k := range keys {
		if i%2 == 1 {
			mustOK(t, "deleting "+k, st.Client.DeleteItem(ctx, "vanish-src", k, upstream.DeleteOptions{}))
		} else {
			kept = append(kept, k)
		}
	}
	out := <-done
	mustOK(t, "CopyItems", out.err)
	checkCopyMessages(t, "CopyItems", out.msgs, 5, 5)
	st.Store.SetFaults(localstore.Faults{})
	if d := testutil.DiffKeys(storeKeys(t, ctx, st.Client, "vanish-dst"), kept); d != "" {
		t.Errorf("the target: %s", d)
	}
}
