package service_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connecthttp"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/protobuf/types/known/durationpb"

	kvv1 "github.com/kvgate/kvgate/gen/go/fastly/kv/v1"
	"github.com/kvgate/kvgate/gen/go/fastly/kv/v1/kvv1connect"
	"github.com/kvgate/kvgate/internal/kvtest"
	"github.com/kvgate/kvgate/service"
	"github.com/kvgate/kvgate/upstream"
	"github.com/kvgate/kvgate/upstream/localstore"
)

// testWatchFloor is the poll interval floor of the watch test stacks:
// short, so that the tests see changes quickly.
const testWatchFloor = 50 * time.Millisecond

// watchWait bounds how long a watch test waits for one message: a hang
// guard, not a timing assertion.
const watchWait = 30 * time.Second

// watchStream reads a WatchItems stream in the background.
type watchStream struct {
	cancel context.CancelFunc
	msgs   chan *kvv1.WatchItemsResponse
	// end receives how the stream ended: nil for a clean end.
	end chan error
}

func startWatch(t *testing.T, ctx context.Context, client kvv1connect.KVStoreServiceClient, req *kvv1.WatchItemsRequest) *watchStream {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	ws := &watchStream{cancel: cancel, msgs: make(chan *kvv1.WatchItemsResponse, 1024), end: make(chan error, 1)}
	stream, err := client.WatchItems(ctx, req)
	if err != nil {
		cancel()
		t.Fatalf("WatchItems: %v", err)
	}
	go func() {
		defer stream.Close()
		for {
			msg, err := stream.Receive()
			if err != nil {
				if errors.Is(err, io.EOF) {
					err = nil
				}
				ws.end <- err
				close(ws.msgs)
				return
			}
			ws.msgs <- msg
		}
	}()
	t.Cleanup(cancel)
	return ws
}

// next returns the next message, failing the test when the stream ended.
func (ws *watchStream) next(t *testing.T) *kvv1.WatchItemsResponse {
	t.Helper()
	select {
	case msg, ok := <-ws.msgs:
		if !ok {
			t.Fatalf("the watch ended: %v", <-ws.end)
		}
		return msg
	case <-time.After(watchWait):
		t.Fatalf("no watch message within %v", watchWait)
		return nil
	}
}

// ended waits for the stream's end and returns its error.
func (ws *watchStream) ended(t *testing.T) error {
	t.Helper()
	deadline := time.After(watchWait)
	for {
		select {
		case _, ok := <-ws.msgs:
			if !ok {
				return <-ws.end
			}
		case <-deadline:
			t.Fatalf("the watch did not end within %v", watchWait)
			return nil
		}
	}
}

// change is a change as the tests compare it.
type change struct {
	typ  kvv1.ChangeType
	key  string
	gen  uint64 // 0 for DELETED
	meta string
}

func (c change) String() string {
	return fmt.Sprintf("%s %s gen=%d meta=%q", strings.TrimPrefix(c.typ.String(), "CHANGE_TYPE_"), c.key, c.gen, c.meta)
}

func changesOf(msg *kvv1.WatchItemsResponse) []change {
	var out []change
	for _, c := range msg.GetChanges() {
		out = append(out, change{c.GetType(), c.GetKey(), c.GetItem().GetGeneration(), c.GetItem().GetMetadata()})
	}
	return out
}

func checkChanges(t *testing.T, what string, msg *kvv1.WatchItemsResponse, initial bool, want ...change) {
	t.Helper()
	got := changesOf(msg)
	if fmt.Sprint(got) != fmt.Sprint(want) || msg.GetInitial() != initial || msg.GetObservedAt() == nil {
		t.Errorf("%s: message initial=%v observed_at=%v changes %v; want initial=%v changes %v",
			what, msg.GetInitial(), msg.GetObservedAt(), got, initial, want)
	}
	for _, c := range msg.GetChanges() {
		if c.GetType() != kvv1.ChangeType_CHANGE_TYPE_DELETED {
			if it := c.GetItem(); it.GetKey() != c.GetKey() || len(it.GetValue()) != 0 || it.Size == nil || it.GetLastModified() == nil {
				t.Errorf("%s: change of %s carries item %v; want its key, size and last-modified time and no value", what, c.GetKey(), it)
			}
		} else if c.Item != nil {
			t.Errorf("%s: DELETED %s carries an item", what, c.GetKey())
		}
	}
}

