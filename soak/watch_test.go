package soak

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect/v2/connecthttp"
	"google.golang.org/protobuf/types/known/durationpb"

	kvv1 "github.com/kvgate/kvgate/gen/go/fastly/kv/v1"
	"github.com/kvgate/kvgate/gen/go/fastly/kv/v1/kvv1connect"
	"github.com/kvgate/kvgate/internal/kvtest"
	"github.com/kvgate/kvgate/service"
	"github.com/kvgate/kvgate/upstream"
	"github.com/kvgate/kvgate/upstream/localstore"
)

var flagWatchWrites = flag.Int("soak.watch-writes", 400, "writes and deletes the watch phase makes behind kvgate's back")

// watchFaults are the soak's faults, limited to the requests a watch
// makes (listings and HEADs): the writer's own PUTs, DELETEs and GETs
// pass untouched, so that it knows every state it gave each key.
const watchFaults = defaultFaults + ",kinds=list+head"

const (
	watchStore     = "soak-watch"
	watchPrefixN   = 24 // keys under the watched prefix
	watchKeysN     = 16 // keys watched by name
	watchFloor     = 20 * time.Millisecond
	watchSettleFor = 2 * time.Minute
)

func watchPrefixKey(i int) string { return fmt.Sprintf("wp/%02d", i) }
func watchNamedKey(i int) string  { return fmt.Sprintf("wk/%02d", i) }

// keyHistory is every state the writer gave one key, in order: a
// generation, or 0 for absent.
type keyHistory struct {
	mu     sync.Mutex
	states map[string][]uint64
}

func (h *keyHistory) record(key string, gen uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.states[key] = append(h.states[key], gen)
}

func (h *keyHistory) final() map[string]uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make(map[string]uint64)
	for k, s := range h.states {
		if g := s[len(s)-1]; g != 0 {
			out[k] = g
		}
	}
	return out
}

// soakWatcher is one watch of the phase: what it was told, key by key,
// and the state built from it.
type soakWatcher struct {
	name string
	req  *kvv1.WatchItemsRequest
	// resume ends the watch halfway and resumes it with known.
	resume bool

	mu       sync.Mutex
	state    map[string]uint64
	reported map[string][]uint64 // every state reported, in order
	messages int
	ended    error
}

func (w *soakWatcher) snapshot() map[string]uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return maps.Clone(w.state)
}

// apply takes one message, checking that each change fits what the
// watcher was told before: CREATED only of an absent key, UPDATED and
// DELETED only of a present one.
func (w *soakWatcher) apply(msg *kvv1.WatchItemsResponse, p *problems) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.messages++
	for _, c := range msg.GetChanges() {
		k := c.GetKey()
		old, had := w.state[k]
		gen := c.GetItem().GetGeneration()
		switch c.GetType() {
		case kvv1.ChangeType_CHANGE_TYPE_PRESENT:
			if !msg.GetInitial() || had {
				p.add("watch", "%s: PRESENT %s outside the initial state", w.name, k)
			}
		case kvv1.ChangeType_CHANGE_TYPE_CREATED:
			if had {
				p.add("watch", "%s: CREATED %s, which it had been told exists (generation %d)", w.name, k, old)
			}
		case kvv1.ChangeType_CHANGE_TYPE_UPDATED:
			if !had || old == gen {
				p.add("watch", "%s: UPDATED %s to generation %d, from present=%v generation %d", w.name, k, gen, had, old)
			}
		case kvv1.ChangeType_CHANGE_TYPE_DELETED:
			if !had {
				p.add("watch", "%s: DELETED %s, which it had not been told exists", w.name, k)
			}
			gen = 0
		default:
			p.add("watch", "%s: change of type %v", w.name, c.GetType())
		}
		if gen == 0 {
			delete(w.state, k)
		} else {
			w.state[k] = gen
		}
		w.reported[k] = append(w.reported[k], gen)
	}
}

