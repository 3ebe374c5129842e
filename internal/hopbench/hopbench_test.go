package hopbench

import (
	"bytes"
	"context"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestMain lets the test binary be the benchmark's child processes: the
// smoke test re-executes it in their roles.
func TestMain(m *testing.M) {
	RunChildRole()
	os.Exit(m.Run())
}

// TestSmoke runs the whole harness with tiny sizes: every process, every
// contender, the table. It checks what ran, never how fast.
func TestSmoke(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("starts the store, the proxies and kvgate")
	}
	cfg := Config{
		Rounds:      1,
		Duration:    150 * time.Millisecond,
		Warmup:      20 * time.Millisecond,
		Ops:         []string{opGet, opPut},
		Values:      []int{64},
		Concurrency: []int{1, 2},
		Keys:        16,
		Allocs:      true,
		Log:         logWriter{t},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	report, err := Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(report.Cells), 4; got != want {
		t.Fatalf("%d cells, want %d", got, want)
	}
	for _, cell := range report.Cells {
		if got, want := len(cell.Contenders), len(contenders); got != want {
			t.Errorf("%s/%d: %d contenders, want %d", cell.Op, cell.Concurrency, got, want)
		}
		for _, c := range cell.Contenders {
			if len(c.Samples) != 1 || c.Samples[0].Requests == 0 {
				t.Errorf("%s/%d %s: samples %+v, want one with requests", cell.Op, cell.Concurrency, c.Name, c.Samples)
				continue
			}
			s := c.Samples[0]
			if hasHop := c.Name != "direct"; s.HasCPU != hasHop || s.HasMallocs != hasHop {
				t.Errorf("%s/%d %s: CPU measured %v, allocations %v, want %v", cell.Op, cell.Concurrency, c.Name, s.HasCPU, s.HasMallocs, hasHop)
			}
		}
	}

	var out bytes.Buffer
	if err := report.WriteMarkdown(&out); err != nil {
		t.Fatal(err)
	}
	table := out.String()
	for _, op := range cfg.Ops {
		for _, conc := range []string{"1", "2"} {
			for _, name := range ContenderNames() {
				if row := "| " + op + " | 64 B | " + conc + " | " + name + " |"; !strings.Contains(table, row) {
					t.Errorf("the table has no row starting %q:\n%s", row, table)
				}
			}
		}
	}
	if !strings.Contains(table, "Added p50 latency at concurrency 1") {
		t.Errorf("the table has no added latency section:\n%s", table)
	}
}

// TestProfile checks that a profiled cell leaves a CPU profile and the
// allocation profiles before and after for each contender that crosses a
// hop, and only for the cell named. The CPU profiles take a second each,
// so only two contenders run.
func TestProfile(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("starts the store, the proxies and kvgate")
	}
	cfg := Config{
		Rounds:       1,
		Duration:     100 * time.Millisecond,
		Ops:          []string{opGet},
		Values:       []int{64},
		Concurrency:  []int{1, 2},
		Keys:         4,
		Contenders:   []string{"direct", "proxy-h1", "kvgate-grpc-*"},
		ProfileDir:   t.TempDir(),
		ProfileCells: []string{"get/64/2"},
		Log:          logWriter{t},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := Run(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(cfg.ProfileDir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	var want []string
	for _, name := range []string{"kvgate-grpc-h2c", "proxy-h1"} {
		for _, kind := range []string{"allocs-after", "allocs-before", "cpu"} {
			want = append(want, "get-64-c2-"+name+"."+kind+".pprof")
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("profiles %q, want %q", got, want)
	}
}

// logWriter sends the harness's progress to the test log.
type logWriter struct{ t *testing.T }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
