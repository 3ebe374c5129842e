package service

import (
	"context"
	"errors"

	"connectrpc.com/connect/v2"

	kvv1 "github.com/kvgate/kvgate/gen/go/fastly/kv/v1"
	"github.com/kvgate/kvgate/gen/go/fastly/kv/v1/kvv1connect"
	"github.com/kvgate/kvgate/internal/membudget"
	"github.com/kvgate/kvgate/internal/rpcerr"
	"github.com/kvgate/kvgate/internal/valuepool"
	"github.com/kvgate/kvgate/upstream"
)

// copyRead is one GET's outcome.
type copyRead struct {
	index uint64
	key   string
	item  *upstream.Item
	err   error
	// acct holds the memory reserved for the value; lease the buffer it
	// was read into.
	acct  *membudget.Account
	lease *valuepool.Lease
}

// copyEntry is one listed key not yet behind the resume cursor.
type copyEntry struct {
	key string
	// resume is the listing position right after the key.
	resume  position
	settled bool
}

// copier is one CopyItems call. Its state is owned by the RPC's
// goroutine; reads and batch PUTs run on their own and report on
// results and the batcher's done.
type copier struct {
	s      *Service
	req    *kvv1.CopyItemsRequest
	stream kvv1connect.KVStoreServiceCopyItemsServerStream
	ctx    context.Context
	b      *batcher
	parent *membudget.Account
	scope  string

	pages  <-chan keyPage
	listed chan error
	from   position // where the request's cursor resumes
	page   keyPage  // the keys not yet read of the current page
	ended  bool     // the listing has no more pages
	// listErr is set when the listing failed.
	listErr bool
	// window bounds how far reading runs ahead of the first unsettled
	// position: reads in flight and the batches the batch write holds.
	window uint64

	// entries are the positions from first on, in listing order; next is
	// the position of the next key to read.
	entries []copyEntry
	first   uint64
	next    uint64
	reads   int
	results chan copyRead
	// nudge is signalled by a read about to wait for memory budget: the
	// open batch should go, so that what it holds comes free.
	nudge chan struct{}

	copied, skipped, failed uint64
	failures                []*kvv1.BatchFailure // not yet reported
	// resume resumes after every position before first.
	resume string
	// sent* are the totals last reported; puts counts the batch PUTs
	// that ended since.
	sentCopied, sentSkipped, sentFailed uint64
	puts                                int

	// stop ends reading: err is why the call fails (see halt); flush lets
	// the items already read be written.
	stop  bool
	err   error
	flush bool
}

func (c *copier) run() error {
	for {
		c.dispatch()
		if c.stop && c.reads == 0 || !c.stop && c.ended && len(c.page.keys) == 0 && c.reads == 0 {
			break
		}
		if c.reads == 0 {
			// Nothing is being read: the open batch will not grow soon.
			c.b.seal()
		}
		var pages <-chan keyPage
		if !c.stop && !c.ended && len(c.page.keys) == 0 {
			pages = c.pages
		}
		var done <-chan struct{}
		if !c.stop {
			done = c.ctx.Done()
		}
		select {
		case pg, ok := <-pages:
			if !ok {
				c.ended = true
				if err := <-c.listed; err != nil {
					c.listFailed(err)
				}
				break
			}
			c.page = pg
			if pg.next.end {
				c.ended = true
			}
		case r := <-c.results:
			c.reads--
			c.landed(r)
		case r := <-c.b.done:
			c.b.collect(r)
			c.puts++
		case <-c.nudge:
			c.b.seal()
		case <-done:
			c.halt(nil)
		}
		if err := c.report(false); err != nil {
			c.halt(err)
		}
	}
	return c.finish()
}

