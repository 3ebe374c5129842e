// Command kvbench measures kvgate's streaming RPCs beside a direct REST
// client doing the same work against the same local store, in one run, and
// prints the ratios. The local store runs in a child process with injected
// latency, so the figures reflect an upstream that is a round trip away and
// the heap figures are kvgate's (and its client's) alone.
//
//	go run ./cmd/kvbench                      # the full run: 100,000 items, 200,000 keys, 20 ms,
//	                                          # and 10,000 keys with include_metadata at 20 ms and 0
//	go run ./cmd/kvbench -items 10000 -keys 20000
//	go run ./cmd/kvbench -scenarios getitems   # 1,000 reads: GetItems, GetItem one by one and 16 at a time
//	go run ./cmd/kvbench -scenarios metadata -metadata-keys 10000 -metadata-latencies 20ms,0
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/kvgate/kvgate/internal/benchkit"
	"github.com/kvgate/kvgate/service"
)

func main() {
	var (
		cfg         benchkit.Config
		latency     = flag.Duration("latency", 20*time.Millisecond, "latency the local store adds to every request")
		scenarios   = flag.String("scenarios", "upload,enumerate,getitems,copy,metadata", "comma-separated: upload, enumerate, getitems, copy, metadata")
		multiGet    multiGetConfig
		skipSingle  = flag.Bool("skip-single", false, "skip the direct single-PUT upload (the slowest part)")
		serveStore  = flag.Bool("serve-store", false, "internal: serve the local store and print its address")
		batchConfig service.BatchConfig
	)
	flag.IntVar(&cfg.Items, "items", 100_000, "items to upload")
	flag.IntVar(&cfg.ValueBytes, "value-bytes", 1024, "bytes per uploaded value")
	flag.IntVar(&cfg.SingleConcurrency, "single-concurrency", 50, "single PUTs the direct client keeps in flight")
	flag.IntVar(&cfg.MessageItems, "message-items", 100, "items per BatchPutItems message")
	flag.IntVar(&cfg.Keys, "keys", 200_000, "keys to enumerate")
	flag.IntVar(&cfg.PageSize, "page-size", 1000, "keys per list page")
	flag.IntVar(&cfg.CopyItems, "copy-items", 20_000, "items to copy (of -value-bytes)")
	flag.IntVar(&cfg.CopyConcurrency, "copy-concurrency", service.DefaultCopyConcurrency, "GETs in flight while copying, on both sides")
	meta := metadataFlags()
	batchDefaults := service.DefaultBatchConfig()
	flag.IntVar(&batchConfig.MaxLines, "batch-lines", batchDefaults.MaxLines, "items per batch PUT")
	flag.IntVar(&batchConfig.MaxBytes, "batch-bytes", batchDefaults.MaxBytes, "bytes per batch PUT")
	flag.IntVar(&batchConfig.Concurrency, "batch-concurrency", batchDefaults.Concurrency, "batch PUTs in flight")
	flag.IntVar(&multiGet.keys, "get-keys", 1000, "keys the getitems scenario reads (at most 1000: one GetItems call)")
	flag.IntVar(&multiGet.valueBytes, "get-value-bytes", 1024, "bytes per value the getitems scenario reads")
	flag.IntVar(&multiGet.clientConcurrency, "get-client-concurrency", 16, "GetItem calls (and direct GETs) the client makes at once in the getitems scenario")
	flag.IntVar(&cfg.GetItemsConcurrency, "get-items-concurrency", service.DefaultGetItemsConcurrency, "kvgate's -get-items-concurrency")
	flag.Parse()
	cfg.Batch, cfg.Store = batchConfig, "bench"

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *serveStore {
		if err := benchkit.ServeStore(ctx, *latency); err != nil {
			fmt.Fprintln(os.Stderr, "kvbench store:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(ctx, cfg, *latency, *scenarios, *skipSingle, multiGet, meta); err != nil {
		fmt.Fprintln(os.Stderr, "kvbench:", err)
		os.Exit(1)
	}
}

// startEnv starts the local store in a child process, answering after
// latency, and kvgate in front of it; closing the Env leaves the store
// running until stopStore.
func startEnv(ctx context.Context, cfg benchkit.Config, latency time.Duration) (env *benchkit.Env, stopStore func(), err error) {
	url, stopStore, err := benchkit.StartStore(ctx, latency)
	if err != nil {
		return nil, nil, err
	}
	cfg.UpstreamURL = url
	if env, err = benchkit.Start(cfg); err != nil {
		stopStore()
		return nil, nil, err
	}
	return env, stopStore, nil
}

// run runs the scenarios named: those on the one store at latency first,
// then the metadata scenario, which starts stores of its own latencies.
func run(ctx context.Context, cfg benchkit.Config, latency time.Duration, scenarios string, skipSingle bool, multiGet multiGetConfig, meta *metadataConfig) error {
	if strings.Contains(scenarios, "upload") || strings.Contains(scenarios, "enumerate") ||
		strings.Contains(scenarios, "getitems") || strings.Contains(scenarios, "copy") {
		if err := runOnOneStore(ctx, cfg, latency, scenarios, skipSingle, multiGet); err != nil {
			return err
		}
	}
	if strings.Contains(scenarios, "metadata") {
		return metadata(ctx, cfg, meta)
	}
	return nil
}

// runOnOneStore runs the scenarios that share one local store answering
// after latency.
func runOnOneStore(ctx context.Context, cfg benchkit.Config, latency time.Duration, scenarios string, skipSingle bool, multiGet multiGetConfig) error {
	env, stopStore, err := startEnv(ctx, cfg, latency)
	if err != nil {
		return err
	}
	defer stopStore()
	defer env.Close()
	fmt.Printf("kvbench: local store with %v latency per request; batch %d lines / %d bytes, %d in flight\n\n",
		latency, cfg.Batch.MaxLines, cfg.Batch.MaxBytes, cfg.Batch.Concurrency)

	if strings.Contains(scenarios, "upload") {
		if err := upload(ctx, env, cfg, skipSingle); err != nil {
			return err
		}
	}
	if strings.Contains(scenarios, "enumerate") {
		if err := enumerate(ctx, env, cfg, latency); err != nil {
			return err
		}
	}
	if strings.Contains(scenarios, "getitems") {
		if err := getItems(ctx, env, cfg, multiGet); err != nil {
			return err
		}
	}
	if strings.Contains(scenarios, "copy") {
		if err := copyScenario(ctx, env, cfg); err != nil {
			return err
		}
	}
	return nil
}

func copyScenario(ctx context.Context, env *benchkit.Env, cfg benchkit.Config) error {
	fmt.Printf("Copy: %d items x %d bytes, %d GETs in flight\n", cfg.CopyItems, cfg.ValueBytes, cfg.CopyConcurrency)
	if err := env.SeedCopy(ctx, "copy-"); err != nil {
		return err
	}
	kv, err := env.CopyKvgate(ctx, "copy-", cfg.Store+"-copy-kvgate")
	if err != nil {
		return err
	}
	direct, err := env.CopyDirect(ctx, "copy-", cfg.Store+"-copy-direct")
	if err != nil {
		return err
	}
	table([]benchkit.Measurement{kv, direct})
	n := float64(cfg.CopyItems)
	fmt.Printf("  kvgate: %.0f items/s, %.3f upstream requests per item; direct: %.0f items/s, %.3f requests per item\n",
		n/kv.Duration.Seconds(), float64(kv.Requests)/n, n/direct.Duration.Seconds(), float64(direct.Requests)/n)
	fmt.Printf("  kvgate / direct: %.3fx\n", ratio(kv.Duration, direct.Duration))
	fmt.Printf("  kvgate heap peak during the copy: %.1f MiB\n\n", float64(kv.PeakHeap)/(1<<20))
	return nil
}

func upload(ctx context.Context, env *benchkit.Env, cfg benchkit.Config, skipSingle bool) error {
	fmt.Printf("Upload: %d items x %d bytes\n", cfg.Items, cfg.ValueBytes)
	kv, err := env.UploadKvgate(ctx, "up-kvgate-")
	if err != nil {
		return err
	}
	batch, err := env.UploadDirectBatch(ctx, "up-batch-")
	if err != nil {
		return err
	}
	rows := []benchkit.Measurement{kv, batch}
	if !skipSingle {
		single, err := env.UploadDirectSingle(ctx, "up-single-")
		if err != nil {
			return err
		}
		rows = append(rows, single)
	}
	table(rows)
	fmt.Printf("  kvgate / direct batch: %.3fx (target <= 1.1x)\n", ratio(kv.Duration, batch.Duration))
	if !skipSingle {
		fmt.Printf("  direct single / kvgate: %.1fx faster (target >= 50x)\n", ratio(rows[2].Duration, kv.Duration))
	}
	fmt.Printf("  kvgate heap peak during the upload: %.1f MiB\n\n", float64(kv.PeakHeap)/(1<<20))
	return nil
}

func enumerate(ctx context.Context, env *benchkit.Env, cfg benchkit.Config, latency time.Duration) error {
	fmt.Printf("Enumerate: %d keys, %d per page\n", cfg.Keys, cfg.PageSize)
	if err := env.Seed(ctx, "enum-"); err != nil {
		return err
	}
	direct, err := env.EnumerateDirect(ctx, "enum-")
	if err != nil {
		return err
	}
	kv, err := env.EnumerateKvgate(ctx, "enum-")
	if err != nil {
		return err
	}
	table([]benchkit.Measurement{kv, direct})
	fmt.Printf("  kvgate / direct loop: %.3fx (target <= 1.05x)\n", ratio(kv.Duration, direct.Duration))
	fmt.Printf("  kvgate first keys after %.2f round trips (direct first page: %v; target <= 1.5)\n",
		ratio(kv.FirstResult, direct.FirstResult), direct.FirstResult.Round(time.Millisecond))
	fmt.Printf("  kvgate heap peak during the enumeration: %.1f MiB\n\n", float64(kv.PeakHeap)/(1<<20))
	return nil
}

// multiGetConfig sizes the getitems scenario.
type multiGetConfig struct {
	keys, valueBytes, clientConcurrency int
}

func getItems(ctx context.Context, env *benchkit.Env, cfg benchkit.Config, mg multiGetConfig) error {
	kvConc := cfg.GetItemsConcurrency
	if kvConc <= 0 {
		kvConc = service.DefaultGetItemsConcurrency
	}
	fmt.Printf("Multi-get: %d keys x %d bytes; GetItems reads %d at a time, the client %d at a time\n",
		mg.keys, mg.valueBytes, kvConc, mg.clientConcurrency)
	if err := env.SeedGet(ctx, "mget-", mg.keys, mg.valueBytes); err != nil {
		return err
	}
	many, err := env.GetItemsKvgate(ctx, "mget-", mg.keys, mg.valueBytes)
	if err != nil {
		return err
	}
	seq, err := env.GetItemKvgate(ctx, "mget-", mg.keys, mg.valueBytes, 1)
	if err != nil {
		return err
	}
	conc, err := env.GetItemKvgate(ctx, "mget-", mg.keys, mg.valueBytes, mg.clientConcurrency)
	if err != nil {
		return err
	}
	direct, err := env.GetDirect(ctx, "mget-", mg.keys, mg.valueBytes, mg.clientConcurrency)
	if err != nil {
		return err
	}
	table([]benchkit.Measurement{many, seq, conc, direct})
	fmt.Printf("  sequential GetItem / GetItems: %.1fx\n", ratio(seq.Duration, many.Duration))
	fmt.Printf("  GetItem %d at a time / GetItems: %.2fx\n", mg.clientConcurrency, ratio(conc.Duration, many.Duration))
	fmt.Printf("  GetItems / direct GETs %d at a time: %.2fx\n", mg.clientConcurrency, ratio(many.Duration, direct.Duration))
	fmt.Printf("  kvgate heap peak during GetItems: %.1f MiB\n\n", float64(many.PeakHeap)/(1<<20))
	return nil
}

func table(rows []benchkit.Measurement) {
	w := tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(w, "  \tside\ttime\tupstream requests\tfirst keys")
	for _, m := range rows {
		first := "-"
		if m.FirstResult > 0 {
			first = m.FirstResult.Round(100 * time.Microsecond).String()
		}
		fmt.Fprintf(w, "  \t%s\t%v\t%d\t%s\n", m.Name, m.Duration.Round(time.Millisecond), m.Requests, first)
	}
	w.Flush()
}

func ratio(a, b time.Duration) float64 { return float64(a) / float64(b) }
