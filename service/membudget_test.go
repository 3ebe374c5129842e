package service_test

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connecthttp"
	"golang.org/x/sync/errgroup"

	kvv1 "github.com/kvgate/kvgate/gen/go/fastly/kv/v1"
	"github.com/kvgate/kvgate/internal/app"
	"github.com/kvgate/kvgate/internal/kvtest"
	"github.com/kvgate/kvgate/internal/membudget"
	"github.com/kvgate/kvgate/service"
	"github.com/kvgate/kvgate/upstream/localstore"
)

// A small budget in front of a slow store, so that many callers at once
// must wait for it.
const (
	budgetBytes    = 8 << 20
	budgetMaxValue = 1 << 20
	budgetLatency  = 50 * time.Millisecond
)

func startBudgetStack(t *testing.T) *kvtest.Stack {
	t.Helper()
	return kvtest.Start(t, kvtest.Options{
		Store:         localstore.Config{Faults: localstore.Faults{Latency: budgetLatency}},
		MaxValueBytes: budgetMaxValue,
		Batch:         service.BatchConfig{MaxBytes: 1 << 20, Concurrency: 2},
		MemoryBudget:  app.MemoryBudgetConfig{Bytes: budgetBytes},
	})
}

// checkBudgetReturned waits until every RPC has released its share, and
// checks the budget never held more than its size.
func checkBudgetReturned(t *testing.T, b *membudget.Budget) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for b.Stats().Held != 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	s := b.Stats()
	if s.Held != 0 || s.Waiters != 0 {
		t.Errorf("after the calls the budget holds %d bytes, %d waiting; want none", s.Held, s.Waiters)
	}
	if s.MaxHeld > s.Size {
		t.Errorf("the budget held %d bytes at most, more than its %d", s.MaxHeld, s.Size)
	}
	t.Logf("budget %d bytes: held at most %d", s.Size, s.MaxHeld)
}

func budgetValue(i int, size int) []byte { return bytes.Repeat([]byte{byte('a' + i%26)}, size) }

// TestMemoryBudgetConcurrentBatchStreams sends 24 BatchPutItems streams
// of 1 MiB each at once through an 8 MiB budget: they wait for it in
// turn, and every item is written.
func TestMemoryBudgetConcurrentBatchStreams(t *testing.T) {
	t.Parallel()
	st := startBudgetStack(t)
	const streams, messages, perMessage, valueBytes = 24, 4, 2, 128 << 10
	for _, proto := range []struct {
		name string
		opts []connecthttp.Option
	}{{"grpc", []connecthttp.Option{connecthttp.WithGRPC()}}, {"connect", nil}} {
		client := st.NewClient(kvtest.H2CClient(), proto.opts...)
		var g errgroup.Group
		for s := range streams {
			g.Go(func() error {
				store := fmt.Sprintf("budget-%s-%d", proto.name, s)
				var items []*kvv1.BatchItem
				for i := range messages * perMessage {
					items = append(items, &kvv1.BatchItem{Key: fmt.Sprintf("k%03d", i), Value: budgetValue(i, valueBytes)})
				}
				res, err := batchPut(t.Context(), client, batchMessages(store, items, perMessage))
				if err != nil {
					return fmt.Errorf("%s: %w", store, err)
				}
				if res.GetWritten() != uint64(len(items)) || len(res.GetFailures()) != 0 {
					return fmt.Errorf("%s: written %d, failures %v; want all %d written", store, res.GetWritten(), res.GetFailures(), len(items))
				}
				got, err := st.Client.GetItem(t.Context(), store, "k007")
				if err != nil || !bytes.Equal(got.Value, budgetValue(7, valueBytes)) {
					return fmt.Errorf("%s: k007 not stored as sent: %v", store, err)
				}
				return nil
			})
		}
		if err := g.Wait(); err != nil {
			t.Errorf("%s: %v", proto.name, err)
		}
	}
	checkBudgetReturned(t, st.MemoryBudget)
}

