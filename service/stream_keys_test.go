package service_test

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connecthttp"

	kvv1 "github.com/kvgate/kvgate/gen/go/fastly/kv/v1"
	"github.com/kvgate/kvgate/gen/go/fastly/kv/v1/kvv1connect"
	"github.com/kvgate/kvgate/internal/kvtest"
	"github.com/kvgate/kvgate/internal/testutil"
	"github.com/kvgate/kvgate/service"
	"github.com/kvgate/kvgate/upstream"
	"github.com/kvgate/kvgate/upstream/localstore"
)

// cancelProtocols are the protocols the cancel tests run over. The tests
// check that a client going away stops the upstream work of a stream: no
// more list pages for StreamKeys, no more batch PUTs for BatchPutItems.
//
// Over HTTP/2 a cancelled stream is reset at once, so at most the requests
// already on their way reach the store. Over HTTP/1.1 an upload has no
// reset: the server reads what the client sent before it closed the
// connection (Go's server notices a closed connection only at the end of
// the body), so kvgate may still write items received before the cancel,
// but never more batches than the client sent messages, and then it stops.
var cancelProtocols = []rpcProtocol{
	{"grpc_h2c", kvtest.H2CClient, connectGRPC()},
	{"connect_h2c", kvtest.H2CClient, nil},
	{"grpcweb_h2c", kvtest.H2CClient, []connecthttp.Option{connecthttp.WithGRPCWeb()}},
	{"connect_http1", kvtest.HTTP1Client, nil},
	{"grpcweb_http1", kvtest.HTTP1Client, []connecthttp.Option{connecthttp.WithGRPCWeb()}},
}