// run watches until ctx ends, resuming once halfway (at the writer's
// signal) when w.resume is set.
func (w *soakWatcher) run(ctx context.Context, client kvv1connect.KVStoreServiceClient, half <-chan struct{}, p *problems) {
	req := w.req
	for round := 0; ; round++ {
		rctx, cancel := context.WithCancel(ctx)
		if w.resume && round == 0 {
			go func() {
				select {
				case <-half:
				case <-rctx.Done():
				}
				cancel()
			}()
		}
		err := w.watchOnce(rctx, client, req, p)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if !w.resume || round > 0 || err != nil {
			w.mu.Lock()
			w.ended = fmt.Errorf("the watch ended before the phase did: %v", err)
			w.mu.Unlock()
			return
		}
		// Resume from the state built so far.
		req = &kvv1.WatchItemsRequest{StoreId: w.req.GetStoreId(), Keys: w.req.GetKeys(), Prefix: w.req.GetPrefix(), Interval: w.req.GetInterval()}
		for k, g := range w.snapshot() {
			req.Known = append(req.Known, &kvv1.KeyGeneration{Key: k, Generation: g})
		}
	}
}

// watchOnce runs one WatchItems stream; it returns nil when ctx ended it.
func (w *soakWatcher) watchOnce(ctx context.Context, client kvv1connect.KVStoreServiceClient, req *kvv1.WatchItemsRequest, p *problems) error {
	stream, err := client.WatchItems(ctx, req)
	if err != nil {
		return err
	}
	defer stream.Close()
	first := true
	for {
		msg, err := stream.Receive()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, io.EOF) {
				return errors.New("the stream ended without an error")
			}
			return err
		}
		if first != msg.GetInitial() {
			p.add("watch", "%s: message initial=%v; want initial only on the first message", w.name, msg.GetInitial())
		}
		first = false
		w.apply(msg, p)
	}
}

// checkReported checks that what the watcher reported of each key is, in
// order, among the states the writer gave it: a poll may miss states,
// but must never report one that did not exist or report them out of
// order.
func (w *soakWatcher) checkReported(h *keyHistory, p *problems) {
	w.mu.Lock()
	defer w.mu.Unlock()
	h.mu.Lock()
	defer h.mu.Unlock()
	for k, rep := range w.reported {
		hist := append([]uint64{0}, h.states[k]...) // every key starts absent
		i := 0
		for _, s := range rep {
			j := slices.Index(hist[i:], s)
			if j < 0 {
				p.add("watch", "%s: reported %s at generation %d, which it did not hold then (reported %v, history %v)", w.name, k, s, rep, hist)
				break
			}
			i += j
		}
	}
}

