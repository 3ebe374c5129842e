package service

import (
	"context"
	"sync/atomic"

	"google.golang.org/protobuf/proto"

	kvv1 "github.com/kvgate/kvgate/gen/go/fastly/kv/v1"
	"github.com/kvgate/kvgate/internal/membudget"
	"github.com/kvgate/kvgate/upstream"
)

// BatchConfig bounds how batch writes are cut into batch PUTs.
type BatchConfig struct {
	// MaxLines is the most items in one batch PUT; 1000 when zero.
	MaxLines int
	// MaxBytes bounds one batch PUT body (base64 values included); 8 MiB
	// when zero. An item too large for it on its own is sent as a
	// single-item PUT instead.
	MaxBytes int
	// Concurrency is how many PUTs one batch write keeps in flight; 4 when
	// zero. While that many are in flight (or ready to go), kvgate stops
	// reading the client's stream.
	Concurrency int
}

// DefaultBatchConfig is the configuration a zero BatchConfig stands for:
// Fastly's 1000 lines per batch, 8 MiB bodies, 4 PUTs in flight.
func DefaultBatchConfig() BatchConfig {
	return BatchConfig{MaxLines: 1000, MaxBytes: 8 << 20, Concurrency: 4}
}

func (c BatchConfig) withDefaults() BatchConfig {
	d := DefaultBatchConfig()
	if c.MaxLines <= 0 {
		c.MaxLines = d.MaxLines
	}
	if c.MaxBytes <= 0 {
		c.MaxBytes = d.MaxBytes
	}
	if c.Concurrency <= 0 {
		c.Concurrency = d.Concurrency
	}
	return c
}

// writeOp is one upstream write: a batch PUT of upsert lines, or a
// single-item PUT for an item that cannot ride a batch.
type writeOp struct {
	// keys and indexes describe the op's items, in order; keys are unique.
	keys    []string
	indexes []uint64
	// body holds the NDJSON lines of a batch; lineEnds[i] is where line i
	// ends, so lines Fastly rejected can be dropped for the resend.
	body     []byte
	lineEnds []int
	// single is the item of a single-item PUT.
	single *kvv1.BatchItem
	// charge is the memory budget the op's body or item holds until the
	// op is done.
	charge membudget.Charge
}

// opResult is what became of one op.
type opResult struct {
	op       *writeOp
	written  []uint64
	failures []*kvv1.BatchFailure
	// callErr is a failure of the call as a whole: the rest of the batch
	// write cannot succeed either.
	callErr error
}

// batcher turns a stream of items into upstream writes: it validates each
// item, packs upserts into batch PUTs bounded by lines and bytes, sends
// items with a put mode or generation check as single PUTs, keeps up to
// Concurrency writes in flight, and accounts for every item.
//
// Ordering: two ops sharing a key never run at once, and an op never
// overtakes an earlier op that shares one of its keys, so for each key the
// later item in the stream wins, as if the items were written one by one.
// A batch holds each key once: an item whose key is already in the open
// batch closes it and starts the next.
//
// One goroutine (the RPC's) owns the batcher's state; ops run on their own
// goroutines and report on done.
type batcher struct {
	kv       Upstream
	bodies   *bodyPool
	inFlight *atomic.Int64 // the service's batchBytes
	store    string
	cfg      BatchConfig
	maxValue int64
	words    wording

	ctx    context.Context
	cancel context.CancelFunc

	open     *writeOp
	openKeys map[string]bool
	queue    []*writeOp
	inflight int
	busy     map[string]bool // keys of ops in flight
	done     chan opResult

	tally   tally
	callErr error

	// acct is the RPC's memory budget account: lines and items kept
	// beyond their message take their share of its charge.
	acct *membudget.Account
}

// newBatcher starts a batch write to store for the RPC whose context is ctx.
func (s *Service) newBatcher(ctx context.Context, store string) *batcher {
	// The writes run on a context of their own that keeps the RPC's
	// deadline. It ends with the RPC's when the client goes away, so
	// upstream work stops, but not when kvgate is shutting down: then the
	// writes in flight finish, so the answer can say what was written.
	opsCtx := context.WithoutCancel(ctx)
	var cancel context.CancelFunc
	if deadline, ok := ctx.Deadline(); ok {
		opsCtx, cancel = context.WithDeadline(opsCtx, deadline)
	} else {
		opsCtx, cancel = context.WithCancel(opsCtx)
	}
	stop := context.AfterFunc(ctx, func() {
		if !s.draining.Load() {
			cancel()
		}
	})
	b := &batcher{
		kv: s.kv, bodies: s.bodies, inFlight: &s.batchBytes, store: store, cfg: s.batch, maxValue: s.maxValue, words: s.words,
		ctx: opsCtx,
		cancel: func() {
			stop()
			cancel()
		},
		busy: make(map[string]bool),
		done: make(chan opResult),
		acct: membudget.AccountFrom(ctx),
	}
	b.acct.BeforeWait(b.yield)
	return b
}

// add takes the next item of the stream. It returns once the item is
// accounted for or queued, waiting while the batcher is at capacity; that
// wait is the backpressure on the client's stream. An error means the
// batch write failed as a whole; call finish to collect what happened.
func (b *batcher) add(item *kvv1.BatchItem) error {
	return b.addAt(b.tally.receive(), item, nil)
}

