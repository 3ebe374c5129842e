package hopbench

import (
	"bytes"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	t.Parallel()
	ms := func(ns ...int) []time.Duration {
		var out []time.Duration
		for _, n := range ns {
			out = append(out, time.Duration(n)*time.Millisecond)
		}
		return out
	}
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		hundred[i] = time.Duration(i+1) * time.Millisecond
	}
	for _, tc := range []struct {
		name   string
		sorted []time.Duration
		q      float64
		want   time.Duration
	}{
		{"none", nil, 0.5, 0},
		{"one", ms(7), 0.99, 7 * time.Millisecond},
		{"median of four is the second", ms(1, 2, 3, 4), 0.5, 2 * time.Millisecond},
		{"median of five", ms(1, 2, 3, 4, 5), 0.5, 3 * time.Millisecond},
		{"p99 of a hundred", hundred, 0.99, 99 * time.Millisecond},
		{"p50 of a hundred", hundred, 0.50, 50 * time.Millisecond},
		{"p100 is the slowest", hundred, 1, 100 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := percentile(tc.sorted, tc.q); got != tc.want {
				t.Errorf("percentile(%v) = %v, want %v", tc.q, got, tc.want)
			}
		})
	}
}

func TestSpreadOf(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		xs   []float64
		want spread
	}{
		{"none", nil, spread{}},
		{"one", []float64{2}, spread{Median: 2, Min: 2, Max: 2, N: 1}},
		{"odd count, unsorted", []float64{3, 1, 2}, spread{Median: 2, Min: 1, Max: 3, N: 3}},
		{"even count takes the middle mean", []float64{4, 1, 2, 3}, spread{Median: 2.5, Min: 1, Max: 4, N: 4}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := spreadOf(tc.xs); got != tc.want {
				t.Errorf("spreadOf(%v) = %+v, want %+v", tc.xs, got, tc.want)
			}
		})
	}
}

// sample is a round in which n requests took one second, the hop using
// cpu of CPU time, with a p50 of n µs and a p99 of twice that.
func sample(n int64, cpu time.Duration) Sample {
	return Sample{Requests: n, Elapsed: time.Second, CPU: cpu, HasCPU: cpu > 0,
		P50: time.Duration(n) * time.Microsecond, P99: time.Duration(n) * 2 * time.Microsecond}
}

