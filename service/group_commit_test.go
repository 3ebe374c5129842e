package service_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect/v2"

	kvv1 "github.com/kvgate/kvgate/gen/go/fastly/kv/v1"
	"github.com/kvgate/kvgate/gen/go/fastly/kv/v1/kvv1connect"
	"github.com/kvgate/kvgate/internal/kvtest"
	"github.com/kvgate/kvgate/service"
	"github.com/kvgate/kvgate/upstream"
	"github.com/kvgate/kvgate/upstream/localstore"
)

// gatedStore is the local store behind a gate: the single PUT of the key
// "gate" waits until the test opens it, so that the writes after it queue
// in kvgate's group commit for as long as the test needs. It records the
// body of every batch PUT, and can refuse the batch PUTs with a status.
type gatedStore struct {
	store   *localstore.Store
	next    http.Handler
	arrived chan struct{}
	open    chan struct{}
	refuse  int // status answering batch PUTs, 0 for none
	once    sync.Once

	mu      sync.Mutex
	batches [][]byte
	tokens  []string // the Fastly-Key of each batch PUT
}

func newGatedStore(t *testing.T, cfg localstore.Config, refuse int) *gatedStore {
	t.Helper()
	store, err := localstore.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	return &gatedStore{store: store, next: store.Handler(), arrived: make(chan struct{}, 1), open: make(chan struct{}), refuse: refuse}
}

func (g *gatedStore) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.Method == http.MethodPut && strings.HasSuffix(r.URL.Path, "/keys/gate"):
		g.arrived <- struct{}{}
		<-g.open
	case r.Method == http.MethodPut && strings.HasSuffix(r.URL.Path, "/batch"):
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return
		}
		g.mu.Lock()
		g.batches = append(g.batches, body)
		g.tokens = append(g.tokens, r.Header.Get("Fastly-Key"))
		g.mu.Unlock()
		if g.refuse != 0 {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(g.refuse)
			_, _ = w.Write([]byte(`{"msg":"refused"}`))
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
	}
	g.next.ServeHTTP(w, r)
}

func (g *gatedStore) release() { g.once.Do(func() { close(g.open) }) }

// batchBodies returns the batch PUT bodies received so far, in order.
func (g *gatedStore) batchBodies() [][]byte {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([][]byte(nil), g.batches...)
}

// gcWrite is one PutItem of a group commit scenario, sent in turn while
// the gate holds the store busy.
type gcWrite struct {
	key, value, metadata string
	mode                 kvv1.PutMode
	ifGen                *uint64
	// leave cancels the call once its write is queued.
	leave bool
	// direct writes do not queue: they are done while the gate is shut.
	direct bool
	want   connect.Code
	// says is what a failure's message says, if anything.
	says string
}