// put writes key straight into the local store, behind kvgate's back,
// and returns its new generation.
func put(t *testing.T, ctx context.Context, kv *upstream.Client, store, key, value, meta string) uint64 {
	t.Helper()
	if err := kv.PutItem(ctx, store, key, []byte(value), upstream.PutOptions{Metadata: meta}); err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
	it, err := kv.HeadItem(ctx, store, key)
	if err != nil {
		t.Fatalf("head %s: %v", key, err)
	}
	return it.Generation
}

func del(t *testing.T, ctx context.Context, kv *upstream.Client, store, key string) {
	t.Helper()
	if err := kv.DeleteItem(ctx, store, key, upstream.DeleteOptions{}); err != nil {
		t.Fatalf("delete %s: %v", key, err)
	}
}

const (
	created = kvv1.ChangeType_CHANGE_TYPE_CREATED
	updated = kvv1.ChangeType_CHANGE_TYPE_UPDATED
	deleted = kvv1.ChangeType_CHANGE_TYPE_DELETED
	present = kvv1.ChangeType_CHANGE_TYPE_PRESENT
)

// watchModes are the two ways to watch the keys w/a and w/b of a store:
// by name and by prefix.
var watchModes = []struct {
	name string
	req  func(store string) *kvv1.WatchItemsRequest
}{
	{"keys", func(store string) *kvv1.WatchItemsRequest {
		return &kvv1.WatchItemsRequest{StoreId: store, Keys: []string{"w/b", "w/a", "w/a"}}
	}},
	{"prefix", func(store string) *kvv1.WatchItemsRequest {
		return &kvv1.WatchItemsRequest{StoreId: store, Prefix: "w/"}
	}},
}

// checkWatchItems watches w/a and w/b of fresh stores, by name and by
// prefix, with the initial state, while the test creates, updates and
// deletes them straight on the store, and a key it does not watch; the
// watch reports each change, one message per change, and nothing else.
// TestStreamsProtocols runs it in every protocol.
func checkWatchItems(t *testing.T, ctx context.Context, st *kvtest.Stack, client kvv1connect.KVStoreServiceClient) {
	t.Helper()
	for _, mode := range watchModes {
		store := "watch-" + mode.name
		genA := put(t, ctx, st.Client, store, "w/a", "a1", "")
		req := mode.req(store)
		req.SendInitialState = true
		ws := startWatch(t, ctx, client, req)
		checkChanges(t, mode.name+" initial", ws.next(t), true, change{present, "w/a", genA, ""})

		genB := put(t, ctx, st.Client, store, "w/b", "b1", "")
		checkChanges(t, mode.name+" create", ws.next(t), false, change{created, "w/b", genB, ""})
		put(t, ctx, st.Client, store, "w/ignored", "x", "") // not watched in keys mode
		put(t, ctx, st.Client, store, "other", "x", "")     // never watched
		if mode.name == "prefix" {
			msg := ws.next(t)
			if len(msg.GetChanges()) != 1 || msg.GetChanges()[0].GetKey() != "w/ignored" {
				t.Errorf("prefix: got %v; want w/ignored created", changesOf(msg))
			}
			del(t, ctx, st.Client, store, "w/ignored")
			checkChanges(t, mode.name+" delete w/ignored", ws.next(t), false, change{deleted, "w/ignored", 0, ""})
		}
		genA2 := put(t, ctx, st.Client, store, "w/a", "a2", "meta a2")
		checkChanges(t, mode.name+" update", ws.next(t), false, change{updated, "w/a", genA2, "meta a2"})
		if genA2 == genA {
			t.Errorf("the update kept generation %d", genA)
		}
		del(t, ctx, st.Client, store, "w/a")
		checkChanges(t, mode.name+" delete", ws.next(t), false, change{deleted, "w/a", 0, ""})
		ws.cancel()
	}
}

