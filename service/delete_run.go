package service

import (
	"context"
	"errors"
	"time"

	"connectrpc.com/connect/v2"

	kvv1 "github.com/kvgate/kvgate/gen/go/fastly/kv/v1"
	"github.com/kvgate/kvgate/gen/go/fastly/kv/v1/kvv1connect"
	"github.com/kvgate/kvgate/internal/rpcerr"
	"github.com/kvgate/kvgate/upstream"
)

const (
	// deleteWindow bounds the keys a DeleteKeys call has started but not
	// yet reported: keys are reported in order, so one slow DELETE holds
	// back those after it, and with them the call's memory.
	deleteWindow = 1024
	// deleteReportKeys is the most keys one progress message reports.
	deleteReportKeys = 100
	// deleteReportEvery is how long settled keys wait for a message at
	// most while fewer than deleteReportKeys have gathered.
	deleteReportEvery = time.Second
)

// deleteOutcome is what became of one key.
type deleteOutcome int

const (
	outcomePending  deleteOutcome = iota
	outcomeDeleted                // deleted, or on a dry run there to delete
	outcomeNotFound               // already gone
	outcomeFailed                 // failed on its own account: reported, and the call goes on
	outcomeStop                   // failed in a way that ends the call: not settled, reported failed at the stop
)

// deleteTask is one key of a deletion.
type deleteTask struct {
	index uint64
	key   string
	// resume is the cursor that resumes right after this key.
	resume deleteCursor
	// outcome and failure are set by settle, once its DELETE is back.
	outcome deleteOutcome
	failure *kvv1.BatchFailure
}

// keySource hands out a deletion's keys in order.
type keySource interface {
	// next returns the next key, ok false at the end of the keys, or the
	// failure that ends the call.
	next(ctx context.Context, scope string) (t *deleteTask, ok bool, err error)
}

// listSource walks a list of keys from an index.
type listSource struct {
	keys []string
	at   uint64
}

func (l *listSource) next(_ context.Context, scope string) (*deleteTask, bool, error) {
	if l.at >= uint64(len(l.keys)) {
		return nil, false, nil
	}
	i := l.at
	l.at++
	return &deleteTask{index: i, key: l.keys[i], resume: deleteCursor{Index: i + 1, Scope: scope}}, true, nil
}

// listingSource walks a listing's pages, which a lister produces one page
// ahead.
type listingSource struct {
	pages    chan keyPage
	produced chan error
	from     position
	page     keyPage
	at       int
	ordinal  uint64
	// fetched is set once a page has arrived: a failure before the first
	// page is the caller's cursor's when it names an upstream position.
	fetched bool
}

func (l *listingSource) next(ctx context.Context, scope string) (*deleteTask, bool, error) {
	for l.at >= len(l.page.keys) {
		select {
		case pg, ok := <-l.pages:
			if !ok {
				return nil, false, <-l.produced
			}
			l.page, l.at, l.fetched = pg, 0, true
		case <-ctx.Done():
			return nil, false, ctx.Err()
		}
	}
	key := l.page.keys[l.at]
	l.at++
	t := &deleteTask{index: l.ordinal, key: key,
		resume: deleteCursor{Upstream: l.page.from.upstream, After: key, Scope: scope}}
	l.ordinal++
	return t, true, nil
}

// deletion is one DeleteKeys call under way. Its state belongs to the
// goroutine that runs it; DELETEs run on their own goroutines and hand
// their tasks back on results.
//
// A call ends early when the client goes away (the DELETEs in flight are
// cancelled with the context and nothing more is sent), when a DELETE or
// the listing fails in a way every later key would too (rate limit,
// spent write budget, unavailable upstream, refused token), or when kvgate
// drains. In the last two cases no further DELETE starts, those in flight
// finish, their keys are reported in one last message whose cursor
// resumes at the first key not settled, and the call fails with the error
// and a DeleteKeysResponse detail carrying that cursor and the totals.
type deletion struct {
	s      *Service
	ctx    context.Context
	cancel context.CancelFunc
	req    *kvv1.DeleteKeysRequest
	sel    deleteSelection
	stream kvv1connect.KVStoreServiceDeleteKeysServerStream
	src    keySource

	results  chan deleteResult
	inFlight int
	queue    []*deleteTask // started, in order, not yet reported
	srcDone  bool
	stopErr  error // set once the call is to end early
	settled  int   // settled keys: none yet means a failing cursor was the caller's

	msg      kvv1.DeleteKeysResponse // the message being gathered
	msgKeys  int
	totals   kvv1.DeleteKeysTotals
	cursor   string                 // resumes after every key reported
	sentTot  *kvv1.DeleteKeysTotals // the totals of the last message sent
	lastSent time.Time
}

