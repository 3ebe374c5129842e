package soak

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect/v2/connecthttp"

	"github.com/kvgate/kvgate/internal/kvtest"
	"github.com/kvgate/kvgate/service"
	"github.com/kvgate/kvgate/upstream"
	"github.com/kvgate/kvgate/upstream/localstore"
)

var (
	flagItems  = flag.Int("soak.items", 10_000, "items the soak uploads through BatchPutItems")
	flagUnary  = flag.Int("soak.unary", 1_000, "unary calls the soak makes while the upload runs")
	flagFaults = flag.String("soak.faults", defaultFaults, "faults the local store injects during the soak (a localstore.ParseFaults spec)")
)

// defaultFaults answers 10% of requests 429, 500 or 503, drops 1% of the
// connections (half after applying the request, half before), cuts 0.5%
// of the response bodies, and adds up to 1ms of jitter, with a fixed seed.
//
// The 429s are few on purpose. The local store answers each with
// Fastly-RateLimit-Remaining: 0 and a reset at the next whole second after
// Retry-After, and kvgate then refuses every write, of every caller, until
// that reset (RESOURCE_EXHAUSTED, not sent): by design, one 429 stops all
// writes for 1 to 2 seconds. At 3% of requests the soak would spend its
// time waiting, and most writes would fail without reaching the store.
const defaultFaults = "jitter=1ms,drop-before=0.005,429=0.005,503=0.05,500=0.045,drop=0.005,drop-mid-body=0.005,seed=20261110"

const storeID = "soak"

// stuckCall is how long a unary call may run before the soak logs (once)
// where every goroutine is, to show what the call waits for: calls take
// milliseconds and retries add at most about 100ms, so this takes a stuck
// call or a starved machine. It is not a failure: the soak asserts no
// timings.
const stuckCall = 5 * time.Second

// TestSoak uploads -soak.items items through BatchPutItems on several
// streams while several callers make -soak.unary unary calls (overwrites,
// reads, listings, deletes and appends), all through the faults of
// -soak.faults. Then, with the faults off, it reads the store directly and
// compares it with what kvgate acknowledged: nothing acknowledged is
// missing or wrong, no failure went unreported, no append was applied
// twice or applied after failing definitely. Finally it shuts the stack
// down and checks that its goroutines are gone.
func TestSoak(t *testing.T) {
	items, calls := *flagItems, *flagUnary
	faults, logs := beginPhase(t)
	st := startSoakStack(t, logs)
	ctx := t.Context()
	upHTTP, unaryHTTP := kvtest.H2CClient(), kvtest.H2CClient()
	upClient := st.NewClient(upHTTP, connecthttp.WithGRPC())
	unaryClient := st.NewClient(unaryHTTP, connecthttp.WithGRPC())
	p := &problems{t: t}
	up := newUploader(items, upClient, p)
	var unaryStats tally
	callers := make([]*caller, unaryCallers)
	for c := range callers {
		callers[c] = newCaller(c, unaryClient, up, &unaryStats, p)
	}

	// The load runs until it is done or until a margin before the test's
	// deadline, kept for the checks.
	loadCtx := ctx
	if d, ok := t.Deadline(); ok {
		var cancel context.CancelFunc
		loadCtx, cancel = context.WithDeadline(ctx, d.Add(-max(time.Until(d)/5, 30*time.Second)))
		defer cancel()
	}
	requestsBefore := st.Requests()
	st.Store.SetFaults(faults)
	t.Logf("soak: %d items on %d streams, %d unary calls from %d callers; faults %q", items, uploadWorkers, calls, unaryCallers, faults.String())
	start := time.Now()
	watch := startWatchdog(start, callers)
	uploadTook := runLoad(loadCtx, up, callers, calls)
	loadTook := time.Since(start)
	watch.report(t)
	st.Store.SetFaults(localstore.Faults{})

	t.Logf("load: %v (upload %v)", loadTook.Round(time.Millisecond), uploadTook.Round(time.Millisecond))
	logLoadFigures(t, st, requestsBefore, up, callers, &unaryStats)
	checkLogs(t, logs)
	for w, left := range up.left {
		if left > 0 {
			t.Errorf("upload stream %d still had %d items unaccounted for after %d rounds (load ctx: %v)", w, left, up.rounds[w], loadCtx.Err())
		}
	}

	// The comparison, with the faults off, through the direct REST client.
	verifyStart := time.Now()
	present, upFigures := up.verify(ctx, st.Client)
	var unaryFigures tally
	for _, cl := range callers {
		cl.verify(ctx, st.Client, &unaryFigures)
	}
	t.Logf("verify: %v; %d of %d upload items in the store (%s)", time.Since(verifyStart).Round(time.Millisecond), present, items, upFigures)
	t.Logf("verify unary keys: %s", unaryFigures.String())
	t.Logf("problems: %s", p.summary())

	// Shut down; the goroutine check runs after kvtest's cleanups.
	if err := st.Shutdown(); err != nil {
		t.Errorf("kvgate shutdown: %v", err)
	}
	upHTTP.CloseIdleConnections()
	unaryHTTP.CloseIdleConnections()
	t.Logf("soak took %v", time.Since(start).Round(time.Millisecond))
}

// startSoakStack starts kvgate and the local store, both logging to logs,
// with retries and batches sized for the soak, and seeds the store: it
// exists once it holds an item, and listings of a store that does not are
// NOT_FOUND.
func startSoakStack(t *testing.T, logs *logCounter) *kvtest.Stack {
	t.Helper()
	logger := slog.New(logs)
	st := kvtest.Start(t, kvtest.Options{
		Retry:  upstream.RetryPolicy{MaxAttempts: 8, BaseDelay: time.Millisecond, MaxDelay: 20 * time.Millisecond},
		Batch:  service.BatchConfig{MaxLines: 500, Concurrency: 4},
		Store:  localstore.Config{Logger: logger},
		Logger: logger,
	})
	if err := st.Client.PutItem(t.Context(), storeID, "soak-seed", []byte("seed"), upstream.PutOptions{}); err != nil {
		t.Fatalf("seeding the store: %v", err)
	}
	return st
}

