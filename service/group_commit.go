package service

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect/v2"
	"google.golang.org/protobuf/proto"

	kvv1 "github.com/kvgate/kvgate/gen/go/fastly/kv/v1"
	"github.com/kvgate/kvgate/internal/membudget"
	"github.com/kvgate/kvgate/upstream"
)

// GroupCommitConfig says how PutItem's plain overwrites are committed
// together; see committer.
type GroupCommitConfig struct {
	// Disabled sends every PutItem as its own single-item PUT.
	Disabled bool
	// Linger is how long a write that finds its store idle waits for
	// others to join it before their batch PUT is sent; zero sends it at
	// once, as a single-item PUT.
	Linger time.Duration
}

// committer carries out group commit: PutItem overwrites (no put mode, no
// if_generation_match, a batch line no larger than BatchConfig.MaxBytes)
// to one store, sent with one Fastly token, are committed together.
//
// A write that finds its store idle goes out at once, as the single-item
// PUT it would be without group commit: the same request, the same cost,
// the same errors. While a write to a store is in flight, the overwrites
// that arrive for that store are encoded into the next batch body (base64,
// so the handler's value buffer is free once it is queued) and wait; when
// the store's writes in flight return, the batch goes out as one batch
// PUT. An idle gateway thus adds no delay, and a busy one sends one
// request where it got hundreds. With a linger, a write that finds its
// store idle starts a batch and waits that long for others instead.
//
// Batches are bounded by BatchConfig.MaxLines and MaxBytes as batch
// writes are. While one batch is in flight the next one fills; once that
// one is an eighth full (of lines or bytes) it may go out beside the one
// in flight, up to BatchConfig.Concurrency, when it shares no key with a
// write in flight, so that a load heavier than one batch per round trip
// is not held back by the round trip.
//
// Order: a batch holds each key once. A write whose key is already queued
// goes into a batch after the one holding it, and a batch is not sent
// while a write to one of its keys is in flight, so two writes to one key
// are applied in the order they arrived, the later one winning; Fastly
// does not say how a batch with a key twice is applied. Retries resend a
// batch as a unit, so they keep that order too.
//
// Each caller is answered once the batch carrying its write is done: OK
// when Fastly accepted its line, its own line's error when Fastly refused
// that line, and the batch's error when the batch failed as a whole. A
// caller that goes away before its batch is sent is taken out of it and
// its write is never sent; once the batch is sent, the write may land
// whether or not its caller is still there, as a single PUT cut off in
// flight may. While kvgate shuts down nothing is taken out: the queued
// writes are sent, and their callers wait for the answer.
type committer struct {
	kv       Upstream
	bodies   *bodyPool
	inFlight *atomic.Int64 // the service's batchBytes
	draining *atomic.Bool  // the service's
	cfg      BatchConfig
	linger   time.Duration
	words    wording

	mu     sync.Mutex
	groups map[groupKey]*storeGroup
	// queued counts the writes waiting for their batch to be sent.
	queued int
}

// groupKey names the writes one batch PUT may carry: those to one store
// sent with one token.
type groupKey struct{ store, token string }

// storeGroup is the state of one store's group commit; it exists while
// the store has writes queued or in flight.
type storeGroup struct {
	key groupKey
	// inflight counts the writes in flight: batch PUTs and the
	// single-item PUT of a write that found the store idle.
	inflight int
	// busy counts the writes in flight by key.
	busy map[string]int
	// pending are the batches waiting, in the order they go out.
	pending []*groupBatch
}

// groupBatch is one batch PUT in the making.
type groupBatch struct {
	// body holds one NDJSON line per waiter; lineEnds[i] is where line i
	// ends.
	body     []byte
	lineEnds []int
	keys     map[string]bool
	waiters  []*groupWaiter
	// live counts the waiters not removed.
	live int
	// charge is the memory budget the lines hold until the batch is done.
	charge membudget.Charge
	// ctx is the context the batch is sent with: the first waiter's
	// values (its token, its request id), none of its cancellation.
	ctx context.Context
	// deadline is the latest of the waiters' deadlines; unbounded is set
	// once a waiter has none.
	deadline  time.Time
	unbounded bool
	// ready is false while the batch lingers.
	ready bool
	// sealed is set once a line that could have joined the batch did not
	// fit: it is as full as it gets.
	sealed bool
	// sent is set, under the committer's lock, once the batch is taken
	// out of pending to be sent: its waiters can no longer leave it.
	sent bool
	// done is closed once every waiter's err is set.
	done chan struct{}
}

// groupWaiter is one PutItem waiting for its batch.
type groupWaiter struct {
	// removed is set when the caller went away before the batch was sent.
	removed bool
	// err is the write's outcome, set before the batch's done closes.
	err error
}

func newCommitter(s *Service, cfg GroupCommitConfig) *committer {
	if cfg.Disabled {
		return nil
	}
	return &committer{
		kv: s.kv, bodies: s.bodies, inFlight: &s.batchBytes, draining: &s.draining,
		cfg: s.batch, linger: max(cfg.Linger, 0), words: s.words,
		groups: make(map[groupKey]*storeGroup),
	}
}

