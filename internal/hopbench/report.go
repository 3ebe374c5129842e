package hopbench

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// WriteMarkdown writes the report: a line on the machine and the
// settings, the table of every cell and contender, and the latency each
// hop adds at concurrency 1.
func (r *Report) WriteMarkdown(w io.Writer) error {
	var b strings.Builder
	b.WriteString(r.header())
	b.WriteString("\n\n")
	b.WriteString("| op | value | conc | contender | vs | req/s | thr ratio | CPU µs/req | CPU ratio | allocs/req | store µs/req | p50 | p99 |\n")
	b.WriteString("| --- | --- | ---: | --- | --- | ---: | --- | ---: | --- | ---: | ---: | ---: | ---: |\n")
	for _, cell := range r.Cells {
		for _, c := range cell.Contenders {
			ref := cell.contender(c.Ref)
			fmt.Fprintf(&b, "| %s | %s | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
				cell.Op, sizeLabel(cell.Value), cell.Concurrency, c.Name, dash(c.Ref),
				number(spreadOf(figures(c.Samples, throughputOf)), 0),
				ratio(c, ref, throughputOf),
				number(spreadOf(figures(c.Samples, cpuOf)), 1),
				ratio(c, ref, cpuOf),
				number(spreadOf(figures(c.Samples, mallocsOf)), 1),
				number(spreadOf(figures(c.Samples, storeCPUOf)), 1),
				latency(spreadOf(figures(c.Samples, p50Of))),
				latency(spreadOf(figures(c.Samples, p99Of))))
		}
	}
	r.writeAddedLatency(&b)
	_, err := io.WriteString(w, b.String())
	return err
}

// header is the line on the machine and the settings.
func (r *Report) header() string {
	m, c := r.Machine, r.Config
	model := ""
	if m.CPUModel != "" {
		model = " (" + m.CPUModel + ")"
	}
	sizes := make([]string, len(c.Values))
	for i, v := range c.Values {
		sizes[i] = sizeLabel(v)
	}
	concs := make([]string, len(c.Concurrency))
	for i, n := range c.Concurrency {
		concs[i] = strconv.Itoa(n)
	}
	kvgate := "default flags"
	if len(c.KvgateArgs) > 0 {
		kvgate = strings.Join(c.KvgateArgs, " ")
	}
	if c.Allocs || c.ProfileDir != "" {
		kvgate += ", admin listener with pprof"
	}
	cpu := "hop CPU not measured"
	if r.CPUSource != "" {
		cpu = "hop CPU from " + r.CPUSource
	}
	var notes []string
	if other := r.otherLoad(); other.N > 0 {
		notes = append(notes, fmt.Sprintf("; other processes used a median %.0f%% (max %.0f%%) of the machine's CPU during the runs",
			100*other.Median, 100*other.Max))
	}
	if c.ProfileDir != "" {
		notes = append(notes, "; profiled runs (first round) in "+c.ProfileDir)
	}
	return fmt.Sprintf("kvhop: %d cores%s, %s %s/%s. %d round(s), each contender %v after %v of warm-up; "+
		"ops %s; values %s; concurrency %s; %d keys per size; store in memory, no latency; kvgate: %s; %s%s.",
		m.Cores, model, m.GoVersion, m.GOOS, m.GOARCH, c.Rounds, c.Duration, c.Warmup,
		strings.Join(c.Ops, ", "), strings.Join(sizes, ", "), strings.Join(concs, ", "), c.Keys, kvgate, cpu,
		strings.Join(notes, ""))
}

// otherLoad is the share of the machine's CPU time that went to other
// processes than the benchmark's during the runs.
func (r *Report) otherLoad() spread {
	var shares []float64
	for _, cell := range r.Cells {
		for _, c := range cell.Contenders {
			for _, s := range c.Samples {
				if s.HasOtherCPU && s.Elapsed > 0 && r.Machine.Cores > 0 {
					shares = append(shares, float64(s.OtherCPU)/float64(s.Elapsed*time.Duration(r.Machine.Cores)))
				}
			}
		}
	}
	return spreadOf(shares)
}

