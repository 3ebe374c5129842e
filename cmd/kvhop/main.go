// Command kvhop measures what kvgate's unary path costs beside the
// cheapest extra HTTP hop, httputil.ReverseProxy, in front of the same
// in-memory local store, each in a process of its own, and prints a
// markdown table of throughputs, hop CPU per request, allocations and
// latencies, with the paired ratios to the stock proxy. Progress goes to
// stderr. The binary re-executes itself for the store, the proxies and
// kvgate.
//
//	go run ./cmd/kvhop                                    # the full run, about 11 minutes
//	go run ./cmd/kvhop -rounds 1 -duration 500ms -concurrency 8
//	go run ./cmd/kvhop -ops get -values 1024 -concurrency 64 -profile /tmp/kvhop-prof
//	go run ./cmd/kvhop -kvgate-args '-rpc-log-level=off'
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/kvgate/kvgate/internal/hopbench"
)

func main() {
	hopbench.RunChildRole()

	cfg := hopbench.DefaultConfig()
	flag.IntVar(&cfg.Rounds, "rounds", cfg.Rounds, "rounds per cell; each runs every contender in turn")
	flag.DurationVar(&cfg.Duration, "duration", cfg.Duration, "measured run of each contender in each round")
	flag.DurationVar(&cfg.Warmup, "warmup", cfg.Warmup, "unmeasured calls before each run")
	flag.IntVar(&cfg.Keys, "keys", cfg.Keys, "keys per value size, seeded before the runs")
	flag.Func("ops", "comma-separated ops: get, put (default get,put)", func(s string) error {
		cfg.Ops = splitList(s)
		return nil
	})
	flag.Func("values", "comma-separated value sizes in bytes (default 1024,65536)", func(s string) error {
		var err error
		cfg.Values, err = intList(s)
		return err
	})
	flag.Func("concurrency", "comma-separated calls in flight (default 1,8,64)", func(s string) error {
		var err error
		cfg.Concurrency, err = intList(s)
		return err
	})
	flag.Func("contenders", "comma-separated patterns of contenders to run, such as 'proxy-*,kvgate-grpc-h2c' (default all: "+
		strings.Join(hopbench.ContenderNames(), ", ")+"); ratios need the stock proxies", func(s string) error {
		cfg.Contenders = splitList(s)
		return nil
	})
	flag.Func("kvgate-args", "extra flags for kvgate, space-separated, such as '-rpc-log-level=off'", func(s string) error {
		cfg.KvgateArgs = strings.Fields(s)
		return nil
	})
	flag.BoolVar(&cfg.Allocs, "allocs", cfg.Allocs,
		"give kvgate an admin listener with pprof, to count its allocations per request (it then also probes the store every 10s)")
	flag.StringVar(&cfg.ProfileDir, "profile", "", "directory for CPU and allocation profiles of kvgate and the proxy, taken in the first round")
	flag.Func("profile-cells", "comma-separated cells to profile, op/value/concurrency such as get/1024/64 (default every cell)", func(s string) error {
		cfg.ProfileCells = splitList(s)
		return nil
	})
	flag.Parse()
	cfg.Log = os.Stderr

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	report, err := hopbench.Run(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "kvhop:", err)
		os.Exit(1)
	}
	if err := report.WriteMarkdown(os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "kvhop:", err)
		os.Exit(1)
	}
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func intList(s string) ([]int, error) {
	var out []int
	for _, f := range splitList(s) {
		n, err := strconv.Atoi(f)
		if err != nil {
			return nil, fmt.Errorf("%q is not a whole number", f)
		}
		out = append(out, n)
	}
	return out, nil
}