// groupable reports a PutItem that group commit may carry, and its line.
func (c *committer) groupable(req *kvv1.PutItemRequest) (upstream.BatchLine, int, bool) {
	if c == nil || req.GetMode() != kvv1.PutMode_PUT_MODE_UNSPECIFIED || req.IfGenerationMatch != nil {
		return upstream.BatchLine{}, 0, false
	}
	line := upstream.BatchLine{
		Key: req.GetKey(), Value: req.GetValue(), Metadata: req.GetMetadata(),
		BackgroundFetch: req.GetBackgroundFetch(),
	}
	if ttl := req.GetTimeToLive(); ttl != nil {
		line.TimeToLive = ttl.AsDuration()
	}
	size := upstream.BatchLineSize(line)
	return line, size, size <= c.cfg.MaxBytes
}

// put writes one validated overwrite, grouped with others to its store.
func (c *committer) put(ctx context.Context, req *kvv1.PutItemRequest, line upstream.BatchLine, size int) error {
	key := groupKey{req.GetStoreId(), upstream.TokenFrom(ctx)}
	c.mu.Lock()
	if g := c.groups[key]; g == nil && (c.linger == 0 || c.draining.Load()) {
		// The store is idle: the write goes out at once, as it would
		// without group commit, and later ones queue behind it.
		g = &storeGroup{key: key, busy: map[string]int{line.Key: 1}, inflight: 1}
		c.groups[key] = g
		c.mu.Unlock()
		err := c.kv.PutItem(ctx, req.GetStoreId(), req.GetKey(), req.GetValue(), putOptions(req, nil))
		c.mu.Lock()
		c.finished(g, []string{line.Key})
		c.mu.Unlock()
		if err != nil {
			return c.words.fromUpstream(err, itemSubject)
		}
		return nil
	}
	c.mu.Unlock()
	// The line is charged before it is queued, waiting for budget if need
	// be. A batch body grows by doubling, so a line may take twice its
	// size; the message's charge moves along, for the value the handler
	// holds until it answers.
	charge, err := membudget.AccountFrom(ctx).Take(ctx, int64(proto.Size(req))+2*int64(size))
	if err != nil {
		return budgetError(err)
	}
	c.mu.Lock()
	g := c.groups[key]
	if g == nil {
		g = &storeGroup{key: key, busy: make(map[string]int)}
		c.groups[key] = g
	}
	b, w := c.enqueue(ctx, g, line, size, charge)
	c.dispatch(g)
	c.mu.Unlock()
	return c.wait(ctx, b, w)
}

// enqueue adds line to the first batch after the last one holding its
// key that has room for it, or to a new batch. The caller holds c.mu.
func (c *committer) enqueue(ctx context.Context, g *storeGroup, line upstream.BatchLine, size int, charge membudget.Charge) (*groupBatch, *groupWaiter) {
	from := 0
	for i := len(g.pending) - 1; i >= 0; i-- {
		if g.pending[i].keys[line.Key] {
			from = i + 1
			break
		}
	}
	var b *groupBatch
	for _, p := range g.pending[from:] {
		if c.fits(p, size) {
			b = p
			break
		}
		p.sealed = true
	}
	if b == nil {
		b = &groupBatch{
			body: c.bodies.get(), keys: make(map[string]bool),
			ctx:   context.WithoutCancel(ctx),
			ready: true, done: make(chan struct{}),
		}
		if g.inflight == 0 && len(g.pending) == 0 && c.linger > 0 && !c.draining.Load() {
			b.ready = false
			time.AfterFunc(c.linger, func() {
				c.mu.Lock()
				defer c.mu.Unlock()
				b.ready = true
				c.dispatch(g)
			})
		}
		g.pending = append(g.pending, b)
	}
	w := &groupWaiter{}
	b.body = upstream.AppendBatchLine(b.body, line)
	b.lineEnds = append(b.lineEnds, len(b.body))
	b.keys[line.Key] = true
	b.waiters = append(b.waiters, w)
	b.live++
	c.queued++
	b.charge.Add(charge)
	if d, ok := ctx.Deadline(); !ok {
		b.unbounded = true
	} else if d.After(b.deadline) {
		b.deadline = d
	}
	return b, w
}

// fits reports whether a line of size bytes may join b.
func (c *committer) fits(b *groupBatch, size int) bool {
	return len(b.waiters) < c.cfg.MaxLines && len(b.body)+size <= c.cfg.MaxBytes
}

// full reports a batch that takes no more lines.
func (c *committer) full(b *groupBatch) bool {
	return b.sealed || len(b.waiters) >= c.cfg.MaxLines || len(b.body) >= c.cfg.MaxBytes
}

// ripe reports a batch worth sending beside writes in flight: full, or an
// eighth full (125 lines by default). Under a load that fills batches
// faster than the upstream answers, batches then go out as they fill
// instead of all waiting for the one in flight, which would leave the
// upstream idle while the answered callers come back, and still carry
// many items each; a lighter load sends one batch per round trip.
func (c *committer) ripe(b *groupBatch) bool {
	return c.full(b) || len(b.waiters) >= max(c.cfg.MaxLines/8, 1) || len(b.body) >= c.cfg.MaxBytes/8
}