// runLoad runs the upload and the callers, who share calls between them,
// until they are done or ctx ends, and returns how long the upload took.
func runLoad(ctx context.Context, up *uploader, callers []*caller, calls int) (uploadTook time.Duration) {
	start := time.Now()
	var wg sync.WaitGroup
	wg.Go(func() {
		up.run(ctx)
		uploadTook = time.Since(start)
	})
	for c, cl := range callers {
		share := calls / len(callers)
		if c < calls%len(callers) {
			share++
		}
		wg.Go(func() { cl.run(ctx, share) })
	}
	wg.Wait()
	return uploadTook
}

// watchdog notices when the whole process stalls (a loaded machine), to
// tell that apart from slow calls, and dumps every goroutine once when a
// unary call has been running for stuckCall.
type watchdog struct {
	start   time.Time
	callers []*caller
	stop    chan struct{}
	done    chan struct{}

	// Written by run until done is closed.
	maxLag, lagAt time.Duration
	stuckDump     string
}

func startWatchdog(start time.Time, callers []*caller) *watchdog {
	w := &watchdog{start: start, callers: callers, stop: make(chan struct{}), done: make(chan struct{})}
	go w.run()
	return w
}

func (w *watchdog) run() {
	defer close(w.done)
	for {
		t0 := time.Now()
		select {
		case <-w.stop:
			return
		case <-time.After(50 * time.Millisecond):
		}
		if lag := time.Since(t0) - 50*time.Millisecond; lag > w.maxLag {
			w.maxLag, w.lagAt = lag, t0.Sub(w.start)
		}
		if w.stuckDump == "" {
			w.stuckDump = w.checkStuck()
		}
	}
}

// checkStuck describes the goroutines when a caller's call has been running
// for stuckCall, or returns "".
func (w *watchdog) checkStuck() string {
	for _, cl := range w.callers {
		if since := cl.inFlight.Load(); since != 0 && time.Since(time.Unix(0, since)) > stuckCall {
			stacks := allStacks()
			dump := fmt.Sprintf("caller %d's call has been running for %v at +%v; the goroutines then, by state and function:%s",
				cl.id, time.Since(time.Unix(0, since)).Round(time.Millisecond), time.Since(w.start).Round(time.Millisecond), stackSummary(stacks))
			if testing.Verbose() {
				dump += "\nevery goroutine:\n" + string(stacks)
			}
			return dump
		}
	}
	return ""
}

// report stops the watchdog and logs what it saw.
func (w *watchdog) report(t *testing.T) {
	close(w.stop)
	<-w.done
	t.Logf("the longest stall of a 50ms timer during the load: %v at +%v", w.maxLag.Round(time.Millisecond), w.lagAt.Round(time.Millisecond))
	if w.stuckDump != "" {
		t.Logf("a stuck call: %s", w.stuckDump)
	}
}

// logLoadFigures logs what the load did: the faults injected, the upstream
// requests, the upload's accounting and each caller's time.
func logLoadFigures(t *testing.T, st *kvtest.Stack, requestsBefore int64, up *uploader, callers []*caller, unaryStats *tally) {
	injected := st.Store.InjectedFaults()
	t.Logf("injected faults: 429=%d 503=%d 500=%d dropped-before-handling=%d dropped-after-applying=%d dropped-mid-body=%d (total %d)",
		injected.RateLimited, injected.Unavailable, injected.ServerError,
		injected.DroppedBeforeHandling, injected.DroppedBeforeResponse, injected.DroppedMidBody,
		injected.RateLimited+injected.Unavailable+injected.ServerError+injected.DroppedBeforeHandling+injected.DroppedBeforeResponse+injected.DroppedMidBody)
	var kinds []string
	for k := localstore.RequestOther; k <= localstore.RequestBatch; k++ {
		kinds = append(kinds, fmt.Sprintf("%s=%d", k, st.Store.Count(k)))
	}
	t.Logf("upstream requests during the load: %d (all time by kind: %s)", st.Requests()-requestsBefore, strings.Join(kinds, " "))
	t.Logf("upload: rounds per stream %v, items left unaccounted per stream %v", up.rounds, up.left)
	t.Logf("upload accounting: %s", up.stats.String())
	var waited time.Duration
	for _, cl := range callers {
		waited += cl.waited
		t.Logf("caller %d: %v, of which %v waiting as RetryInfo asked; slowest call %v (%s) at +%v",
			cl.id, cl.took.Round(time.Millisecond), cl.waited.Round(time.Millisecond), cl.slowest.Round(time.Millisecond), cl.slowestCall, cl.slowestAt.Round(time.Millisecond))
	}
	t.Logf("unary calls: %s; the callers waited %v in all as RetryInfo asked", unaryStats.String(), waited.Round(time.Millisecond))
}

// checkLogs logs the RPC counts and warnings kvgate and the store logged,
// and fails the test for each error.
func checkLogs(t *testing.T, logs *logCounter) {
	rpcs, warns, errs, dropped := logs.snapshot()
	t.Logf("kvgate RPC log: %s", formatCounts(rpcs))
	for _, w := range warns {
		t.Logf("kvgate log: %s", w)
	}
	if dropped > 0 {
		t.Logf("kvgate log: %d more warnings or errors not kept", dropped)
	}
	for _, e := range errs {
		t.Errorf("kvgate or the store logged an error: %s", e)
	}
}
