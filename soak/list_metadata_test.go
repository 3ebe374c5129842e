package soak

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connecthttp"
	"connectrpc.com/connect/v2/connectproto"

	kvv1 "github.com/kvgate/kvgate/gen/go/fastly/kv/v1"
	"github.com/kvgate/kvgate/gen/go/fastly/kv/v1/kvv1connect"
	"github.com/kvgate/kvgate/internal/kvtest"
	"github.com/kvgate/kvgate/upstream"
	"github.com/kvgate/kvgate/upstream/localstore"
)

var (
	flagListMetaKeys   = flag.Int("soak.listmeta.keys", 1_000, "keys the include_metadata phase lists")
	flagListMetaRounds = flag.Int("soak.listmeta.rounds", 4, "complete listings (StreamKeys and ListKeys, alternately) of the include_metadata phase")
)

const lmStore = "soak-listmeta"

// The phase's keys: every fifth one churns (deleted and written again while
// the listings run), the others stay put.
func lmKey(i int) string       { return fmt.Sprintf("lm-%06d", i) }
func lmChurns(i int) bool      { return i%5 == 2 }
func lmMeta(key string) string { return "md " + key }
func lmSize(i int) int         { return 1 + i%50 }

// TestSoakListMetadata is the include_metadata phase of the fault soak:
// complete listings with include_metadata, through StreamKeys (resumed
// from StreamKeysResume when a stream fails) and ListKeys (a failed page
// asked again), while the store injects -soak.faults and a writer deletes
// and rewrites a fifth of the keys. Every listing must hold each stable key
// once, in order, with its item; no key may be reported while it surely
// did not exist (its delete acknowledged before the call began and not
// rewritten until after the answer came); and no item may be wrong. HEADs
// are reads, so kvgate retries them: the figures show how many the faults
// cost.
func TestSoakListMetadata(t *testing.T) {
	n, rounds := *flagListMetaKeys, *flagListMetaRounds
	faults, logs := beginPhase(t)
	st := startListMetaStack(t, logs)
	ctx := t.Context()
	var body []byte
	for i := range n {
		body = upstream.AppendBatchLine(body, upstream.BatchLine{Key: lmKey(i), Value: make([]byte, lmSize(i)), Metadata: lmMeta(lmKey(i))})
	}
	if res, err := st.Client.PutBatch(ctx, lmStore, body); err != nil || len(res.LineErrors) > 0 {
		t.Fatalf("filling the store: %v %v", err, res)
	}
	hc := kvtest.H2CClient()
	client := st.NewClient(hc, connecthttp.WithGRPC())
	p := &problems{t: t}
	ch := newChurner(n, st.Client)
	ph := &lmPhase{n: n, client: client, churn: ch, p: p, rng: rand.New(rand.NewPCG(20261130, 1))}

	headsBefore, listsBefore := st.Store.Count(localstore.RequestHead), st.Store.Count(localstore.RequestList)
	st.Store.SetFaults(faults)
	churnCtx, stopChurn := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { ch.run(churnCtx) })
	start := time.Now()
	for r := range rounds {
		if r%2 == 0 {
			ph.streamRound(ctx)
		} else {
			ph.listRound(ctx)
		}
	}
	took := time.Since(start)
	stopChurn()
	wg.Wait()
	st.Store.SetFaults(localstore.Faults{})

	heads, lists := st.Store.Count(localstore.RequestHead)-headsBefore, st.Store.Count(localstore.RequestList)-listsBefore
	injected := st.Store.InjectedFaults()
	t.Logf("include_metadata: %d listings of %d keys in %v; %d keys reported (%d churning), %d HEAD and %d list requests upstream (%.3f HEADs per key reported)",
		rounds, n, took.Round(time.Millisecond), ph.reported, ph.churnReported, heads, lists, float64(heads)/float64(max(ph.reported, 1)))
	t.Logf("include_metadata: streams resumed %d times, ListKeys pages asked again %d times; outcomes %s", ph.resumes, ph.retries, ph.outcomes.String())
	t.Logf("churn: %d deletes and %d rewrites acknowledged, %d calls failed", ch.deletes, ch.puts, ch.failed)
	t.Logf("injected faults: 429=%d 503=%d 500=%d dropped=%d", injected.RateLimited, injected.Unavailable, injected.ServerError,
		injected.DroppedBeforeHandling+injected.DroppedBeforeResponse+injected.DroppedMidBody)
	checkLogs(t, logs)
	t.Logf("problems: %s", p.summary())
	if err := st.Shutdown(); err != nil {
		t.Errorf("kvgate shutdown: %v", err)
	}
	hc.CloseIdleConnections()
}

