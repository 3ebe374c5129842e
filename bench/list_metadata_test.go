package bench

import (
	"context"
	"testing"
	"time"

	"github.com/kvgate/kvgate/internal/benchkit"
	"github.com/kvgate/kvgate/service"
	"github.com/kvgate/kvgate/upstream/localstore"
)

// metadataEnv starts a local store answering after latency and kvgate in
// front of it, and seeds keys keys under "meta-".
func metadataEnv(tb testing.TB, latency time.Duration, keys, pageSize int) *benchkit.Env {
	tb.Helper()
	env, store := localEnv(tb, benchkit.Config{
		Store: "bench", Keys: keys, PageSize: pageSize,
		// Seed writes the keys with batch PUTs cut this way.
		Batch: service.DefaultBatchConfig(),
	})
	if err := env.Seed(context.Background(), "meta-"); err != nil {
		tb.Fatal(err)
	}
	store.SetFaults(localstore.Faults{Latency: latency})
	return env
}

// BenchmarkStreamKeysMetadata enumerates 10,000 keys through StreamKeys,
// plain and with include_metadata (one HEAD per key, 32 in flight), and
// the second the way a direct REST client would (each page, then its
// HEADs), with the store 20 ms away and next door. It reports the keys per
// second of each, the time include_metadata costs over the plain listing,
// kvgate's time against the direct client's, and the upstream requests per
// key.
func BenchmarkStreamKeysMetadata(b *testing.B) {
	const keys = 10_000
	for _, tc := range []struct {
		name    string
		latency time.Duration
	}{{"latency=20ms", 20 * time.Millisecond}, {"latency=0", 0}} {
		b.Run(tc.name, func(b *testing.B) {
			env := metadataEnv(b, tc.latency, keys, 1000)
			ctx := context.Background()
			var plain, meta, direct time.Duration
			var metaRequests int64
			for b.Loop() {
				p, err := env.EnumerateKvgate(ctx, "meta-")
				if err != nil {
					b.Fatal(err)
				}
				m, err := env.EnumerateKvgateMetadata(ctx, "meta-")
				if err != nil {
					b.Fatal(err)
				}
				d, err := env.EnumerateDirectMetadata(ctx, "meta-")
				if err != nil {
					b.Fatal(err)
				}
				plain, meta, direct = plain+p.Duration, meta+m.Duration, direct+d.Duration
				metaRequests += m.Requests
			}
			n := float64(b.N) * keys
			b.ReportMetric(n/plain.Seconds(), "plain-keys/s")
			b.ReportMetric(n/meta.Seconds(), "metadata-keys/s")
			b.ReportMetric(float64(meta)/float64(plain), "metadata/plain")
			b.ReportMetric(float64(meta)/float64(direct), "kvgate/direct")
			b.ReportMetric(float64(metaRequests)/n, "requests/key")
		})
	}
}

// TestStreamKeysMetadataSmoke runs the benchmark's three enumerations on a
// few keys, so that make test keeps them working: each sees every key,
// and include_metadata costs the plain listing's pages plus one HEAD per
// key, as many requests as the direct client's.
func TestStreamKeysMetadataSmoke(t *testing.T) {
	t.Parallel()
	const keys = 250
	env := metadataEnv(t, 0, keys, 100)
	ctx := t.Context()
	plain, err := env.EnumerateKvgate(ctx, "meta-")
	if err != nil {
		t.Fatal(err)
	}
	meta, err := env.EnumerateKvgateMetadata(ctx, "meta-")
	if err != nil {
		t.Fatal(err)
	}
	direct, err := env.EnumerateDirectMetadata(ctx, "meta-")
	if err != nil {
		t.Fatal(err)
	}
	if meta.Requests != plain.Requests+keys || direct.Requests != meta.Requests {
		t.Errorf("upstream requests: plain %d, include_metadata %d, direct %d; want include_metadata = plain + %d = direct",
			plain.Requests, meta.Requests, direct.Requests, keys)
	}
}
