package service

import (
	"context"
	"errors"
	"io"

	"connectrpc.com/connect/v2"

	kvv1 "github.com/kvgate/kvgate/gen/go/fastly/kv/v1"
	"github.com/kvgate/kvgate/gen/go/fastly/kv/v1/kvv1connect"
)

// MaxPutItems is the most items one PutItems call may carry.
const MaxPutItems = 10_000

// BatchPutItems writes a stream of items; see batcher for how.
func (s *Service) BatchPutItems(ctx context.Context, stream kvv1connect.KVStoreServiceBatchPutItemsServerStream) (*kvv1.BatchPutItemsResponse, error) {
	var b *batcher
	for {
		msg, err := stream.Receive()
		if errors.Is(err, io.EOF) {
			break
		}
		if err == nil && ctx.Err() != nil {
			// A client that keeps sending still has to see the RPC end.
			err = connect.NewError(connect.CodeCanceled, "request canceled").WithCause(ctx.Err())
		}
		if err != nil {
			flush := false
			if s.draining.Load() {
				err, flush = errShuttingDown, true
			}
			if b == nil {
				return nil, err
			}
			return nil, b.abort(err, flush)
		}
		if b == nil {
			var v violations
			v.checkStoreID(msg.GetStoreId())
			if err := v.Err(); err != nil {
				return nil, err
			}
			b = s.newBatcher(ctx, msg.GetStoreId())
		} else if id := msg.GetStoreId(); id != "" && id != b.store {
			var v violations
			v.Add("store_id", "store_id changed from %q to %q within one stream", b.store, id)
			return nil, b.abort(v.Err(), true)
		}
		for _, item := range msg.GetItems() {
			if err := b.add(item); err != nil {
				return nil, b.abort(err, false)
			}
		}
	}
	if b == nil {
		// An empty stream names no store and writes nothing.
		return &kvv1.BatchPutItemsResponse{}, nil
	}
	return b.finish()
}

// PutItems writes a bounded list of items with BatchPutItems' semantics.
func (s *Service) PutItems(ctx context.Context, req *kvv1.PutItemsRequest) (*kvv1.PutItemsResponse, error) {
	var v violations
	v.checkStoreID(req.GetStoreId())
	if n := len(req.GetItems()); n > MaxPutItems {
		v.Add("items", "items holds %d items; the most is %d (use BatchPutItems for more)", n, MaxPutItems)
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	b := s.newBatcher(ctx, req.GetStoreId())
	for _, item := range req.GetItems() {
		if err := b.add(item); err != nil {
			return nil, b.abort(err, false)
		}
	}
	res, err := b.finish()
	if err != nil {
		return nil, err
	}
	return &kvv1.PutItemsResponse{Written: res.GetWritten(), Failures: res.GetFailures()}, nil
}