// startListMetaStack starts kvgate and the local store as TestSoak does,
// with 16 HEADs in flight per listing, and retries that wait out the
// store's Retry-After of a second, as kvgate's default -retry-max of 5s
// does: Fastly does not rate-limit reads, but should a HEAD meet a 429, a
// listing of a thousand HEADs must not fail for it.
func startListMetaStack(t *testing.T, logs *logCounter) *kvtest.Stack {
	t.Helper()
	logger := slog.New(logs)
	return kvtest.Start(t, kvtest.Options{
		Retry:                   upstream.RetryPolicy{MaxAttempts: 8, BaseDelay: time.Millisecond, MaxDelay: time.Second},
		ListMetadataConcurrency: 16,
		Store:                   localstore.Config{Logger: logger},
		Logger:                  logger,
	})
}

// churner deletes and rewrites the churning keys, and remembers when each
// surely did not exist.
type churner struct {
	kv   *upstream.Client
	keys []int // the churning keys' indexes

	mu sync.Mutex
	// absent[i] holds key i's spans of sure absence: from an acknowledged
	// delete to the start of the next write; an open span ends at zero.
	absent                map[int][]span
	deletes, puts, failed int
}

type span struct{ from, to time.Time }

func newChurner(n int, kv *upstream.Client) *churner {
	c := &churner{kv: kv, absent: make(map[int][]span)}
	for i := range n {
		if lmChurns(i) {
			c.keys = append(c.keys, i)
		}
	}
	return c
}

// run goes through the churning keys in a random order until ctx ends:
// deleting one that may exist, writing one that surely does not. A failed
// call leaves the key's state unknown, so no span of absence starts.
func (c *churner) run(ctx context.Context) {
	rng := rand.New(rand.NewPCG(7, 11))
	present := make(map[int]bool, len(c.keys))
	for _, i := range c.keys {
		present[i] = true
	}
	for ctx.Err() == nil {
		i := c.keys[rng.IntN(len(c.keys))]
		key := lmKey(i)
		if present[i] {
			err := c.kv.DeleteItem(ctx, lmStore, key, upstream.DeleteOptions{Force: true})
			c.mu.Lock()
			if err == nil {
				c.absent[i] = append(c.absent[i], span{from: time.Now()})
				present[i] = false
				c.deletes++
			} else {
				c.failed++
			}
			c.mu.Unlock()
			if err != nil {
				pause(ctx, 20*time.Millisecond) // a spent write budget refuses at once
			}
			continue
		}
		c.mu.Lock()
		spans := c.absent[i]
		spans[len(spans)-1].to = time.Now()
		c.mu.Unlock()
		err := c.kv.PutItem(ctx, lmStore, key, make([]byte, lmSize(i)), upstream.PutOptions{Metadata: lmMeta(key)})
		present[i] = true // or perhaps: a delete comes next either way
		c.mu.Lock()
		if err == nil {
			c.puts++
		} else {
			c.failed++
		}
		c.mu.Unlock()
		pause(ctx, time.Millisecond)
	}
}

func pause(ctx context.Context, d time.Duration) {
	select {
	case <-time.After(d):
	case <-ctx.Done():
	}
}

// surelyAbsent reports whether key i surely did not exist during all of
// [from, to].
func (c *churner) surelyAbsent(i int, from, to time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range c.absent[i] {
		if !s.from.After(from) && (s.to.IsZero() || s.to.After(to)) {
			return true
		}
	}
	return false
}

// lmPhase runs the listings and checks what they report.
type lmPhase struct {
	n      int
	client kvv1connect.KVStoreServiceClient
	churn  *churner
	p      *problems
	rng    *rand.Rand

	reported, churnReported int
	resumes, retries        int
	outcomes                tally
}

// pageSizes are the page sizes the listings pick from.
var pageSizes = []uint32{7, 100, 333, 1000}

// check checks one message or page, received between from and to, that
// follows last (the round's previous key), and returns its last key.
func (ph *lmPhase) check(what string, keys []string, items []*kvv1.Item, from, to time.Time, last string, seen []bool) string {
	if len(items) != len(keys) {
		ph.p.add("items not parallel", "%s: %d items for %d keys", what, len(items), len(keys))
	}
	for j, key := range keys {
		var i int
		if _, err := fmt.Sscanf(key, "lm-%06d", &i); err != nil || i < 0 || i >= ph.n || lmKey(i) != key {
			ph.p.add("stray key", "%s reports %q, which was never written", what, key)
			continue
		}
		if key <= last {
			ph.p.add("order", "%s: %q after %q", what, key, last)
		}
		last = key
		seen[i] = true
		ph.reported++
		if lmChurns(i) {
			ph.churnReported++
			if ph.churn.surelyAbsent(i, from, to) {
				ph.p.add("deleted key reported", "%s reports %s, deleted before the call and not written again until after it", what, key)
			}
		}
		if j < len(items) {
			it := items[j]
			if it.GetKey() != key || it.GetMetadata() != lmMeta(key) || it.GetSize() != uint64(lmSize(i)) || it.GetGeneration() == 0 || len(it.GetValue()) != 0 {
				ph.p.add("wrong item", "%s: %s has item key %q metadata %q size %d generation %d, %d value bytes",
					what, key, it.GetKey(), it.GetMetadata(), it.GetSize(), it.GetGeneration(), len(it.GetValue()))
			}
		}
	}
	return last
}

