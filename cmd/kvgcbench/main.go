// Command kvgcbench measures PutItem group commit: 1, 10, 100 and 1,000
// concurrent writers each call PutItem in a loop through kvgate, with
// group commit off and on, against a local store that adds 20 ms to every
// request, and it prints a markdown table of the upstream requests per
// item, the throughput and the p50 and p99 latencies, and whether the
// targets were met. The local store runs in a child process (the binary
// re-executes itself), so kvgate and the writers have this one to
// themselves.
//
//	go run ./cmd/kvgcbench                                  # the full run (make bench-group-commit)
//	go run ./cmd/kvgcbench -writers 1,100 -duration 2s
//	go run ./cmd/kvgcbench -linger 2ms
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/kvgate/kvgate/internal/benchkit"
	"github.com/kvgate/kvgate/internal/gcbench"
)

func main() {
	cfg := gcbench.DefaultConfig()
	latency := flag.Duration("latency", 20*time.Millisecond, "latency the local store adds to every request")
	serveStore := flag.Bool("serve-store", false, "internal: serve the local store and print its address")
	flag.Func("writers", "comma-separated numbers of concurrent writers (default 1,10,100,1000)", func(s string) error {
		cfg.Writers = nil
		for f := range strings.SplitSeq(s, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n <= 0 {
				return fmt.Errorf("%q is not a number of writers", f)
			}
			cfg.Writers = append(cfg.Writers, n)
		}
		return nil
	})
	flag.DurationVar(&cfg.Duration, "duration", cfg.Duration, "measured run of each cell")
	flag.DurationVar(&cfg.Warmup, "warmup", cfg.Warmup, "unmeasured run before each cell")
	flag.IntVar(&cfg.ValueBytes, "value-bytes", cfg.ValueBytes, "bytes per value")
	flag.DurationVar(&cfg.Linger, "linger", 0, "group commit linger of the runs with group commit")
	flag.IntVar(&cfg.Rounds, "rounds", cfg.Rounds, "rounds; each runs every cell in turn, and a row pools its cell's rounds")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *serveStore {
		if err := benchkit.ServeStore(ctx, *latency); err != nil {
			fmt.Fprintln(os.Stderr, "kvgcbench store:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(ctx, cfg, *latency); err != nil {
		fmt.Fprintln(os.Stderr, "kvgcbench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, cfg gcbench.Config, latency time.Duration) error {
	url, stopStore, err := benchkit.StartStore(ctx, latency)
	if err != nil {
		return err
	}
	defer stopStore()
	cfg.UpstreamURL = url

	fmt.Printf("kvgcbench: local store with %v latency per request; %d rounds of %v per cell after %v of warmup; %d-byte values; linger %v; %s\n\n",
		latency, max(cfg.Rounds, 1), cfg.Duration, cfg.Warmup, cfg.ValueBytes, cfg.Linger, loadAverage())
	rows, err := gcbench.Run(ctx, cfg, func(round int, r gcbench.Row) {
		fmt.Fprintf(os.Stderr, "  round %d: %4d writers, group commit %-5v: %d items, %d requests, p99 %v\n",
			round+1, r.Writers, r.GroupCommit, r.Items, r.Requests, r.P99.Round(100*time.Microsecond))
	})
	if err != nil {
		return err
	}
	if err := gcbench.WriteMarkdown(os.Stdout, rows); err != nil {
		return err
	}
	fmt.Printf("\nAfter the runs: %s\n", loadAverage())
	if n, perRequest, p99, ok := gcbench.Targets(rows); ok {
		fmt.Printf("\nAt %d writers: at least 100 items per upstream request: %s; p99 no worse than without group commit: %s\n",
			n, met(perRequest), met(p99))
	}
	return gcbench.Check(rows)
}

// loadAverage reports the machine's load averages, to show how much other
// work shared it with the benchmark.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "load average unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "load average unknown"
	}
	return fmt.Sprintf("load average %s %s %s on %d CPUs", f[0], f[1], f[2], runtime.NumCPU())
}

func met(ok bool) string {
	if ok {
		return "met"
	}
	return "NOT met"
}
