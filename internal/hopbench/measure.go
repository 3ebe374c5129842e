package hopbench

import (
	"context"
	"fmt"
	"slices"
	"time"

	"golang.org/x/sync/errgroup"
)

// workload is what a cell's calls do: op on keys with values of size
// bytes (value is what a put writes).
type workload struct {
	op    string
	keys  []string
	size  int
	value []byte
}

// call makes one call of w with client cl on the i-th key.
func (w workload) call(ctx context.Context, cl client, i int) error {
	key := w.keys[i%len(w.keys)]
	if w.op == opPut {
		return cl.put(ctx, key, w.value)
	}
	return cl.get(ctx, key, w.size)
}

// Sample is one contender's measured run in one round.
type Sample struct {
	// Requests completed in Elapsed, the time from the start of the run
	// until its last request ended.
	Requests int64
	Elapsed  time.Duration
	// P50 and P99 are per-request latencies, the whole response read.
	P50, P99 time.Duration
	// CPU is the hop process's CPU time during the run; HasCPU is false
	// for the direct contender, which crosses no hop, and where CPU time
	// cannot be read.
	CPU    time.Duration
	HasCPU bool
	// StoreCPU is the store process's CPU time during the run, when
	// HasStoreCPU: what the contender's requests cost the upstream.
	StoreCPU    time.Duration
	HasStoreCPU bool
	// Mallocs is how many heap allocations the hop process made during
	// the run (runtime.MemStats.Mallocs), when HasMallocs.
	Mallocs    int64
	HasMallocs bool
	// OtherCPU is the CPU time the machine spent during the run on
	// anything but the benchmark's own processes, when HasOtherCPU: other
	// load, which the paired ratios only partly cancel.
	OtherCPU    time.Duration
	HasOtherCPU bool
}

// Throughput is requests per second.
func (s Sample) Throughput() float64 {
	if s.Elapsed <= 0 {
		return 0
	}
	return float64(s.Requests) / s.Elapsed.Seconds()
}

// CPUPerRequest is the hop's CPU time per request, in microseconds.
func (s Sample) CPUPerRequest() float64 {
	if s.Requests == 0 {
		return 0
	}
	return s.CPU.Seconds() * 1e6 / float64(s.Requests)
}

// StoreCPUPerRequest is the store's CPU time per request, in microseconds.
func (s Sample) StoreCPUPerRequest() float64 {
	if s.Requests == 0 {
		return 0
	}
	return s.StoreCPU.Seconds() * 1e6 / float64(s.Requests)
}

// MallocsPerRequest is the hop's heap allocations per request.
func (s Sample) MallocsPerRequest() float64 {
	if s.Requests == 0 {
		return 0
	}
	return float64(s.Mallocs) / float64(s.Requests)
}

// load runs conc workers, each making calls of w one after another until
// d has passed; the calls started before then all finish. It returns how
// many calls completed and, when record is set, each one's latency,
// sorted. The first failed call ends the load and is its error.
func load(ctx context.Context, cl client, w workload, conc int, d time.Duration, record bool) (int64, []time.Duration, error) {
	deadline := time.Now().Add(d)
	counts := make([]int64, conc)
	lats := make([][]time.Duration, conc)
	eg, ctx := errgroup.WithContext(ctx)
	for worker := range conc {
		eg.Go(func() error {
			var lat []time.Duration
			if record {
				lat = make([]time.Duration, 0, 1024)
			}
			// Each worker strides through the keys from its own offset,
			// so no two workers are on one key at once while there are
			// more keys than workers.
			for i, now := worker, time.Now(); now.Before(deadline); i += conc {
				if err := w.call(ctx, cl, i); err != nil {
					return err
				}
				end := time.Now()
				if record {
					lat = append(lat, end.Sub(now))
				}
				counts[worker]++
				now = end
			}
			lats[worker] = lat
			return nil
		})
	}
	if err := eg.Wait(); err != nil {
		return 0, nil, err
	}
	var n int64
	for _, c := range counts {
		n += c
	}
	var all []time.Duration
	if record {
		all = slices.Concat(lats...)
		slices.Sort(all)
	}
	return n, all, nil
}

// hopMeter reads a hop process's counters around a run: its CPU time and,
// when it has them, its allocation count.
type hopMeter struct {
	cpu     func() (time.Duration, error)
	mallocs func(context.Context) (int64, error)
	// store reads the store process's CPU time; nil where it cannot.
	store func() (time.Duration, error)
	// others reads the CPU time the machine has spent on anything but the
	// benchmark's processes; nil where it cannot.
	others func() (time.Duration, error)
}

// measure warms c's client up for warmup, then measures it for d: its
// requests, latencies and the hop's CPU time and allocations. around, when
// not nil, runs just before the measured load and its returned function
// just after it (a profile).
func measure(ctx context.Context, cl client, w workload, conc int, warmup, d time.Duration, m hopMeter,
	around func() (func() error, error),
) (Sample, error) {
	var s Sample
	if warmup > 0 {
		if _, _, err := load(ctx, cl, w, conc, warmup, false); err != nil {
			return s, fmt.Errorf("warming up: %w", err)
		}
	}
	var mallocs0, mallocs1, readCost int64
	var err error
	if m.mallocs != nil {
		// Two reads back to back: what the second counted beyond the
		// first is what one read allocates, taken off the run's count.
		if readCost, err = m.mallocs(ctx); err != nil {
			return s, err
		}
		if mallocs0, err = m.mallocs(ctx); err != nil {
			return s, err
		}
		readCost = max(mallocs0-readCost, 0)
	}
	var after func() error
	if around != nil {
		if after, err = around(); err != nil {
			return s, err
		}
	}
	var cpu0, cpu1, others0, others1, store0, store1 time.Duration
	if m.cpu != nil {
		if cpu0, err = m.cpu(); err != nil {
			return s, err
		}
	}
	if m.store != nil {
		if store0, err = m.store(); err != nil {
			return s, err
		}
	}
	if m.others != nil {
		if others0, err = m.others(); err != nil {
			return s, err
		}
	}
	start := time.Now()
	n, lat, err := load(ctx, cl, w, conc, d, true)
	s.Elapsed = time.Since(start)
	if err != nil {
		return s, err
	}
	if m.others != nil {
		if others1, err = m.others(); err != nil {
			return s, err
		}
		s.OtherCPU, s.HasOtherCPU = max(others1-others0, 0), true
	}
	if m.cpu != nil {
		if cpu1, err = m.cpu(); err != nil {
			return s, err
		}
		s.CPU, s.HasCPU = cpu1-cpu0, true
	}
	if m.store != nil {
		if store1, err = m.store(); err != nil {
			return s, err
		}
		s.StoreCPU, s.HasStoreCPU = store1-store0, true
	}
	if after != nil {
		if err := after(); err != nil {
			return s, err
		}
	}
	if m.mallocs != nil {
		if mallocs1, err = m.mallocs(ctx); err != nil {
			return s, err
		}
		s.Mallocs, s.HasMallocs = max(mallocs1-mallocs0-readCost, 0), true
	}
	s.Requests = n
	s.P50, s.P99 = percentile(lat, 0.50), percentile(lat, 0.99)
	return s, nil
}
