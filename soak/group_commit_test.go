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

	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connecthttp"

	kvv1 "github.com/kvgate/kvgate/gen/go/fastly/kv/v1"
	"github.com/kvgate/kvgate/internal/kvtest"
	"github.com/kvgate/kvgate/service"
	"github.com/kvgate/kvgate/upstream"
	"github.com/kvgate/kvgate/upstream/localstore"
)

var (
	flagGCWriters = flag.Int("soak.gc.writers", 32, "concurrent PutItem writers of the group commit soak")
	flagGCWrites  = flag.Int("soak.gc.writes", 60, "PutItem calls each group commit soak writer makes")
)

const (
	// gcKeys is how many keys each writer overwrites in turn, so that
	// its writes to one key follow each other.
	gcKeys = 6
	// gcStoreMaxValue is the largest value the store takes; kvgate takes
	// more, so a larger value rides a batch and the store refuses its line.
	gcStoreMaxValue = 4 << 10
	// gcRefusedEvery makes every so many writes one the store refuses.
	gcRefusedEvery = 9
)

// TestSoakGroupCommit has concurrent writers make PutItem overwrites
// through the faults of -soak.faults, so that kvgate commits them together
// in batch PUTs that meet 429s, 5xx answers and dropped connections. Each
// writer overwrites a few keys of its own in turn, and now and then
// writes a value the store refuses, to a key of its own. Then, with the
// faults off, it reads every key straight from the store: nothing
// acknowledged is missing or overtaken by an older write, no refused
// write is present, and no call ended in an error kvgate does not
// document.
func TestSoakGroupCommit(t *testing.T) {
	writers, writes := *flagGCWriters, *flagGCWrites
	faults, logs := beginPhase(t)
	logger := slog.New(logs)
	st := kvtest.Start(t, kvtest.Options{
		Retry:         upstream.RetryPolicy{MaxAttempts: 8, BaseDelay: time.Millisecond, MaxDelay: 20 * time.Millisecond},
		Batch:         service.BatchConfig{MaxLines: 64},
		MaxValueBytes: 1 << 20,
		Store:         localstore.Config{Logger: logger, MaxValueBytes: gcStoreMaxValue},
		Logger:        logger,
	})
	hc := kvtest.H2CClient()
	client := st.NewClient(hc, connecthttp.WithGRPC())
	p := &problems{t: t}
	var stats tally
	ws := make([]*gcWriter, writers)
	for i := range ws {
		ws[i] = &gcWriter{id: i, client: client, p: p, stats: &stats, keys: make([]gcKey, gcKeys)}
	}

	before := st.Requests()
	puts, batches := st.Store.Count(localstore.RequestPut), st.Store.Count(localstore.RequestBatch)
	st.Store.SetFaults(faults)
	start := time.Now()
	var wg sync.WaitGroup
	for _, w := range ws {
		wg.Go(func() { w.run(t.Context(), writes) })
	}
	wg.Wait()
	took := time.Since(start)
	st.Store.SetFaults(localstore.Faults{})
	puts = st.Store.Count(localstore.RequestPut) - puts
	batches = st.Store.Count(localstore.RequestBatch) - batches
	t.Logf("group commit: %d writers x %d PutItems in %v; the store got %d requests: %d batch PUTs, %d single PUTs; faults injected %+v",
		writers, writes, took.Round(time.Millisecond), st.Requests()-before, batches, puts, st.Store.InjectedFaults())
	t.Logf("outcomes: %s", stats.String())
	if batches == 0 {
		t.Error("no write went out in a batch PUT")
	}

	var figures tally
	for _, w := range ws {
		w.verify(t.Context(), st.Client, &figures)
	}
	t.Logf("verify: %s", figures.String())
	t.Logf("problems: %s", p.summary())
	_, warns, errs, _ := logs.snapshot()
	for _, line := range errs {
		t.Errorf("kvgate logged an error: %s", line)
	}
	t.Logf("kvgate logged %d warnings", len(warns))

	if err := st.Shutdown(); err != nil {
		t.Errorf("kvgate shutdown: %v", err)
	}
	hc.CloseIdleConnections()
}

// gcKey is what one writer knows of one of its keys.
type gcKey struct {
	// acked is the last value acknowledged, "" before any.
	acked string
	// since are the values written after acked whose calls failed: any of
	// them may have been applied, and the store may hold the last applied.
	since []string
}