// TestPutItemGroupCommit queues writes behind a single PUT the store holds
// back (the first write to an idle store goes out at once), then lets it
// go, and checks what each caller heard, what the store holds and which
// requests carried the writes: the queued writes coalesce into batch
// PUTs, two writes to one key keep their order, a line the store refuses
// fails only its own caller, a refused batch fails all of its callers, a
// caller that leaves before its batch is sent is never written, and
// writes with a put mode or a precondition go out on their own at once.
func TestPutItemGroupCommit(t *testing.T) {
	t.Parallel()
	gen := uint64(1)
	many := make([]gcWrite, 40)
	for i := range many {
		many[i] = gcWrite{key: fmt.Sprintf("many/%02d", i), value: fmt.Sprintf("value %d", i), metadata: fmt.Sprint(i)}
	}
	cases := []struct {
		name   string
		batch  service.BatchConfig
		store  localstore.Config
		refuse int
		writes []gcWrite
		// want is what the store holds after, key by key; absent are
		// keys it must not hold.
		want    map[string]storedItem
		absent  []string
		batches int64 // batch PUTs the store received
		puts    int64 // single PUTs, the gate's included
		// order lists, batch by batch, the keys and values carried.
		order [][]string
	}{
		{
			name: "queued writes coalesce", writes: many,
			want: func() map[string]storedItem {
				m := map[string]storedItem{}
				for i, w := range many {
					m[w.key] = storedItem{value: []byte(w.value), metadata: fmt.Sprint(i)}
				}
				return m
			}(),
			batches: 1, puts: 1,
		},
		{
			name:  "bounded by lines",
			batch: service.BatchConfig{MaxLines: 16, Concurrency: 1}, writes: many,
			batches: 3, puts: 1,
		},
		{
			name: "two writes to one key keep their order",
			writes: []gcWrite{
				{key: "k", value: "first"}, {key: "other", value: "o"}, {key: "k", value: "second"}, {key: "k", value: "third"}, {key: "x", value: "x"},
			},
			want:    map[string]storedItem{"k": {value: []byte("third")}, "other": {value: []byte("o")}, "x": {value: []byte("x")}},
			batches: 3, puts: 1,
			order: [][]string{{"k=first", "other=o", "x=x"}, {"k=second"}, {"k=third"}},
		},
		{
			name:  "a refused line fails only its caller",
			store: localstore.Config{MaxValueBytes: 1 << 10},
			writes: []gcWrite{
				{key: "a", value: "a"},
				{key: "big", value: strings.Repeat("v", 1500), want: connect.CodeInvalidArgument, says: "value"},
				{key: "c", value: "c", metadata: "m"},
			},
			want:   map[string]storedItem{"a": {value: []byte("a")}, "c": {value: []byte("c"), metadata: "m"}},
			absent: []string{"big"},
			// The batch, then its good lines again.
			batches: 2, puts: 1,
		},
		{
			name: "a refused batch fails every caller", refuse: http.StatusForbidden,
			writes: []gcWrite{
				{key: "a", value: "a", want: connect.CodePermissionDenied},
				{key: "b", value: "b", want: connect.CodePermissionDenied},
			},
			absent: []string{"a", "b"}, batches: 1, puts: 1,
		},
		{
			name: "an unavailable store fails every caller after retries", refuse: http.StatusServiceUnavailable,
			writes: []gcWrite{
				{key: "a", value: "a", want: connect.CodeUnavailable},
				{key: "b", value: "b", want: connect.CodeUnavailable},
			},
			absent: []string{"a", "b"}, batches: 3, puts: 1,
		},
		{
			name: "a caller that leaves before its batch is sent is not written",
			writes: []gcWrite{
				{key: "stays", value: "s"}, {key: "leaves", value: "l", leave: true, want: connect.CodeCanceled},
			},
			want: map[string]storedItem{"stays": {value: []byte("s")}}, absent: []string{"leaves"},
			batches: 1, puts: 1, order: [][]string{{"stays=s"}},
		},
		{
			name: "a batch whose callers all left is not sent",
			writes: []gcWrite{
				{key: "l1", value: "1", leave: true, want: connect.CodeCanceled},
				{key: "l2", value: "2", leave: true, want: connect.CodeCanceled},
			},
			absent: []string{"l1", "l2"}, batches: 0, puts: 1,
		},
		{
			name: "writes with a mode or a precondition go out on their own",
			writes: []gcWrite{
				{key: "queued", value: "q"},
				{key: "appended", value: "tail", mode: kvv1.PutMode_PUT_MODE_APPEND, direct: true},
				{key: "added", value: "new", mode: kvv1.PutMode_PUT_MODE_ADD, direct: true},
				{key: "cas", value: "v", ifGen: &gen, direct: true, want: connect.CodeAborted},
			},
			want:    map[string]storedItem{"queued": {value: []byte("q")}, "appended": {value: []byte("tail")}, "added": {value: []byte("new")}},
			absent:  []string{"cas"},
			batches: 1, puts: 4,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			gs := newGatedStore(t, tc.store, tc.refuse)
			st := kvtest.Start(t, kvtest.Options{
				Upstream: gs, MaxValueBytes: 1 << 20, Batch: tc.batch,
				Retry: upstream.RetryPolicy{MaxAttempts: 3, BaseDelay: time.Millisecond},
			})
			t.Cleanup(gs.release) // before kvtest's: never leave a request hanging
			client := st.NewClient(kvtest.H2CClient(), connectGRPC()...)
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			const store = "group"

			gateDone := make(chan error, 1)
			go func() { gateDone <- putValue(ctx, client, store, gcWrite{key: "gate", value: "g"}) }()
			<-gs.arrived

			errs := make([]chan error, len(tc.writes))
			queued := 0
			for i, w := range tc.writes {
				errs[i] = make(chan error, 1)
				wctx, leave := context.WithCancel(ctx)
				defer leave()
				go func() { errs[i] <- putValue(wctx, client, store, w) }()
				switch {
				case w.direct:
					checkCode(t, w, <-errs[i])
				default:
					queued++
					waitFor(t, "the write to queue", 30*time.Second, func() bool { return st.Gateway.QueuedWrites() == queued })
					if w.leave {
						leave()
						checkCode(t, w, <-errs[i])
						queued--
						waitFor(t, "the write to leave", 30*time.Second, func() bool { return st.Gateway.QueuedWrites() == queued })
					}
				}
			}
			gs.release()
			mustOK(t, "gate PutItem", <-gateDone)
			for i, w := range tc.writes {
				if !w.direct && !w.leave {
					checkCode(t, w, <-errs[i])
				}
			}
			if tc.want != nil || tc.absent != nil {
				checkStored(t, ctx, st.Client, store, tc.want, tc.absent)
			}
			if got := int64(len(gs.batchBodies())); got != tc.batches {
				t.Errorf("the store received %d batch PUTs; want %d", got, tc.batches)
			}
			if got := gs.store.Count(localstore.RequestPut); got != tc.puts {
				t.Errorf("the store received %d single PUTs; want %d", got, tc.puts)
			}
			if tc.order != nil {
				checkBatchOrder(t, gs.batchBodies(), tc.order)
			}
		})
	}
}

