package telemetry

import (
	"context"
	"errors"
	"net/http"
	"net/http/pprof"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/kvgate/kvgate/upstream"
)

// AdminHandler serves the admin endpoints: /metrics (Prometheus text),
// /healthz (200 while the process serves) and /readyz (200 while the last
// probe of the upstream got an answer, else 503). It belongs on a listener
// of its own, never the public one: metrics tell more than callers need.
// With [Config.AdminPprof] it also serves /debug/pprof/.
func (t *Telemetry) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	if t.cfg.AdminPprof {
		// Registered by hand: importing net/http/pprof for its side
		// effect would put the endpoints on http.DefaultServeMux.
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	mux.Handle("GET /metrics", promhttp.HandlerFor(t.registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writePlain(w, http.StatusOK, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if ok, reason := t.ready.state(); !ok {
			writePlain(w, http.StatusServiceUnavailable, "not ready: "+reason)
			return
		}
		writePlain(w, http.StatusOK, "ready")
	})
	return mux
}

func writePlain(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(body + "\n"))
}

// readiness is /readyz's state: not ready until the first probe answers.
type readiness struct {
	mu     sync.Mutex
	ok     bool
	reason string
	// probed is set once a probe (or NotReady) has said something.
	probed bool
	// final is set by NotReady: nothing changes the state after it.
	final bool
}

func (r *readiness) state() (bool, string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.ok && !r.probed {
		return false, "the upstream is not probed yet"
	}
	return r.ok, r.reason
}

func (r *readiness) set(ok bool, reason string) (changed bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	changed = r.ok != ok || !r.probed
	r.ok, r.reason, r.probed = ok, reason, true
	return changed
}

// NotReady marks kvgate not ready, for example once it starts shutting
// down, so that load balancers stop sending it new RPCs; probes after it
// do not undo it.
func (t *Telemetry) NotReady(reason string) {
	t.ready.set(false, reason)
	t.ready.mu.Lock()
	t.ready.final = true
	t.ready.mu.Unlock()
}

// Probe calls the upstream once; nil means it answered.
type Probe func(ctx context.Context) error

// UpstreamProbe lists one key of store: cheap (a read, outside Fastly's
// write budget) and proof that the upstream answers. Any answer short of a
// 5xx counts, a 404 for a store that does not exist, a 401 or a 429
// included: the upstream is there (a refused token is every replica's
// trouble alike, and the RPCs report it).
func UpstreamProbe(kv *upstream.Client, store string) Probe {
	return func(ctx context.Context) error {
		_, err := kv.ListKeys(ctx, store, upstream.ListOptions{Limit: 1})
		switch upstream.KindOf(err) {
		case upstream.KindNone, upstream.KindNotFound, upstream.KindBadRequest, upstream.KindUnauthorized,
			upstream.KindForbidden, upstream.KindRateLimited:
			return nil
		}
		return err
	}
}

// RunReadiness probes the upstream every ReadyProbeInterval until ctx
// ends, each probe bounded by the interval (at most 5s), and keeps /readyz
// and kvgate.ready up to date. Changes are logged.
func (t *Telemetry) RunReadiness(ctx context.Context, probe Probe) {
	interval := t.cfg.ReadyProbeInterval
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		probeCtx, cancel := context.WithTimeout(ctx, min(interval, 5*time.Second))
		err := probe(probeCtx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		t.record(err)
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

// record notes a probe's outcome, unless kvgate is already shutting down.
func (t *Telemetry) record(err error) {
	t.ready.mu.Lock()
	final := t.ready.final
	t.ready.mu.Unlock()
	if final {
		return
	}
	if err == nil {
		if t.ready.set(true, "") {
			t.logger.Info("ready: the upstream answers")
		}
		return
	}
	reason := "the upstream does not answer (" + upstream.KindOf(err).String() + ")"
	if errors.Is(err, context.DeadlineExceeded) {
		reason = "the upstream does not answer in time"
	}
	if t.ready.set(false, reason) {
		t.logger.Warn("not ready", "reason", reason)
	}
}
