package bench

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"connectrpc.com/connect/v2/connecthttp"

	kvv1 "github.com/kvgate/kvgate/gen/go/fastly/kv/v1"
	"github.com/kvgate/kvgate/internal/kvtest"
	"github.com/kvgate/kvgate/service"
	"github.com/kvgate/kvgate/upstream"
)

// BenchmarkWatchItemsPoll times one poll of a prefix of n keys: a key is
// overwritten straight on the store, then found changed. Directly, a
// client lists the prefix and HEADs every key (16 at a time, as kvgate
// does) and compares the generations with the ones it holds; through
// kvgate, a WatchItems stream resumed with those generations as known
// does the same poll and reports the change in its first message.
func BenchmarkWatchItemsPoll(b *testing.B) {
	st := kvtest.Start(b, kvtest.Options{Watch: service.WatchConfig{Concurrency: 16}})
	client := st.NewClient(kvtest.H2CClient(), connecthttp.WithGRPC())
	ctx := context.Background()
	for _, n := range []int{100, 1000} {
		prefix := fmt.Sprintf("watch%d_", n)
		state := make(map[string]uint64, n)
		var keys []string
		for i := range n {
			k := fmt.Sprintf("%s%05d", prefix, i)
			keys = append(keys, k)
			if err := st.Client.PutItem(ctx, store, k, []byte("v"), upstream.PutOptions{}); err != nil {
				b.Fatal(err)
			}
		}
		// Learn the generations once, directly.
		found, err := directPoll(ctx, st.Client, prefix, state)
		if err != nil || found != n {
			b.Fatalf("initial poll found %d changes (%v); want %d", found, err, n)
		}
		b.Run(fmt.Sprintf("keys=%d", n), func(b *testing.B) {
			round := 0
			write := func() error {
				round++
				return st.Client.PutItem(ctx, store, keys[round%n], fmt.Appendf(nil, "v%d", round), upstream.PutOptions{})
			}
			pair(b,
				func() error {
					if err := write(); err != nil {
						return err
					}
					found, err := directPoll(ctx, st.Client, prefix, state)
					if err == nil && found != 1 {
						err = fmt.Errorf("direct poll found %d changes; want 1", found)
					}
					return err
				},
				func() error {
					if err := write(); err != nil {
						return err
					}
					req := &kvv1.WatchItemsRequest{StoreId: store, Prefix: prefix}
					for k, g := range state {
						req.Known = append(req.Known, &kvv1.KeyGeneration{Key: k, Generation: g})
					}
					wctx, cancel := context.WithCancel(ctx)
					defer cancel()
					stream, err := client.WatchItems(wctx, req)
					if err != nil {
						return err
					}
					defer stream.Close()
					msg, err := stream.Receive()
					if err != nil {
						return err
					}
					if len(msg.GetChanges()) != 1 {
						return fmt.Errorf("the watch found %d changes; want 1", len(msg.GetChanges()))
					}
					c := msg.GetChanges()[0]
					state[c.GetKey()] = c.GetItem().GetGeneration()
					return nil
				})
			b.ReportMetric(float64(n), "keys/poll")
		})
	}
}

// directPoll lists prefix and HEADs every key 16 at a time, updates state
// with the generations it finds and returns how many differed.
func directPoll(ctx context.Context, kv *upstream.Client, prefix string, state map[string]uint64) (int, error) {
	var keys []string
	cursor := ""
	for {
		page, err := kv.ListKeys(ctx, store, upstream.ListOptions{Prefix: prefix, Cursor: cursor})
		if err != nil {
			return 0, err
		}
		keys = append(keys, page.Keys...)
		if cursor = page.NextCursor; cursor == "" {
			break
		}
	}
	gens := make([]uint64, len(keys))
	errs := make([]error, len(keys))
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	for i, k := range keys {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			it, err := kv.HeadItem(ctx, store, k)
			if err != nil {
				errs[i] = err
				return
			}
			gens[i] = it.Generation
		})
	}
	wg.Wait()
	changed := 0
	for i, k := range keys {
		if errs[i] != nil {
			return 0, errs[i]
		}
		if state[k] != gens[i] {
			state[k] = gens[i]
			changed++
		}
	}
	return changed, nil
}
