package main

import (
	"context"
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/kvgate/kvgate/internal/benchkit"
	"github.com/kvgate/kvgate/service"
)

// metadataConfig sizes the include_metadata scenario.
type metadataConfig struct {
	keys        int
	latencies   []time.Duration
	concurrency int
}

// metadataFlags registers the include_metadata scenario's flags.
func metadataFlags() *metadataConfig {
	m := &metadataConfig{latencies: []time.Duration{20 * time.Millisecond, 0}}
	flag.IntVar(&m.keys, "metadata-keys", 10_000, "keys the include_metadata scenario enumerates")
	flag.IntVar(&m.concurrency, "metadata-concurrency", service.DefaultListMetadataConcurrency,
		"kvgate's -list-metadata-concurrency, and the HEADs the direct client keeps in flight")
	flag.Func("metadata-latencies", "comma-separated store latencies the include_metadata scenario runs at (default 20ms,0)", func(v string) error {
		m.latencies = nil
		for f := range strings.SplitSeq(v, ",") {
			d, err := time.ParseDuration(strings.TrimSpace(f))
			if err != nil {
				return err
			}
			m.latencies = append(m.latencies, d)
		}
		return nil
	})
	return m
}

// metadata measures what include_metadata costs: at each latency, a store
// of its own holding meta.keys keys, enumerated by plain StreamKeys, by
// StreamKeys with include_metadata, and by a direct client reading each
// page and then its keys' HEADs.
func metadata(ctx context.Context, cfg benchkit.Config, meta *metadataConfig) error {
	cfg.Keys, cfg.ListMetadataConcurrency = meta.keys, meta.concurrency
	for _, latency := range meta.latencies {
		fmt.Printf("include_metadata: %d keys, %d per page, %d HEADs in flight, store latency %v\n",
			cfg.Keys, cfg.PageSize, cfg.ListMetadataConcurrency, latency)
		if err := metadataAt(ctx, cfg, latency); err != nil {
			return err
		}
	}
	return nil
}

func metadataAt(ctx context.Context, cfg benchkit.Config, latency time.Duration) error {
	env, stopStore, err := startEnv(ctx, cfg, latency)
	if err != nil {
		return err
	}
	defer stopStore()
	defer env.Close()
	if err := env.Seed(ctx, "meta-"); err != nil {
		return err
	}
	plain, err := env.EnumerateKvgate(ctx, "meta-")
	if err != nil {
		return err
	}
	withMeta, err := env.EnumerateKvgateMetadata(ctx, "meta-")
	if err != nil {
		return err
	}
	direct, err := env.EnumerateDirectMetadata(ctx, "meta-")
	if err != nil {
		return err
	}
	rows := []benchkit.Measurement{plain, withMeta, direct}
	table(rows)
	for i, m := range rows {
		heap := "" // sampled on kvgate's side only
		if i < 2 {
			heap = fmt.Sprintf("  heap peak %.1f MiB", float64(m.PeakHeap)/(1<<20))
		}
		fmt.Printf("  %-36s %9.0f keys/s  %.3f upstream requests per key%s\n", m.Name,
			float64(cfg.Keys)/m.Duration.Seconds(), float64(m.Requests)/float64(cfg.Keys), heap)
	}
	fmt.Printf("  include_metadata / plain: %.1fx the time; kvgate / direct: %.3fx\n\n",
		ratio(withMeta.Duration, plain.Duration), ratio(withMeta.Duration, direct.Duration))
	return nil
}