func startWatchStack(t *testing.T, opts kvtest.Options) *kvtest.Stack {
	t.Helper()
	if opts.Watch.MinInterval == 0 {
		opts.Watch.MinInterval = testWatchFloor
	}
	return kvtest.Start(t, opts)
}

// TestWatchItemsResume ends a watch, changes keys while no watch is open,
// and resumes with known set to the state built from the changes
// received: the first message reports every change made in between, in
// key order, marked initial. Without known, every present key is CREATED.
func TestWatchItemsResume(t *testing.T) {
	t.Parallel()
	for _, mode := range watchModes {
		t.Run(mode.name, func(t *testing.T) {
			t.Parallel()
			st := startWatchStack(t, kvtest.Options{})
			client := st.NewClient(kvtest.H2CClient())
			ctx := t.Context()
			const store = "resume"
			genA := put(t, ctx, st.Client, store, "w/a", "a1", "")
			put(t, ctx, st.Client, store, "w/b", "b1", "")

			req := mode.req(store)
			req.SendInitialState = true
			ws := startWatch(t, ctx, client, req)
			state := map[string]uint64{}
			for _, c := range ws.next(t).GetChanges() {
				state[c.GetKey()] = c.GetItem().GetGeneration()
			}
			ws.cancel()
			_ = ws.ended(t)

			// While no watch is open.
			del(t, ctx, st.Client, store, "w/b")
			genA2 := put(t, ctx, st.Client, store, "w/a", "a2", "m")
			genC := put(t, ctx, st.Client, store, "w/c", "c1", "")
			if mode.name == "keys" {
				req = &kvv1.WatchItemsRequest{StoreId: store, Keys: []string{"w/a", "w/b", "w/c"}}
			} else {
				req = mode.req(store)
			}
			for k, g := range state {
				req.Known = append(req.Known, &kvv1.KeyGeneration{Key: k, Generation: g})
			}
			req.Known = append(req.Known, &kvv1.KeyGeneration{Key: "elsewhere", Generation: 1}) // not watched: ignored
			ws = startWatch(t, ctx, client, req)
			checkChanges(t, "resumed", ws.next(t), true,
				change{updated, "w/a", genA2, "m"}, change{deleted, "w/b", 0, ""}, change{created, "w/c", genC, ""})
			if genA2 == genA {
				t.Errorf("the update kept generation %d", genA)
			}
			ws.cancel()

			// Known as it is now: an empty initial message.
			req.Known = []*kvv1.KeyGeneration{{Key: "w/a", Generation: genA2}, {Key: "w/c", Generation: genC}}
			ws = startWatch(t, ctx, client, req)
			checkChanges(t, "resumed up to date", ws.next(t), true)
			ws.cancel()

			// Neither known nor the initial state: everything present is new.
			req.Known = nil
			ws = startWatch(t, ctx, client, req)
			checkChanges(t, "no known", ws.next(t), true, change{created, "w/a", genA2, "m"}, change{created, "w/c", genC, ""})
			ws.cancel()
		})
	}
}

// requestCounter counts the local store's requests by method and key.
type requestCounter struct {
	mu sync.Mutex
	n  map[string]int64
}

func (rc *requestCounter) onRequest(r *http.Request) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if rc.n == nil {
		rc.n = make(map[string]int64)
	}
	name := r.Method // "GET" or "HEAD" and the key, or "LIST"
	if i := strings.LastIndex(r.URL.Path, "/keys/"); i >= 0 {
		name += " " + r.URL.Path[i+len("/keys/"):]
	} else if strings.HasSuffix(r.URL.Path, "/keys") {
		name = "LIST"
	}
	rc.n[name]++
}

func (rc *requestCounter) get(name string) int64 {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.n[name]
}

