package service

import (
	"context"
	"errors"
	"sync"

	"connectrpc.com/connect/v2"

	kvv1 "github.com/kvgate/kvgate/gen/go/fastly/kv/v1"
	"github.com/kvgate/kvgate/gen/go/fastly/kv/v1/kvv1connect"
	"github.com/kvgate/kvgate/internal/membudget"
	"github.com/kvgate/kvgate/internal/valuepool"
	"github.com/kvgate/kvgate/upstream"
)

// MaxGetItemsKeys is the most keys one GetItems call may name.
const MaxGetItemsKeys = 1000

// DefaultGetItemsConcurrency is how many reads one GetItems call keeps in
// flight unless configured otherwise. Each read of a 20 ms upstream is
// almost all waiting, so 16 at once read 1,000 keys in about 63 round
// trips instead of 1,000, while one call holds at most 16 values (and 16
// upstream connections of kvgate's shared pool) at a time.
const DefaultGetItemsConcurrency = 16

// getRead is one distinct key of a GetItems call and the positions it
// answers; the reader fills in its outcome.
type getRead struct {
	key       string
	positions []uint32

	item *upstream.Item
	err  error
	// release lets go of the value's memory: its budget reservation and
	// its pooled buffer. Called once the value's messages are sent, or
	// when they never will be.
	release func()
}

// GetItems reads many items with one read per distinct key, at most
// getItemsConcurrency at a time, and streams each key's answer as its read
// completes.
//
// A read holds its slot from the moment it starts until its messages have
// been sent, so at most getItemsConcurrency values are held at once, and a
// client that reads slowly holds back the reads not yet started: the
// sender frees a slot only when Send returns, which it does once the
// transport has taken the message (HTTP/2 flow control or the socket
// buffer). Each value is reserved in the memory budget on an account of
// its own and released with its slot.
//
// A failure that concerns one key is answered at that key's positions; a
// token Fastly refuses (401, 403) would be refused for every key, so it
// ends the call instead. When the call's context ends (the client went
// away, its deadline passed, or kvgate's shutdown ended it after half the
// grace period) the reads in flight are cancelled and no more start.
func (s *Service) GetItems(ctx context.Context, req *kvv1.GetItemsRequest, stream kvv1connect.KVStoreServiceGetItemsServerStream) error {
	if cerr := checkGetItems(req); cerr != nil {
		return cerr
	}
	reads := groupKeys(req.GetKeys())
	metadataOnly := req.GetView() == kvv1.ItemView_ITEM_VIEW_METADATA
	store := req.GetStoreId()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// done never blocks a reader: a read is started only with a free
	// slot, and there are as many slots as room in done.
	concurrency := min(s.getItemsConcurrency, len(reads))
	slots := make(chan struct{}, concurrency)
	done := make(chan *getRead, concurrency)
	go func() {
		var wg sync.WaitGroup
		defer func() {
			wg.Wait()
			close(done)
		}()
		for _, r := range reads {
			select {
			case slots <- struct{}{}:
			case <-ctx.Done():
				return
			}
			if ctx.Err() != nil {
				return // the slot was free, but the call is over
			}
			wg.Go(func() {
				s.read(ctx, store, r, metadataOnly)
				done <- r
			})
		}
	}()
	defer func() {
		// Stop the reads and wait until every reader has returned, letting
		// go of what each read: no upstream work outlives the RPC.
		cancel()
		for r := range done {
			r.release()
		}
	}()

	answered := 0
	for r := range done {
		err := s.answer(ctx, stream, r)
		r.release()
		<-slots
		if err != nil {
			return err
		}
		answered++
	}
	if answered < len(reads) {
		// The reads stopped early: the call's context ended.
		return s.getItemsEnded(ctx.Err())
	}
	return nil
}