// TestSoakWatch is the soak's watch phase: while the local store answers
// the watches' listings and HEADs with the soak's faults (429s, 5xx,
// dropped connections), a writer creates, updates and deletes keys behind
// kvgate's back, and several watches follow them: a prefix watch, two
// watches of the same keys (one resumed halfway with known), and a
// second prefix watch sharing the first one's poller. No watch may
// report a state a key never had, or report states out of order, and
// once the writer stops every watch must come to the store's final state;
// no watch may end while the faults last.
func TestSoakWatch(t *testing.T) {
	faults, err := localstore.ParseFaults(watchFaults)
	if err != nil {
		t.Fatal(err)
	}
	baseline := runtime.NumGoroutine()
	t.Cleanup(func() { checkGoroutines(t, baseline, 3) })

	st := kvtest.Start(t, kvtest.Options{
		Retry: upstream.RetryPolicy{MaxAttempts: 8, BaseDelay: time.Millisecond, MaxDelay: 20 * time.Millisecond},
		Watch: service.WatchConfig{MinInterval: watchFloor},
	})
	ctx := t.Context()
	hc := kvtest.H2CClient()
	defer hc.CloseIdleConnections()
	client := st.NewClient(hc, connecthttp.WithGRPC())
	hist := &keyHistory{states: make(map[string][]uint64)}
	p := &problems{t: t}

	var keys []string
	for i := range watchPrefixN {
		keys = append(keys, watchPrefixKey(i))
	}
	var named []string
	for i := range watchKeysN {
		named = append(named, watchNamedKey(i))
	}
	keys = append(keys, named...)
	write := func(key string, value int) {
		t.Helper()
		v := fmt.Sprintf("%s=%d", key, value)
		if err := st.Client.PutItem(ctx, watchStore, key, []byte(v), upstream.PutOptions{Metadata: v}); err != nil {
			t.Fatalf("writing %s: %v", key, err)
		}
		it, err := st.Client.GetItem(ctx, watchStore, key)
		if err != nil {
			t.Fatalf("reading %s back: %v", key, err)
		}
		hist.record(key, it.Generation)
	}
	// Half the keys exist before the watches start.
	for i, k := range keys {
		if i%2 == 0 {
			write(k, 0)
		}
	}

	interval := durationpb.New(watchFloor)
	watchers := []*soakWatcher{
		{name: "prefix", req: &kvv1.WatchItemsRequest{StoreId: watchStore, Prefix: "wp/", SendInitialState: true, Interval: interval}},
		{name: "prefix-2", req: &kvv1.WatchItemsRequest{StoreId: watchStore, Prefix: "wp/", SendInitialState: true, Interval: durationpb.New(time.Hour)}},
		{name: "keys", req: &kvv1.WatchItemsRequest{StoreId: watchStore, Keys: named, SendInitialState: true, Interval: interval}},
		{name: "keys-resumed", req: &kvv1.WatchItemsRequest{StoreId: watchStore, Keys: named, SendInitialState: true, Interval: interval}, resume: true},
	}
	st.Store.SetFaults(faults)
	watchCtx, stopWatches := context.WithCancel(ctx)
	defer stopWatches()
	half := make(chan struct{})
	var wg sync.WaitGroup
	for _, w := range watchers {
		w.state, w.reported = make(map[string]uint64), make(map[string][]uint64)
		wg.Go(func() { w.run(watchCtx, client, half, p) })
	}

	start := time.Now()
	rng := rand.New(rand.NewPCG(20261130, 1))
	exists := make(map[string]bool)
	for i, k := range keys {
		exists[k] = i%2 == 0
	}
	writes := *flagWatchWrites
	for n := range writes {
		if n == writes/2 {
			close(half)
		}
		k := keys[rng.IntN(len(keys))]
		if exists[k] && rng.IntN(3) == 0 {
			if err := st.Client.DeleteItem(ctx, watchStore, k, upstream.DeleteOptions{}); err != nil {
				t.Fatalf("deleting %s: %v", k, err)
			}
			hist.record(k, 0)
			exists[k] = false
		} else {
			write(k, n+1)
			exists[k] = true
		}
		// Let polls see some states and miss others.
		time.Sleep(time.Duration(rng.IntN(int(watchFloor))))
	}
	t.Logf("watch phase: %d writes in %v, faults %q", writes, time.Since(start).Round(time.Millisecond), faults.String())

	// Every watch must come to the final state, faults still on.
	final := hist.final()
	for _, w := range watchers {
		var got map[string]uint64
		for deadline := time.Now().Add(watchSettleFor); ; time.Sleep(10 * time.Millisecond) {
			got = w.snapshot()
			want := final
			if w.req.GetPrefix() != "" {
				want = maps.Clone(final)
				maps.DeleteFunc(want, func(k string, _ uint64) bool { return k[:3] != "wp/" })
			} else {
				want = maps.Clone(final)
				maps.DeleteFunc(want, func(k string, _ uint64) bool { return k[:3] != "wk/" })
			}
			if maps.Equal(got, want) {
				break
			}
			if time.Now().After(deadline) {
				p.add("watch", "%s: state %v did not come to the store's %v within %v", w.name, got, want, watchSettleFor)
				break
			}
		}
	}
	st.Store.SetFaults(localstore.Faults{})
	stopWatches()
	wg.Wait()
	for _, w := range watchers {
		w.checkReported(hist, p)
		if w.ended != nil {
			p.add("watch", "%s: %v", w.name, w.ended)
		}
		n := 0
		for _, r := range w.reported {
			n += len(r)
		}
		t.Logf("%s: %d messages, %d changes", w.name, w.messages, n)
	}
	t.Logf("injected: %+v; upstream requests %d", st.Store.InjectedFaults(), st.Requests())
	t.Logf("problems: %s", p.summary())
	if err := st.Shutdown(); err != nil {
		t.Errorf("kvgate shutdown: %v", err)
	}
}