// TestWatchItemsSharedPoller runs watchers whose keys overlap, and two
// watchers of one prefix: a key two watchers name is polled as often as a
// key one watcher names, and a prefix two watchers watch is listed as
// often as a key one watcher names is polled (one HEAD or listing per
// round, whoever asked), at the shortest interval its watchers asked for.
// When the last watcher leaves, polling stops.
func TestWatchItemsSharedPoller(t *testing.T) {
	t.Parallel()
	var rc requestCounter
	st := startWatchStack(t, kvtest.Options{Store: localstore.Config{OnRequest: rc.onRequest}})
	client := st.NewClient(kvtest.H2CClient())
	ctx := t.Context()
	const store = "shared"
	for _, k := range []string{"x", "z", "p/1", "p/2"} {
		put(t, ctx, st.Client, store, k, "v", "")
	}
	var watches []*watchStream
	for _, req := range []*kvv1.WatchItemsRequest{
		{StoreId: store, Keys: []string{"x", "z"}},
		{StoreId: store, Keys: []string{"x"}},
		{StoreId: store, Prefix: "p/"},
		{StoreId: store, Prefix: "p/", Interval: durationpb.New(time.Hour)},
	} {
		ws := startWatch(t, ctx, client, req)
		if msg := ws.next(t); !msg.GetInitial() {
			t.Fatalf("first message %v is not the initial one", msg)
		}
		watches = append(watches, ws)
	}

	x0, z0, l0, p0 := rc.get("HEAD x"), rc.get("HEAD z"), rc.get("LIST"), rc.get("HEAD p/1")
	waitFor(t, "ten polls of z", watchWait, func() bool { return rc.get("HEAD z")-z0 >= 10 })
	x, z, l, p := rc.get("HEAD x")-x0, rc.get("HEAD z")-z0, rc.get("LIST")-l0, rc.get("HEAD p/1")-p0
	t.Logf("over %d polls of z: %d of x, %d listings of p/, %d HEADs of p/1", z, x, l, p)
	// Two rounds of slack: the counts are read one after another.
	if x > z+2 {
		t.Errorf("x, named by two watchers, was polled %d times while z, named by one, was polled %d: the watchers do not share", x, z)
	}
	if l > z+2 || p > z+2 {
		t.Errorf("p/ was listed %d times (p/1 polled %d) while z was polled %d: the prefix watchers do not share", l, p, z)
	}
	// One prefix watcher asked for an hour, the other for the floor: the
	// shared poller runs at the shorter interval, as z's does.
	if l < z/2 {
		t.Errorf("p/ was listed %d times while z was polled %d: the prefix poller does not run at its shortest interval", l, z)
	}

	for _, ws := range watches {
		ws.cancel()
		_ = ws.ended(t)
	}
	settle(t, st.Requests, 10*testWatchFloor, watchWait)
}

// TestWatchItemsIntervalFloor asks for polls far more often than the
// floor, and for polls less often than it: a key is never polled more
// often than the larger of the two. The bound is a count against the
// time that passed, which a slow machine only makes easier to meet.
func TestWatchItemsIntervalFloor(t *testing.T) {
	t.Parallel()
	const floor = 100 * time.Millisecond
	var rc requestCounter
	st := startWatchStack(t, kvtest.Options{Store: localstore.Config{OnRequest: rc.onRequest}, Watch: service.WatchConfig{MinInterval: floor}})
	client := st.NewClient(kvtest.H2CClient())
	ctx := t.Context()
	const store = "floor"
	put(t, ctx, st.Client, store, "fast", "v", "")
	put(t, ctx, st.Client, store, "slow", "v", "")
	for _, tc := range []struct {
		key      string
		interval *durationpb.Duration
		want     time.Duration
	}{
		{"fast", durationpb.New(time.Millisecond), floor},
		{"slow", durationpb.New(3 * floor), 3 * floor},
	} {
		t.Run(tc.key, func(t *testing.T) {
			t.Parallel()
			n0, start := rc.get("HEAD "+tc.key), time.Now()
			ws := startWatch(t, ctx, client, &kvv1.WatchItemsRequest{StoreId: store, Keys: []string{tc.key}, Interval: tc.interval})
			ws.next(t)
			waitFor(t, "five polls", watchWait, func() bool { return rc.get("HEAD "+tc.key)-n0 >= 5 })
			n, elapsed := rc.get("HEAD "+tc.key)-n0, time.Since(start)
			if most := int64(elapsed/tc.want) + 2; n > most {
				t.Errorf("%s was polled %d times in %v; at an interval of %v that is at most %d", tc.key, n, elapsed, tc.want, most)
			}
			ws.cancel()
		})
	}
}

