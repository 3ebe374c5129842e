package service_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect/v2"
	"google.golang.org/genproto/googleapis/rpc/errdetails"

	kvv1 "github.com/kvgate/kvgate/gen/go/fastly/kv/v1"
	"github.com/kvgate/kvgate/gen/go/fastly/kv/v1/kvv1connect"
	"github.com/kvgate/kvgate/internal/app"
	"github.com/kvgate/kvgate/internal/kvtest"
	"github.com/kvgate/kvgate/internal/testutil"
	"github.com/kvgate/kvgate/upstream"
	"github.com/kvgate/kvgate/upstream/localstore"
)

// deleteKeys reads a DeleteKeys stream to its end and returns its messages
// and how it ended (nil for a clean end).
func deleteKeys(ctx context.Context, client kvv1connect.KVStoreServiceClient, req *kvv1.DeleteKeysRequest) ([]*kvv1.DeleteKeysResponse, error) {
	stream, err := client.DeleteKeys(ctx, req)
	if err != nil {
		return nil, err
	}
	defer stream.Close()
	return testutil.ReadStream(stream.Receive)
}

// deleteReport is what the messages of one DeleteKeys call reported.
type deleteReport struct {
	deleted, notFound []string
	failures          []*kvv1.BatchFailure
	last              *kvv1.DeleteKeysResponse
}

// collectDeletes gathers msgs, checking what holds for every stream: the
// totals add up the keys reported so far, only the last message may be
// done, and every message but a done one carries a cursor.
func collectDeletes(t *testing.T, what string, msgs []*kvv1.DeleteKeysResponse) deleteReport {
	t.Helper()
	var r deleteReport
	for i, m := range msgs {
		r.deleted = append(r.deleted, m.GetDeleted()...)
		r.notFound = append(r.notFound, m.GetNotFound()...)
		r.failures = append(r.failures, m.GetFailures()...)
		tot := m.GetTotals()
		if tot.GetDeleted() != uint64(len(r.deleted)) || tot.GetNotFound() != uint64(len(r.notFound)) || tot.GetFailed() != uint64(len(r.failures)) {
			t.Errorf("%s: message %d totals %v; the messages so far reported %d deleted, %d not found, %d failed",
				what, i, tot, len(r.deleted), len(r.notFound), len(r.failures))
		}
		if m.GetDone() && i != len(msgs)-1 {
			t.Errorf("%s: message %d of %d is done", what, i, len(msgs))
		}
		if !m.GetDone() && m.GetCursor() == "" {
			t.Errorf("%s: message %d is not done and has no cursor", what, i)
		}
		r.last = m
	}
	return r
}

// wantDone checks a complete deletion: it ended cleanly with a done
// message without a cursor, and reported want deleted and wantNotFound
// not found, in order, and no failure.
func wantDone(t *testing.T, what string, msgs []*kvv1.DeleteKeysResponse, err error, want, wantNotFound []string) {
	t.Helper()
	mustOK(t, what, err)
	r := collectDeletes(t, what, msgs)
	if !r.last.GetDone() || r.last.GetCursor() != "" {
		t.Errorf("%s: last message done %v cursor %q; want done without a cursor", what, r.last.GetDone(), r.last.GetCursor())
	}
	if !slices.Equal(r.deleted, want) || !slices.Equal(r.notFound, wantNotFound) || len(r.failures) != 0 {
		t.Errorf("%s: deleted %s, not found %q, failures %v; want deleted %s, not found %q",
			what, testutil.DiffKeys(r.deleted, want), r.notFound, r.failures, clip(want), wantNotFound)
	}
}

func clip(keys []string) string {
	if len(keys) > 6 {
		return fmt.Sprintf("%q ... (%d)", keys[:6], len(keys))
	}
	return fmt.Sprintf("%q", keys)
}

