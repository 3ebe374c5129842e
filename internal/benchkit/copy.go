package benchkit

import (
	"context"
	"fmt"

	"golang.org/x/sync/errgroup"

	kvv1 "github.com/kvgate/kvgate/gen/go/fastly/kv/v1"
	"github.com/kvgate/kvgate/upstream"
)

// SeedCopy writes CopyItems items of ValueBytes under prefix in the
// source store, with direct batch PUTs.
func (e *Env) SeedCopy(ctx context.Context, prefix string) error {
	saved := e.cfg
	defer func() { e.cfg = saved }()
	e.cfg.Items, e.cfg.Store = e.cfg.CopyItems, e.cfg.Store+"-copy-src"
	_, err := e.UploadDirectBatch(ctx, prefix)
	return err
}

// CopyKvgate copies the prefix into target with one CopyItems call.
func (e *Env) CopyKvgate(ctx context.Context, prefix, target string) (Measurement, error) {
	return e.measure("kvgate CopyItems", &e.viaCount, true, func() error {
		stream, err := e.kvgate.CopyItems(ctx, &kvv1.CopyItemsRequest{SourceStoreId: e.cfg.Store + "-copy-src", TargetStoreId: target, Prefix: prefix})
		if err != nil {
			return err
		}
		defer stream.Close()
		var last *kvv1.CopyItemsResponse
		err = receiveAll(stream.Receive, func(msg *kvv1.CopyItemsResponse) error {
			last = msg
			return nil
		})
		if err != nil {
			return err
		}
		if !last.GetDone() || last.GetCopied() != uint64(e.cfg.CopyItems) {
			return fmt.Errorf("kvgate copied %d of %d items (%v)", last.GetCopied(), e.cfg.CopyItems, last)
		}
		return nil
	})
}

// CopyDirect does what a client of the REST API does to copy the prefix
// into target: it walks the listing, reads each key with CopyConcurrency
// GETs in flight, and writes what it read in batch PUTs cut as kvgate
// cuts them, Batch.Concurrency in flight.
func (e *Env) CopyDirect(ctx context.Context, prefix, target string) (Measurement, error) {
	return e.measure("direct list + GETs + batch PUTs", &e.dirCount, false, func() error {
		g, ctx := errgroup.WithContext(ctx)
		keys := make(chan string)
		lines := make(chan upstream.BatchLine)
		g.Go(func() error {
			defer close(keys)
			return e.eachPage(ctx, e.cfg.Store+"-copy-src", prefix, 0, func(page []string) error {
				for _, k := range page {
					select {
					case keys <- k:
					case <-ctx.Done():
						return ctx.Err()
					}
				}
				return nil
			})
		})
		var readers errgroup.Group
		for range e.cfg.CopyConcurrency {
			readers.Go(func() error {
				for k := range keys {
					item, err := e.direct.GetItem(ctx, e.cfg.Store+"-copy-src", k)
					if err != nil {
						return err
					}
					select {
					case lines <- upstream.BatchLine{Key: k, Value: item.Value, Metadata: item.Metadata}:
					case <-ctx.Done():
						return ctx.Err()
					}
				}
				return nil
			})
		}
		g.Go(func() error {
			defer close(lines)
			return readers.Wait()
		})
		e.putBatches(ctx, g, target, func(yield func(upstream.BatchLine) bool) {
			for line := range lines {
				if !yield(line) {
					return
				}
			}
		})
		return g.Wait()
	})
}
