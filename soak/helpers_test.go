package soak

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connectproto"
	"google.golang.org/genproto/googleapis/rpc/errdetails"

	kvv1 "github.com/kvgate/kvgate/gen/go/fastly/kv/v1"
	"github.com/kvgate/kvgate/upstream"
	"github.com/kvgate/kvgate/upstream/localstore"
)

// outcomeKind is what a caller can conclude from how an RPC ended.
type outcomeKind int

const (
	// outOK: the call succeeded.
	outOK outcomeKind = iota
	// outDefinite: kvgate answered with a definite code (NOT_FOUND,
	// RESOURCE_EXHAUSTED, UNAVAILABLE, ...) and an ErrorInfo of its own.
	outDefinite
	// outUnknown: UNKNOWN with ErrorInfo reason OUTCOME_UNKNOWN.
	outUnknown
	// outLate: DEADLINE_EXCEEDED or CANCELED; a write may or may not have
	// been applied, and may still be.
	outLate
	// outForeign: an error kvgate did not produce as documented (no
	// kvgate ErrorInfo, or UNKNOWN without OUTCOME_UNKNOWN).
	outForeign
)

var outcomeNames = [...]string{"ok", "definite", "unknown", "late", "foreign"}

func (k outcomeKind) String() string { return outcomeNames[k] }

// result is a classified RPC outcome.
type result struct {
	kind   outcomeKind
	code   connect.Code // zero for outOK
	reason string       // the kvgate ErrorInfo reason, if any
	retry  time.Duration
	// progress is the BatchProgress detail, if any.
	progress *kvv1.BatchProgress
	err      error
}

// label names the outcome for the figures: "ok", or the code's name
// ("resource_exhausted", "unknown", ...).
func (r result) label() string {
	if r.kind == outOK {
		return "ok"
	}
	if r.kind == outForeign {
		return "foreign:" + r.code.String()
	}
	return r.code.String()
}

const errorDomain = "kvgate"

func classify(err error) result {
	if err == nil {
		return result{kind: outOK}
	}
	r := result{code: connect.CodeOf(err), err: err}
	var cerr *connect.Error
	if !errors.As(err, &cerr) {
		r.kind = outForeign
		return r
	}
	for _, d := range cerr.Details() {
		m, derr := connectproto.UnmarshalErrorDetail(d)
		if derr != nil {
			continue
		}
		switch m := m.(type) {
		case *errdetails.ErrorInfo:
			if m.GetDomain() == errorDomain {
				r.reason = m.GetReason()
			}
		case *errdetails.RetryInfo:
			r.retry = m.GetRetryDelay().AsDuration()
		case *kvv1.BatchProgress:
			r.progress = m
		}
	}
	switch {
	case r.code == connect.CodeUnknown && r.reason == "OUTCOME_UNKNOWN":
		r.kind = outUnknown
	case r.code == connect.CodeDeadlineExceeded || r.code == connect.CodeCanceled:
		r.kind = outLate
	case r.code != connect.CodeUnknown && r.reason != "":
		r.kind = outDefinite
	default:
		r.kind = outForeign
	}
	return r
}

// tally counts labelled events; it is safe for concurrent use.
type tally struct {
	mu sync.Mutex
	m  map[string]int64
}

func (c *tally) add(label string, n int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = make(map[string]int64)
	}
	c.m[label] += n
}

func (c *tally) get(label string) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[label]
}

func (c *tally) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return formatCounts(c.m)
}

func formatCounts[V int | int64](m map[string]V) string {
	if len(m) == 0 {
		return "none"
	}
	var b strings.Builder
	for i, k := range slices.Sorted(maps.Keys(m)) {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s=%d", k, m[k])
	}
	return b.String()
}

// problems reports what the soak found wrong: each kind counted, the first
// few of each kind as test errors, the rest summed up at the end. It is
// safe for concurrent use.
type problems struct {
	t  *testing.T
	mu sync.Mutex
	n  map[string]int
}

const problemsShown = 8

func (p *problems) add(kind, format string, args ...any) {
	p.t.Helper()
	p.mu.Lock()
	if p.n == nil {
		p.n = make(map[string]int)
	}
	p.n[kind]++
	show := p.n[kind] <= problemsShown
	p.mu.Unlock()
	if show {
		p.t.Errorf("%s: %s", kind, fmt.Sprintf(format, args...))
	}
}

// summary fails the test with the counts of every kind, and returns them.
func (p *problems) summary() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.n) == 0 {
		return "none"
	}
	s := formatCounts(p.n)
	p.t.Errorf("problems found (first %d of each kind shown above): %s", problemsShown, s)
	return s
}

// logCounter is kvgate's (and the store's) slog handler in the soak: one
// line per RPC would drown a verbose run, so RPC lines are counted by
// procedure and code, and other warnings and errors are kept.
type logCounter struct {
	mu      sync.Mutex
	rpcs    map[string]int64
	warns   []string
	errs    []string
	dropped int
}

func newLogCounter() *logCounter { return &logCounter{rpcs: make(map[string]int64)} }

