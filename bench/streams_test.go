package bench

import (
	"context"
	"fmt"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/kvgate/kvgate/internal/benchkit"
	"github.com/kvgate/kvgate/service"
	"github.com/kvgate/kvgate/upstream/localstore"
)

// localEnv starts an in-memory local store, with no latency until the
// caller sets one, and kvgate in front of it, configured by cfg.
func localEnv(tb testing.TB, cfg benchkit.Config) (*benchkit.Env, *localstore.Store) {
	tb.Helper()
	store, err := localstore.Open(localstore.Config{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { store.Close() })
	srv := httptest.NewServer(store.Handler())
	tb.Cleanup(srv.Close)
	cfg.UpstreamURL = srv.URL
	env, err := benchkit.Start(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(env.Close)
	return env, store
}

// streamEnv starts a local store with 20 ms of latency per request and
// kvgate in front of it. Smaller than cmd/kvbench's full run (go run
// ./cmd/kvbench), so it fits a benchmark iteration.
func streamEnv(b *testing.B, items, keys int) *benchkit.Env {
	b.Helper()
	env, store := localEnv(b, benchkit.Config{
		Store: "bench",
		Items: items, ValueBytes: 1024, SingleConcurrency: 50, MessageItems: 100,
		Batch: service.BatchConfig{MaxLines: 1000, MaxBytes: 8 << 20, Concurrency: 4},
		Keys:  keys, PageSize: 1000,
	})
	store.SetFaults(localstore.Faults{Latency: 20 * time.Millisecond})
	return env
}

// BenchmarkBatchPutItems uploads 10,000 x 1 KiB items through kvgate and
// with direct batch PUTs cut the same way, and reports kvgate/direct.
func BenchmarkBatchPutItems(b *testing.B) {
	env := streamEnv(b, 10_000, 0)
	ctx := context.Background()
	var kv, direct time.Duration
	for i := 0; b.Loop(); i++ {
		m, err := env.UploadKvgate(ctx, fmt.Sprintf("k%d-", i))
		if err != nil {
			b.Fatal(err)
		}
		d, err := env.UploadDirectBatch(ctx, fmt.Sprintf("d%d-", i))
		if err != nil {
			b.Fatal(err)
		}
		kv += m.Duration
		direct += d.Duration
	}
	b.ReportMetric(float64(kv)/float64(direct), "kvgate/direct")
}

// BenchmarkStreamKeys enumerates 20,000 keys through kvgate and with a
// direct sequential cursor loop, and reports kvgate/direct.
func BenchmarkStreamKeys(b *testing.B) {
	env := streamEnv(b, 0, 20_000)
	ctx := context.Background()
	if err := env.Seed(ctx, "enum-"); err != nil {
		b.Fatal(err)
	}
	var kv, direct, kvFirst, directFirst time.Duration
	for b.Loop() {
		m, err := env.EnumerateKvgate(ctx, "enum-")
		if err != nil {
			b.Fatal(err)
		}
		d, err := env.EnumerateDirect(ctx, "enum-")
		if err != nil {
			b.Fatal(err)
		}
		kv, direct = kv+m.Duration, direct+d.Duration
		kvFirst, directFirst = kvFirst+m.FirstResult, directFirst+d.FirstResult
	}
	b.ReportMetric(float64(kv)/float64(direct), "kvgate/direct")
	b.ReportMetric(float64(kvFirst)/float64(directFirst), "first-keys-round-trips")
}
