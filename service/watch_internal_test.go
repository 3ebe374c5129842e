package service

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	kvv1 "github.com/kvgate/kvgate/gen/go/fastly/kv/v1"
	"github.com/kvgate/kvgate/upstream"
	"github.com/kvgate/kvgate/upstream/localstore"
)

// at is a key's state in a coalescing case: absent at 0, else present
// with that generation.
func at(gen uint64) keyState {
	if gen == 0 {
		return keyState{}
	}
	return keyState{present: true, item: &upstream.Item{Generation: gen, Size: -1}}
}

func describe(msg *kvv1.WatchItemsResponse) string {
	if msg == nil {
		return "no message"
	}
	var parts []string
	for _, c := range msg.GetChanges() {
		parts = append(parts, fmt.Sprintf("%s %s %d", strings.TrimPrefix(c.GetType().String(), "CHANGE_TYPE_"), c.GetKey(), c.GetItem().GetGeneration()))
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

// TestWatcherCoalescing feeds a watcher the polls a slow caller missed
// and checks the one message it then gets: each key's latest state
// against what the caller was last told.
func TestWatcherCoalescing(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		// told is what the initial message told the caller of key a.
		told uint64
		// polls are a's states in the polls that follow, all unsent.
		polls []uint64
		want  string
	}{
		{"created then updated", 0, []uint64{1, 2}, "[CREATED a 2]"},
		{"created then deleted", 0, []uint64{1, 0}, "no message"},
		{"updated then deleted", 1, []uint64{2, 0}, "[DELETED a 0]"},
		{"deleted then created", 1, []uint64{0, 3}, "[UPDATED a 3]"},
		{"updated twice", 1, []uint64{2, 3}, "[UPDATED a 3]"},
		{"updated, deleted, created", 1, []uint64{2, 0, 4}, "[UPDATED a 4]"},
		{"created, deleted, created", 0, []uint64{1, 0, 2}, "[CREATED a 2]"},
		{"unchanged", 1, []uint64{1, 1}, "no message"},
		{"deleted", 1, []uint64{0, 0}, "[DELETED a 0]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			for _, prefix := range []bool{false, true} {
				spec := &watchSpec{store: "s", keys: []string{"a"}, initialState: true}
				if prefix {
					spec = &watchSpec{store: "s", prefix: "", initialState: true}
				}
				w := newWatcher(spec)
				obs := func(seq uint64, gen uint64) *observation {
					o := &observation{seq: seq, started: time.Now(), states: map[string]keyState{}, listed: prefix}
					if gen != 0 || !prefix {
						o.states["a"] = at(gen) // a prefix listing leaves an absent key out
					}
					return o
				}
				w.observe(obs(1, tc.told))
				if init := w.take(); init == nil || !init.GetInitial() {
					t.Fatalf("prefix %v: initial message %v", prefix, init)
				}
				for i, gen := range tc.polls {
					w.observe(obs(uint64(i+2), gen))
				}
				if got := describe(w.take()); got != tc.want {
					t.Errorf("prefix %v: got %s; want %s", prefix, got, tc.want)
				}
				if got := w.take(); got != nil {
					t.Errorf("prefix %v: a second message %s", prefix, describe(got))
				}
			}
		})
	}
}

// TestWatcherUnsettledKeys checks that a key a prefix poll could not HEAD
// is neither reported gone nor held back from the others, and that a
// watcher waits for a poll that settled every key before its initial
// message.
func TestWatcherUnsettledKeys(t *testing.T) {
	t.Parallel()
	w := newWatcher(&watchSpec{store: "s", initialState: true})
	w.observe(&observation{seq: 1, listed: true, states: map[string]keyState{"a": at(1)}, unsettled: map[string]bool{"b": true}})
	if msg := w.take(); msg != nil {
		t.Fatalf("initial message %s from a poll that left b unsettled", describe(msg))
	}
	w.observe(&observation{seq: 2, listed: true, states: map[string]keyState{"a": at(1), "b": at(2)}})
	if got := describe(w.take()); got != "[PRESENT a 1, PRESENT b 2]" {
		t.Fatalf("initial message %s", got)
	}
	w.observe(&observation{seq: 3, listed: true, states: map[string]keyState{"b": at(3)}, unsettled: map[string]bool{"a": true}})
	if got := describe(w.take()); got != "[UPDATED b 3]" {
		t.Errorf("got %s; want b updated and a, unsettled, left alone", got)
	}
	// A poll whose listing failed delivers nothing; one that began before
	// the watcher joined is ignored.
	w.joinSeq = 10
	w.observe(&observation{seq: 9, listed: true, states: map[string]keyState{}})
	if msg := w.take(); msg != nil {
		t.Errorf("a poll from before the watcher joined sent %s", describe(msg))
	}
}

