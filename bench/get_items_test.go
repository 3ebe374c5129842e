package bench

import (
	"context"
	"testing"
	"time"

	"github.com/kvgate/kvgate/internal/benchkit"
)

// getItemsClientConcurrency is the concurrency of the client that makes
// its own GetItem calls at once, and of the direct REST reference.
const getItemsClientConcurrency = 16

// BenchmarkGetItems reads 1,000 items of 1 KiB from a local store 20 ms
// away: with one GetItems call, with 1,000 GetItem calls one after
// another, with the same calls 16 at a time, and with direct REST GETs 16
// at a time. It reports each side's time per read of all the keys, and
// the ratios against GetItems.
func BenchmarkGetItems(b *testing.B) {
	const keys, size = 1000, 1024
	env := streamEnv(b, 0, 0)
	ctx := context.Background()
	if err := env.SeedGet(ctx, "mget-", keys, size); err != nil {
		b.Fatal(err)
	}
	var many, seq, conc, direct, first time.Duration
	for b.Loop() {
		m, err := env.GetItemsKvgate(ctx, "mget-", keys, size)
		if err != nil {
			b.Fatal(err)
		}
		s, err := env.GetItemKvgate(ctx, "mget-", keys, size, 1)
		if err != nil {
			b.Fatal(err)
		}
		c, err := env.GetItemKvgate(ctx, "mget-", keys, size, getItemsClientConcurrency)
		if err != nil {
			b.Fatal(err)
		}
		d, err := env.GetDirect(ctx, "mget-", keys, size, getItemsClientConcurrency)
		if err != nil {
			b.Fatal(err)
		}
		many, seq, conc, direct = many+m.Duration, seq+s.Duration, conc+c.Duration, direct+d.Duration
		first += m.FirstResult
	}
	n := float64(b.N)
	b.ReportMetric(float64(many.Milliseconds())/n, "getitems-ms")
	b.ReportMetric(float64(first.Milliseconds())/n, "getitems-first-ms")
	b.ReportMetric(float64(seq.Milliseconds())/n, "getitem-seq-ms")
	b.ReportMetric(float64(conc.Milliseconds())/n, "getitem-x16-ms")
	b.ReportMetric(float64(direct.Milliseconds())/n, "direct-x16-ms")
	b.ReportMetric(float64(seq)/float64(many), "seq/getitems")
	b.ReportMetric(float64(conc)/float64(many), "x16/getitems")
	b.ReportMetric(float64(many)/float64(direct), "getitems/direct-x16")
}

// TestGetItemsBenchSmoke runs the multi-get scenario at a smoke size, with
// no latency, so that the benchmark's code keeps working.
func TestGetItemsBenchSmoke(t *testing.T) {
	t.Parallel()
	env, _ := localEnv(t, benchkit.Config{Store: "smoke"})
	const keys, size = 40, 100
	ctx := t.Context()
	if err := env.SeedGet(ctx, "s-", keys, size); err != nil {
		t.Fatal(err)
	}
	for _, run := range []func() (benchkit.Measurement, error){
		func() (benchkit.Measurement, error) { return env.GetItemsKvgate(ctx, "s-", keys, size) },
		func() (benchkit.Measurement, error) { return env.GetItemKvgate(ctx, "s-", keys, size, 1) },
		func() (benchkit.Measurement, error) { return env.GetItemKvgate(ctx, "s-", keys, size, 4) },
		func() (benchkit.Measurement, error) { return env.GetDirect(ctx, "s-", keys, size, 4) },
	} {
		m, err := run()
		if err != nil {
			t.Fatalf("%s: %v", m.Name, err)
		}
		if m.Requests != keys {
			t.Errorf("%s: %d upstream requests; want %d", m.Name, m.Requests, keys)
		}
	}
}