// TestWatchItemsShutdown shuts kvgate down under open watches: each ends
// without an error, as the proto promises, whether it waited for a change
// or was still waiting for its initial state.
func TestWatchItemsShutdown(t *testing.T) {
	t.Parallel()
	st := startWatchStack(t, kvtest.Options{})
	ctx := t.Context()
	put(t, ctx, st.Client, "down", "k", "v", "")
	var watches []*watchStream
	for _, p := range []struct {
		name string
		hc   func() *http.Client
		opts []connecthttp.Option
	}{{"connect/h2c", kvtest.H2CClient, nil}, {"grpc/h2c", kvtest.H2CClient, connectGRPC()}, {"connect/http1", kvtest.HTTP1Client, nil}} {
		client := st.NewClient(p.hc(), p.opts...)
		ws := startWatch(t, ctx, client, &kvv1.WatchItemsRequest{StoreId: "down", Keys: []string{"k"}})
		ws.next(t)
		watches = append(watches, ws)
		watches = append(watches, startWatch(t, ctx, client, &kvv1.WatchItemsRequest{StoreId: "down", Prefix: ""}))
	}
	if err := st.Shutdown(); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	for i, ws := range watches {
		if err := ws.ended(t); err != nil {
			t.Errorf("watch %d ended with %v; want a clean end", i, err)
		}
	}
}

// TestWatchItemsFailures checks the watches that end with an error: a
// prefix over more keys than kvgate watches, and a prefix of a store that
// does not exist.
func TestWatchItemsFailures(t *testing.T) {
	t.Parallel()
	st := startWatchStack(t, kvtest.Options{Watch: service.WatchConfig{MaxKeys: 3}})
	client := st.NewClient(kvtest.H2CClient(), connectGRPC()...)
	ctx := t.Context()
	for _, k := range []string{"m/1", "m/2", "m/3", "n/1"} {
		put(t, ctx, st.Client, "many", k, "v", "")
	}
	for _, tc := range []struct {
		name   string
		req    *kvv1.WatchItemsRequest
		code   connect.Code
		reason string
	}{
		{"too many keys", &kvv1.WatchItemsRequest{StoreId: "many"}, connect.CodeFailedPrecondition, "WATCH_TOO_MANY_KEYS"},
		{"no such store", &kvv1.WatchItemsRequest{StoreId: "nosuchstore", Prefix: "a"}, connect.CodeNotFound, "NOT_FOUND"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := startWatch(t, ctx, client, tc.req).ended(t)
			cerr := asConnectError(t, tc.name, err, tc.code)
			if info, ok := findDetail[*errdetails.ErrorInfo](detailsOf(cerr)); !ok || info.GetReason() != tc.reason {
				t.Errorf("%s: ErrorInfo %v; want reason %s", tc.name, info, tc.reason)
			}
		})
	}
	// Three keys are within the bound.
	ws := startWatch(t, ctx, client, &kvv1.WatchItemsRequest{StoreId: "many", Prefix: "m/", SendInitialState: true})
	if n := len(ws.next(t).GetChanges()); n != 3 {
		t.Errorf("initial state of m/ has %d keys; want 3", n)
	}
}