// storedKeys lists every key of store straight from the local store.
func storedKeys(t *testing.T, ctx context.Context, kv *upstream.Client, store string) []string {
	t.Helper()
	var keys []string
	cursor := ""
	for {
		page, err := kv.ListKeys(ctx, store, upstream.ListOptions{Cursor: cursor})
		if err != nil {
			t.Fatalf("listing %s: %v", store, err)
		}
		keys = append(keys, page.Keys...)
		if cursor = page.NextCursor; cursor == "" {
			return keys
		}
	}
}

func seqKeys(prefix string, n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("%s%04d", prefix, i)
	}
	return keys
}

// checkDeleteKeys runs DeleteKeys' main outcomes on the store "del": dry
// runs of a prefix (nothing deleted, nothing sent but listings) and of a
// list (HEADs, which tell the missing keys), a prefix, a list with a
// missing key, and every key of the store.
func checkDeleteKeys(t *testing.T, ctx context.Context, st *kvtest.Stack, client kvv1connect.KVStoreServiceClient) {
	t.Helper()
	const store = "del"
	dKeys, eKeys := seqKeys("d/", 30), seqKeys("e/", 5)
	fillStore(t, ctx, st.Client, store, slices.Concat(dKeys, eKeys, []string{"x"}))
	deletesBefore := st.Store.Count(localstore.RequestDelete)

	msgs, err := deleteKeys(ctx, client, &kvv1.DeleteKeysRequest{StoreId: store, Prefix: "d/", DryRun: true})
	wantDone(t, "DeleteKeys(prefix d/, dry run)", msgs, err, dKeys, nil)
	msgs, err = deleteKeys(ctx, client, &kvv1.DeleteKeysRequest{StoreId: store, Keys: []string{"e/0000", "nope", "e/0001"}, DryRun: true})
	wantDone(t, "DeleteKeys(keys, dry run)", msgs, err, []string{"e/0000", "e/0001"}, []string{"nope"})
	if n := st.Store.Count(localstore.RequestDelete) - deletesBefore; n != 0 {
		t.Errorf("dry runs sent %d DELETEs; want none", n)
	}
	if got := storedKeys(t, ctx, st.Client, store); len(got) != 36 {
		t.Fatalf("after dry runs the store holds %d keys; want 36", len(got))
	}

	msgs, err = deleteKeys(ctx, client, &kvv1.DeleteKeysRequest{StoreId: store, Prefix: "d/"})
	wantDone(t, "DeleteKeys(prefix d/)", msgs, err, dKeys, nil)
	if got, want := storedKeys(t, ctx, st.Client, store), slices.Concat(eKeys, []string{"x"}); !slices.Equal(got, want) {
		t.Errorf("after deleting d/ the store holds %s", testutil.DiffKeys(got, want))
	}
	msgs, err = deleteKeys(ctx, client, &kvv1.DeleteKeysRequest{StoreId: store, Keys: []string{"e/0003", "d/0001", "e/0000"}})
	wantDone(t, "DeleteKeys(keys)", msgs, err, []string{"e/0003", "e/0000"}, []string{"d/0001"})
	msgs, err = deleteKeys(ctx, client, &kvv1.DeleteKeysRequest{StoreId: store, AllKeys: true})
	wantDone(t, "DeleteKeys(all_keys)", msgs, err, []string{"e/0001", "e/0002", "e/0004", "x"}, nil)
	if got := storedKeys(t, ctx, st.Client, store); len(got) != 0 {
		t.Errorf("after all_keys the store still holds %q", got)
	}
	if n, want := st.Store.Count(localstore.RequestDelete)-deletesBefore, int64(30+3+4); n != want {
		t.Errorf("%d DELETEs sent; want one per key, %d", n, want)
	}
	msgs, err = deleteKeys(ctx, client, &kvv1.DeleteKeysRequest{StoreId: store, AllKeys: true})
	wantDone(t, "DeleteKeys(all_keys) of an empty store", msgs, err, nil, nil)
	if len(msgs) != 1 {
		t.Errorf("DeleteKeys of nothing sent %d messages; want the done one", len(msgs))
	}
}

