package benchkit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"golang.org/x/sync/errgroup"

	kvv1 "github.com/kvgate/kvgate/gen/go/fastly/kv/v1"
	"github.com/kvgate/kvgate/service"
	"github.com/kvgate/kvgate/upstream"
)

// EnumerateKvgateMetadata streams the keys through StreamKeys with
// include_metadata: one HEAD per key besides the list pages.
func (e *Env) EnumerateKvgateMetadata(ctx context.Context, prefix string) (Measurement, error) {
	var first time.Duration
	start := time.Now()
	m, err := e.measure("kvgate StreamKeys include_metadata", &e.viaCount, true, func() error {
		stream, err := e.kvgate.StreamKeys(ctx, &kvv1.StreamKeysRequest{
			StoreId: e.cfg.Store, Prefix: prefix, PageSize: uint32(e.cfg.PageSize), IncludeMetadata: true,
		})
		if err != nil {
			return err
		}
		defer stream.Close()
		n := 0
		for {
			msg, err := stream.Receive()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return err
			}
			if first == 0 {
				first = time.Since(start)
			}
			if len(msg.GetItems()) != len(msg.GetKeys()) {
				return fmt.Errorf("a message of %d keys carried %d items", len(msg.GetKeys()), len(msg.GetItems()))
			}
			n += len(msg.GetKeys())
		}
		return e.checkCount(n)
	})
	m.FirstResult = first
	return m, err
}

// EnumerateDirectMetadata does what StreamKeys with include_metadata does
// with the REST client, as a client of its own would: each page, then the
// HEADs of its keys, as many in flight as kvgate keeps, then the next page.
func (e *Env) EnumerateDirectMetadata(ctx context.Context, prefix string) (Measurement, error) {
	var first time.Duration
	start := time.Now()
	concurrency := e.cfg.ListMetadataConcurrency
	if concurrency <= 0 {
		concurrency = service.DefaultListMetadataConcurrency
	}
	m, err := e.measure("direct pages and HEADs", &e.dirCount, false, func() error {
		n, cursor := 0, ""
		for {
			page, err := e.direct.ListKeys(ctx, e.cfg.Store, upstream.ListOptions{Prefix: prefix, Cursor: cursor, Limit: e.cfg.PageSize})
			if err != nil {
				return err
			}
			g, gctx := errgroup.WithContext(ctx)
			g.SetLimit(concurrency)
			for _, key := range page.Keys {
				g.Go(func() error {
					_, err := e.direct.HeadItem(gctx, e.cfg.Store, key)
					return err
				})
			}
			if err := g.Wait(); err != nil {
				return err
			}
			if first == 0 {
				first = time.Since(start)
			}
			n += len(page.Keys)
			if cursor = page.NextCursor; cursor == "" {
				break
			}
		}
		return e.checkCount(n)
	})
	m.FirstResult = first
	return m, err
}