func (d *deletion) run() error {
	// The tick sends keys gathered before a slow DELETE while it is out.
	tick := time.NewTicker(deleteReportEvery)
	defer tick.Stop()
	for {
		// A caller gone is seen here, not left to the select below, which
		// may take the DELETEs' results first and end the loop as if the
		// deletion were complete.
		if err := d.ctx.Err(); err != nil {
			return d.abandon(err)
		}
		if err := d.start(); err != nil {
			return err
		}
		if err := d.report(); err != nil {
			return d.abandon(err)
		}
		if d.inFlight == 0 {
			if d.srcDone || d.stopErr != nil {
				break
			}
			continue
		}
		select {
		case r := <-d.results:
			d.inFlight--
			d.settle(r)
		case <-tick.C:
		case <-d.ctx.Done():
			return d.abandon(d.ctx.Err())
		}
	}
	if d.stopErr != nil {
		return d.stop()
	}
	d.msg.Cursor, d.msg.Done = "", true
	return d.send()
}

// start starts keys while the concurrency and the window allow.
func (d *deletion) start() error {
	for d.stopErr == nil && !d.srcDone && d.inFlight < d.s.deleteConcurrency && len(d.queue) < deleteWindow {
		if d.s.draining.Load() {
			d.stopErr = errShuttingDown
			return nil
		}
		t, ok, err := d.src.next(d.ctx, d.sel.scope)
		if err != nil {
			if d.ctx.Err() != nil {
				return d.abandon(d.ctx.Err())
			}
			d.stopErr = d.listingError(err)
			return nil
		}
		if !ok {
			d.srcDone = true
			return nil
		}
		d.queue = append(d.queue, t)
		if d.sel.dryRun && d.sel.keys == nil {
			t.outcome = outcomeDeleted // listed: there to delete
			continue
		}
		d.inFlight++
		go d.do(t)
	}
	return nil
}

// listingError is the error of a listing that failed.
func (d *deletion) listingError(err error) error {
	if src, ok := d.src.(*listingSource); ok && !src.fetched && d.settled == 0 {
		return d.s.words.listError(err, src.from)
	}
	return d.s.words.fromUpstream(err, storeSubject)
}

// deleteResult is what one key's DELETE came to, handed back to the
// deletion's goroutine, which alone touches its tasks.
type deleteResult struct {
	t       *deleteTask
	outcome deleteOutcome
	failure *kvv1.BatchFailure
	err     error
}

// do sends one key's DELETE (on a dry run of a list, its HEAD: reads do
// not count against Fastly's budget) and hands the outcome back.
func (d *deletion) do(t *deleteTask) {
	var err error
	if d.sel.dryRun {
		_, err = d.s.kv.HeadItem(d.ctx, d.req.GetStoreId(), t.key)
	} else {
		err = d.s.kv.DeleteItem(d.ctx, d.req.GetStoreId(), t.key, upstream.DeleteOptions{})
	}
	r := deleteResult{t: t}
	switch kind := upstream.KindOf(err); {
	case err == nil:
		r.outcome = outcomeDeleted
	case kind == upstream.KindNotFound:
		r.outcome = outcomeNotFound
	case kind.ItemLevel() || kind == upstream.KindOutcomeUnknown:
		r.outcome = outcomeFailed
		r.failure = batchFailure(t.index, t.key, d.s.words.fromUpstream(err, itemSubject))
	default:
		r.outcome, r.err = outcomeStop, err
	}
	d.results <- r
}

// settle records a key's outcome; a failure that ends the call ends it
// unless it already ends for another reason.
func (d *deletion) settle(r deleteResult) {
	r.t.outcome, r.t.failure = r.outcome, r.failure
	if r.outcome != outcomeStop {
		return
	}
	// The DELETE may have been applied before it failed (an answer lost
	// on a dropped connection, then a 429 on the retry): once gone, the
	// key is in no listing a resumed call makes, so it is reported here,
	// as failed with its own code, or it would never be reported at all.
	r.t.failure = batchFailure(r.t.index, r.t.key, d.s.words.fromUpstream(r.err, itemSubject))
	if d.stopErr == nil && d.ctx.Err() == nil {
		d.stopErr = d.s.words.fromUpstream(r.err, storeSubject)
	}
}