// TestDeleteKeysResume interrupts deletions (the client cancels after the
// first message) and resumes them from the last cursor received: in the
// end every key is gone, and no key was reported deleted by both calls.
// Each mode is run, a prefix kvgate must filter itself included.
func TestDeleteKeysResume(t *testing.T) {
	t.Parallel()
	st := kvtest.Start(t, kvtest.Options{Writes: app.WriteConfig{DeleteConcurrency: 4}})
	client := st.NewClient(kvtest.H2CClient(), connectGRPC()...)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	// 350 keys a store: four messages of 100 keys at most; the latency
	// keeps the deletion going while the client reads its first message.
	keys := seqKeys("r/a:", 350)
	for _, tc := range []struct {
		name string
		req  *kvv1.DeleteKeysRequest
	}{
		{"prefix", &kvv1.DeleteKeysRequest{Prefix: "r/"}},
		{"filtered prefix", &kvv1.DeleteKeysRequest{Prefix: "r/a:"}},
		{"keys", &kvv1.DeleteKeysRequest{Keys: keys}},
		{"all_keys", &kvv1.DeleteKeysRequest{AllKeys: true}},
	} {
		store := "resume-" + strings.ReplaceAll(tc.name, " ", "-")
		tc.req.StoreId = store
		fillStore(t, ctx, st.Client, store, keys)
	}
	st.Store.SetFaults(localstore.Faults{Latency: 5 * time.Millisecond})
	for _, tc := range []struct {
		name string
		req  *kvv1.DeleteKeysRequest
	}{
		{"prefix", &kvv1.DeleteKeysRequest{Prefix: "r/"}},
		{"filtered prefix", &kvv1.DeleteKeysRequest{Prefix: "r/a:"}},
		{"keys", &kvv1.DeleteKeysRequest{Keys: keys}},
		{"all_keys", &kvv1.DeleteKeysRequest{AllKeys: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store := "resume-" + strings.ReplaceAll(tc.name, " ", "-")
			tc.req.StoreId = store

			sctx, scancel := context.WithCancel(ctx)
			stream, err := client.DeleteKeys(sctx, tc.req)
			mustOK(t, "DeleteKeys", err)
			first, err := stream.Receive()
			mustOK(t, "first message", err)
			scancel()
			_ = stream.Close()
			if first.GetDone() || first.GetCursor() == "" {
				t.Fatalf("first message done %v cursor %q; want a deletion under way", first.GetDone(), first.GetCursor())
			}
			run1 := collectDeletes(t, "interrupted", []*kvv1.DeleteKeysResponse{first})

			resumed := &kvv1.DeleteKeysRequest{StoreId: store, Prefix: tc.req.GetPrefix(), Keys: tc.req.GetKeys(),
				AllKeys: tc.req.GetAllKeys(), Cursor: first.GetCursor()}
			msgs, err := deleteKeys(ctx, client, resumed)
			mustOK(t, "resumed DeleteKeys", err)
			run2 := collectDeletes(t, "resumed", msgs)
			if !run2.last.GetDone() {
				t.Errorf("the resumed deletion did not end with a done message")
			}
			for _, k := range run2.deleted {
				if slices.Contains(run1.deleted, k) {
					t.Errorf("%q reported deleted by both calls", k)
				}
			}
			if !slices.IsSorted(run2.deleted) || (len(run2.deleted) > 0 && run2.deleted[0] <= run1.deleted[len(run1.deleted)-1]) {
				t.Errorf("the resumed deletion reported keys out of order or from before its cursor")
			}
			if got := storedKeys(t, ctx, st.Client, store); len(got) != 0 {
				t.Errorf("after resuming, %d keys are left: %s", len(got), clip(got))
			}
			if len(run2.failures) != 0 {
				t.Errorf("failures: %v", run2.failures)
			}
			// Keys deleted after the first message, before the cancel
			// reached kvgate, are gone without a report, or reported not
			// found when listed by name.
			if n := len(run1.deleted) + len(run2.deleted) + len(run2.notFound); n > len(keys) {
				t.Errorf("%d keys reported in all; there were %d", n, len(keys))
			}
			if tc.req.GetKeys() == nil && len(run2.notFound) != 0 {
				t.Errorf("a listing reported %d keys not found", len(run2.notFound))
			}
		})
	}
}