// gcWriter makes one writer's PutItems and remembers their outcomes.
type gcWriter struct {
	id     int
	client interface {
		PutItem(context.Context, *kvv1.PutItemRequest) (*kvv1.PutItemResponse, error)
	}
	p     *problems
	stats *tally
	keys  []gcKey
	// refused are the keys of the writes the store refused: never present.
	refused []string
	// unsure are the keys of refused-size writes whose calls did not say.
	unsure []string
}

func (w *gcWriter) key(k int) string { return fmt.Sprintf("gc-w%03d-k%d", w.id, k) }

func (w *gcWriter) run(ctx context.Context, writes int) {
	for i := range writes {
		if ctx.Err() != nil {
			return
		}
		if i%gcRefusedEvery == gcRefusedEvery-1 {
			w.putRefused(ctx, i)
			continue
		}
		k := i % gcKeys
		v := fmt.Sprintf("w%03d #%d", w.id, i)
		r := w.put(ctx, w.key(k), []byte(v), "put", connect.CodeResourceExhausted, connect.CodeUnavailable)
		if r.kind == outOK {
			w.keys[k] = gcKey{acked: v}
		} else {
			w.keys[k].since = append(w.keys[k].since, v)
		}
	}
}

// putRefused writes a value the store refuses, to a key of its own.
func (w *gcWriter) putRefused(ctx context.Context, i int) {
	key := fmt.Sprintf("gc-w%03d-refused-%d", w.id, i)
	r := w.put(ctx, key, []byte(strings.Repeat("r", gcStoreMaxValue+1)), "refused put",
		connect.CodeInvalidArgument, connect.CodeResourceExhausted, connect.CodeUnavailable)
	switch {
	case r.kind == outOK:
		w.p.add("refused write acknowledged", "PutItem %s of a value the store refuses was acknowledged", key)
	case r.code == connect.CodeInvalidArgument:
		w.refused = append(w.refused, key)
	default:
		w.unsure = append(w.unsure, key)
	}
}

func (w *gcWriter) put(ctx context.Context, key string, value []byte, op string, codes ...connect.Code) result {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	_, err := w.client.PutItem(ctx, &kvv1.PutItemRequest{StoreId: storeID, Key: key, Value: value})
	r := classify(err)
	w.stats.add(op+" "+r.label(), 1)
	switch r.kind {
	case outForeign:
		w.p.add("foreign error", "%s %s: %v (code %v, ErrorInfo reason %q)", op, key, err, r.code, r.reason)
	case outUnknown:
		w.p.add("unknown outcome", "%s %s, an overwrite kvgate retries safely, ended with OUTCOME_UNKNOWN: %v", op, key, err)
	case outDefinite:
		found := false
		for _, c := range codes {
			found = found || c == r.code
		}
		if !found {
			w.p.add("unexpected code", "%s %s: %v", op, key, err)
		}
	}
	if r.code == connect.CodeResourceExhausted {
		// As a client should: wait as RetryInfo says before writing again.
		select {
		case <-time.After(min(max(r.retry, 10*time.Millisecond), maxBackoff)):
		case <-ctx.Done():
		}
	}
	return r
}

// verify reads the writer's keys straight from the store.
func (w *gcWriter) verify(ctx context.Context, kv *upstream.Client, figures *tally) {
	for k, st := range w.keys {
		key := w.key(k)
		item, err := kv.GetItem(ctx, storeID, key)
		got, present := "", err == nil
		switch {
		case present:
			got = string(item.Value)
		case upstream.KindOf(err) != upstream.KindNotFound:
			w.p.t.Fatalf("reading %s: %v", key, err)
		}
		ok := (st.acked != "" && got == st.acked) || (st.acked == "" && !present)
		for _, v := range st.since {
			ok = ok || got == v
		}
		switch {
		case !ok && st.acked != "" && !present:
			w.p.add("acknowledged write missing", "%s: %q was acknowledged, the store holds nothing", key, st.acked)
		case !ok:
			w.p.add("wrong value", "%s: the store holds %q (present %v); want the acknowledged %q or one of %q written after it", key, got, present, st.acked, st.since)
		case st.acked != "" && got == st.acked:
			figures.add("holds its last acknowledged write", 1)
		default:
			figures.add("holds a later write whose call failed", 1)
		}
	}
	for _, key := range w.refused {
		if _, err := kv.GetItem(ctx, storeID, key); err == nil {
			w.p.add("refused write present", "%s: the store refused the write's line, yet holds it", key)
		} else if upstream.KindOf(err) != upstream.KindNotFound {
			w.p.t.Fatalf("reading %s: %v", key, err)
		}
		figures.add("refused write absent", 1)
	}
	figures.add("refused-size write, outcome not said", int64(len(w.unsure)))
}