// writeAddedLatency writes, for the cells at concurrency 1, each
// contender's median p50 and what it adds to the direct call's and to its
// stock proxy's, paired round by round.
func (r *Report) writeAddedLatency(b *strings.Builder) {
	var rows []string
	for _, cell := range r.Cells {
		if cell.Concurrency != 1 {
			continue
		}
		direct := cell.contender("direct")
		for _, c := range cell.Contenders {
			if c.Name == "direct" {
				continue
			}
			rows = append(rows, fmt.Sprintf("| %s | %s | %s | %s | %s | %s | %s |",
				cell.Op, sizeLabel(cell.Value), c.Name,
				latency(spreadOf(figures(c.Samples, p50Of))),
				added(c, direct), dash(c.Ref), added(c, cell.contender(c.Ref))))
		}
	}
	if len(rows) == 0 {
		return
	}
	b.WriteString("\nAdded p50 latency at concurrency 1 (median of the rounds' differences):\n\n")
	b.WriteString("| op | value | contender | p50 | + over direct | vs | + over vs |\n")
	b.WriteString("| --- | --- | --- | ---: | ---: | --- | ---: |\n")
	for _, row := range rows {
		b.WriteString(row + "\n")
	}
}

// contender returns the named contender's results, nil when it did not
// run (or name is empty).
func (c *Cell) contender(name string) *ContenderResult {
	for i := range c.Contenders {
		if name != "" && c.Contenders[i].Name == name {
			return &c.Contenders[i]
		}
	}
	return nil
}

// ratio formats x's paired ratios to ref as "median [min–max]".
func ratio(x ContenderResult, ref *ContenderResult, figure func(Sample) (float64, bool)) string {
	if ref == nil {
		return "—"
	}
	s := spreadOf(pairedRatios(x.Samples, ref.Samples, figure))
	if s.N == 0 {
		return "—"
	}
	if s.N == 1 {
		return fmt.Sprintf("%.2f", s.Median)
	}
	return fmt.Sprintf("%.2f [%.2f–%.2f]", s.Median, s.Min, s.Max)
}

// added formats the median over the rounds of x's p50 minus ref's.
func added(x ContenderResult, ref *ContenderResult) string {
	if ref == nil {
		return "—"
	}
	var diffs []float64
	for i := range min(len(x.Samples), len(ref.Samples)) {
		if x.Samples[i].Requests > 0 && ref.Samples[i].Requests > 0 {
			diffs = append(diffs, float64(x.Samples[i].P50-ref.Samples[i].P50))
		}
	}
	s := spreadOf(diffs)
	if s.N == 0 {
		return "—"
	}
	d := time.Duration(s.Median)
	if d >= 0 {
		return "+" + durationLabel(d)
	}
	return "−" + durationLabel(-d)
}

func number(s spread, decimals int) string {
	if s.N == 0 {
		return "—"
	}
	return strconv.FormatFloat(s.Median, 'f', decimals, 64)
}

func latency(s spread) string {
	if s.N == 0 {
		return "—"
	}
	return durationLabel(time.Duration(s.Median))
}

// durationLabel is d in µs below 10 ms, in ms from there.
func durationLabel(d time.Duration) string {
	if d < 10*time.Millisecond {
		return fmt.Sprintf("%.0f µs", float64(d)/float64(time.Microsecond))
	}
	return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
}

// sizeLabel is n bytes in KiB or MiB when a whole number of them.
func sizeLabel(n int) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return strconv.Itoa(n>>20) + " MiB"
	case n >= 1<<10 && n%(1<<10) == 0:
		return strconv.Itoa(n>>10) + " KiB"
	}
	return strconv.Itoa(n) + " B"
}

func dash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}