// TestDeleteKeysCancel checks that a client going away stops a deletion:
// the DELETEs stop soon after, far from the end of the keys.
func TestDeleteKeysCancel(t *testing.T) {
	t.Parallel()
	for _, p := range cancelProtocols {
		t.Run(p.name, func(t *testing.T) {
			t.Parallel()
			st := kvtest.Start(t, kvtest.Options{Writes: app.WriteConfig{DeleteConcurrency: 2}})
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			keys := seqKeys("c/", 2000)
			fillStore(t, ctx, st.Client, "big", keys)
			// 1000 rounds of 2 DELETEs, each answered after 20ms: a
			// deletion left running would go on for 20 seconds.
			st.Store.SetFaults(localstore.Faults{Latency: 20 * time.Millisecond})
			client := st.NewClient(p.client(), p.opts...)
			sctx, scancel := context.WithCancel(ctx)
			defer scancel()
			stream, err := client.DeleteKeys(sctx, &kvv1.DeleteKeysRequest{StoreId: "big", Prefix: "c/"})
			mustOK(t, "DeleteKeys", err)
			defer stream.Close()
			if _, err := stream.Receive(); err != nil {
				t.Fatalf("first message: %v", err)
			}
			scancel()
			final := settle(t, func() int64 { return st.Store.Count(localstore.RequestDelete) }, 500*time.Millisecond, 30*time.Second)
			if final >= int64(len(keys)) {
				t.Errorf("%d DELETEs after the cancel; the deletion went on to the end", final)
			}
		})
	}
}

// TestDeleteKeysWriteBudget deletes with kvgate's own write budget of N:
// N DELETEs go out, the next is refused unsent, and the deletion stops
// with RESOURCE_EXHAUSTED, a RetryInfo and the cursor that resumes it,
// and the budget gauge reads 0.
func TestDeleteKeysWriteBudget(t *testing.T) {
	t.Parallel()
	const budget = 25
	st := kvtest.Start(t, kvtest.Options{Writes: app.WriteConfig{DeleteConcurrency: 4, BudgetPerHour: budget}})
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	keys := seqKeys("b/", 40)
	// Through a client of its own: kvgate's counts against its budget.
	direct, err := upstream.NewClient(upstream.ClientConfig{BaseURL: st.UpstreamURL})
	if err != nil {
		t.Fatal(err)
	}
	fillStore(t, ctx, direct, "budget", keys)
	client := st.NewClient(kvtest.H2CClient(), connectGRPC()...)

	msgs, err := deleteKeys(ctx, client, &kvv1.DeleteKeysRequest{StoreId: "budget", Prefix: "b/"})
	cerr := asConnectError(t, "DeleteKeys past the write budget", err, connect.CodeResourceExhausted)
	details := detailsOf(cerr)
	if ri, ok := findDetail[*errdetails.RetryInfo](details); !ok || ri.GetRetryDelay().AsDuration() <= 0 {
		t.Errorf("RetryInfo = %v; want a delay", ri)
	}
	if info, _ := findDetail[*errdetails.ErrorInfo](details); info.GetReason() != "WRITE_BUDGET_EXHAUSTED" {
		t.Errorf("ErrorInfo = %v; want reason WRITE_BUDGET_EXHAUSTED", info)
	}
	resume, ok := findDetail[*kvv1.DeleteKeysResponse](details)
	if !ok || resume.GetCursor() == "" {
		t.Fatalf("error %v carries no DeleteKeysResponse with a cursor", cerr)
	}
	r := collectDeletes(t, "DeleteKeys past the budget", msgs)
	if n := st.Store.Count(localstore.RequestDelete); n != budget {
		t.Errorf("%d DELETEs reached the store; want the budget, %d", n, budget)
	}
	if len(r.deleted) != budget || resume.GetTotals().GetDeleted() != budget {
		t.Errorf("reported %d deleted (totals %v); want %d", len(r.deleted), resume.GetTotals(), budget)
	}
	if left := storedKeys(t, ctx, st.Client, "budget"); len(left) != len(keys)-budget {
		t.Errorf("%d keys left; want %d", len(left), len(keys)-budget)
	}
	if n, ok := st.Client.WriteBudgetRemaining(); !ok || n != 0 {
		t.Errorf("WriteBudgetRemaining = %d, %v; want 0, true", n, ok)
	}

	// Any other write is refused too, unsent.
	before := st.Requests()
	_, err = client.PutItem(ctx, &kvv1.PutItemRequest{StoreId: "budget", Key: "k", Value: []byte("v")})
	asConnectError(t, "PutItem past the write budget", err, connect.CodeResourceExhausted)
	if n := st.Requests() - before; n != 0 {
		t.Errorf("PutItem past the budget sent %d requests; want none", n)
	}
	// Reads are not limited: a dry run from the cursor still lists.
	msgs, err = deleteKeys(ctx, client, &kvv1.DeleteKeysRequest{StoreId: "budget", Keys: []string{"b/0039"}, DryRun: true})
	wantDone(t, "dry run past the write budget", msgs, err, []string{"b/0039"}, nil)
}

