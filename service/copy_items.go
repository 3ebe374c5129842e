package service

import (
	"context"
	"errors"
	"strings"

	"connectrpc.com/connect/v2"

	kvv1 "github.com/kvgate/kvgate/gen/go/fastly/kv/v1"
	"github.com/kvgate/kvgate/gen/go/fastly/kv/v1/kvv1connect"
	"github.com/kvgate/kvgate/internal/membudget"
	"github.com/kvgate/kvgate/upstream"
)

// DefaultCopyConcurrency is how many GETs a CopyItems call keeps in flight
// by default. Reads cost no request budget at Fastly, so the bound is
// about throughput and memory: at 20 ms a read, 16 in flight read about
// 800 items a second, enough to fill a 1000-line batch PUT in little more
// than a second, while the values they hold (each under the memory
// budget) stay a small multiple of the largest value. It also stays well
// within the upstream client's idle connections, so reads reuse them.
const DefaultCopyConcurrency = 16

// CopyItems copies the items under a prefix from one store to another.
//
// A producer walks the source's listing one page ahead (see lister). The
// call reads each listed key with a GET, up to copyReads at once, and adds
// each value read to a batch write into the target (see batcher), whose
// PUTs run as BatchPutItems' do. Each position of the listing settles
// once: copied (its batch PUT succeeded), skipped (the GET found no item:
// it was deleted since the listing), or failed (its GET or its batch line
// failed on its own). The cursor of each progress message resumes right
// after the longest run of settled positions from the start.
//
// Memory is bounded whatever the store's size: the call reads only keys
// within a window past the first unsettled position (the reads in flight
// plus the batches the batch write may hold), each GET reserves its
// value's memory before reading it, and the value is let go once copied
// into a batch body, its reservation moving to the batch.
//
// A failure of the whole call (the listing fails, the source refuses the
// token, the target refuses a batch, the deadline or the memory budget
// runs out) ends the stream with the mapped error and a CopyItemsResponse
// detail: the totals, the failures not yet reported and the cursor. On
// Drain the copy stops reading, lets the reads and writes in flight finish
// and ends UNAVAILABLE with the same detail; when the client goes away,
// reads and writes are cancelled.
func (s *Service) CopyItems(ctx context.Context, req *kvv1.CopyItemsRequest, stream kvv1connect.KVStoreServiceCopyItemsServerStream) error {
	pos, cerr := checkCopy(req)
	if cerr != nil {
		return cerr
	}
	c := &copier{
		s: s, req: req, stream: stream, ctx: ctx,
		scope:   copyScope(req.GetSourceStoreId(), req.GetTargetStoreId()),
		from:    pos,
		resume:  req.GetCursor(),
		results: make(chan copyRead, s.copyReads),
		nudge:   make(chan struct{}, 1),
	}
	c.b = s.newBatcher(ctx, req.GetTargetStoreId())
	c.b.tally.sink = c.record
	c.window = uint64(s.copyReads + s.batch.MaxLines*(s.batch.Concurrency+1))
	c.parent = membudget.AccountFrom(ctx)

	l := s.newLister(req.GetSourceStoreId(), req.GetPrefix(), MaxListLimit, kvv1.Consistency_CONSISTENCY_STRONG)
	listCtx, stopListing := context.WithCancel(ctx)
	pages := make(chan keyPage)
	c.pages = pages
	c.listed = make(chan error, 1)
	go func() { c.listed <- l.produce(listCtx, pos, pages) }()
	defer func() {
		// No upstream work outlives the call: the producer has returned
		// once pages is closed.
		stopListing()
		for range pages {
		}
	}()
	return c.run()
}

// copyScope is the store id a copy's cursors are scoped to, with the
// prefix: both stores, in a form no store id takes (store ids hold no
// '/'), so that neither a listing's cursor nor another copy's resumes
// this one.
func copyScope(source, target string) string { return "copy/" + source + "/" + target }

// checkCopy checks a copy request and returns where its cursor resumes.
func checkCopy(req *kvv1.CopyItemsRequest) (position, *connect.Error) {
	var v violations
	v.checkNamedStoreID("source_store_id", req.GetSourceStoreId())
	v.checkNamedStoreID("target_store_id", req.GetTargetStoreId())
	if req.GetSourceStoreId() != "" && req.GetSourceStoreId() == req.GetTargetStoreId() {
		v.Add("target_store_id", "target_store_id must differ from source_store_id")
	}
	v.Check("prefix", upstream.CheckKeyPrefix(req.GetPrefix()))
	pos, err := decodeCursor(copyScope(req.GetSourceStoreId(), req.GetTargetStoreId()), req.GetPrefix(), req.GetCursor())
	if errors.Is(err, errCursorScope) {
		err = errors.New("was issued for another source_store_id, target_store_id or prefix")
	}
	v.Check("cursor", err)
	return pos, v.Err()
}

// checkNamedStoreID applies the store id rules to a field with another
// name than store_id.
func (v *violations) checkNamedStoreID(field, id string) {
	var one violations
	one.checkStoreID(id)
	for _, fv := range one.Violations {
		fv.Field = field
		fv.Description = strings.Replace(fv.Description, "store_id", field, 1)
		v.Violations = append(v.Violations, fv)
	}
}
