// Package gcbench measures PutItem group commit: N concurrent writers each
// call PutItem in a loop through kvgate, with group commit on and off,
// against the same upstream, and it reports the upstream requests per
// item, the throughput and the latency percentiles of each. cmd/kvgcbench
// runs it against a local store with injected latency in a child process.
package gcbench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	kvv1 "github.com/kvgate/kvgate/gen/go/fastly/kv/v1"
	"github.com/kvgate/kvgate/gen/go/fastly/kv/v1/kvv1connect"
	"github.com/kvgate/kvgate/internal/app"
	"github.com/kvgate/kvgate/internal/benchkit"
	"github.com/kvgate/kvgate/service"
	"github.com/kvgate/kvgate/upstream"
)

// Config sizes a run.
type Config struct {
	// UpstreamURL is the Fastly-compatible server kvgate calls.
	UpstreamURL string
	// Writers lists the numbers of concurrent writers, one cell each.
	Writers []int
	// Duration is each cell's measured run; Warmup runs before it,
	// unmeasured.
	Duration, Warmup time.Duration
	// ValueBytes is the size of each value written.
	ValueBytes int
	// Linger is the group commit linger of the runs with group commit.
	Linger time.Duration
	// Batch bounds kvgate's batch PUTs; its defaults when zero.
	Batch service.BatchConfig
	// Rounds is how many times each cell runs, the cells taking turns;
	// once when zero.
	Rounds int
}

// DefaultConfig is the full run: 1 to 1,000 writers, 3 rounds of 5 s
// each.
func DefaultConfig() Config {
	return Config{Writers: []int{1, 10, 100, 1000}, Duration: 5 * time.Second, Warmup: time.Second, ValueBytes: 256, Rounds: 3}
}

// Row is one cell: a number of writers with group commit on or off.
type Row struct {
	Writers     int
	GroupCommit bool
	Items       int64 // PutItems that succeeded in the measured run
	Requests    int64 // upstream requests in the measured run
	Elapsed     time.Duration
	P50, P99    time.Duration
}

// ItemsPerRequest is how many items one upstream request carried.
func (r Row) ItemsPerRequest() float64 {
	if r.Requests == 0 {
		return 0
	}
	return float64(r.Items) / float64(r.Requests)
}

// Throughput is items per second.
func (r Row) Throughput() float64 { return float64(r.Items) / r.Elapsed.Seconds() }

// Run measures every cell, group commit off then on for each number of
// writers, Rounds times over, calling progress (when not nil) after each
// cell of each round. A row pools a cell's rounds: its items, requests and
// time add up, and its percentiles are those of every call of every round,
// so that load from outside the benchmark that comes and goes weighs on
// both sides alike.
func Run(ctx context.Context, cfg Config, progress func(round int, r Row)) ([]Row, error) {
	type cell struct {
		row       Row
		latencies []time.Duration
	}
	cells := make([]cell, 2*len(cfg.Writers))
	for round := range max(cfg.Rounds, 1) {
		for i, n := range cfg.Writers {
			for j, on := range []bool{false, true} {
				row, lat, err := runCell(ctx, cfg, n, on)
				if err != nil {
					return nil, fmt.Errorf("%d writers, group commit %v: %w", n, on, err)
				}
				if progress != nil {
					progress(round, row)
				}
				c := &cells[2*i+j]
				c.row.Writers, c.row.GroupCommit = n, on
				c.row.Items += row.Items
				c.row.Requests += row.Requests
				c.row.Elapsed += row.Elapsed
				c.latencies = append(c.latencies, lat...)
			}
		}
	}
	rows := make([]Row, len(cells))
	for i, c := range cells {
		slices.Sort(c.latencies)
		c.row.P50, c.row.P99 = percentile(c.latencies, 0.50), percentile(c.latencies, 0.99)
		rows[i] = c.row
	}
	return rows, nil
}

// writersPerConn is how many writers share one HTTP/2 connection to
// kvgate, well under its 250 streams per connection.
const writersPerConn = 100

