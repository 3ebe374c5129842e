package localstore_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/kvgate/kvgate/upstream"
	"github.com/kvgate/kvgate/upstream/localstore"
)

// TestLatency checks Faults.Latency delays requests by at least its
// duration, whether set in Options or at run time, on every kind of
// request, and that the answers are otherwise unchanged. Only the lower
// bound is asserted: a loaded machine may be slower, never faster.
func TestLatency(t *testing.T) {
	t.Parallel()
	const latency = 50 * time.Millisecond
	tests := []struct {
		name string
		// atOpen sets the latency in Options; otherwise SetFaults does.
		atOpen       bool
		method, path string
		body         string
		want         int
	}{
		{"Options, GET", true, http.MethodGet, itemTarget("k"), "", http.StatusOK},
		{"SetFaults, GET", false, http.MethodGet, itemTarget("k"), "", http.StatusOK},
		{"SetFaults, missing key", false, http.MethodGet, itemTarget("missing"), "", http.StatusNotFound},
		{"SetFaults, PUT", false, http.MethodPut, itemTarget("k2"), "v", http.StatusOK},
		{"SetFaults, batch", false, http.MethodPut, batchTarget(storeID), line("b", "v"), http.StatusOK},
		{"SetFaults, listing", false, http.MethodGet, listTarget, "", http.StatusOK},
		{"SetFaults, unknown path", false, http.MethodGet, "/nowhere", "", http.StatusNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var opts localstore.Options
			if tt.atOpen {
				opts.Faults = localstore.Faults{Latency: latency}
			}
			h := newHarness(t, opts)
			h.put(t, "k", "v", upstream.PutOptions{})
			if !tt.atOpen {
				h.store.SetFaults(localstore.Faults{Latency: latency})
			}
			if got := h.store.Faults(); got.Latency != latency {
				t.Errorf("Faults() = %+v, want Latency %v", got, latency)
			}
			start := time.Now()
			resp, body := h.raw(t, tt.method, tt.path, nil, strings.NewReader(tt.body))
			elapsed := time.Since(start)
			if resp.StatusCode != tt.want {
				t.Errorf("status = %d %s, want %d", resp.StatusCode, body, tt.want)
			}
			if elapsed < latency {
				t.Errorf("request took %v, less than the injected %v", elapsed, latency)
			}
		})
	}
}

// TestLatencyCancelled checks a request whose client gives up during the
// injected latency stops waiting, and is not handled: a DELETE cancelled
// in its delay leaves the item in place. The handler's return is awaited
// with a generous timeout far below the latency; no duration is asserted.
func TestLatencyCancelled(t *testing.T) {
	t.Parallel()
	arrived := make(chan struct{}, 1)
	store, err := localstore.Open(localstore.Options{OnRequest: func(r *http.Request) {
		if r.Method == http.MethodDelete {
			arrived <- struct{}{}
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	handler := store.Handler()
	returned := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodDelete {
			defer close(returned)
		}
		handler.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	c, err := upstream.NewClient(upstream.Config{BaseURL: srv.URL, HTTPClient: srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{store: store, srv: srv, c: c}
	h.put(t, "k", "v", upstream.PutOptions{})

	// Far longer than the wait below, so only cancellation can end it.
	store.SetFaults(localstore.Faults{Latency: 2 * time.Minute})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, srv.URL+itemTarget("k"), nil)
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		resp, err := srv.Client().Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		errc <- err
	}()
	select {
	case <-arrived:
	case <-time.After(30 * time.Second):
		t.Fatal("the DELETE never reached the store")
	}
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Errorf("client error = %v, want context.Canceled", err)
	}
	select {
	case <-returned:
	case <-time.After(30 * time.Second):
		t.Fatal("the handler still waits out the latency after its client went away")
	}

	store.SetFaults(localstore.Faults{})
	if got := string(h.get(t, "k").Value); got != "v" {
		t.Errorf("k = %q: the cancelled DELETE was handled", got)
	}
	if n := store.Count(localstore.RequestDelete); n != 1 {
		t.Errorf("Count(RequestDelete) = %d, want 1: a request is counted as it arrives", n)
	}
}