// TestDeleteKeysStopsOnUnavailable checks a DELETE failing in a way every
// later key would too: no further DELETE starts, and the call fails with
// the cursor of the first key not settled, which resumes it once the
// upstream answers again.
func TestDeleteKeysStopsOnUnavailable(t *testing.T) {
	t.Parallel()
	st := kvtest.Start(t, kvtest.Options{
		Writes: app.WriteConfig{DeleteConcurrency: 2},
		Retry:  upstream.RetryPolicy{MaxAttempts: 1},
	})
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	keys := seqKeys("u/", 50)
	fillStore(t, ctx, st.Client, "unavail", keys)
	client := st.NewClient(kvtest.H2CClient(), connectGRPC()...)
	st.Store.SetFaults(localstore.Faults{Unavailable: 1, Kinds: localstore.KindsOf(localstore.RequestDelete)})
	msgs, err := deleteKeys(ctx, client, &kvv1.DeleteKeysRequest{StoreId: "unavail", Prefix: "u/"})
	cerr := asConnectError(t, "DeleteKeys while every DELETE answers 503", err, connect.CodeUnavailable)
	resume, ok := findDetail[*kvv1.DeleteKeysResponse](detailsOf(cerr))
	if !ok {
		t.Fatalf("error %v carries no DeleteKeysResponse", cerr)
	}
	if resume.GetCursor() != "" || resume.GetTotals().GetDeleted() != 0 {
		t.Errorf("resume %v; want the start, nothing deleted", resume)
	}
	// The DELETEs that failed are reported, failed with their code: one
	// might have been applied before its answer was lost.
	var failed int
	for _, m := range msgs {
		if len(m.GetDeleted())+len(m.GetNotFound()) != 0 {
			t.Errorf("message %v reports keys settled; want only failures", m)
		}
		for _, f := range m.GetFailures() {
			failed++
			if f.GetCode() != connect.CodeUnavailable.String() {
				t.Errorf("failure %v; want code unavailable", f)
			}
		}
	}
	if failed == 0 || failed > 2 || uint64(failed) != resume.GetTotals().GetFailed() {
		t.Errorf("%d DELETEs reported failed, totals %v; want the 1 or 2 in flight", failed, resume.GetTotals())
	}
	if n := st.Store.Count(localstore.RequestDelete); n > 2 {
		t.Errorf("%d DELETEs sent; want the deletion stopped after those in flight (2)", n)
	}
	st.Store.SetFaults(localstore.Faults{})
	msgs, err = deleteKeys(ctx, client, &kvv1.DeleteKeysRequest{StoreId: "unavail", Prefix: "u/", Cursor: resume.GetCursor()})
	wantDone(t, "DeleteKeys once the store answers", msgs, err, keys, nil)
}

