package benchkit

import (
	"context"
	"fmt"

	"golang.org/x/sync/errgroup"

	kvv1 "github.com/kvgate/kvgate/gen/go/fastly/kv/v1"
	"github.com/kvgate/kvgate/service"
)

// EnumerateKvgateMetadata streams the keys through StreamKeys with
// include_metadata: one HEAD per key besides the list pages.
func (e *Env) EnumerateKvgateMetadata(ctx context.Context, prefix string) (Measurement, error) {
	req := &kvv1.StreamKeysRequest{StoreId: e.cfg.Store, Prefix: prefix, PageSize: uint32(e.cfg.PageSize), IncludeMetadata: true}
	return e.enumerateKvgate(ctx, "kvgate StreamKeys include_metadata", req, func(msg *kvv1.StreamKeysResponse) error {
		if len(msg.GetItems()) != len(msg.GetKeys()) {
			return fmt.Errorf("a message of %d keys carried %d items", len(msg.GetKeys()), len(msg.GetItems()))
		}
		return nil
	})
}

// EnumerateDirectMetadata does what StreamKeys with include_metadata does
// with the REST client, as a client of its own would: each page, then the
// HEADs of its keys, as many in flight as kvgate keeps, then the next page.
func (e *Env) EnumerateDirectMetadata(ctx context.Context, prefix string) (Measurement, error) {
	concurrency := e.cfg.ListMetadataConcurrency
	if concurrency <= 0 {
		concurrency = service.DefaultListMetadataConcurrency
	}
	return e.enumerateDirect(ctx, "direct pages and HEADs", prefix, func(keys []string) error {
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(concurrency)
		for _, key := range keys {
			g.Go(func() error {
				_, err := e.direct.HeadItem(gctx, e.cfg.Store, key)
				return err
			})
		}
		return g.Wait()
	})
}
