package hopbench

import (
	"math"
	"slices"
	"time"
)

// percentile returns the q-quantile (0 < q <= 1) of sorted by the
// nearest-rank method: the smallest latency at least a fraction q of the
// requests took no longer than. Zero for no latencies.
func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// spread is the median and range of a figure over the rounds.
type spread struct {
	Median, Min, Max float64
	// N is how many rounds had the figure; zero means none did.
	N int
}

// spreadOf summarises xs; the median of an even count is the mean of the
// middle two.
func spreadOf(xs []float64) spread {
	if len(xs) == 0 {
		return spread{}
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	m := s[len(s)/2]
	if len(s)%2 == 0 {
		m = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return spread{Median: m, Min: s[0], Max: s[len(s)-1], N: len(s)}
}

// pairedRatios divides x's figure by ref's in each round both ran in
// (index i of each is round i), skipping rounds where either lacks it.
func pairedRatios(x, ref []Sample, figure func(Sample) (float64, bool)) []float64 {
	var out []float64
	for i := range min(len(x), len(ref)) {
		a, okA := figure(x[i])
		b, okB := figure(ref[i])
		if okA && okB && b > 0 {
			out = append(out, a/b)
		}
	}
	return out
}

// The figures the report summarises, each with whether a sample has it.

func throughputOf(s Sample) (float64, bool) {
	return s.Throughput(), s.Requests > 0
}

func cpuOf(s Sample) (float64, bool) {
	return s.CPUPerRequest(), s.HasCPU && s.Requests > 0
}

func storeCPUOf(s Sample) (float64, bool) {
	return s.StoreCPUPerRequest(), s.HasStoreCPU && s.Requests > 0
}

func mallocsOf(s Sample) (float64, bool) {
	return s.MallocsPerRequest(), s.HasMallocs && s.Requests > 0
}

func p50Of(s Sample) (float64, bool) {
	return float64(s.P50), s.Requests > 0
}

func p99Of(s Sample) (float64, bool) {
	return float64(s.P99), s.Requests > 0
}

// figures collects figure over samples, skipping those that lack it.
func figures(samples []Sample, figure func(Sample) (float64, bool)) []float64 {
	var out []float64
	for _, s := range samples {
		if v, ok := figure(s); ok {
			out = append(out, v)
		}
	}
	return out
}