// TestDeleteKeysItemFailure checks keys that fail on their own account
// (the upstream refuses one key's DELETE with 400): each is reported with
// its position in the listing and its code, and the deletion goes on.
func TestDeleteKeysItemFailure(t *testing.T) {
	t.Parallel()
	store, err := localstore.Open(localstore.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	refused := map[string]bool{"f/0003": true, "f/0007": true}
	inner := store.Handler()
	st := kvtest.Start(t, kvtest.Options{Upstream: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodDelete && refused[strings.TrimPrefix(r.URL.Path, "/resources/stores/kv/items/keys/")] {
			http.Error(w, `{"msg":"refused"}`, http.StatusBadRequest)
			return
		}
		inner.ServeHTTP(w, r)
	})})
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	keys := seqKeys("f/", 10)
	fillStore(t, ctx, st.Client, "items", keys)
	client := st.NewClient(kvtest.H2CClient(), connectGRPC()...)
	msgs, err := deleteKeys(ctx, client, &kvv1.DeleteKeysRequest{StoreId: "items", Prefix: "f/"})
	mustOK(t, "DeleteKeys", err)
	r := collectDeletes(t, "DeleteKeys", msgs)
	want := slices.DeleteFunc(slices.Clone(keys), func(k string) bool { return refused[k] })
	if !slices.Equal(r.deleted, want) || !r.last.GetDone() {
		t.Errorf("deleted %s, done %v", testutil.DiffKeys(r.deleted, want), r.last.GetDone())
	}
	checkFailures(t, r.failures, []wantFailure{
		{index: 3, key: "f/0003", code: "invalid_argument", field: "invalid"},
		{index: 7, key: "f/0007", code: "invalid_argument", field: "invalid"},
	})
	if got := storedKeys(t, ctx, st.Client, "items"); !slices.Equal(got, []string{"f/0003", "f/0007"}) {
		t.Errorf("left in the store: %q; want the refused keys", got)
	}
}

