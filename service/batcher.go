package service

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"sync"

	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connectproto"

	kvv1 "github.com/kvgate/kvgate/gen/go/fastly/kv/v1"
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

func (c BatchConfig) withDefaults() BatchConfig {
	if c.MaxLines <= 0 {
		c.MaxLines = 1000
	}
	if c.MaxBytes <= 0 {
		c.MaxBytes = 8 << 20
	}
	if c.Concurrency <= 0 {
		c.Concurrency = 4
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
}

// opResult is what became of one op.
type opResult struct {
	op       *writeOp
	written  []uint64
	failures []*kvv1.BatchFailure
	// fatal is a failure of the call as a whole: the rest of the batch
	// write cannot succeed either.
	fatal error
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
	kv       *upstream.Client
	bodies   *bodyPool
	store    string
	cfg      BatchConfig
	maxValue int64

	ctx    context.Context
	cancel context.CancelFunc

	open     *writeOp
	openKeys map[string]bool
	queue    []*writeOp
	inflight int
	busy     map[string]bool // keys of ops in flight
	done     chan opResult

	received uint64
	written  uint64
	ranges   indexRanges
	failures []*kvv1.BatchFailure
	fatal    error
}

func newBatcher(ctx context.Context, kv *upstream.Client, bodies *bodyPool, store string, cfg BatchConfig, maxValue int64, draining func() bool) *batcher {
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
		if !draining() {
			cancel()
		}
	})
	ctx = opsCtx
	cancelAll := func() {
		stop()
		cancel()
	}
	return &batcher{
		kv: kv, bodies: bodies, store: store, cfg: cfg.withDefaults(), maxValue: maxValue,
		ctx: ctx, cancel: cancelAll,
		busy: make(map[string]bool),
		done: make(chan opResult),
	}
}