func (h *logCounter) Enabled(context.Context, slog.Level) bool { return true }
func (h *logCounter) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *logCounter) WithGroup(string) slog.Handler            { return h }

func (h *logCounter) Handle(_ context.Context, r slog.Record) error {
	if r.Message == "rpc" {
		var proc, code string
		r.Attrs(func(a slog.Attr) bool {
			switch a.Key {
			case "procedure":
				proc = a.Value.String()
				proc = proc[strings.LastIndexByte(proc, '/')+1:]
			case "code":
				code = a.Value.String()
			}
			return true
		})
		h.mu.Lock()
		h.rpcs[proc+" "+code]++
		h.mu.Unlock()
		return nil
	}
	if r.Level < slog.LevelWarn {
		return nil
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", r.Level, r.Message)
	r.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%q", a.Key, a.Value.String())
		return true
	})
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case r.Level >= slog.LevelError && len(h.errs) < 50:
		h.errs = append(h.errs, b.String())
	case r.Level < slog.LevelError && len(h.warns) < 50:
		h.warns = append(h.warns, b.String())
	default:
		h.dropped++
	}
	return nil
}

func (h *logCounter) snapshot() (rpcs map[string]int64, warns, errs []string, dropped int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return maps.Clone(h.rpcs), slices.Clone(h.warns), slices.Clone(h.errs), h.dropped
}

// checkGoroutines waits until the number of goroutines is back within
// tolerance of baseline, and fails with a dump of every goroutine if it
// is not within 10 seconds.
func checkGoroutines(t *testing.T, baseline, tolerance int) {
	t.Helper()
	start := time.Now()
	deadline := start.Add(10 * time.Second)
	n := runtime.NumGoroutine()
	for n > baseline+tolerance && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		n = runtime.NumGoroutine()
	}
	if n <= baseline+tolerance {
		t.Logf("goroutines: %d after shutdown (baseline %d, tolerance %d), settled in %v",
			n, baseline, tolerance, time.Since(start).Round(time.Millisecond))
		return
	}
	t.Errorf("goroutines: %d still running 10s after shutdown, baseline %d (tolerance %d); all goroutines:\n%s",
		n, baseline, tolerance, allStacks())
}

// stackSummary counts the goroutines of a runtime.Stack dump by state and
// innermost function outside the runtime and sync packages.
func stackSummary(dump []byte) string {
	counts := make(map[string]int)
	for g := range strings.SplitSeq(string(dump), "\n\n") {
		lines := strings.Split(strings.TrimSpace(g), "\n")
		if len(lines) == 0 || !strings.HasPrefix(lines[0], "goroutine ") {
			continue
		}
		state := lines[0][strings.IndexByte(lines[0], '[')+1:]
		state, _, _ = strings.Cut(state, "]")
		state, _, _ = strings.Cut(state, ",")
		where := "?"
		for _, l := range lines[1:] {
			if strings.HasPrefix(l, "\t") || strings.HasPrefix(l, "runtime.") || strings.HasPrefix(l, "sync.") ||
				strings.HasPrefix(l, "internal/") || strings.HasPrefix(l, "created by ") {
				continue
			}
			where = l
			if i := strings.LastIndexByte(l, '('); i > 0 {
				where = l[:i] // the arguments
			}
			break
		}
		counts["["+state+"] "+where]++
	}
	keys := slices.SortedFunc(maps.Keys(counts), func(a, b string) int {
		if counts[a] != counts[b] {
			return counts[b] - counts[a]
		}
		return strings.Compare(a, b)
	})
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "\n  %4d %s", counts[k], k)
	}
	return b.String()
}

// allStacks returns the stacks of every goroutine.
func allStacks() []byte {
	buf := make([]byte, 1<<20)
	for {
		m := runtime.Stack(buf, true)
		if m < len(buf) {
			return buf[:m]
		}
		buf = make([]byte, 2*len(buf))
	}
}

// listAll lists every key of store straight from the upstream.
func listAll(ctx context.Context, t *testing.T, kv *upstream.Client, store string) []string {
	t.Helper()
	var keys []string
	cursor := ""
	for {
		page, err := kv.ListKeys(ctx, store, upstream.ListOptions{Cursor: cursor})
		if err != nil {
			t.Fatalf("listing %s: %v", store, err)
		}
		keys = append(keys, page.Keys...)
		if page.NextCursor == "" {
			return keys
		}
		cursor = page.NextCursor
	}
}

// beginPhase starts a phase of the soak: the faults -soak.faults names,
// and a counter of the logs its stack writes. It registers, first so that
// it runs last (after kvtest's own cleanups have stopped kvgate and closed
// the upstream server), the check that the phase's goroutines are gone.
func beginPhase(t *testing.T) (localstore.Faults, *logCounter) {
	t.Helper()
	faults, err := localstore.ParseFaults(*flagFaults)
	if err != nil {
		t.Fatalf("-soak.faults: %v", err)
	}
	baseline := runtime.NumGoroutine()
	t.Cleanup(func() { checkGoroutines(t, baseline, 3) })
	return faults, newLogCounter()
}