// deleteKeysCorpus is DeleteKeys' part of the bad-input corpus: selections
// that set none or several of prefix, keys and all_keys, too many keys, an
// invalid or repeated key named by its position, bad prefixes and cursors
// that are not DeleteKeys cursors of the same call (cur are another
// stack's listing cursors). Each must fail before any message.
func deleteKeysCorpus(cur kvgateCursors) []corpusCase {
	var cases []corpusCase
	call := func(req *kvv1.DeleteKeysRequest) func(context.Context, kvv1connect.KVStoreServiceClient) error {
		return func(ctx context.Context, c kvv1connect.KVStoreServiceClient) error {
			msgs, err := deleteKeys(ctx, c, req)
			if err == nil || len(msgs) != 0 {
				return fmt.Errorf("DeleteKeys sent %d messages and ended with %v; want an error before any message", len(msgs), err)
			}
			return err
		}
	}
	add := func(category, name string, req *kvv1.DeleteKeysRequest, fields ...string) {
		cases = append(cases, corpusCase{rpc: "DeleteKeys", category: category, name: name, call: call(req), fields: fields})
	}
	const s = corpusStore
	add("selection", "none", &kvv1.DeleteKeysRequest{StoreId: s}, "prefix")
	add("selection", "none, dry run", &kvv1.DeleteKeysRequest{StoreId: s, DryRun: true}, "prefix")
	add("selection", "prefix and keys", &kvv1.DeleteKeysRequest{StoreId: s, Prefix: "a", Keys: []string{"a1"}}, "keys")
	add("selection", "prefix and all_keys", &kvv1.DeleteKeysRequest{StoreId: s, Prefix: "a", AllKeys: true}, "all_keys")
	add("selection", "keys and all_keys", &kvv1.DeleteKeysRequest{StoreId: s, Keys: []string{"a1"}, AllKeys: true}, "all_keys")
	add("selection", "all three", &kvv1.DeleteKeysRequest{StoreId: s, Prefix: "a", Keys: []string{"a1"}, AllKeys: true}, "keys")

	tooMany := seqKeys("t/", 10_001)
	add("keys", "10001 keys", &kvv1.DeleteKeysRequest{StoreId: s, Keys: tooMany}, "keys")
	for _, k := range []struct{ name, key string }{
		{"empty", ""},
		{"hash", "a#b"},
		{"LF", "a\nb"},
		{"question mark", "a?b"},
		{"dot", "."},
		{"dot dot", ".."},
		{"well-known", ".well-known/acme-challenge/x"},
		{"1025 bytes", strings.Repeat("k", 1025)},
	} {
		add("keys", "invalid key at 2: "+k.name, &kvv1.DeleteKeysRequest{StoreId: s, Keys: []string{"ok1", "ok2", k.key, "ok3"}}, "keys[2]")
	}
	add("keys", "repeated key", &kvv1.DeleteKeysRequest{StoreId: s, Keys: []string{"a", "b", "a"}}, "keys[2]")
	add("keys", "two invalid keys", &kvv1.DeleteKeysRequest{StoreId: s, Keys: []string{"", "ok", "a#b"}}, "keys[0]", "keys[2]")
	many := seqKeys("m/", 30)
	for i := range many {
		many[i] = ""
	}
	add("keys", "thirty empty keys", &kvv1.DeleteKeysRequest{StoreId: s, Keys: many}, "keys[0]", "keys[9]", "keys")
	for _, p := range []struct{ name, prefix string }{{"hash", "#"}, {"LF", "\n"}, {"1025 bytes", strings.Repeat("p", 1025)}} {
		add("prefix", p.name, &kvv1.DeleteKeysRequest{StoreId: s, Prefix: p.prefix}, "prefix")
	}

	// Cursors made by hand, or issued by listings: none is a DeleteKeys
	// cursor of the call it comes with.
	forged := base64RawURL
	for _, c := range []struct {
		name string
		req  *kvv1.DeleteKeysRequest
	}{
		{"garbage", &kvv1.DeleteKeysRequest{StoreId: s, AllKeys: true, Cursor: "!!not a cursor!!"}},
		{"fastly raw cursor", &kvv1.DeleteKeysRequest{StoreId: s, AllKeys: true, Cursor: "CgdiYXRjaC0y"}},
		{"list cursor", &kvv1.DeleteKeysRequest{StoreId: "other", Prefix: "a", Cursor: cur.list}},
		{"stream cursor", &kvv1.DeleteKeysRequest{StoreId: "other", Prefix: "a", Cursor: cur.stream}},
		{"json without scope", &kvv1.DeleteKeysRequest{StoreId: s, AllKeys: true, Cursor: forged(`{"u":"CgdiYXRjaC0y"}`)}},
		{"json of another scope", &kvv1.DeleteKeysRequest{StoreId: s, Keys: []string{"a", "b"}, Cursor: forged(`{"i":1,"d":"0123456789abcdef"}`)}},
		{"json array", &kvv1.DeleteKeysRequest{StoreId: s, Prefix: "a", Cursor: forged(`["u","d"]`)}},
	} {
		add("cursor", c.name, c.req, "cursor")
	}
	add("store_id", "empty", &kvv1.DeleteKeysRequest{AllKeys: true}, "store_id")
	add("store_id", "slash", &kvv1.DeleteKeysRequest{StoreId: "a/b", Prefix: "a"}, "store_id")
	add("multiple", "every field", &kvv1.DeleteKeysRequest{StoreId: "a b", Prefix: "#", Keys: []string{""}, Cursor: "garbage!"},
		"store_id", "keys", "prefix", "keys[0]", "cursor")
	return cases
}