// putValue makes w's PutItem call.
func putValue(ctx context.Context, client kvv1connect.KVStoreServiceClient, store string, w gcWrite) error {
	_, err := client.PutItem(ctx, &kvv1.PutItemRequest{
		StoreId: store, Key: w.key, Value: []byte(w.value), Metadata: w.metadata, Mode: w.mode, IfGenerationMatch: w.ifGen,
	})
	return err
}

// checkCode checks the outcome of w's call.
func checkCode(t *testing.T, w gcWrite, err error) {
	t.Helper()
	if w.want == 0 {
		mustOK(t, "PutItem "+w.key, err)
		return
	}
	cerr := asConnectError(t, "PutItem "+w.key, err, w.want)
	if !strings.Contains(cerr.Message(), w.says) {
		t.Errorf("PutItem %s: message %q; want one that says %q", w.key, cerr.Message(), w.says)
	}
}

// checkBatchOrder checks the batch bodies the store received against
// want: each batch's lines, as key=value, in order.
func checkBatchOrder(t *testing.T, bodies [][]byte, want [][]string) {
	t.Helper()
	var got [][]string
	for _, body := range bodies {
		var lines []string
		for line := range bytes.Lines(bytes.TrimSpace(body)) {
			var it struct {
				Key   string `json:"key"`
				Value []byte `json:"value"`
			}
			if err := json.Unmarshal(line, &it); err != nil {
				t.Fatalf("batch line %q: %v", line, err)
			}
			lines = append(lines, it.Key+"="+string(it.Value))
		}
		got = append(got, lines)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("batches carried %v; want %v", got, want)
	}
}

// TestPutItemGroupCommitModes sends concurrent PutItems to an idle store
// and counts the requests that carry them: with group commit off, one PUT
// each; with a linger, the writes wait for each other and go out as one
// batch PUT (the batch goes once full, so the long linger is never
// waited out); a lone write with a short linger goes out as a batch of
// one once the linger has passed.
func TestPutItemGroupCommitModes(t *testing.T) {
	t.Parallel()
	const n = 24
	cases := []struct {
		name    string
		group   service.GroupCommitConfig
		writes  int
		batch   service.BatchConfig
		puts    int64
		batches int64
	}{
		{name: "off", group: service.GroupCommitConfig{Disabled: true}, writes: n, puts: n},
		{name: "long linger", group: service.GroupCommitConfig{Linger: time.Hour}, writes: n, batch: service.BatchConfig{MaxLines: n}, batches: 1},
		{name: "short linger", group: service.GroupCommitConfig{Linger: time.Millisecond}, writes: 1, batches: 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			st := kvtest.Start(t, kvtest.Options{GroupCommit: tc.group, Batch: tc.batch})
			client := st.NewClient(kvtest.H2CClient(), connectGRPC()...)
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			want := map[string]storedItem{}
			var wg sync.WaitGroup
			for i := range tc.writes {
				w := gcWrite{key: fmt.Sprintf("k/%02d", i), value: fmt.Sprint(i)}
				want[w.key] = storedItem{value: []byte(w.value)}
				wg.Go(func() { mustOK(t, "PutItem", putValue(ctx, client, "modes", w)) })
			}
			wg.Wait()
			checkStored(t, ctx, st.Client, "modes", want, nil)
			if got := st.Store.Count(localstore.RequestPut); got != tc.puts {
				t.Errorf("the store received %d single PUTs; want %d", got, tc.puts)
			}
			if got := st.Store.Count(localstore.RequestBatch); got != tc.batches {
				t.Errorf("the store received %d batch PUTs; want %d", got, tc.batches)
			}
		})
	}
}

