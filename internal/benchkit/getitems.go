package benchkit

import (
	"bytes"
	"context"
	"fmt"

	"golang.org/x/sync/errgroup"

	kvv1 "github.com/kvgate/kvgate/gen/go/fastly/kv/v1"
	"github.com/kvgate/kvgate/upstream"
)

// The multi-get scenario reads the same keys four ways: kvgate's GetItems
// in one call; kvgate's GetItem once per key, one call after another, as
// a client without concurrency does; the same GetItem calls with the
// client's own concurrency; and direct REST GETs with that concurrency,
// the reference for what the reads cost without kvgate.

// GetKey is the key of item i of a multi-get under prefix.
func GetKey(prefix string, i int) string { return fmt.Sprintf("%s%05d", prefix, i) }

// getValue is item i's value of size bytes.
func getValue(i, size int) []byte {
	v := make([]byte, size)
	for j := range v {
		v[j] = byte(i*31 + j)
	}
	return v
}

// SeedGet writes n items of size bytes under prefix with one direct batch
// PUT per thousand, for the multi-get.
func (e *Env) SeedGet(ctx context.Context, prefix string, n, size int) error {
	for start := 0; start < n; start += 1000 {
		var body []byte
		for i := start; i < min(start+1000, n); i++ {
			body = upstream.AppendBatchLine(body, upstream.BatchLine{Key: GetKey(prefix, i), Value: getValue(i, size)})
		}
		res, err := e.direct.PutBatch(ctx, e.cfg.Store, body)
		if err != nil {
			return err
		}
		if len(res.LineErrors) > 0 {
			return fmt.Errorf("seeding the multi-get: %d line errors", len(res.LineErrors))
		}
	}
	return nil
}

// checkGot checks that item i arrived whole.
func checkGot(i int, value []byte, size int) error {
	if !bytes.Equal(value, getValue(i, size)) {
		return fmt.Errorf("item %d: %d bytes, not its %d-byte value", i, len(value), size)
	}
	return nil
}

// GetItemsKvgate reads n items under prefix with one GetItems call.
func (e *Env) GetItemsKvgate(ctx context.Context, prefix string, n, size int) (Measurement, error) {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = GetKey(prefix, i)
	}
	return e.measureFirst("kvgate GetItems, one call", &e.viaCount, true, func(arrived func()) error {
		stream, err := e.kvgate.GetItems(ctx, &kvv1.GetItemsRequest{StoreId: e.cfg.Store, Keys: keys})
		if err != nil {
			return err
		}
		defer stream.Close()
		got := 0
		err = receiveAll(stream.Receive, func(msg *kvv1.GetItemsResponse) error {
			arrived()
			got++
			return checkGot(int(msg.GetIndex()), msg.GetItem().GetValue(), size)
		})
		if err != nil {
			return err
		}
		if got != n {
			return fmt.Errorf("GetItems answered %d of %d keys", got, n)
		}
		return nil
	})
}

// GetItemKvgate reads n items under prefix with one GetItem call each,
// concurrency calls at a time (1: one after another).
func (e *Env) GetItemKvgate(ctx context.Context, prefix string, n, size, concurrency int) (Measurement, error) {
	name := "kvgate GetItem, sequential"
	if concurrency > 1 {
		name = fmt.Sprintf("kvgate GetItem, %d at a time", concurrency)
	}
	return e.measure(name, &e.viaCount, true, func() error {
		return each(ctx, n, concurrency, func(ctx context.Context, i int) error {
			res, err := e.kvgate.GetItem(ctx, &kvv1.GetItemRequest{StoreId: e.cfg.Store, Key: GetKey(prefix, i)})
			if err != nil {
				return err
			}
			return checkGot(i, res.GetItem().GetValue(), size)
		})
	})
}

// GetDirect reads n items under prefix with direct REST GETs,
// concurrency at a time.
func (e *Env) GetDirect(ctx context.Context, prefix string, n, size, concurrency int) (Measurement, error) {
	return e.measure(fmt.Sprintf("direct GETs, %d at a time", concurrency), &e.dirCount, false, func() error {
		return each(ctx, n, concurrency, func(ctx context.Context, i int) error {
			item, err := e.direct.GetItem(ctx, e.cfg.Store, GetKey(prefix, i))
			if err != nil {
				return err
			}
			return checkGot(i, item.Value, size)
		})
	})
}

// each calls fn for 0..n-1, concurrency at a time, stopping at the first
// error.
func each(ctx context.Context, n, concurrency int, fn func(context.Context, int) error) error {
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(max(concurrency, 1))
	for i := range n {
		g.Go(func() error { return fn(ctx, i) })
	}
	return g.Wait()
}