func base64RawURL(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// TestDeleteKeysDrain shuts kvgate down during a deletion: the call stops
// starting DELETEs, reports those in flight, and ends UNAVAILABLE with a
// DeleteKeysResponse detail whose cursor another kvgate resumes from; in
// the end every key is gone and none was reported deleted twice.
func TestDeleteKeysDrain(t *testing.T) {
	t.Parallel()
	st := kvtest.Start(t, kvtest.Options{Writes: app.WriteConfig{DeleteConcurrency: 4}, ShutdownTimeout: 20 * time.Second})
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	keys := seqKeys("s/", 1000)
	fillStore(t, ctx, st.Client, "drain", keys)
	// 250 rounds of 4 DELETEs of 10ms: seconds of deletion left when
	// the shutdown starts.
	st.Store.SetFaults(localstore.Faults{Latency: 10 * time.Millisecond, Kinds: localstore.KindsOf(localstore.RequestDelete)})
	client := st.NewClient(kvtest.H2CClient(), connectGRPC()...)
	stream, err := client.DeleteKeys(ctx, &kvv1.DeleteKeysRequest{StoreId: "drain", Prefix: "s/"})
	mustOK(t, "DeleteKeys", err)
	defer stream.Close()
	first, err := stream.Receive()
	mustOK(t, "first message", err)
	shut := make(chan error, 1)
	go func() { shut <- st.Shutdown() }()
	rest, err := testutil.ReadStream(stream.Receive)
	cerr := asConnectError(t, "DeleteKeys during shutdown", err, connect.CodeUnavailable)
	resume, ok := findDetail[*kvv1.DeleteKeysResponse](detailsOf(cerr))
	if !ok || resume.GetCursor() == "" {
		t.Fatalf("error %v carries no DeleteKeysResponse with a cursor", cerr)
	}
	if err := <-shut; err != nil {
		t.Errorf("shutdown: %v", err)
	}
	run1 := collectDeletes(t, "drained", append([]*kvv1.DeleteKeysResponse{first}, rest...))
	if resume.GetTotals().GetDeleted() != uint64(len(run1.deleted)) {
		t.Errorf("detail totals %v; the messages reported %d deleted", resume.GetTotals(), len(run1.deleted))
	}
	if len(run1.deleted) >= len(keys) {
		t.Fatalf("the deletion finished before the shutdown; nothing to resume")
	}

	st.Store.SetFaults(localstore.Faults{})
	other := kvtest.Start(t, kvtest.Options{Upstream: st.Store.Handler()})
	msgs, err := deleteKeys(ctx, other.NewClient(kvtest.H2CClient(), connectGRPC()...),
		&kvv1.DeleteKeysRequest{StoreId: "drain", Prefix: "s/", Cursor: resume.GetCursor()})
	mustOK(t, "DeleteKeys resumed on another kvgate", err)
	run2 := collectDeletes(t, "resumed", msgs)
	for _, k := range run2.deleted {
		if slices.Contains(run1.deleted, k) {
			t.Errorf("%q reported deleted by both calls", k)
		}
	}
	if n := len(run1.deleted) + len(run2.deleted); n != len(keys) {
		t.Errorf("%d + %d keys reported deleted; want %d", len(run1.deleted), len(run2.deleted), len(keys))
	}
	if got := storedKeys(t, ctx, other.Client, "drain"); len(got) != 0 {
		t.Errorf("%d keys left: %s", len(got), clip(got))
	}
}
