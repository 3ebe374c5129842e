package benchkit

import (
	"context"
	"errors"
	"fmt"
	"io"

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
		for {
			msg, err := stream.Receive()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return err
			}
			last = msg
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
		bodies := make(chan []byte)
		g.Go(func() error {
			defer close(keys)
			cursor := ""
			for {
				page, err := e.direct.ListKeys(ctx, e.cfg.Store+"-copy-src", upstream.ListOptions{Prefix: prefix, Cursor: cursor})
				if err != nil {
					return err
				}
				for _, k := range page.Keys {
					select {
					case keys <- k:
					case <-ctx.Done():
						return ctx.Err()
					}
				}
				if cursor = page.NextCursor; cursor == "" {
					return nil
				}
			}
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
		g.Go(func() error {
			defer close(bodies)
			var body []byte
			n := 0
			for line := range lines {
				if n > 0 && (n == e.cfg.Batch.MaxLines || len(body)+upstream.BatchLineSize(line) > e.cfg.Batch.MaxBytes) {
					select {
					case bodies <- body:
					case <-ctx.Done():
						return ctx.Err()
					}
					body, n = nil, 0
				}
				body = upstream.AppendBatchLine(body, line)
				n++
			}
			if n > 0 {
				select {
				case bodies <- body:
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			return nil
		})
		for range e.cfg.Batch.Concurrency {
			g.Go(func() error {
				for body := range bodies {
					res, err := e.direct.PutBatch(ctx, target, body)
					if err != nil {
						return err
					}
					if len(res.LineErrors) > 0 {
						return fmt.Errorf("%d line errors", len(res.LineErrors))
					}
				}
				return nil
			})
		}
		return g.Wait()
	})
}