// TestPutItemGroupCommitShutdown shuts kvgate down while writes wait in a
// batch that lingers: they are sent, not dropped, and their callers hear
// that they were written.
func TestPutItemGroupCommitShutdown(t *testing.T) {
	t.Parallel()
	st := kvtest.Start(t, kvtest.Options{GroupCommit: service.GroupCommitConfig{Linger: time.Hour}})
	client := st.NewClient(kvtest.H2CClient(), connectGRPC()...)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	const n = 5
	errs := make(chan error, n)
	want := map[string]storedItem{}
	for i := range n {
		w := gcWrite{key: fmt.Sprintf("s/%d", i), value: fmt.Sprint(i), metadata: "m"}
		want[w.key] = storedItem{value: []byte(w.value), metadata: "m"}
		go func() { errs <- putValue(ctx, client, "shutdown", w) }()
	}
	waitFor(t, "the writes to queue", 30*time.Second, func() bool { return st.Gateway.QueuedWrites() == n })
	if err := st.Shutdown(); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	for range n {
		mustOK(t, "PutItem", <-errs)
	}
	checkStored(t, ctx, st.Client, "shutdown", want, nil)
	if got := st.Store.Count(localstore.RequestBatch); got != 1 {
		t.Errorf("the store received %d batch PUTs; want 1", got)
	}
}

// TestPutItemGroupCommitMemoryBudget writes many values at once through a
// budget that holds only some of them, so that writes wait for budget
// before they queue: every write lands, and the budget is all returned.
func TestPutItemGroupCommitMemoryBudget(t *testing.T) {
	t.Parallel()
	st := startBudgetStack(t)
	client := st.NewClient(kvtest.H2CClient(), connectGRPC()...)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	const calls, size = 64, 96 << 10
	want := map[string]storedItem{}
	var wg sync.WaitGroup
	for i := range calls {
		key := fmt.Sprintf("budget/%02d", i)
		want[key] = storedItem{value: budgetValue(i, size)}
		wg.Go(func() {
			_, err := client.PutItem(ctx, &kvv1.PutItemRequest{StoreId: "budget", Key: key, Value: budgetValue(i, size)})
			mustOK(t, "PutItem", err)
		})
	}
	wg.Wait()
	checkStored(t, ctx, st.Client, "budget", want, nil)
	if st.Store.Count(localstore.RequestBatch) == 0 {
		t.Error("no write went out in a batch PUT")
	}
	checkBudgetReturned(t, st.MemoryBudget)
}

// TestPutItemGroupCommitBeside checks when a batch goes out beside a write
// in flight: once it is an eighth full, unless it holds a key in flight,
// which must wait for that write so that the later one wins.
func TestPutItemGroupCommitBeside(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		writes []gcWrite
		// beside is set when the batch must go while the gate is shut.
		beside bool
		want   map[string]storedItem
	}{
		{name: "an eighth full batch goes beside", beside: true,
			writes: []gcWrite{{key: "a", value: "1"}, {key: "b", value: "2"}},
			want:   map[string]storedItem{"a": {value: []byte("1")}, "b": {value: []byte("2")}, "gate": {value: []byte("g")}}},
		{name: "a batch holding the key in flight waits",
			writes: []gcWrite{{key: "gate", value: "later"}, {key: "b", value: "2"}},
			want:   map[string]storedItem{"gate": {value: []byte("later")}, "b": {value: []byte("2")}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			gs := newGatedStore(t, localstore.Config{}, 0)
			st := kvtest.Start(t, kvtest.Options{Upstream: gs, Batch: service.BatchConfig{MaxLines: 16}})
			t.Cleanup(gs.release)
			client := st.NewClient(kvtest.H2CClient(), connectGRPC()...)
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			const store = "beside"
			gateDone := make(chan error, 1)
			go func() { gateDone <- putValue(ctx, client, store, gcWrite{key: "gate", value: "g"}) }()
			<-gs.arrived
			errs := make(chan error, len(tc.writes))
			for i, w := range tc.writes {
				go func() { errs <- putValue(ctx, client, store, w) }()
				if !tc.beside || i < len(tc.writes)-1 {
					waitFor(t, "the write to queue", 30*time.Second, func() bool { return st.Gateway.QueuedWrites() == i+1 })
				}
			}
			if tc.beside {
				for range tc.writes {
					mustOK(t, "PutItem", <-errs) // while the gate is shut
				}
			}
			gs.release()
			mustOK(t, "gate PutItem", <-gateDone)
			if !tc.beside {
				for range tc.writes {
					mustOK(t, "PutItem", <-errs)
				}
			}
			checkStored(t, ctx, st.Client, store, tc.want, nil)
			if got := len(gs.batchBodies()); got != 1 {
				t.Errorf("the store received %d batch PUTs; want 1", got)
			}
		})
	}
}