// add takes the next item of the stream. It returns once the item is
// accounted for or queued, waiting while the batcher is at capacity; that
// wait is the backpressure on the client's stream. An error means the
// batch write failed as a whole; call finish to collect what happened.
func (b *batcher) add(item *kvv1.BatchItem) error {
	index := b.received
	b.received++
	if reason := checkBatchItem(item, b.maxValue); reason != "" {
		b.fail(index, item.GetKey(), connect.CodeInvalidArgument, reason)
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
		b.enqueue(&writeOp{keys: []string{item.GetKey()}, indexes: []uint64{index}, single: item})
		return b.throttle()
	}
	if b.open != nil && (b.openKeys[line.Key] || len(b.open.keys) == b.cfg.MaxLines || len(b.open.body)+size > b.cfg.MaxBytes) {
		b.seal()
		if err := b.throttle(); err != nil {
			return err
		}
	}
	if b.open == nil {
		b.open = &writeOp{body: b.bodies.get()}
		b.openKeys = make(map[string]bool)
	}
	b.open.keys = append(b.open.keys, line.Key)
	b.open.indexes = append(b.open.indexes, index)
	b.open.body = upstream.AppendBatchLine(b.open.body, line)
	b.open.lineEnds = append(b.open.lineEnds, len(b.open.body))
	b.openKeys[line.Key] = true
	return b.fatal
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
	if b.fatal != nil {
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
	for b.fatal == nil && b.inflight+len(b.queue) >= b.cfg.Concurrency {
		b.collect(<-b.done)
	}
	return b.fatal
}

// collect records an op's result; the op's keys are free again.
func (b *batcher) collect(r opResult) {
	b.inflight--
	for _, k := range r.op.keys {
		delete(b.busy, k)
	}
	if r.op.single == nil {
		b.bodies.put(r.op.body)
	}
	for _, i := range r.written {
		b.ranges.add(i)
	}
	b.written += uint64(len(r.written))
	b.failures = append(b.failures, r.failures...)
	if r.fatal != nil && b.fatal == nil {
		b.fatal = r.fatal
		b.cancel() // the other writes in flight cannot succeed either
	}
	b.start()
}

// finish sends what is left, waits for every op and returns the outcome:
// the response, or the failure of the call as a whole.
func (b *batcher) finish() (*kvv1.BatchPutItemsResponse, error) {
	if b.fatal == nil {
		b.seal()
	}
	for b.inflight > 0 || (b.fatal == nil && len(b.queue) > 0) {
		b.collect(<-b.done)
	}
	b.cancel()
	slices.SortFunc(b.failures, func(x, y *kvv1.BatchFailure) int {
		return compareUint64(x.GetIndex(), y.GetIndex())
	})
	if b.fatal != nil {
		return nil, b.withProgress(b.fatal)
	}
	return &kvv1.BatchPutItemsResponse{Written: b.written, Failures: b.failures}, nil
}

// abort ends the batch write because of err. With flush, the items
// received so far are still sent (the stream was cut short, but what it
// carried is good: kvgate is shutting down, or a later message was
// invalid); without, nothing more is sent (the client went away, or the
// upstream failed). Either way the writes in flight finish, and err comes
// back with the progress made.
func (b *batcher) abort(err error, flush bool) error {
	if flush && b.fatal == nil {
		if _, ferr := b.finish(); ferr != nil {
			return ferr
		}
	}
	if b.fatal == nil {
		b.fatal = err
	}
	_, ferr := b.finish()
	return ferr
}

func compareUint64(x, y uint64) int {
	switch {
	case x < y:
		return -1
	case x > y:
		return 1
	}
	return 0
}

// withProgress attaches a BatchProgress detail to err: which items were
// written and which failed before the batch write failed.
func (b *batcher) withProgress(err error) error {
	var cerr *connect.Error
	if !errors.As(err, &cerr) {
		cerr = connect.NewError(connect.CodeInternal, "internal error").WithCause(err)
	}
	progress := &kvv1.BatchProgress{Received: b.received, Failures: b.failures}
	for _, r := range b.ranges {
		progress.Written = append(progress.Written, &kvv1.IndexRange{Start: r.start, End: r.end})
	}
	if d, derr := connectproto.NewErrorDetail(progress); derr == nil {
		cerr = cerr.WithDetail(d)
	}
	return cerr
}

func (b *batcher) fail(index uint64, key string, code connect.Code, reason string) {
	b.failures = append(b.failures, &kvv1.BatchFailure{Index: index, Key: key, Code: code.String(), Reason: reason})
}

// run carries out one op. It runs on its own goroutine and touches no
// batcher state but its configuration.
func (b *batcher) run(op *writeOp) opResult {
	if op.single != nil {
		return b.runSingle(op)
	}
	return b.runBatch(op)
}

func (b *batcher) runSingle(op *writeOp) opResult {
	item := op.single
	opts := upstream.PutOptions{
		Mode:              putModes[item.GetMode()],
		BackgroundFetch:   item.GetBackgroundFetch(),
		IfGenerationMatch: item.IfGenerationMatch,
		Metadata:          item.GetMetadata(),
	}
	if ttl := item.GetTimeToLive(); ttl != nil {
		opts.TimeToLive = ttl.AsDuration()
	}
	err := b.kv.PutItem(b.ctx, b.store, item.GetKey(), item.GetValue(), opts)
	if err == nil {
		return opResult{written: op.indexes}
	}
	var unknown *upstream.UnknownOutcomeError
	if errors.As(err, &unknown) {
		// This item's fate is open, not the call's: report it and go on.
		cerr := fromUpstream(err, itemSubject)
		return opResult{failures: []*kvv1.BatchFailure{{
			Index: op.indexes[0], Key: item.GetKey(), Code: cerr.Code().String(), Reason: cerr.Message(),
		}}}
	}
	var se *upstream.StatusError
	if errors.As(err, &se) && itemLevelStatus(se.Status) {
		cerr := fromStatus(se, itemSubject)
		return opResult{failures: []*kvv1.BatchFailure{{
			Index: op.indexes[0], Key: item.GetKey(), Code: cerr.Code().String(), Reason: cerr.Message(),
		}}}
	}
	return opResult{fatal: fromUpstream(err, storeSubject)}
}

// itemLevelStatus reports statuses that concern one item, not the call.
func itemLevelStatus(status int) bool {
	switch status {
	case http.StatusBadRequest, http.StatusPreconditionFailed, http.StatusRequestEntityTooLarge:
		return true
	}
	return false
}

// runBatch sends the op's lines as one batch PUT. Fastly reports bad lines
// by index and does not say whether the other lines of such a batch were
// applied, so the lines not reported bad are sent again (they are upserts)
// until a batch carrying them succeeds; only then are they written.
func (b *batcher) runBatch(op *writeOp) opResult {
	var res opResult
	lines := make([]int, len(op.keys)) // positions in op of the lines being sent
	for i := range lines {
		lines[i] = i
	}
	body := op.body
	for len(lines) > 0 {
		out, err := b.kv.PutBatch(b.ctx, b.store, body)
		if err != nil {
			res.fatal = fromUpstream(err, storeSubject)
			return res
		}
		if len(out.LineErrors) == 0 {
			for _, l := range lines {
				res.written = append(res.written, op.indexes[l])
			}
			return res
		}
		bad := make(map[int]bool, len(out.LineErrors))
		for _, le := range out.LineErrors {
			if le.Index >= len(lines) || bad[le.Index] {
				res.fatal = fromUpstream(&upstream.ResponseError{Op: upstream.OpBatch,
					Reason: fmt.Sprintf("line error for line %d of a %d-line batch", le.Index, len(lines))}, storeSubject)
				return res
			}
			bad[le.Index] = true
			l := lines[le.Index]
			res.failures = append(res.failures, &kvv1.BatchFailure{
				Index:  op.indexes[l],
				Key:    op.keys[l],
				Code:   lineCode(le.Code).String(),
				Reason: "Fastly rejected the item: " + le.Reason,
			})
		}
		kept := lines[:0]
		var next []byte
		for i, l := range lines {
			if !bad[i] {
				kept = append(kept, l)
				next = append(next, op.lineBytes(l)...)
			}
		}
		lines, body = kept, next
	}
	return res
}

// lineBytes returns line l of the op's original body.
func (op *writeOp) lineBytes(l int) []byte {
	start := 0
	if l > 0 {
		start = op.lineEnds[l-1]
	}
	return op.body[start:op.lineEnds[l]]
}

// lineCode maps Fastly's per-line code (an HTTP status as a string) to a
// Connect code; a line Fastly could not complete is its fault to report
// as the caller's input unless it says otherwise.
func lineCode(code string) connect.Code {
	status, err := strconv.Atoi(code)
	if err != nil || status == http.StatusBadRequest {
		return connect.CodeInvalidArgument
	}
	return fromStatus(&upstream.StatusError{Status: status}, itemSubject).Code()
}

// checkBatchItem returns why item cannot be written, or "".
func checkBatchItem(item *kvv1.BatchItem, maxValue int64) string {
	var v violations
	v.check("key", upstream.CheckKey(item.GetKey()))
	v.check("metadata", upstream.CheckMetadata(item.GetMetadata()))
	v.checkValue(item.GetValue(), maxValue)
	v.checkEnum("mode", item.GetMode())
	v.checkTTL("time_to_live", item.GetTimeToLive())
	if item.GetMode() == kvv1.PutMode_PUT_MODE_ADD && item.IfGenerationMatch != nil {
		v.add("if_generation_match", "if_generation_match cannot be combined with PUT_MODE_ADD")
	}
	if len(v) == 0 {
		return ""
	}
	return v.err().Message()
}

// bodyPool recycles batch bodies across batches and streams, so a long
// upload reuses a few buffers instead of growing a new one per batch.
type bodyPool struct {
	pool     sync.Pool
	maxBytes int
}

func newBodyPool(maxBytes int) *bodyPool { return &bodyPool{maxBytes: maxBytes} }

func (p *bodyPool) get() []byte {
	if b, ok := p.pool.Get().(*[]byte); ok {
		return (*b)[:0]
	}
	return make([]byte, 0, min(p.maxBytes, 64<<10))
}

// put returns a body once no request reads it any more. Bodies that grew
// past twice the batch limit (one oversized line) are left to the GC.
func (p *bodyPool) put(b []byte) {
	if cap(b) == 0 || cap(b) > 2*p.maxBytes {
		return
	}
	p.pool.Put(&b)
}
