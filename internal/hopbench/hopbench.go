// Package hopbench measures what kvgate's unary path costs beside the
// cheapest extra HTTP hop there is, Go's httputil.ReverseProxy: the
// throughput, the hop process's CPU time per request, its allocations and
// the latency of calling the local store directly, through the proxy (over
// HTTP/1.1 and h2c, with and without a buffer pool) and through kvgate
// (Connect binary and JSON over HTTP/1.1, gRPC over h2c).
//
// The store, the proxies and kvgate each run in a process of their own,
// the benchmark's binary re-executed in a role (see RunChildRole), so that
// each hop's CPU time is its own. The contenders run in turn within each
// round, and each one's figures are divided by the stock proxy's of the
// same round over the same HTTP version: paired ratios, which cancel most
// of what the machine does meanwhile. cmd/kvhop is the command.
package hopbench

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"
)

// The operations a cell can measure.
const (
	opGet = "get"
	opPut = "put"
)

// Config says what to measure.
type Config struct {
	// Rounds is how many times each cell runs every contender in turn.
	Rounds int
	// Duration is each contender's measured run; Warmup the calls before
	// it that are not measured.
	Duration, Warmup time.Duration
	// Ops are "get" and "put"; Values the value sizes in bytes;
	// Concurrency the calls in flight. A cell is one of each.
	Ops         []string
	Values      []int
	Concurrency []int
	// Keys is how many keys of each value size are seeded and cycled
	// through.
	Keys int
	// Contenders are patterns (path.Match) of the contenders to run;
	// empty runs them all.
	Contenders []string
	// KvgateArgs are extra flags for kvgate, after the benchmark's own
	// (-listen and, with Allocs or ProfileDir, the admin listener).
	KvgateArgs []string
	// Allocs starts kvgate with an admin listener serving /debug/pprof/
	// to read its allocation count around each of its runs. The listener
	// also probes the store once every 10 s.
	Allocs bool
	// ProfileDir, when set, receives CPU and allocation profiles of the
	// hop process in the first round of the cells ProfileCells names
	// ("op/value/concurrency", such as "get/1024/64"; empty names every
	// cell). Profiling slows the profiled runs a little.
	ProfileDir   string
	ProfileCells []string
	// Log receives progress; nil discards it.
	Log io.Writer
}

// DefaultConfig is the full run.
func DefaultConfig() Config {
	return Config{
		Rounds:      3,
		Duration:    2 * time.Second,
		Warmup:      300 * time.Millisecond,
		Ops:         []string{opGet, opPut},
		Values:      []int{1 << 10, 64 << 10},
		Concurrency: []int{1, 8, 64},
		Keys:        256,
		Allocs:      true,
	}
}