// watchCorpusCases are the invalid WatchItems requests of the bad-input
// corpus: each fails before any message, and nothing goes upstream.
func watchCorpusCases() []corpusCase {
	watch := func(req *kvv1.WatchItemsRequest) func(context.Context, kvv1connect.KVStoreServiceClient) error {
		return func(ctx context.Context, c kvv1connect.KVStoreServiceClient) error {
			stream, err := c.WatchItems(ctx, req)
			if err != nil {
				return err
			}
			defer stream.Close()
			msg, err := stream.Receive()
			if err == nil || errors.Is(err, io.EOF) {
				return fmt.Errorf("WatchItems sent %v and ended with %v; want an error before any message", msg, err)
			}
			return err
		}
	}
	tooMany := make([]string, service.MaxWatchKeys+1)
	for i := range tooMany {
		tooMany[i] = fmt.Sprintf("k%d", i)
	}
	cases := []struct {
		category, name string
		req            *kvv1.WatchItemsRequest
		fields         []string
		binary         bool
	}{
		{"store_id", "empty", &kvv1.WatchItemsRequest{Keys: []string{"k"}}, []string{"store_id"}, false},
		{"conflict", "keys and prefix", &kvv1.WatchItemsRequest{StoreId: corpusStore, Keys: []string{"k"}, Prefix: "p"}, []string{"prefix"}, false},
		{"keys", "1001 keys", &kvv1.WatchItemsRequest{StoreId: corpusStore, Keys: tooMany}, []string{"keys"}, false},
		{"keys", "empty key", &kvv1.WatchItemsRequest{StoreId: corpusStore, Keys: []string{"k", ""}}, []string{"keys[1]"}, false},
		{"keys", "forbidden character", &kvv1.WatchItemsRequest{StoreId: corpusStore, Keys: []string{"a|b"}}, []string{"keys[0]"}, false},
		{"keys", "too long", &kvv1.WatchItemsRequest{StoreId: corpusStore, Keys: []string{"k", "k", strings.Repeat("k", 1025)}}, []string{"keys[2]"}, false},
		{"prefix", "too long", &kvv1.WatchItemsRequest{StoreId: corpusStore, Prefix: strings.Repeat("p", 1025)}, []string{"prefix"}, false},
		{"interval", "negative", &kvv1.WatchItemsRequest{StoreId: corpusStore, Keys: []string{"k"}, Interval: durationpb.New(-time.Second)}, []string{"interval"}, false},
		{"interval", "invalid", &kvv1.WatchItemsRequest{StoreId: corpusStore, Keys: []string{"k"}, Interval: &durationpb.Duration{Seconds: 1, Nanos: -1}}, []string{"interval"}, true},
		{"known", "empty key", &kvv1.WatchItemsRequest{StoreId: corpusStore, Prefix: "p", Known: []*kvv1.KeyGeneration{{Key: "p1", Generation: 1}, {Generation: 2}}}, []string{"known[1].key"}, false},
		{"known", "forbidden key", &kvv1.WatchItemsRequest{StoreId: corpusStore, Keys: []string{"k"}, Known: []*kvv1.KeyGeneration{{Key: "k#1"}}}, []string{"known[0].key"}, false},
		{"known", "repeated key", &kvv1.WatchItemsRequest{StoreId: corpusStore, Keys: []string{"k"}, Known: []*kvv1.KeyGeneration{{Key: "k", Generation: 1}, {Key: "k", Generation: 2}}}, []string{"known[1].key"}, false},
		{"multiple", "every field", &kvv1.WatchItemsRequest{StoreId: "a b", Keys: []string{""}, Prefix: "p", Interval: durationpb.New(-time.Minute), Known: []*kvv1.KeyGeneration{{Key: "."}}},
			[]string{"store_id", "prefix", "keys[0]", "interval", "known[0].key"}, false},
	}
	var out []corpusCase
	for _, c := range cases {
		out = append(out, corpusCase{rpc: "WatchItems", category: c.category, name: c.name, binaryOnly: c.binary, call: watch(c.req), fields: c.fields})
	}
	return out
}