// dispatch sends the pending batches that may go now, in order. With
// nothing in flight the first goes, unless it lingers; beside writes in
// flight, only a ripe batch that shares no key with them, up to
// Concurrency. The caller holds c.mu.
func (c *committer) dispatch(g *storeGroup) {
	for len(g.pending) > 0 {
		b := g.pending[0]
		if g.inflight == 0 {
			if !b.ready && len(g.pending) == 1 && !c.full(b) && !c.draining.Load() {
				break
			}
		} else if !c.ripe(b) || g.inflight >= c.cfg.Concurrency || c.overlaps(g, b) {
			break
		}
		g.pending[0] = nil
		g.pending = g.pending[1:]
		b.sent = true
		c.queued -= b.live
		g.inflight++
		keys := make([]string, 0, len(b.keys))
		for k := range b.keys {
			g.busy[k]++
			keys = append(keys, k)
		}
		go c.send(g, b, keys)
	}
	if g.inflight == 0 && len(g.pending) == 0 && c.groups[g.key] == g {
		delete(c.groups, g.key)
	}
}

func (c *committer) overlaps(g *storeGroup, b *groupBatch) bool {
	for k := range b.keys {
		if g.busy[k] > 0 {
			return true
		}
	}
	return false
}

// finished notes the end of a write in flight and sends what may go now.
// The caller holds c.mu.
func (c *committer) finished(g *storeGroup, keys []string) {
	g.inflight--
	for _, k := range keys {
		if g.busy[k]--; g.busy[k] == 0 {
			delete(g.busy, k)
		}
	}
	c.dispatch(g)
}

// queuedWrites counts the writes waiting for their batch to be sent.
func (c *committer) queuedWrites() int {
	if c == nil {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.queued
}

// drain sends every batch that lingers: kvgate is shutting down.
func (c *committer) drain() {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, g := range c.groups {
		c.dispatch(g)
	}
}

// send sends batch b, which dispatch has taken out of g's pending, and
// answers its waiters.
func (c *committer) send(g *storeGroup, b *groupBatch, keys []string) {
	// Lines whose callers left are dropped: no one else reads b now.
	var sent []*groupWaiter
	body, ends := b.body[:0], b.lineEnds[:0]
	start := 0
	for i, w := range b.waiters {
		end := b.lineEnds[i]
		if !w.removed {
			body = append(body, b.body[start:end]...) // never ahead of what it copies
			ends = append(ends, len(body))
			sent = append(sent, w)
		}
		start = end
	}
	if len(sent) > 0 { // else every caller left: nothing to send
		ctx, cancel := b.ctx, context.CancelFunc(func() {})
		if !b.unbounded {
			ctx, cancel = context.WithDeadline(ctx, b.deadline)
		}
		c.inFlight.Add(int64(len(body)))
		refused, err := putLines(ctx, c.kv, g.key.store, body, ends)
		c.inFlight.Add(-int64(len(body)))
		cancel()
		var batchErr error
		if err != nil {
			batchErr = c.words.fromUpstream(err, storeSubject)
		}
		for i, w := range sent {
			if le, ok := refused[i]; ok {
				w.err = c.words.lineError(le)
			} else {
				w.err = batchErr
			}
		}
	}
	c.bodies.put(b.body)
	b.body, b.lineEnds = nil, nil
	b.charge.Release()
	// The store is free for the next writes before the callers hear: a
	// caller that writes again at once finds the next batch under way.
	c.mu.Lock()
	c.finished(g, keys)
	c.mu.Unlock()
	close(b.done)
}

// wait waits for w's batch and returns the write's outcome. A caller that
// goes away before the batch is sent leaves it, unless kvgate is shutting
// down.
func (c *committer) wait(ctx context.Context, b *groupBatch, w *groupWaiter) error {
	select {
	case <-b.done:
		return w.err
	case <-ctx.Done():
	}
	c.mu.Lock()
	leave := !b.sent && !c.draining.Load()
	if leave {
		w.removed = true
		b.live--
		c.queued--
	}
	c.mu.Unlock()
	if !leave && c.draining.Load() {
		<-b.done
		return w.err
	}
	return c.words.fromUpstream(ctx.Err(), itemSubject)
}

// lineError is the error of a write whose batch line Fastly refused, as
// BatchPutItems reports such a line: the code of the line's status and
// Fastly's reason, with an ErrorInfo naming the status.
func (w wording) lineError(le upstream.BatchLineError) *connect.Error {
	we, ok := wireErrors[le.Kind()]
	if !ok {
		we = wireErrors[upstream.KindUnexpectedStatus]
	}
	status, _ := strconv.Atoi(le.Code)
	cerr := connect.NewError(we.code, w.say("Fastly rejected the item: ")+le.Reason)
	return withInfo(cerr, we.reason, status).WithCause(fmt.Errorf("fastly batch put: line %d refused: %s %s", le.Index, le.Code, le.Reason))
}