// runCell runs one cell once and returns its row and the latency of every
// call it measured.
func runCell(ctx context.Context, cfg Config, writers int, groupCommit bool) (Row, []time.Duration, error) {
	var requests atomic.Int64
	hc := benchkit.CountingClient(max(writers, upstream.DefaultMaxIdleConns), &requests)
	addr, stop, err := benchkit.ServeGateway(ctx, app.GatewayConfig{
		UpstreamURL: cfg.UpstreamURL,
		HTTPClient:  hc,
		Batch:       cfg.Batch,
		GroupCommit: service.GroupCommitConfig{Disabled: !groupCommit, Linger: cfg.Linger},
	})
	if err != nil {
		return Row{}, nil, err
	}
	defer func() { stop(); hc.CloseIdleConnections() }()

	clients := make([]kvv1connect.KVStoreServiceClient, (writers+writersPerConn-1)/writersPerConn)
	for i := range clients {
		var tr *http.Transport
		clients[i], tr = benchkit.KvgateClient(addr)
		defer tr.CloseIdleConnections()
	}

	value := make([]byte, cfg.ValueBytes)
	for i := range value {
		value[i] = byte('a' + i%26)
	}
	store := fmt.Sprintf("gcbench-%d-%v", writers, groupCommit)
	var (
		measuring atomic.Bool
		items     atomic.Int64
		mu        sync.Mutex
		latencies []time.Duration
		firstErr  error
	)
	runCtx, endRun := context.WithCancel(ctx)
	defer endRun()
	var wg sync.WaitGroup
	for w := range writers {
		client := clients[w/writersPerConn]
		wg.Go(func() {
			var mine []time.Duration
			defer func() {
				mu.Lock()
				latencies = append(latencies, mine...)
				mu.Unlock()
			}()
			for i := 0; runCtx.Err() == nil; i++ {
				req := &kvv1.PutItemRequest{StoreId: store, Key: fmt.Sprintf("w%04d/%d", w, i%8), Value: value}
				start := time.Now()
				counted := measuring.Load()
				_, err := client.PutItem(runCtx, req)
				took := time.Since(start)
				if err != nil {
					if runCtx.Err() == nil {
						mu.Lock()
						firstErr = cmpOr(firstErr, err)
						mu.Unlock()
						endRun()
					}
					return
				}
				if counted && measuring.Load() {
					items.Add(1)
					mine = append(mine, took)
				}
			}
		})
	}
	if err := sleep(ctx, cfg.Warmup); err != nil {
		return Row{}, nil, err
	}
	before := requests.Load()
	start := time.Now()
	measuring.Store(true)
	err = sleep(runCtx, cfg.Duration)
	measuring.Store(false)
	elapsed := time.Since(start)
	after := requests.Load()
	endRun()
	wg.Wait()
	if firstErr != nil {
		return Row{}, nil, firstErr
	}
	if err != nil && ctx.Err() != nil {
		return Row{}, nil, err
	}
	slices.Sort(latencies)
	return Row{
		Writers: writers, GroupCommit: groupCommit,
		Items: items.Load(), Requests: after - before, Elapsed: elapsed,
		P50: percentile(latencies, 0.50), P99: percentile(latencies, 0.99),
	}, latencies, nil
}

func cmpOr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// percentile returns the p-th percentile of sorted, nearest rank.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p*float64(len(sorted))+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// Targets says whether the largest cell met the goals: at least 100 items
// per upstream request with group commit, and a p99 no worse than
// without. ok is false when the rows lack a cell with and without.
func Targets(rows []Row) (writers int, perRequest, p99Met bool, ok bool) {
	var on, off *Row
	for i := range rows {
		r := &rows[i]
		if r.Writers < writers {
			continue
		}
		if r.Writers > writers {
			writers, on, off = r.Writers, nil, nil
		}
		if r.GroupCommit {
			on = r
		} else {
			off = r
		}
	}
	if on == nil || off == nil {
		return writers, false, false, false
	}
	return writers, on.ItemsPerRequest() >= 100, on.P99 <= off.P99, true
}

// WriteMarkdown writes rows as a markdown table.
func WriteMarkdown(out io.Writer, rows []Row) error {
	var b strings.Builder
	b.WriteString("| writers | group commit | items | upstream requests | items per request | items/s | p50 | p99 |\n")
	b.WriteString("| --: | :-- | --: | --: | --: | --: | --: | --: |\n")
	for _, r := range rows {
		gc := "off"
		if r.GroupCommit {
			gc = "on"
		}
		fmt.Fprintf(&b, "| %d | %s | %d | %d | %.1f | %.0f | %s | %s |\n", r.Writers, gc, r.Items, r.Requests,
			r.ItemsPerRequest(), r.Throughput(), round(r.P50), round(r.P99))
	}
	_, err := io.WriteString(out, b.String())
	return err
}

func round(d time.Duration) string {
	if d >= 10*time.Millisecond {
		return d.Round(100 * time.Microsecond).String()
	}
	return d.Round(10 * time.Microsecond).String()
}

// ErrNoItems is returned by Check when a cell wrote nothing.
var ErrNoItems = errors.New("a cell wrote no item")

// Check reports a run whose cells wrote nothing.
func Check(rows []Row) error {
	for _, r := range rows {
		if r.Items == 0 {
			return fmt.Errorf("%w: %d writers, group commit %v", ErrNoItems, r.Writers, r.GroupCommit)
		}
	}
	return nil
}