// addAt is add for the item at index. With credit, the item's memory is
// already charged (a copied value, reserved by its read): its charge
// starts from credit, which it empties, and is topped up only with budget
// free at once (see batcher.take).
func (b *batcher) addAt(index uint64, item *kvv1.BatchItem, credit *membudget.Charge) error {
	var v violations
	v.checkItemWrite(item, item.IfGenerationMatch, b.maxValue)
	if err := v.Err(); err != nil {
		b.tally.fail(batchFailure(index, item.GetKey(), err))
		return nil
	}
	line := upstream.BatchLine{
		Key: item.GetKey(), Value: item.GetValue(), Metadata: item.GetMetadata(),
		BackgroundFetch: item.GetBackgroundFetch(),
	}
	if ttl := item.GetTimeToLive(); ttl != nil {
		line.TimeToLive = ttl.AsDuration()
	}
	size := upstream.BatchLineSize(line)
	if item.GetMode() != kvv1.PutMode_PUT_MODE_UNSPECIFIED || item.IfGenerationMatch != nil || size > b.cfg.MaxBytes {
		// The key's earlier items in the open batch must go first.
		if b.openKeys[item.GetKey()] {
			b.seal()
		}
		charge, err := b.take(index, item.GetKey(), proto.Size(item), credit)
		if err != nil {
			return err
		}
		b.enqueue(&writeOp{keys: []string{item.GetKey()}, indexes: []uint64{index}, single: item, charge: charge})
		return b.throttle()
	}
	if b.open != nil && (b.openKeys[line.Key] || len(b.open.keys) == b.cfg.MaxLines || len(b.open.body)+size > b.cfg.MaxBytes) {
		b.seal()
		if err := b.throttle(); err != nil {
			return err
		}
	}
	// A body grows by doubling as lines are appended, so a line may take
	// twice its size; the charge moves from the message's, three times
	// the message's size. Recycled bodies are never larger than new ones
	// (see bodyPool.put).
	charge, err := b.take(index, line.Key, 2*size, credit)
	if err != nil {
		return err
	}
	if b.open == nil {
		b.open = &writeOp{body: b.bodies.get()}
		b.openKeys = make(map[string]bool)
	}
	b.open.charge.Add(charge)
	b.open.keys = append(b.open.keys, line.Key)
	b.open.indexes = append(b.open.indexes, index)
	b.open.body = upstream.AppendBatchLine(b.open.body, line)
	b.open.lineEnds = append(b.open.lineEnds, len(b.open.body))
	b.openKeys[line.Key] = true
	return b.callErr
}

// seal queues the open batch.
func (b *batcher) seal() {
	if b.open != nil {
		b.enqueue(b.open)
		b.open, b.openKeys = nil, nil
	}
}

func (b *batcher) enqueue(op *writeOp) {
	b.queue = append(b.queue, op)
	b.start()
}

// start runs every queued op that may run now, in order: one whose keys
// are not in flight and not held by an earlier op still queued.
func (b *batcher) start() {
	if b.callErr != nil {
		return
	}
	held := make(map[string]bool)
	kept := b.queue[:0]
	for _, op := range b.queue {
		blocked := b.inflight >= b.cfg.Concurrency
		for _, k := range op.keys {
			if b.busy[k] || held[k] {
				blocked = true
				break
			}
		}
		if blocked {
			for _, k := range op.keys {
				held[k] = true
			}
			kept = append(kept, op)
			continue
		}
		for _, k := range op.keys {
			b.busy[k] = true
		}
		b.inflight++
		go func() {
			r := b.run(op)
			// The body is let go and its charge released here, not when
			// collected: the RPC may be waiting for budget, and cannot
			// collect until it has some.
			if op.single == nil {
				b.bodies.put(op.body)
			}
			op.body, op.single = nil, nil
			op.charge.Release()
			r.op = op
			b.done <- r
		}()
	}
	clear(b.queue[len(kept):])
	b.queue = kept
}

// throttle waits while the batcher holds Concurrency ops, in flight or
// ready, so memory stays bounded by about Concurrency+1 batches whatever
// the stream's length.
func (b *batcher) throttle() error {
	for b.callErr == nil && b.inflight+len(b.queue) >= b.cfg.Concurrency {
		b.collect(<-b.done)
	}
	return b.callErr
}

// collect records an op's result; the op's keys are free again.
func (b *batcher) collect(r opResult) {
	b.inflight--
	for _, k := range r.op.keys {
		delete(b.busy, k)
	}
	b.tally.record(r.written, r.failures)
	if r.callErr != nil && b.callErr == nil {
		b.callErr = r.callErr
		b.cancel() // the other writes in flight cannot succeed either
	}
	b.start()
}

// finish sends what is left, waits for every op and returns the outcome:
// the response, or the failure of the call as a whole.
func (b *batcher) finish() (*kvv1.BatchPutItemsResponse, error) {
	if b.callErr == nil {
		b.seal()
	}
	for b.inflight > 0 || (b.callErr == nil && len(b.queue) > 0) {
		b.collect(<-b.done)
	}
	b.releaseUnsent()
	b.acct.BeforeWait(nil)
	b.cancel()
	if b.callErr != nil {
		return nil, b.tally.withProgress(b.callErr)
	}
	return b.tally.response(), nil
}

// abort ends the batch write because of err. With flush, the items
// received so far are still sent (the stream was cut short, but what it
// carried is good: kvgate is shutting down, or a later message was
// invalid); without, nothing more is sent (the client went away, or the
// upstream failed). Either way the writes in flight finish, and err comes
// back with the progress made.
func (b *batcher) abort(err error, flush bool) error {
	if flush && b.callErr == nil {
		if _, ferr := b.finish(); ferr != nil {
			return ferr
		}
	}
	if b.callErr == nil {
		b.callErr = err
	}
	_, ferr := b.finish()
	return ferr
}
