package service

import (
	"context"
	"errors"

	"connectrpc.com/connect/v2"

	kvv1 "github.com/kvgate/kvgate/gen/go/fastly/kv/v1"
	"github.com/kvgate/kvgate/gen/go/fastly/kv/v1/kvv1connect"
	"github.com/kvgate/kvgate/internal/rpcerr"
)

// StreamKeys enumerates keys page after page. A producer goroutine fetches
// the next upstream page while the current one is being sent, one page
// ahead and no more, so memory is bounded by two pages and the stream runs
// at the speed of the upstream's page chain. When the client goes away the
// context ends and so does the upstream request in flight. With
// include_metadata a stage between the two reads each page's items; see
// streamKeysWithMetadata.
func (s *Service) StreamKeys(ctx context.Context, req *kvv1.StreamKeysRequest, stream kvv1connect.KVStoreServiceStreamKeysServerStream) error {
	pos, cerr := checkListing(req.GetStoreId(), req.GetPrefix(), req.GetCursor(), req.GetPageSize(), "page_size", req.GetConsistency())
	if cerr != nil {
		return cerr
	}
	l := s.newLister(req.GetStoreId(), req.GetPrefix(), req.GetPageSize(), req.GetConsistency())
	if req.GetIncludeMetadata() {
		return s.streamKeysWithMetadata(ctx, req, l, pos, stream)
	}

	ctx, cancel := context.WithCancel(ctx)
	pages := make(chan keyPage)
	produced := make(chan error, 1)
	go func() { produced <- l.produce(ctx, pos, pages) }()
	defer func() {
		// Stop the producer and wait until it has returned (it closes
		// pages then): no upstream work outlives the RPC.
		cancel()
		for range pages {
		}
	}()

	var (
		delivered uint64
		resume    = req.GetCursor()
		maxKeys   = req.GetMaxKeys()
	)
	for pg := range pages {
		keys, next := pg.keys, pg.next
		if maxKeys > 0 && uint64(len(keys)) >= maxKeys-delivered {
			if n := maxKeys - delivered; n < uint64(len(keys)) {
				// Stop inside the page; the cursor resumes after the last
				// key sent.
				keys = keys[:n]
				next = position{upstream: pg.from.upstream, after: keys[n-1]}
			}
		}
		cursor := encodeCursor(req.GetStoreId(), req.GetPrefix(), next)
		if err := stream.Send(&kvv1.StreamKeysResponse{Keys: keys, Cursor: cursor}); err != nil {
			return err
		}
		delivered += uint64(len(keys))
		resume = cursor
		if maxKeys > 0 && delivered >= maxKeys {
			return nil
		}
	}
	if err := <-produced; err != nil {
		return s.endStreamKeys(s.listFailure(err, pos, delivered), err, resume, delivered)
	}
	return nil
}

// listFailure maps the failed listing of a stream that started at from and
// has delivered keys.
func (s *Service) listFailure(err error, from position, delivered uint64) *connect.Error {
	if delivered == 0 {
		return s.words.listError(err, from) // the first page came from the caller's cursor
	}
	return s.words.fromUpstream(err, storeSubject)
}

// endStreamKeys is the error that ends a StreamKeys stream: cerr, the
// mapping of err, or UNAVAILABLE when kvgate is shutting down, with what
// the caller needs to resume.
func (s *Service) endStreamKeys(cerr *connect.Error, err error, resume string, delivered uint64) error {
	if s.draining.Load() && errors.Is(err, context.Canceled) {
		cerr = errShuttingDown
	}
	return rpcerr.WithDetail(cerr, &kvv1.StreamKeysResume{Cursor: resume, KeysDelivered: delivered})
}