// TestWatcherInitialAcrossPolls checks that a prefix watch whose polls
// each leave some key unsettled (a large prefix on a flaky upstream) still
// gets its initial message once every listed key has been seen in some
// poll, with each key's latest state and no key the last listing lacks.
func TestWatcherInitialAcrossPolls(t *testing.T) {
	t.Parallel()
	w := newWatcher(&watchSpec{store: "s", initialState: true})
	w.observe(&observation{seq: 1, listed: true, states: map[string]keyState{"a": at(1), "c": at(1)}, unsettled: map[string]bool{"b": true}})
	if msg := w.take(); msg != nil {
		t.Fatalf("initial message %s before b was ever seen", describe(msg))
	}
	// b is seen; a fails this time and keeps its earlier state; c is gone
	// from the listing.
	w.observe(&observation{seq: 2, listed: true, states: map[string]keyState{"b": at(2)}, unsettled: map[string]bool{"a": true}})
	if got := describe(w.take()); got != "[PRESENT a 1, PRESENT b 2]" {
		t.Fatalf("initial message %s; want a from the first poll and b from the second", got)
	}
}

// TestWatchSlowWatcher holds a watch's sends while the test changes keys
// straight on a local store, and lets several polls see every change:
// once the caller reads again it gets the message it was being sent, then
// one message with each key's latest state, not the states in between.
// When the caller goes away, the poller stops.
func TestWatchSlowWatcher(t *testing.T) {
	t.Parallel()
	store, err := localstore.Open(localstore.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	srv := httptest.NewServer(store.Handler())
	t.Cleanup(srv.Close)
	kv, err := upstream.NewClient(upstream.ClientConfig{BaseURL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	svc := New(kv, Config{Watch: WatchConfig{MinInterval: 10 * time.Millisecond}})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()

	write := func(key, value string) uint64 {
		t.Helper()
		if err := kv.PutItem(ctx, "slow", key, []byte(value), upstream.PutOptions{}); err != nil {
			t.Fatal(err)
		}
		it, err := kv.HeadItem(ctx, "slow", key)
		if err != nil {
			t.Fatal(err)
		}
		return it.Generation
	}
	remove := func(key string) {
		t.Helper()
		if err := kv.DeleteItem(ctx, "slow", key, upstream.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	keys := []string{"a", "b", "c"}
	// polled waits until a poll that began after now has been delivered:
	// rounds do not overlap and each HEADs every key, so three rounds'
	// worth of HEADs means the second one has ended.
	polled := func() {
		t.Helper()
		from := store.Count(localstore.RequestHead)
		for deadline := time.Now().Add(30 * time.Second); store.Count(localstore.RequestHead) < from+3*int64(len(keys)); {
			if time.Now().After(deadline) {
				t.Fatal("the watch stopped polling")
			}
			time.Sleep(5 * time.Millisecond)
		}
	}

	write("a", "a0")
	got := make(chan *kvv1.WatchItemsResponse)
	done := make(chan error, 1)
	go func() {
		done <- svc.watchItems(ctx, &kvv1.WatchItemsRequest{StoreId: "slow", Keys: keys}, func(msg *kvv1.WatchItemsResponse) error {
			select {
			case got <- msg:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
	}()
	<-got // the initial message

	a1 := write("a", "a1")
	polled() // the watcher now waits to send UPDATED a1
	write("a", "a2")
	polled()
	a3 := write("a", "a3")
	write("b", "b1")
	write("c", "c1")
	polled()
	remove("b")
	c2 := write("c", "c2")
	polled()

	for _, want := range []string{fmt.Sprintf("[UPDATED a %d]", a1), fmt.Sprintf("[UPDATED a %d, CREATED c %d]", a3, c2)} {
		if msg := describe(<-got); msg != want {
			t.Errorf("got %s; want %s", msg, want)
		}
	}
	cancel()
	<-done
	for deadline := time.Now().Add(30 * time.Second); svc.watch.pollerCount() != 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the poller still runs after its last watcher left")
		}
	}
}

// TestWatchPollersByToken checks that watches share a poller only with
// watches that call with the same Fastly token (pass-through mode brings
// each caller's own), and that each poller calls with its watches' token.
func TestWatchPollersByToken(t *testing.T) {
	t.Parallel()
	var (
		mu     sync.Mutex
		tokens = map[string]int{}
	)
	store, err := localstore.Open(localstore.Config{OnRequest: func(r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		tokens[r.Header.Get("Fastly-Key")]++
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	srv := httptest.NewServer(store.Handler())
	t.Cleanup(srv.Close)
	kv, err := upstream.NewClient(upstream.ClientConfig{BaseURL: srv.URL, Token: "own"})
	if err != nil {
		t.Fatal(err)
	}
	svc := New(kv, Config{Watch: WatchConfig{MinInterval: 10 * time.Millisecond}})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()

	var wg sync.WaitGroup
	initial := make(chan struct{}, 8)
	for _, token := range []string{"", "t1", "t1", "t2"} {
		wctx := ctx
		if token != "" {
			wctx = upstream.WithToken(ctx, token)
		}
		wg.Go(func() {
			_ = svc.watchItems(wctx, &kvv1.WatchItemsRequest{StoreId: "s", Keys: []string{"k"}}, func(*kvv1.WatchItemsResponse) error {
				initial <- struct{}{}
				return nil
			})
		})
	}
	for range 4 {
		<-initial
	}
	if n := svc.watch.pollerCount(); n != 3 {
		t.Errorf("%d pollers for watches with three different tokens; want 3", n)
	}
	mu.Lock()
	for _, tok := range []string{"own", "t1", "t2"} {
		if tokens[tok] == 0 {
			t.Errorf("no request carried token %q; requests by token: %v", tok, tokens)
		}
	}
	if len(tokens) != 3 {
		t.Errorf("requests by token: %v; want only own, t1 and t2", tokens)
	}
	mu.Unlock()
	cancel()
	wg.Wait()
}

// TestSplitWatchMessage checks that a poll's changes too large for one
// message go in several, in order, each within the limit and marked as
// the original was.
func TestSplitWatchMessage(t *testing.T) {
	t.Parallel()
	meta := strings.Repeat("m", 1000)
	var changes []*kvv1.ItemChange
	for i := range 100 {
		changes = append(changes, itemChange(kvv1.ChangeType_CHANGE_TYPE_PRESENT, fmt.Sprintf("k%03d", i),
			keyState{present: true, item: &upstream.Item{Generation: uint64(i + 1), Metadata: meta, Size: 1}}))
	}
	for _, tc := range []struct {
		name  string
		msg   *kvv1.WatchItemsResponse
		limit int
		parts int
	}{
		{"empty initial", &kvv1.WatchItemsResponse{Initial: true}, 100, 1},
		{"fits", &kvv1.WatchItemsResponse{Changes: changes}, 1 << 20, 1},
		{"ten a message", &kvv1.WatchItemsResponse{Initial: true, Changes: changes}, 10*1040 + 20, 10},
		{"one change over the limit", &kvv1.WatchItemsResponse{Changes: changes[:3]}, 10, 3},
	} {
		parts := splitWatchMessage(tc.msg, tc.limit)
		if len(parts) != tc.parts {
			t.Errorf("%s: %d parts; want %d", tc.name, len(parts), tc.parts)
		}
		var keys []string
		for _, p := range parts {
			if p.GetInitial() != tc.msg.GetInitial() {
				t.Errorf("%s: a part has initial=%v", tc.name, p.GetInitial())
			}
			if len(p.GetChanges()) > 1 && proto.Size(p) > tc.limit {
				t.Errorf("%s: a part of %d bytes; the limit is %d", tc.name, proto.Size(p), tc.limit)
			}
			for _, c := range p.GetChanges() {
				keys = append(keys, c.GetKey())
			}
		}
		if len(keys) != len(tc.msg.GetChanges()) || !slices.IsSorted(keys) {
			t.Errorf("%s: parts carry keys %v", tc.name, keys)
		}
	}
}