func (c Config) validate() error {
	var errs []error
	if c.Rounds < 1 || c.Duration <= 0 || c.Warmup < 0 || c.Keys < 1 {
		errs = append(errs, errors.New("rounds, keys and the duration must be positive, the warm-up not negative"))
	}
	if len(c.Ops) == 0 || len(c.Values) == 0 || len(c.Concurrency) == 0 {
		errs = append(errs, errors.New("at least one op, value size and concurrency are needed"))
	}
	for _, op := range c.Ops {
		if op != opGet && op != opPut {
			errs = append(errs, fmt.Errorf("op must be get or put, not %q", op))
		}
	}
	for _, v := range c.Values {
		if v < 1 {
			errs = append(errs, fmt.Errorf("value size must be positive, not %d", v))
		}
	}
	for _, n := range c.Concurrency {
		if n < 1 {
			errs = append(errs, fmt.Errorf("concurrency must be positive, not %d", n))
		}
	}
	for _, cell := range c.ProfileCells {
		if _, _, _, err := parseCellName(cell); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// cellName is a cell's name in ProfileCells and in profile file names.
func cellName(op string, value, conc int) string {
	return op + "/" + strconv.Itoa(value) + "/" + strconv.Itoa(conc)
}

func parseCellName(s string) (op string, value, conc int, err error) {
	parts := strings.Split(s, "/")
	if len(parts) == 3 {
		op = parts[0]
		value, err = strconv.Atoi(parts[1])
		if err == nil {
			conc, err = strconv.Atoi(parts[2])
		}
		if err == nil && (op == opGet || op == opPut) {
			return op, value, conc, nil
		}
	}
	return "", 0, 0, fmt.Errorf("profile cell must be op/value/concurrency, such as get/1024/64, not %q", s)
}

// Report is a run's results.
type Report struct {
	Config  Config
	Machine Machine
	// CPUSource says where the hop processes' CPU times come from; empty
	// when they could not be read.
	CPUSource string
	// The processes' ids, for watching them during a run.
	StorePID, ProxyPID, KvgatePID int
	Cells                         []Cell
}

// Machine describes where the run ran.
type Machine struct {
	Cores        int
	CPUModel     string
	GoVersion    string
	GOOS, GOARCH string
}

// Cell is one op, value size and concurrency, and every contender's
// samples in it.
type Cell struct {
	Op          string
	Value       int
	Concurrency int
	Contenders  []ContenderResult
}

// ContenderResult is one contender's samples in a cell, one per round.
type ContenderResult struct {
	Name string
	// Ref is the contender its ratios are against, empty for none.
	Ref     string
	Samples []Sample
}

// Run starts the store, the proxies and kvgate, seeds the keys, measures
// every cell and stops the processes.
func Run(ctx context.Context, cfg Config) (_ *Report, err error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	selected, err := selectContenders(cfg.Contenders)
	if err != nil {
		return nil, err
	}
	log := cfg.Log
	if log == nil {
		log = io.Discard
	}
	ps, err := startProcesses(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, ps.stop()) }()

	report := &Report{Config: cfg, Machine: machine()}
	report.StorePID, report.ProxyPID, report.KvgatePID = ps.store.pid(), ps.proxy.pid(), ps.kvgate.pid()
	if ps.kvgate.cpu != nil && ps.proxy.cpu != nil {
		report.CPUSource = ps.kvgate.cpuSource
	}
	if cfg.ProfileDir != "" {
		if err := os.MkdirAll(cfg.ProfileDir, 0o755); err != nil {
			return nil, err
		}
	}

	workloads := make(map[int]workload)
	for _, size := range cfg.Values {
		w, err := seed(ctx, ps.storeURL, size, cfg.Keys)
		if err != nil {
			return nil, fmt.Errorf("seeding %d-byte values: %w", size, err)
		}
		workloads[size] = w
	}
	for _, op := range cfg.Ops {
		for _, size := range cfg.Values {
			for _, conc := range cfg.Concurrency {
				w := workloads[size]
				w.op = op
				cell, err := runCell(ctx, cfg, ps, selected, w, conc, log)
				if err != nil {
					return nil, fmt.Errorf("%s: %w", cellName(op, size, conc), err)
				}
				report.Cells = append(report.Cells, cell)
			}
		}
	}
	return report, nil
}

// seed writes keys random values of size bytes straight to the store, and
// returns the workload that reads and overwrites them.
func seed(ctx context.Context, storeURL string, size, keys int) (workload, error) {
	w := workload{size: size, value: make([]byte, size)}
	// Random bytes: nothing on the way can compress them.
	_, _ = rand.Read(w.value)
	for i := range keys {
		w.keys = append(w.keys, fmt.Sprintf("v%d-%04d", size, i))
	}
	cl := newClient(contender{name: "seed", wire: restH1, target: targetStore}, storeURL, 8)
	defer cl.close()
	eg, ctx := errgroup.WithContext(ctx)
	eg.SetLimit(8)
	for _, key := range w.keys {
		eg.Go(func() error { return cl.put(ctx, key, w.value) })
	}
	return w, eg.Wait()
}

// runCell runs the cell's rounds: in each, every contender in turn, each
// with a client of its own whose pool holds conc connections.
func runCell(ctx context.Context, cfg Config, ps *processes, selected []contender, w workload, conc int, log io.Writer) (Cell, error) {
	cell := Cell{Op: w.op, Value: w.size, Concurrency: conc}
	clients := make([]client, len(selected))
	for i, c := range selected {
		clients[i] = newClient(c, ps.url(c.target), conc)
		defer clients[i].close()
		cell.Contenders = append(cell.Contenders, ContenderResult{Name: c.name, Ref: c.ref})
	}
	profiled := cfg.ProfileDir != "" && profiles(cfg.ProfileCells, cellName(w.op, w.size, conc))
	others := ps.othersCPU()
	for round := range cfg.Rounds {
		for i, c := range selected {
			meter := ps.meter(c.hop(), cfg)
			meter.others = others
			var around func() (func() error, error)
			if profiled && round == 0 && c.hop() != hopNone {
				name := fmt.Sprintf("%s-%d-c%d-%s", w.op, w.size, conc, c.name)
				around = profiler{dir: cfg.ProfileDir}.around(ctx, ps.admin(c.hop()), name, cfg.Duration)
			}
			s, err := measure(ctx, clients[i], w, conc, cfg.Warmup, cfg.Duration, meter, around)
			if err != nil {
				return cell, fmt.Errorf("round %d, %s: %w", round+1, c.name, err)
			}
			cell.Contenders[i].Samples = append(cell.Contenders[i].Samples, s)
			fmt.Fprintf(log, "kvhop: %s %s c=%d round %d/%d %-18s %9.0f req/s\n",
				w.op, sizeLabel(w.size), conc, round+1, cfg.Rounds, c.name, s.Throughput())
		}
	}
	return cell, nil
}

// profiles reports whether cell is among names (every cell when none).
func profiles(names []string, cell string) bool {
	if len(names) == 0 {
		return true
	}
	for _, n := range names {
		if n == cell {
			return true
		}
	}
	return false
}

// url is the base URL of the listener t.
func (ps *processes) url(t target) string {
	switch t {
	case targetProxy:
		return ps.proxyURL
	case targetPooledProxy:
		return ps.pooledURL
	case targetKvgate:
		return ps.kvgateURL
	}
	return ps.storeURL
}

// admin is the base URL of h's admin listener.
func (ps *processes) admin(h hop) string {
	if h == hopKvgate {
		return ps.kvgateAdmin
	}
	return ps.proxyAdmin
}

// meter reads h's CPU time and, when it can, its allocations, and the
// store's CPU time.
func (ps *processes) meter(h hop, cfg Config) hopMeter {
	m := hopMeter{store: ps.store.cpu}
	switch h {
	case hopProxy:
		m.cpu = ps.proxy.cpu
		if cfg.Allocs {
			m.mallocs = proxyMallocs(ps.proxyAdmin)
		}
	case hopKvgate:
		m.cpu = ps.kvgate.cpu
		if cfg.Allocs && ps.kvgateAdmin != "" {
			m.mallocs = kvgateMallocs(ps.kvgateAdmin)
		}
	}
	return m
}

// machine describes this machine.
func machine() Machine {
	return Machine{
		Cores:     runtime.NumCPU(),
		CPUModel:  cpuModel(),
		GoVersion: runtime.Version(),
		GOOS:      runtime.GOOS,
		GOARCH:    runtime.GOARCH,
	}
}

// cpuModel is the processor's name from /proc/cpuinfo, empty where there
// is none.
func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return ""
	}
	for line := range strings.Lines(string(b)) {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