// report moves the settled keys at the head of the queue into messages,
// sending each once it is full, and the one gathering once it is due.
func (d *deletion) report() error {
	for len(d.queue) > 0 {
		t := d.queue[0]
		if t.outcome == outcomePending || t.outcome == outcomeStop {
			break
		}
		d.queue = d.queue[1:]
		d.add(t)
		d.msg.Cursor = d.cursorAfter(t)
		if d.msgKeys >= deleteReportKeys {
			if err := d.send(); err != nil {
				return err
			}
		}
	}
	if d.msgKeys > 0 && time.Since(d.lastSent) >= deleteReportEvery {
		return d.send()
	}
	return nil
}

// cursorAfter is the cursor that resumes after t: empty past the last key
// of a list.
func (d *deletion) cursorAfter(t *deleteTask) string {
	if d.sel.keys != nil && t.index+1 >= uint64(len(d.sel.keys)) {
		return ""
	}
	return encodeDeleteCursor(t.resume)
}

// add counts a settled key into the message being gathered.
func (d *deletion) add(t *deleteTask) {
	d.settled++
	d.msgKeys++
	switch t.outcome {
	case outcomeDeleted:
		d.msg.Deleted = append(d.msg.Deleted, t.key)
		d.totals.Deleted++
	case outcomeNotFound:
		d.msg.NotFound = append(d.msg.NotFound, t.key)
		d.totals.NotFound++
	case outcomeFailed, outcomeStop:
		d.msg.Failures = append(d.msg.Failures, t.failure)
		d.totals.Failed++
	}
}

// send sends the message gathered, with the totals so far, and starts the
// next.
func (d *deletion) send() error {
	d.msg.Totals = d.totalsNow()
	if d.msgKeys == 0 && !d.msg.Done {
		d.msg.Cursor = d.cursor
	}
	err := d.stream.Send(&d.msg)
	d.cursor, d.sentTot = d.msg.Cursor, d.msg.Totals
	d.msg = kvv1.DeleteKeysResponse{}
	d.msgKeys, d.lastSent = 0, time.Now()
	return err
}

// stop ends a call cut short while the stream still works: every key
// settled is reported, those settled after a key that was not included
// (they are gone, and a resumed call will find them gone), and so is every
// key whose DELETE failed in the way that ends the call, as failed, with
// the cursor resuming at the first key not settled (a resumed call tries
// those keys again when they are still there); then the call fails with
// stopErr and that cursor and the totals as a detail. An empty cursor
// there means nothing was settled: the deletion starts over (or from the
// caller's own cursor, which is handed back).
func (d *deletion) stop() error {
	resume := d.msg.Cursor
	if d.msgKeys == 0 {
		resume = d.cursor
	}
	for _, t := range d.queue {
		if t.outcome == outcomePending {
			continue
		}
		d.add(t)
		if d.msgKeys >= deleteReportKeys {
			d.msg.Cursor = resume
			if err := d.send(); err != nil {
				return err
			}
		}
	}
	d.queue = nil
	d.msg.Cursor = resume
	if d.msgKeys > 0 {
		if err := d.send(); err != nil {
			return err
		}
	}
	cerr, ok := errors.AsType[*connect.Error](d.stopErr)
	if !ok {
		cerr = connect.NewError(connect.CodeInternal, "internal error").WithCause(d.stopErr)
	}
	return rpcerr.WithDetail(cerr, &kvv1.DeleteKeysResponse{Cursor: resume, Totals: d.totalsNow()})
}

// totalsNow is a copy of the totals so far.
func (d *deletion) totalsNow() *kvv1.DeleteKeysTotals {
	return &kvv1.DeleteKeysTotals{Deleted: d.totals.Deleted, NotFound: d.totals.NotFound, Failed: d.totals.Failed}
}

// abandon ends a call whose client went away or whose stream broke: the
// DELETEs in flight are cancelled and waited for, and nothing more is
// sent.
func (d *deletion) abandon(err error) error {
	draining := d.ctx.Err() != nil && d.s.draining.Load()
	d.cancel()
	for ; d.inFlight > 0; d.inFlight-- {
		<-d.results
	}
	if draining {
		// The caller resumes elsewhere from the last message's cursor.
		return rpcerr.WithDetail(errShuttingDown, &kvv1.DeleteKeysResponse{Cursor: d.cursor, Totals: d.sentTot})
	}
	if _, ok := errors.AsType[*connect.Error](err); ok {
		return err
	}
	return d.s.words.fromUpstream(err, storeSubject)
}