// runGroupedPuts makes concurrent PutItems of distinct values to one store,
// so that most of them are committed together, and reads each back: the
// values, which kvgate may decode into buffers it reuses once a call has
// answered, reach the store intact whichever protocol carried them.
func runGroupedPuts(t *testing.T, client kvv1connect.KVStoreServiceClient, store string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	const n = 24
	values := make([][]byte, n)
	var wg sync.WaitGroup
	for i := range n {
		values[i] = bytes.Repeat([]byte{byte('a' + i)}, 512+i*300)
		wg.Go(func() {
			_, err := client.PutItem(ctx, &kvv1.PutItemRequest{StoreId: store, Key: fmt.Sprintf("g/%02d", i), Value: values[i], Metadata: fmt.Sprint(i)})
			mustOK(t, "grouped PutItem", err)
		})
	}
	wg.Wait()
	for i := range n {
		res, err := client.GetItem(ctx, &kvv1.GetItemRequest{StoreId: store, Key: fmt.Sprintf("g/%02d", i)})
		mustOK(t, "GetItem", err)
		if it := res.GetItem(); !bytes.Equal(it.GetValue(), values[i]) || it.GetMetadata() != fmt.Sprint(i) {
			t.Errorf("g/%02d holds %d bytes and metadata %q; want %d bytes of %q and %q", i, len(it.GetValue()), it.GetMetadata(), len(values[i]), rune('a'+i), fmt.Sprint(i))
		}
	}
}

// TestPutItemGroupCommitTokens checks that writes sent with different
// Fastly tokens (kvgate's pass-through mode) never share a batch PUT: a
// write with another token finds its store idle for that token and goes
// out at once, while the writes with the busy token queue.
func TestPutItemGroupCommitTokens(t *testing.T) {
	t.Parallel()
	gs := newGatedStore(t, localstore.Config{}, 0)
	srv := httptest.NewServer(gs)
	t.Cleanup(srv.Close)
	t.Cleanup(gs.release)
	kv, err := upstream.NewClient(upstream.ClientConfig{BaseURL: srv.URL, Token: "own"})
	if err != nil {
		t.Fatal(err)
	}
	svc := service.New(kv, service.Config{})
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	as := func(token string) context.Context { return upstream.WithToken(ctx, token) }
	put := func(ctx context.Context, key string) error {
		_, err := svc.PutItem(ctx, &kvv1.PutItemRequest{StoreId: "tokens", Key: key, Value: []byte(key)})
		return err
	}

	gateDone := make(chan error, 1)
	go func() { gateDone <- put(as("alice"), "gate") }()
	<-gs.arrived
	errs := make(chan error, 2)
	for i, key := range []string{"a1", "a2"} {
		go func() { errs <- put(as("alice"), key) }()
		waitFor(t, "alice's write to queue", 30*time.Second, func() bool { return svc.QueuedWrites() == i+1 })
	}
	mustOK(t, "bob's PutItem", put(as("bob"), "b1")) // while alice's gate is shut
	mustOK(t, "PutItem with kvgate's own token", put(ctx, "own1"))
	gs.release()
	mustOK(t, "gate PutItem", <-gateDone)
	for range 2 {
		mustOK(t, "alice's PutItem", <-errs)
	}
	gs.mu.Lock()
	tokens := slices.Clone(gs.tokens)
	gs.mu.Unlock()
	if !slices.Equal(tokens, []string{"alice"}) {
		t.Errorf("batch PUTs were sent with tokens %q; want one, with alice's", tokens)
	}
	checkBatchOrder(t, gs.batchBodies(), [][]string{{"a1=a1", "a2=a2"}})
}