func TestPairedRatios(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		x, ref []Sample
		figure func(Sample) (float64, bool)
		want   []float64
	}{
		{
			name:   "throughput, round by round",
			x:      []Sample{sample(50, time.Second), sample(300, time.Second)},
			ref:    []Sample{sample(100, time.Second), sample(200, time.Second)},
			figure: throughputOf,
			want:   []float64{0.5, 1.5},
		},
		{
			name:   "CPU per request",
			x:      []Sample{sample(100, 2*time.Second)},
			ref:    []Sample{sample(100, time.Second)},
			figure: cpuOf,
			want:   []float64{2},
		},
		{
			name:   "rounds without the figure are skipped",
			x:      []Sample{sample(100, 0), sample(100, time.Second)},
			ref:    []Sample{sample(100, time.Second), sample(100, time.Second)},
			figure: cpuOf,
			want:   []float64{1},
		},
		{
			name:   "only rounds both ran",
			x:      []Sample{sample(100, time.Second), sample(100, time.Second)},
			ref:    []Sample{sample(50, time.Second)},
			figure: throughputOf,
			want:   []float64{2},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := pairedRatios(tc.x, tc.ref, tc.figure); !slices.Equal(got, tc.want) {
				t.Errorf("pairedRatios = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestSelectContenders(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		patterns []string
		want     []string
		wantErr  string
	}{
		{"none selects all", nil, ContenderNames(), ""},
		{"exact names keep the run order", []string{"kvgate-grpc-h2c", "direct"}, []string{"direct", "kvgate-grpc-h2c"}, ""},
		{"globs", []string{"*proxy-h2c", "kvgate-*-h1"},
			[]string{"proxy-h2c", "pooled-proxy-h2c", "kvgate-connect-h1", "kvgate-connect-get-h1", "kvgate-json-h1"}, ""},
		{"a pattern matching nothing", []string{"direct", "kvgate-grpc"}, nil, `"kvgate-grpc" matches none`},
		{"a malformed pattern", []string{"["}, nil, "syntax error"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := selectContenders(tc.patterns)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, c := range got {
				names = append(names, c.name)
			}
			if !slices.Equal(names, tc.want) {
				t.Errorf("selected %v, want %v", names, tc.want)
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		change  func(*Config)
		wantErr string
	}{
		{"the defaults", func(*Config) {}, ""},
		{"an unknown op", func(c *Config) { c.Ops = []string{"delete"} }, `not "delete"`},
		{"no values", func(c *Config) { c.Values = nil }, "at least one"},
		{"zero concurrency", func(c *Config) { c.Concurrency = []int{0} }, "concurrency must be positive"},
		{"zero rounds", func(c *Config) { c.Rounds = 0 }, "must be positive"},
		{"a profile cell", func(c *Config) { c.ProfileCells = []string{"put/65536/8"} }, ""},
		{"a malformed profile cell", func(c *Config) { c.ProfileCells = []string{"get/1KiB/8"} }, "op/value/concurrency"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := DefaultConfig()
			tc.change(&cfg)
			err := cfg.validate()
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

// TestWriteMarkdown checks the table's figures against made-up samples:
// medians, paired ratios with their range, and the added latency.
func TestWriteMarkdown(t *testing.T) {
	t.Parallel()
	report := &Report{
		Config:    DefaultConfig(),
		Machine:   Machine{Cores: 2, GoVersion: "go1.x", GOOS: "linux", GOARCH: "amd64"},
		CPUSource: "a test",
		Cells: []Cell{{
			Op: opGet, Value: 1024, Concurrency: 1,
			Contenders: []ContenderResult{
				{Name: "direct", Samples: []Sample{sample(300, 0), sample(300, 0), sample(300, 0)}},
				{Name: "proxy-h1", Samples: []Sample{
					sample(100, 100*time.Millisecond), sample(200, 100*time.Millisecond), sample(100, 100*time.Millisecond)}},
				{Name: "kvgate-connect-h1", Ref: "proxy-h1", Samples: []Sample{
					sample(90, 180*time.Millisecond), sample(220, 220*time.Millisecond), sample(80, 120*time.Millisecond)}},
			},
		}},
	}
	var out bytes.Buffer
	if err := report.WriteMarkdown(&out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"kvhop: 2 cores, go1.x linux/amd64. 3 round(s)",
		// Throughput 90/100, 220/200, 80/100; CPU per request 2000/1000,
		// 1000/500, 1500/1000 µs.
		"| get | 1 KiB | 1 | kvgate-connect-h1 | proxy-h1 | 90 | 0.90 [0.80–1.10] | 1500.0 | 2.00 [1.50–2.00] | — | — | 90 µs | 180 µs |",
		"| get | 1 KiB | 1 | proxy-h1 | — | 100 | — | 1000.0 | — | — | — | 100 µs | 200 µs |",
		"| get | 1 KiB | 1 | direct | — | 300 | — | — | — | — | — | 300 µs | 600 µs |",
		// p50 minus direct's: -210, -80, -220 µs; minus the proxy's: -10,
		// +20, -20 µs.
		"| get | 1 KiB | kvgate-connect-h1 | 90 µs | −210 µs | proxy-h1 | −10 µs |",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the report has no %q:\n%s", want, out.String())
		}
	}
}

func TestSizeLabel(t *testing.T) {
	t.Parallel()
	for n, want := range map[int]string{64: "64 B", 1024: "1 KiB", 1500: "1500 B", 65536: "64 KiB", 25 << 20: "25 MiB"} {
		if got := sizeLabel(n); got != want {
			t.Errorf("sizeLabel(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestCPUReader(t *testing.T) {
	t.Parallel()
	read, source, err := cpuReader(os.Getpid())
	if err != nil {
		t.Skip("no per-process CPU time here:", err)
	}
	first, err := read()
	if err != nil {
		t.Fatal(err)
	}
	for range 1_000_000 {
		_ = time.Now()
	}
	second, err := read()
	if err != nil {
		t.Fatal(err)
	}
	if second < first {
		t.Errorf("%s went back: %v then %v", source, first, second)
	}
}