// read reads r's key, filling in r.item or r.err and r.release.
func (s *Service) read(ctx context.Context, store string, r *getRead, metadataOnly bool) {
	if metadataOnly {
		r.release = func() {}
		r.item, r.err = s.kv.HeadItem(ctx, store, r.key)
		return
	}
	// The value is read into a buffer of the read's own lease, reserved on
	// an account of its own: both are let go of as soon as its messages
	// are sent, not when the whole call ends.
	ctx, account := membudget.Separate(ctx)
	ctx, lease := valuepool.WithLease(ctx)
	r.release = func() {
		lease.Release()
		account.Close()
	}
	r.item, r.err = s.kv.GetItem(ctx, store, r.key)
}

// answer sends r's outcome at each of its positions, or returns the error
// that ends the call.
func (s *Service) answer(ctx context.Context, stream kvv1connect.KVStoreServiceGetItemsServerStream, r *getRead) error {
	msg := func(pos uint32) *kvv1.GetItemsResponse {
		return &kvv1.GetItemsResponse{Index: pos, Key: r.key}
	}
	var result func(*kvv1.GetItemsResponse)
	switch {
	case r.err == nil:
		item := itemProto(r.key, r.item, true)
		// The positions share the item: each message is encoded as it is
		// sent, and none is changed.
		result = func(m *kvv1.GetItemsResponse) { m.Result = &kvv1.GetItemsResponse_Item{Item: item} }
	case upstream.KindOf(r.err) == upstream.KindNotFound:
		result = func(m *kvv1.GetItemsResponse) { m.Result = &kvv1.GetItemsResponse_Absent{Absent: true} }
	case ctx.Err() != nil && (errors.Is(r.err, context.Canceled) || errors.Is(r.err, context.DeadlineExceeded)):
		return s.getItemsEnded(ctx.Err())
	case endsGetItems(r.err):
		return s.words.fromUpstream(r.err, storeSubject)
	default:
		cerr := s.words.fromUpstream(r.err, itemSubject)
		keyErr := &kvv1.KeyError{Code: cerr.Code().String(), Reason: cerr.Message()}
		result = func(m *kvv1.GetItemsResponse) { m.Result = &kvv1.GetItemsResponse_Error{Error: keyErr} }
	}
	for _, pos := range r.positions {
		m := msg(pos)
		result(m)
		if err := stream.Send(m); err != nil {
			return err
		}
	}
	return nil
}

// endsGetItems reports whether a read's failure concerns the whole call
// rather than its key: Fastly refused the token (401) or its permissions
// (403), as it would for every other key.
func endsGetItems(err error) bool {
	switch upstream.KindOf(err) {
	case upstream.KindUnauthorized, upstream.KindForbidden:
		return true
	}
	return false
}

// getItemsEnded is the error of a call whose context ended (ctxErr): the
// client went away or its deadline passed, or kvgate is shutting down.
// The positions answered so far stand; the rest are to be asked again.
func (s *Service) getItemsEnded(ctxErr error) *connect.Error {
	if s.draining.Load() && errors.Is(ctxErr, context.Canceled) {
		return errShuttingDown
	}
	return s.words.fromUpstream(ctxErr, itemSubject)
}

// groupKeys returns the distinct keys in the order they first appear,
// each with every position it holds.
func groupKeys(keys []string) []*getRead {
	byKey := make(map[string]*getRead, len(keys))
	reads := make([]*getRead, 0, len(keys))
	for i, k := range keys {
		r, ok := byKey[k]
		if !ok {
			r = &getRead{key: k}
			byKey[k] = r
			reads = append(reads, r)
		}
		r.positions = append(r.positions, uint32(i))
	}
	return reads
}

// checkGetItems checks a GetItems request: the store, 1 to
// MaxGetItemsKeys keys each within Fastly's key rules (named keys[i]), and
// the view.
func checkGetItems(req *kvv1.GetItemsRequest) *connect.Error {
	var v violations
	v.checkStoreID(req.GetStoreId())
	switch keys := req.GetKeys(); {
	case len(keys) == 0:
		v.Add("keys", "keys must name at least one key")
	case len(keys) > MaxGetItemsKeys:
		v.Add("keys", "keys names %d keys; the most is %d", len(keys), MaxGetItemsKeys)
	default:
		v.checkKeyList("keys", keys, false)
	}
	v.checkEnum("view", req.GetView())
	return v.Err()
}