// dispatch starts reads while there is room; once kvgate is shutting
// down it starts none, and the copy ends with what it read written.
func (c *copier) dispatch() {
	if !c.stop && c.s.draining.Load() {
		c.halt(errShuttingDown)
		return
	}
	for !c.stop && c.b.callErr == nil && c.reads < c.s.copyReads && c.next-c.first < c.window && len(c.page.keys) > 0 {
		key := c.page.keys[0]
		c.page.keys = c.page.keys[1:]
		after := position{upstream: c.page.from.upstream, after: key}
		if len(c.page.keys) == 0 {
			after = c.page.next
		}
		c.entries = append(c.entries, copyEntry{key: key, resume: after})
		c.read(c.next, key)
		c.next++
		c.reads++
	}
	if c.b.callErr != nil {
		c.halt(c.b.callErr)
	}
}

// read GETs key on its own goroutine. It runs on the batch write's
// context, which ends with the call's but outlives it while kvgate is
// shutting down, so that what was read can still be written.
func (c *copier) read(index uint64, key string) {
	acct := c.parent.Share()
	acct.BeforeWait(func() {
		select {
		case c.nudge <- struct{}{}:
		default:
		}
	})
	ctx, lease := valuepool.WithLease(membudget.WithAccount(c.b.ctx, acct))
	go func() {
		item, err := c.s.kv.GetItem(ctx, c.req.GetSourceStoreId(), key)
		c.results <- copyRead{index: index, key: key, item: item, err: err, acct: acct, lease: lease}
	}()
}

// landed takes a read's outcome.
func (c *copier) landed(r copyRead) {
	defer r.acct.Close()
	if r.err == nil && c.b.callErr == nil && (!c.stop || c.flush) {
		item := &kvv1.BatchItem{Key: r.key, Value: r.item.Value, Metadata: r.item.Metadata}
		credit := r.acct.TakeResponse()
		err := c.b.addAt(r.index, item, &credit)
		credit.Release()
		// A value copied into a batch body is let go; one too large for a
		// batch rides its own PUT, which still reads it.
		line := upstream.BatchLine{Key: item.Key, Value: item.Value, Metadata: item.Metadata}
		if upstream.BatchLineSize(line) <= c.b.cfg.MaxBytes {
			r.lease.Release()
		}
		if err != nil {
			c.halt(err)
		}
		return
	}
	r.lease.Release()
	switch kind := upstream.KindOf(r.err); {
	case r.err == nil:
		// Read, but the copy stopped and will not write it: unsettled.
	case errors.Is(r.err, context.Canceled), c.stop:
		// Cut short by the copy's end: unsettled, the cursor resumes
		// before it.
	case kind == upstream.KindNotFound:
		c.skipped++
		c.settle(r.index)
	case kind == upstream.KindUnauthorized || kind == upstream.KindForbidden || kind == upstream.KindRateLimited,
		errors.Is(r.err, context.DeadlineExceeded), errors.Is(r.err, membudget.ErrExhausted):
		// The source refuses the token, Fastly's rate limit holds (for
		// longer than kvgate waits: the caller resumes after it, with the
		// RetryInfo), or the call ran out of time or memory: no other read
		// can do better now.
		c.halt(c.s.words.fromUpstream(r.err, storeSubject))
	default:
		c.record(nil, []*kvv1.BatchFailure{batchFailure(r.index, r.key, c.s.words.fromUpstream(r.err, itemSubject))})
	}
}

// record takes the outcome of batch lines (the batcher's tally sink) or
// of a failed read.
func (c *copier) record(written []uint64, failures []*kvv1.BatchFailure) {
	c.copied += uint64(len(written))
	for _, i := range written {
		c.settle(i)
	}
	c.failed += uint64(len(failures))
	for _, f := range failures {
		c.settle(f.GetIndex())
	}
	c.failures = append(c.failures, failures...)
}

// settle marks position i settled and moves the resume cursor past the
// run of settled positions from the first.
func (c *copier) settle(i uint64) {
	c.entries[i-c.first].settled = true
	n := 0
	for n < len(c.entries) && c.entries[n].settled {
		n++
	}
	if n == 0 {
		return
	}
	c.resume = encodeCursor(c.scope, c.req.GetPrefix(), c.entries[n-1].resume)
	clear(c.entries[:n])
	c.entries = c.entries[n:]
	c.first += uint64(n)
}