// missing reports the stable keys a complete listing lacked.
func (ph *lmPhase) missing(what string, seen []bool) {
	for i, ok := range seen {
		if !ok && !lmChurns(i) {
			ph.p.add("stable key missing", "%s lacks %s", what, lmKey(i))
		}
	}
}

// streamRound lists the store with StreamKeys and include_metadata to its
// end, resuming from StreamKeysResume after each failure.
func (ph *lmPhase) streamRound(ctx context.Context) {
	pageSize := pageSizes[ph.rng.IntN(len(pageSizes))]
	what := fmt.Sprintf("StreamKeys(page %d)", pageSize)
	seen := make([]bool, ph.n)
	last, cursor := "", ""
	for attempt := 0; ; attempt++ {
		if attempt > 100 {
			ph.p.add("endless", "%s failed %d times in a row", what, attempt)
			return
		}
		from := time.Now()
		sctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		stream, err := ph.client.StreamKeys(sctx, &kvv1.StreamKeysRequest{StoreId: lmStore, PageSize: pageSize, Cursor: cursor, IncludeMetadata: true})
		if err == nil {
			for {
				var msg *kvv1.StreamKeysResponse
				if msg, err = stream.Receive(); err != nil {
					break
				}
				last = ph.check(what, msg.GetKeys(), msg.GetItems(), from, time.Now(), last, seen)
				cursor = msg.GetCursor()
			}
			stream.Close()
		}
		cancel()
		if errors.Is(err, io.EOF) {
			ph.outcomes.add("StreamKeys ok", 1)
			if cursor != "" {
				ph.p.add("no end", "%s ended with cursor %q", what, cursor)
			}
			ph.missing(what, seen)
			return
		}
		r := classify(err)
		ph.outcomes.add("StreamKeys "+r.label(), 1)
		resume, ok := streamResume(err)
		if r.kind != outDefinite || !ok {
			ph.p.add("stream failure", "%s failed without a definite code and StreamKeysResume: %v", what, err)
			return
		}
		if resume.GetCursor() != cursor {
			ph.p.add("resume cursor", "%s: StreamKeysResume.cursor %q, the last message's %q", what, resume.GetCursor(), cursor)
		}
		ph.resumes++
		pause(ctx, min(r.retry, maxBackoff)) // as RetryInfo asks
	}
}

// streamResume finds err's StreamKeysResume.
func streamResume(err error) (*kvv1.StreamKeysResume, bool) {
	cerr, ok := errors.AsType[*connect.Error](err)
	if !ok {
		return nil, false
	}
	for _, d := range cerr.Details() {
		if m, err := connectproto.UnmarshalErrorDetail(d); err == nil {
			if r, ok := m.(*kvv1.StreamKeysResume); ok {
				return r, true
			}
		}
	}
	return nil, false
}

// listRound lists the store with ListKeys and include_metadata to its end,
// asking again for a page that failed.
func (ph *lmPhase) listRound(ctx context.Context) {
	limit := pageSizes[ph.rng.IntN(len(pageSizes))]
	what := fmt.Sprintf("ListKeys(limit %d)", limit)
	seen := make([]bool, ph.n)
	last, cursor, failures := "", "", 0
	for pages := 0; ; pages++ {
		if failures > 100 || pages > 2*ph.n {
			ph.p.add("endless", "%s: %d pages, %d failures", what, pages, failures)
			return
		}
		from := time.Now()
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		resp, err := ph.client.ListKeys(cctx, &kvv1.ListKeysRequest{StoreId: lmStore, Limit: limit, Cursor: cursor, IncludeMetadata: true})
		cancel()
		r := classify(err)
		ph.outcomes.add("ListKeys "+r.label(), 1)
		if err != nil {
			if r.kind != outDefinite {
				ph.p.add("list failure", "%s failed without a definite code: %v", what, err)
				return
			}
			failures++
			ph.retries++
			pause(ctx, min(r.retry, maxBackoff)) // as RetryInfo asks
			continue
		}
		last = ph.check(what, resp.GetKeys(), resp.GetItems(), from, time.Now(), last, seen)
		if cursor = resp.GetNextCursor(); cursor == "" {
			ph.missing(what, seen)
			return
		}
	}
}