// TestStreamKeysCancel cancels a StreamKeys stream: the listing stops.
func TestStreamKeysCancel(t *testing.T) {
	t.Parallel()
	for _, p := range cancelProtocols {
		t.Run(p.name, func(t *testing.T) {
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
	}
}

// TestBatchPutItemsCancel cancels a BatchPutItems upload: the writes stop.
func TestBatchPutItemsCancel(t *testing.T) {
	t.Parallel()
	for _, p := range cancelProtocols {
		http2 := strings.HasSuffix(p.name, "_h2c")
		t.Run(p.name, func(t *testing.T) {
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
	st     *kvtest.Stack
	client kvv1connect.KVStoreServiceClient
	all    []string // every key, sorted
	lists  atomic.Int64
	// budget is how many list requests succeed from when it is set, in
	// lists; negative means no limit.
	budget atomic.Int64
}

// resumeStore is the store a resumeFixture fills.
const resumeStore = "res"

// resumePrefixes are the prefixes the resume tests list: none, one Fastly
// filters, and ones kvgate filters itself ("/" is refused in Fastly's
// prefix query).
var resumePrefixes = []string{"", "r", "r/", "r/01"}

func newResumeFixture(t *testing.T) *resumeFixture {
	t.Helper()
	store, err := localstore.Open(localstore.Config{})
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
	fillStore(t, t.Context(), f.st.Client, resumeStore, f.all)
	f.client = f.st.NewClient(kvtest.H2CClient(), connectGRPC()...)
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

// stream reads a StreamKeys stream of the fixture's store to its end.
func (f *resumeFixture) stream(t *testing.T, ctx context.Context, req *kvv1.StreamKeysRequest) []*kvv1.StreamKeysResponse {
	t.Helper()
	req.StoreId = resumeStore
	msgs, err := streamKeys(ctx, f.client, req)
	mustOK(t, "StreamKeys", err)
	return msgs
}

// listFrom continues a listing from cursor with ListKeys pages of limit
// keys until it ends or holds at least want keys.
func (f *resumeFixture) listFrom(t *testing.T, ctx context.Context, prefix, cursor string, limit uint32, want int) []string {
	t.Helper()
	var keys []string
	for range 10_000 {
		page, err := f.client.ListKeys(ctx, &kvv1.ListKeysRequest{StoreId: resumeStore, Prefix: prefix, Cursor: cursor, Limit: limit})
		mustOK(t, "ListKeys", err)
		keys = append(keys, page.GetKeys()...)
		if cursor = page.GetNextCursor(); cursor == "" || len(keys) >= want {
			return keys
		}
	}
	t.Fatal("ListKeys never ended")
	return nil
}

// eachPrefix runs check in parallel for each of resumePrefixes, with the
// prefix's keys.
func (f *resumeFixture) eachPrefix(t *testing.T, check func(t *testing.T, ctx context.Context, prefix string, all []string)) {
	for _, prefix := range resumePrefixes {
		t.Run("prefix="+prefix, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
			defer cancel()
			check(t, ctx, prefix, f.keys(prefix))
		})
	}
}

// TestStreamKeysResumeFromEachMessage resumes a stream from the cursor of
// each of its messages: the rest must follow without loss or repeats.
func TestStreamKeysResumeFromEachMessage(t *testing.T) {
	t.Parallel()
	f := newResumeFixture(t)
	f.eachPrefix(t, func(t *testing.T, ctx context.Context, prefix string, all []string) {
		msgs := f.stream(t, ctx, &kvv1.StreamKeysRequest{Prefix: prefix, PageSize: 300})
		if d := testutil.DiffKeys(keysOf(msgs), all); d != "" {
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
			rest := f.stream(t, ctx, &kvv1.StreamKeysRequest{Prefix: prefix, PageSize: 300, Cursor: m.GetCursor()})
			if d := testutil.DiffKeys(keysOf(rest), all[delivered:]); d != "" {
				t.Errorf("resumed after message %d: %s", i, d)
			}
		}
	})
}

// resumer reads on from a cursor for at least resumeSpan keys (or to the
// end): enough to cross the seam and a few pages.
type resumer struct {
	name   string
	resume func(t *testing.T, ctx context.Context, prefix, cursor string) []string
}

const resumeSpan = 400

func (f *resumeFixture) viaStream(pageSize uint32) resumer {
	return resumer{fmt.Sprintf("StreamKeys_page%d", pageSize), func(t *testing.T, ctx context.Context, prefix, cursor string) []string {
		return keysOf(f.stream(t, ctx, &kvv1.StreamKeysRequest{Prefix: prefix, PageSize: pageSize, Cursor: cursor, MaxKeys: resumeSpan}))
	}}
}

func (f *resumeFixture) viaList(limit uint32) resumer {
	return resumer{fmt.Sprintf("ListKeys_limit%d", limit), func(t *testing.T, ctx context.Context, prefix, cursor string) []string {
		return f.listFrom(t, ctx, prefix, cursor, limit, resumeSpan)
	}}
}

// TestStreamKeysResumeAfterMaxKeys stops a stream with max_keys inside a
// page and resumes it with another call, with a page size larger than,
// equal to and smaller than the stopped stream's 100.
func TestStreamKeysResumeAfterMaxKeys(t *testing.T) {
	t.Parallel()
	f := newResumeFixture(t)
	resumers := []resumer{f.viaStream(100), f.viaStream(1000), f.viaStream(30), f.viaList(0), f.viaList(100), f.viaList(30)}
	f.eachPrefix(t, func(t *testing.T, ctx context.Context, prefix string, all []string) {
		for _, maxKeys := range []uint64{1, 250, 299, 300, 301, 777} {
			if maxKeys >= uint64(len(all)) {
				continue
			}
			for _, r := range resumers {
				t.Run(fmt.Sprintf("max%d/%s", maxKeys, r.name), func(t *testing.T) {
					msgs := f.stream(t, ctx, &kvv1.StreamKeysRequest{Prefix: prefix, PageSize: 100, MaxKeys: maxKeys})
					if d := testutil.DiffKeys(keysOf(msgs), all[:maxKeys]); d != "" {
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
					got := r.resume(t, ctx, prefix, cursor)
					if len(got) < min(resumeSpan, len(rest)) {
						t.Fatalf("resumed from max_keys %d: %d keys; want at least %d", maxKeys, len(got), min(resumeSpan, len(rest)))
					}
					if d := testutil.DiffKeys(got, rest[:min(len(got), len(rest))]); d != "" || len(got) > len(rest) {
						t.Errorf("resumed from max_keys %d: %s (%d keys follow)", maxKeys, d, len(rest))
					}
				})
			}
		}
	})
}

// TestStreamKeysWalkWithMaxKeys walks a whole listing in steps of 333 keys.
func TestStreamKeysWalkWithMaxKeys(t *testing.T) {
	t.Parallel()
	f := newResumeFixture(t)
	f.eachPrefix(t, func(t *testing.T, ctx context.Context, prefix string, all []string) {
		var got []string
		cursor := ""
		for range 1000 {
			msgs := f.stream(t, ctx, &kvv1.StreamKeysRequest{Prefix: prefix, PageSize: 100, MaxKeys: 333, Cursor: cursor})
			got = append(got, keysOf(msgs)...)
			if len(msgs) == 0 {
				break
			}
			if cursor = msgs[len(msgs)-1].GetCursor(); cursor == "" {
				break
			}
		}
		if d := testutil.DiffKeys(got, all); d != "" {
			t.Errorf("walking in steps of 333: %s", d)
		}
	})
}

// TestStreamKeysResumeFromListKeys streams on from ListKeys' next_cursor.
func TestStreamKeysResumeFromListKeys(t *testing.T) {
	t.Parallel()
	f := newResumeFixture(t)
	f.eachPrefix(t, func(t *testing.T, ctx context.Context, prefix string, all []string) {
		for _, limit := range []uint32{1, 450, 1000} {
			page, err := f.client.ListKeys(ctx, &kvv1.ListKeysRequest{StoreId: resumeStore, Prefix: prefix, Limit: limit})
			mustOK(t, "ListKeys", err)
			if page.GetNextCursor() == "" {
				continue
			}
			n := len(page.GetKeys())
			if d := testutil.DiffKeys(page.GetKeys(), all[:n]); d != "" {
				t.Fatalf("ListKeys(limit %d): %s", limit, d)
			}
			msgs := f.stream(t, ctx, &kvv1.StreamKeysRequest{Prefix: prefix, PageSize: 997, Cursor: page.GetNextCursor()})
			if d := testutil.DiffKeys(keysOf(msgs), all[n:]); d != "" {
				t.Errorf("StreamKeys from ListKeys(limit %d).next_cursor: %s", limit, d)
			}
		}
	})
}

// TestStreamKeysResumeAfterUpstreamFailure has the upstream fail after
// some list requests: the error carries a cursor that resumes right after
// the last key delivered. The cases run one after another, since each
// sets the shared upstream's failures.
func TestStreamKeysResumeAfterUpstreamFailure(t *testing.T) {
	t.Parallel()
	f := newResumeFixture(t)
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
				msgs := f.stream(t, ctx, &kvv1.StreamKeysRequest{Prefix: tc.prefix, PageSize: tc.pageSize, MaxKeys: tc.startMax})
				start, skipped = msgs[len(msgs)-1].GetCursor(), tc.startMax
			}
			f.failAfter(tc.budget)
			msgs, err := streamKeys(ctx, f.client, &kvv1.StreamKeysRequest{StoreId: resumeStore, Prefix: tc.prefix, PageSize: tc.pageSize, Cursor: start})
			cerr := asConnectError(t, "StreamKeys with a failing upstream", err, connect.CodeUnavailable)
			resume, ok := findDetail[*kvv1.StreamKeysResume](detailsOf(cerr))
			if !ok {
				t.Fatalf("error %v carries no StreamKeysResume detail", cerr)
			}
			got := keysOf(msgs)
			if d := testutil.DiffKeys(got, all[skipped:skipped+uint64(len(got))]); d != "" {
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
			rest := f.stream(t, ctx, &kvv1.StreamKeysRequest{Prefix: tc.prefix, PageSize: tc.pageSize, Cursor: resume.GetCursor()})
			if d := testutil.DiffKeys(append(got, keysOf(rest)...), all[skipped:]); d != "" {
				t.Errorf("received then resumed: %s", d)
			}
		})
	}
}