// TestWatchItemsLargeKnown resumes a prefix watch with a known state
// larger than the 1 MiB most requests are held to: it is accepted, and
// each known key the store no longer holds is reported DELETED.
func TestWatchItemsLargeKnown(t *testing.T) {
	t.Parallel()
	st := startWatchStack(t, kvtest.Options{})
	client := st.NewClient(kvtest.H2CClient(), connectGRPC()...)
	ctx := t.Context()
	put(t, ctx, st.Client, "large", "big/kept", "v", "")
	req := &kvv1.WatchItemsRequest{StoreId: "large", Prefix: "big/"}
	const n = 1500
	for i := range n {
		req.Known = append(req.Known, &kvv1.KeyGeneration{Key: fmt.Sprintf("big/%04d/%s", i, strings.Repeat("k", 900)), Generation: 1})
	}
	msg := startWatch(t, ctx, client, req).next(t)
	got := changesOf(msg)
	if len(got) != n+1 || got[n].typ != created || got[n].key != "big/kept" {
		t.Fatalf("initial message has %d changes, the last %v; want %d DELETED and big/kept CREATED", len(got), got[len(got)-1], n)
	}
	for _, c := range got[:n] {
		if c.typ != deleted {
			t.Fatalf("change %v; want every known key DELETED", c)
		}
	}
}

// TestWatchItemsTokenRefused ends watches of both modes with the mapped
// code when the upstream refuses kvgate's token: polling again would not
// help.
func TestWatchItemsTokenRefused(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		status int
		code   connect.Code
	}{{http.StatusUnauthorized, connect.CodeUnauthenticated}, {http.StatusForbidden, connect.CodePermissionDenied}} {
		st := startWatchStack(t, kvtest.Options{Upstream: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(tc.status)
		})})
		client := st.NewClient(kvtest.H2CClient())
		for _, mode := range watchModes {
			err := startWatch(t, t.Context(), client, mode.req("refused")).ended(t)
			asConnectError(t, fmt.Sprintf("%s watch, upstream %d", mode.name, tc.status), err, tc.code)
		}
	}
}

// TestWatchItemsRidesOutFailures makes every listing and HEAD fail with
// 503 for a while, retries off: the watches go on, report nothing while
// the polls fail (no key looks deleted because its HEAD failed), and
// report the change made meanwhile once the polls succeed again.
func TestWatchItemsRidesOutFailures(t *testing.T) {
	t.Parallel()
	for _, mode := range watchModes {
		t.Run(mode.name, func(t *testing.T) {
			t.Parallel()
			st := startWatchStack(t, kvtest.Options{Retry: upstream.RetryPolicy{MaxAttempts: 1}})
			client := st.NewClient(kvtest.H2CClient())
			ctx := t.Context()
			const store = "flaky"
			genA := put(t, ctx, st.Client, store, "w/a", "a1", "")
			genB := put(t, ctx, st.Client, store, "w/b", "b1", "")
			req := mode.req(store)
			req.SendInitialState = true
			ws := startWatch(t, ctx, client, req)
			checkChanges(t, "initial", ws.next(t), true, change{present, "w/a", genA, ""}, change{present, "w/b", genB, ""})

			failing, err := localstore.ParseFaults("503=1,kinds=list+head")
			if err != nil {
				t.Fatal(err)
			}
			polls := func() int64 { return st.Store.Count(localstore.RequestHead) + st.Store.Count(localstore.RequestList) }
			st.Store.SetFaults(failing)
			from := polls()
			waitFor(t, "failed polls", watchWait, func() bool { return polls() >= from+10 })
			if err := st.Client.PutItem(ctx, store, "w/a", []byte("a2"), upstream.PutOptions{Metadata: "during"}); err != nil {
				t.Fatal(err)
			}
			it, err := st.Client.GetItem(ctx, store, "w/a") // GETs are not failed
			if err != nil {
				t.Fatal(err)
			}
			from = polls()
			waitFor(t, "failed polls", watchWait, func() bool { return polls() >= from+10 })
			select {
			case msg := <-ws.msgs:
				t.Fatalf("while every poll failed the watch sent %v", changesOf(msg))
			default:
			}
			st.Store.SetFaults(localstore.Faults{})
			checkChanges(t, "after the failures", ws.next(t), false, change{updated, "w/a", it.Generation, "during"})
		})
	}
}