// TestMemoryBudgetConcurrentLargeValues writes and reads 12 values of the
// largest size at once, each charged twice over on the way in and on the
// way out, through a budget that fits only a few at a time.
func TestMemoryBudgetConcurrentLargeValues(t *testing.T) {
	t.Parallel()
	st := startBudgetStack(t)
	const calls = 12
	for _, proto := range []struct {
		name string
		opts []connecthttp.Option
	}{
		{"connect", nil},
		{"grpc", []connecthttp.Option{connecthttp.WithGRPC()}},
		{"grpc-web-gzip", []connecthttp.Option{connecthttp.WithGRPCWeb(), connecthttp.WithSendCompression("gzip")}},
	} {
		client := st.NewClient(kvtest.H2CClient(), proto.opts...)
		store := "large-" + proto.name
		var g errgroup.Group
		for i := range calls {
			g.Go(func() error {
				_, err := client.PutItem(t.Context(), &kvv1.PutItemRequest{StoreId: store, Key: fmt.Sprint(i), Value: budgetValue(i, budgetMaxValue)})
				return err
			})
		}
		if err := g.Wait(); err != nil {
			t.Fatalf("%s PutItem: %v", proto.name, err)
		}
		for i := range calls {
			g.Go(func() error {
				res, err := client.GetItem(t.Context(), &kvv1.GetItemRequest{StoreId: store, Key: fmt.Sprint(i)})
				if err == nil && !bytes.Equal(res.GetItem().GetValue(), budgetValue(i, budgetMaxValue)) {
					err = fmt.Errorf("GetItem %d: value differs", i)
				}
				return err
			})
		}
		if err := g.Wait(); err != nil {
			t.Fatalf("%s GetItem: %v", proto.name, err)
		}
	}
	checkBudgetReturned(t, st.MemoryBudget)
}

// TestMemoryBudgetExhausted holds almost the whole budget, so that calls
// wait for it past their deadline: they fail with RESOURCE_EXHAUSTED, and
// a batch write still accounts for the items it received.
func TestMemoryBudgetExhausted(t *testing.T) {
	t.Parallel()
	st := startBudgetStack(t)
	client := st.NewClient(kvtest.H2CClient(), connecthttp.WithGRPC())
	// Room for a small message and its lines, not for a 1 MiB value's
	// message (charged 3 MiB).
	held, err := st.MemoryBudget.Acquire(t.Context(), budgetBytes-256<<10)
	if err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	_, err = client.PutItem(ctx, &kvv1.PutItemRequest{StoreId: "s", Key: "big", Value: budgetValue(0, budgetMaxValue)})
	asConnectError(t, "PutItem while the budget is held", err, connect.CodeResourceExhausted)

	ctx, cancel = context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	small := []*kvv1.BatchItem{{Key: "a", Value: []byte("1")}, {Key: "b", Value: []byte("2")}}
	big := []*kvv1.BatchItem{{Key: "c", Value: budgetValue(2, budgetMaxValue)}}
	_, err = batchPut(ctx, client, []*kvv1.BatchPutItemsRequest{{StoreId: "s", Items: small}, {Items: big}})
	_, progress := batchProgress(t, "BatchPutItems while the budget is held", err, connect.CodeResourceExhausted)
	// Before waiting, the stream sent the batch it had: the small items.
	if written := writtenIndexes(t, progress); progress.GetReceived() != 2 || len(written) != 2 || len(progress.GetFailures()) != 0 {
		t.Errorf("BatchProgress = received %d, written %v, failures %v; want the 2 small items received and written",
			progress.GetReceived(), written, progress.GetFailures())
	}

	st.MemoryBudget.Release(held)
	if _, err := client.PutItem(t.Context(), &kvv1.PutItemRequest{StoreId: "s", Key: "big", Value: budgetValue(0, budgetMaxValue)}); err != nil {
		t.Errorf("PutItem once the budget is free: %v", err)
	}
	checkBudgetReturned(t, st.MemoryBudget)
}

// TestMemoryBudgetGzipBombs sends PutItem requests that expand far past
// the message limit when decompressed, many at once: each is refused
// with RESOURCE_EXHAUSTED, and the budget, charged for decompression up
// to the limit, is never exceeded.
func TestMemoryBudgetGzipBombs(t *testing.T) {
	t.Parallel()
	st := startBudgetStack(t)
	for _, proto := range []struct {
		name string
		opts []connecthttp.Option
	}{
		{"connect", nil},
		{"grpc", []connecthttp.Option{connecthttp.WithGRPC()}},
	} {
		client := st.NewClient(kvtest.H2CClient(), append(proto.opts, connecthttp.WithSendCompression("gzip"))...)
		bomb := make([]byte, 4*budgetMaxValue) // zeros: compresses about a thousandfold
		var g errgroup.Group
		for i := range 6 {
			g.Go(func() error {
				_, err := client.PutItem(t.Context(), &kvv1.PutItemRequest{StoreId: "bombs", Key: fmt.Sprint(i), Value: bomb})
				if connect.CodeOf(err) != connect.CodeResourceExhausted {
					return fmt.Errorf("%s gzip bomb %d: %v, want resource_exhausted", proto.name, i, err)
				}
				return nil
			})
		}
		if err := g.Wait(); err != nil {
			t.Error(err)
		}
	}
	checkBudgetReturned(t, st.MemoryBudget)
}