// listFailed ends the copy on a failed listing; what was read is still
// written.
func (c *copier) listFailed(err error) {
	if errors.Is(err, context.Canceled) {
		return // the call's end, seen on its own
	}
	c.listErr = true
	cerr := c.s.words.fromUpstream(err, storeSubject)
	if c.next == 0 {
		cerr = c.s.words.listError(err, c.from) // the first page came from the caller's cursor
	}
	c.halt(cerr)
}

// halt stops reading because of err, the call's failure. Once the
// call's context has ended, the failure is why: kvgate is shutting down
// (the reads and writes in flight then finish, their context outliving
// the call's, and the answer says where to resume), or the client went
// away or ran out of time (nothing more is written).
func (c *copier) halt(err error) {
	if c.stop {
		if c.err == nil {
			c.err = err
		}
		return
	}
	c.stop = true
	// What was read is still written, unless the target failed.
	c.err, c.flush = err, c.b.callErr == nil
	if c.ctx.Err() != nil {
		if c.s.draining.Load() {
			c.err, c.flush = errShuttingDown, c.b.callErr == nil
		} else {
			c.err, c.flush = c.s.words.fromUpstream(context.Cause(c.ctx), storeSubject), false
		}
	}
}

// report sends a progress message when there is something to say and a
// reason to say it now: a batch PUT ended, or many positions settled or
// failed since the last message. With final, it sends the last message.
func (c *copier) report(final bool) error {
	if c.stop {
		return nil
	}
	moved := c.copied + c.skipped + c.failed - (c.sentCopied + c.sentSkipped + c.sentFailed)
	if !final && (moved == 0 || c.puts == 0 && moved < uint64(c.s.batch.MaxLines)) {
		return nil
	}
	if !final && c.resume == "" {
		// An empty cursor says nothing remains. A copy from the start has
		// none to give until its first position settles (or, at its end,
		// until the last message): the window bounds what waits for it.
		return nil
	}
	msg := c.progress()
	if final {
		msg.Cursor, msg.Done = "", true
	}
	if err := c.stream.Send(msg); err != nil {
		return err
	}
	c.sentCopied, c.sentSkipped, c.sentFailed = c.copied, c.skipped, c.failed
	c.failures, c.puts = nil, 0
	return nil
}

// progress is the state of the copy, with the failures not yet reported.
func (c *copier) progress() *kvv1.CopyItemsResponse {
	return &kvv1.CopyItemsResponse{
		Copied: c.copied, Skipped: c.skipped, Failed: c.failed,
		Failures: c.failures, Cursor: c.resume,
	}
}

// finish lets the batch write end and answers: the last message of a
// complete copy, or the call's failure with where to resume.
func (c *copier) finish() error {
	if c.stop && !c.flush && c.b.callErr == nil {
		// Nothing read is to be written: drop the open batch and what is
		// queued; the PUTs in flight still report.
		c.b.callErr = c.err
		c.b.cancel()
	}
	_, _ = c.b.finish()
	if c.b.callErr != nil {
		c.halt(c.b.callErr)
	}
	complete := c.ended && !c.listErr && len(c.page.keys) == 0 && len(c.entries) == 0 && c.b.callErr == nil
	if !c.stop || complete {
		// A copy that completed just as it was stopped is still complete.
		c.stop = false
		return c.report(true)
	}
	cerr, ok := errors.AsType[*connect.Error](c.err)
	if !ok {
		cerr = connect.NewError(connect.CodeInternal, "internal error").WithCause(c.err)
	}
	// The detail says what the client has not heard yet: the totals, the
	// failures since the last message and the cursor to resume from.
	return rpcerr.WithDetail(cerr, c.progress())
}
