package localstore_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kvgate/kvgate/internal/testutil"
	"github.com/kvgate/kvgate/upstream"
	"github.com/kvgate/kvgate/upstream/localstore"
)

// TestLatency checks Faults.Latency delays requests by at least its
// duration, whether set in Config or at run time, on every kind of
// request, and that the answers are otherwise unchanged. Only the lower
// bound is asserted: a loaded machine may be slower, never faster.
func TestLatency(t *testing.T) {
	t.Parallel()
	const latency = 50 * time.Millisecond
	tests := []struct {
		name string
		// atOpen sets the latency in Config; otherwise SetFaults does.
		atOpen       bool
		method, path string
		body         string
		want         int
	}{
		{"Config, GET", true, http.MethodGet, itemTarget("k"), "", http.StatusOK},
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
			var opts localstore.Config
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
	store, err := localstore.Open(localstore.Config{OnRequest: func(r *http.Request) {
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
	c, err := upstream.NewClient(upstream.ClientConfig{BaseURL: srv.URL, HTTPClient: srv.Client()})
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

// The protocols the fault tests run over: a drop is a hijacked and closed
// connection on HTTP/1 but a reset stream on HTTP/2, and kvgate serves the
// local store over HTTP/1 and h2c.
const (
	protoHTTP1 = "HTTP/1.1"
	protoH2    = "HTTP/2"
	protoH2C   = "h2c"
)

var faultProtocols = []string{protoHTTP1, protoH2, protoH2C}

// faultServer is a store served over one protocol, with a client that
// speaks it. Its cleanup checks every handler returned (a drop or a cut
// body must not leave one stuck) and that net/http logged no panic.
type faultServer struct {
	store    *localstore.Store
	url      string
	client   *http.Client
	proto    string
	inFlight atomic.Int64
}

func newFaultServer(t *testing.T, proto string, opts localstore.Config) *faultServer {
	t.Helper()
	store, err := localstore.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	fs := &faultServer{store: store, proto: proto}
	handler := store.Handler()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fs.inFlight.Add(1)
		defer fs.inFlight.Add(-1) // runs on a panic too
		handler.ServeHTTP(w, r)
	}))
	errLog := &testutil.LockedBuffer{}
	srv.Config.ErrorLog = log.New(errLog, "", 0)
	switch proto {
	case protoHTTP1:
		srv.Start()
		// A fresh connection per request: Go's Transport resends an
		// idempotent request once when a reused connection drops, which
		// would double some counts.
		fs.client = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	case protoH2:
		srv.EnableHTTP2 = true
		srv.StartTLS()
		fs.client = srv.Client()
	case protoH2C:
		p := new(http.Protocols)
		p.SetHTTP1(true)
		p.SetUnencryptedHTTP2(true)
		srv.Config.Protocols = p
		srv.Start()
		cp := new(http.Protocols)
		cp.SetUnencryptedHTTP2(true)
		fs.client = &http.Client{Transport: &http.Transport{Protocols: cp}}
	default:
		t.Fatalf("unknown protocol %q", proto)
	}
	// Redirects are answers too (the Kinds test sends a request the
	// router redirects).
	fs.client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	fs.url = srv.URL
	t.Cleanup(func() {
		fs.client.CloseIdleConnections()
		srv.Close()
		deadline := time.Now().Add(30 * time.Second)
		for fs.inFlight.Load() != 0 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		if n := fs.inFlight.Load(); n != 0 {
			t.Errorf("%d handlers still running after the server closed", n)
		}
		if l := errLog.String(); strings.Contains(l, "panic") {
			t.Errorf("the server logged a panic:\n%s", l)
		}
		if err := store.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return fs
}

// result is what a client saw of one request.
type result struct {
	resp *http.Response // nil when the request failed
	err  error          // the transport error, from Do
	body []byte
	// readErr is the error reading the body, which ended early.
	readErr error
}

func (fs *faultServer) do(t *testing.T, method, target string, header http.Header, body string) result {
	t.Helper()
	return fs.doContext(t, t.Context(), method, target, header, body)
}

func (fs *faultServer) doContext(t *testing.T, ctx context.Context, method, target string, header http.Header, body string) result {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, fs.url+target, rd)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := fs.client.Do(req)
	if err != nil {
		return result{err: err}
	}
	defer resp.Body.Close()
	b, readErr := io.ReadAll(resp.Body)
	if fs.proto != protoHTTP1 && resp.ProtoMajor != 2 {
		t.Errorf("%s: the response came over %s", fs.proto, resp.Proto)
	}
	return result{resp: resp, body: b, readErr: readErr}
}

// must sends a request with the faults off and checks its status.
func (fs *faultServer) must(t *testing.T, method, target, body string, status int) []byte {
	t.Helper()
	saved := fs.store.Faults()
	fs.store.SetFaults(localstore.Faults{})
	defer fs.store.SetFaults(saved)
	res := fs.do(t, method, target, nil, body)
	if res.err != nil || res.readErr != nil {
		t.Fatalf("%s %s: %v %v", method, target, res.err, res.readErr)
	}
	if res.resp.StatusCode != status {
		t.Fatalf("%s %s = %d %s, want %d", method, target, res.resp.StatusCode, res.body, status)
	}
	return res.body
}

// value reads key with the faults off; ok is false when it is absent.
func (fs *faultServer) value(t *testing.T, key string) (string, bool) {
	t.Helper()
	saved := fs.store.Faults()
	fs.store.SetFaults(localstore.Faults{})
	defer fs.store.SetFaults(saved)
	res := fs.do(t, http.MethodGet, itemTarget(key), nil, "")
	if res.err != nil || res.readErr != nil {
		t.Fatalf("GET %s: %v %v", key, res.err, res.readErr)
	}
	switch res.resp.StatusCode {
	case http.StatusOK:
		return string(res.body), true
	case http.StatusNotFound:
		return "", false
	}
	t.Fatalf("GET %s = %d %s", key, res.resp.StatusCode, res.body)
	return "", false
}

// faultRequest is a write whose effect can be checked afterwards.
type faultRequest struct {
	name, method, target, body string
	// before and after are the value of key before the request and once
	// it is applied ("" for absent).
	key, before, after string
}

var faultWrites = []faultRequest{
	{"append", http.MethodPut, itemTarget("k") + "?append=true", "b", "k", "a", "ab"},
	{"batch", http.MethodPut, batchTarget(storeID), line("n", "new"), "n", "", "new"},
	{"delete", http.MethodDelete, itemTarget("k"), "", "k", "a", ""},
}

// setUp puts the store in the state before any of faultWrites.
func (fs *faultServer) setUp(t *testing.T) {
	t.Helper()
	fs.must(t, http.MethodPut, itemTarget("k"), "a", http.StatusOK)
}

// checkApplied checks whether rq was applied.
func (fs *faultServer) checkApplied(t *testing.T, rq faultRequest, applied bool) {
	t.Helper()
	want := rq.before
	if applied {
		want = rq.after
	}
	got, ok := fs.value(t, rq.key)
	if got != want || ok != (want != "") {
		t.Errorf("%s = %q (present %v), want %q: applied should be %v", rq.key, got, ok, want, applied)
	}
}

// TestFaultAnswers checks 429, 503 and 500 at rate 1: the answer's status,
// headers and JSON body, over every protocol, and that the request is not
// applied.
func TestFaultAnswers(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		faults localstore.Faults
		status int
		// retryAfter is the Retry-After header wanted ("" for none).
		retryAfter string
		want       func(c localstore.FaultCounts) int64
	}{
		{"429", localstore.Faults{RateLimited: 1}, http.StatusTooManyRequests, "1",
			func(c localstore.FaultCounts) int64 { return c.RateLimited }},
		{"429, retry-after 1.5s", localstore.Faults{RateLimited: 1, RetryAfter: 1500 * time.Millisecond}, http.StatusTooManyRequests, "2",
			func(c localstore.FaultCounts) int64 { return c.RateLimited }},
		{"503", localstore.Faults{Unavailable: 1}, http.StatusServiceUnavailable, "",
			func(c localstore.FaultCounts) int64 { return c.Unavailable }},
		{"503, retry-after 3s", localstore.Faults{Unavailable: 1, RetryAfter: 3 * time.Second}, http.StatusServiceUnavailable, "3",
			func(c localstore.FaultCounts) int64 { return c.Unavailable }},
		{"500", localstore.Faults{ServerError: 1, RetryAfter: time.Second}, http.StatusInternalServerError, "",
			func(c localstore.FaultCounts) int64 { return c.ServerError }},
	}
	for _, tt := range tests {
		for _, proto := range faultProtocols {
			for _, rq := range faultWrites {
				t.Run(tt.name+"/"+proto+"/"+rq.name, func(t *testing.T) {
					t.Parallel()
					fs := newFaultServer(t, proto, localstore.Config{})
					fs.setUp(t)
					fs.store.SetFaults(tt.faults)
					start := time.Now()
					res := fs.do(t, rq.method, rq.target, nil, rq.body)
					if res.err != nil || res.readErr != nil {
						t.Fatalf("%v %v", res.err, res.readErr)
					}
					if res.resp.StatusCode != tt.status {
						t.Errorf("status = %d, want %d", res.resp.StatusCode, tt.status)
					}
					h := res.resp.Header
					if got := h.Get("Retry-After"); got != tt.retryAfter {
						t.Errorf("Retry-After = %q, want %q", got, tt.retryAfter)
					}
					if tt.status == http.StatusTooManyRequests {
						if got := h.Get("Fastly-RateLimit-Remaining"); got != "0" {
							t.Errorf("Fastly-RateLimit-Remaining = %q, want 0", got)
						}
						secs, _ := strconv.ParseInt(tt.retryAfter, 10, 64)
						reset, err := strconv.ParseInt(h.Get("Fastly-RateLimit-Reset"), 10, 64)
						if err != nil {
							t.Errorf("Fastly-RateLimit-Reset = %q: %v", h.Get("Fastly-RateLimit-Reset"), err)
						} else if low := start.Unix() + secs; reset < low {
							t.Errorf("Fastly-RateLimit-Reset = %d, before %d (Retry-After from the request's start)", reset, low)
						}
					} else if h.Get("Fastly-RateLimit-Reset") != "" || h.Get("Fastly-RateLimit-Remaining") != "" {
						t.Errorf("a %d carries rate-limit headers: %v", tt.status, h)
					}
					var body struct{ Msg, Detail string }
					if ct := h.Get("Content-Type"); ct != "application/json" {
						t.Errorf("Content-Type = %q", ct)
					}
					if err := json.Unmarshal(res.body, &body); err != nil || body.Msg == "" {
						t.Errorf("body %q: %v, want a JSON error", res.body, err)
					}
					c := fs.store.InjectedFaults()
					if got := tt.want(c); got != 1 {
						t.Errorf("InjectedFaults() = %+v, want 1 of this kind", c)
					}
					if total := c.RateLimited + c.Unavailable + c.ServerError + c.DroppedBeforeHandling + c.DroppedBeforeResponse + c.DroppedMidBody; total != 1 {
						t.Errorf("InjectedFaults() = %+v, want 1 fault in all", c)
					}
					fs.checkApplied(t, rq, false)
				})
			}
		}
	}
}

// TestFaultDrops checks a connection dropped before handling leaves the
// store as it was, and one dropped before the response leaves the request
// applied (so an append retried blindly would be applied twice), over
// every protocol; the client sees a transport error either way.
func TestFaultDrops(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		faults  localstore.Faults
		applied bool
	}{
		{"before handling", localstore.Faults{DropBeforeHandling: 1}, false},
		{"before the response", localstore.Faults{DropBeforeResponse: 1}, true},
		{"before the response, after latency", localstore.Faults{DropBeforeResponse: 1, Latency: time.Millisecond}, true},
	}
	for _, tt := range tests {
		for _, proto := range faultProtocols {
			for _, rq := range faultWrites {
				t.Run(tt.name+"/"+proto+"/"+rq.name, func(t *testing.T) {
					t.Parallel()
					fs := newFaultServer(t, proto, localstore.Config{})
					fs.setUp(t)
					fs.store.SetFaults(tt.faults)
					res := fs.do(t, rq.method, rq.target, nil, rq.body)
					if res.err == nil {
						t.Fatalf("got %d %q, want a transport error", res.resp.StatusCode, res.body)
					}
					if errors.Is(res.err, context.Canceled) || errors.Is(res.err, context.DeadlineExceeded) {
						t.Errorf("err = %v, want a broken connection", res.err)
					}
					want := localstore.FaultCounts{DroppedBeforeHandling: 1}
					if tt.applied {
						want = localstore.FaultCounts{DroppedBeforeResponse: 1}
					}
					if got := fs.store.InjectedFaults(); got != want {
						t.Errorf("InjectedFaults() = %+v, want %+v", got, want)
					}
					fs.checkApplied(t, rq, tt.applied)
				})
			}
		}
	}
}

// TestFaultDropMidBody checks a response with a body is cut after its
// headers and part of its body, which the client reads short with an
// error, while the request was applied; and that a response without a
// body is not touched.
func TestFaultDropMidBody(t *testing.T) {
	t.Parallel()
	big := strings.Repeat("0123456789", 1000)
	for _, proto := range faultProtocols {
		t.Run(proto, func(t *testing.T) {
			t.Parallel()
			fs := newFaultServer(t, proto, localstore.Config{})
			fs.must(t, http.MethodPut, itemTarget("big"), big, http.StatusOK)
			fs.must(t, http.MethodPut, itemTarget("one"), "x", http.StatusOK)
			for i := range 50 {
				fs.must(t, http.MethodPut, itemTarget(fmt.Sprintf("key-%02d", i)), "v", http.StatusOK)
			}
			fullList := fs.must(t, http.MethodGet, listTarget, "", http.StatusOK)
			fs.store.SetFaults(localstore.Faults{DropMidBody: 1, Seed: 1})

			cut := []struct {
				name, method, target, body string
				full                       int
			}{
				{"GET", http.MethodGet, itemTarget("big"), "", len(big)},
				{"GET one byte", http.MethodGet, itemTarget("one"), "", 1},
				{"listing", http.MethodGet, listTarget, "", len(fullList)},
				{"GET missing, JSON error", http.MethodGet, itemTarget("missing"), "", 0},
				{"batch answer", http.MethodPut, batchTarget(storeID), line("b", "applied"), 0},
			}
			for i, rq := range cut {
				res := fs.do(t, rq.method, rq.target, nil, rq.body)
				if res.err != nil {
					t.Errorf("%s: %v, want the headers", rq.name, res.err)
					continue
				}
				if res.readErr == nil {
					t.Errorf("%s: read the whole body %q, want an error", rq.name, res.body)
				}
				if proto == protoHTTP1 && !errors.Is(res.readErr, io.ErrUnexpectedEOF) {
					t.Errorf("%s: read error %v, want io.ErrUnexpectedEOF", rq.name, res.readErr)
				}
				if rq.full > 0 && len(res.body) >= rq.full {
					t.Errorf("%s: read %d bytes, want fewer than %d", rq.name, len(res.body), rq.full)
				}
				if rq.name == "GET" && (len(res.body) == 0 || !strings.HasPrefix(big, string(res.body))) {
					t.Errorf("GET: read %d bytes, want a non-empty prefix of the value", len(res.body))
				}
				if got := fs.store.InjectedFaults(); got != (localstore.FaultCounts{DroppedMidBody: int64(i + 1)}) {
					t.Errorf("%s: InjectedFaults() = %+v, want %d mid-body drops", rq.name, got, i+1)
				}
			}
			if got, _ := fs.value(t, "b"); got != "applied" {
				t.Errorf("b = %q: the batch whose answer was cut was not applied", got)
			}

			// No body, nothing to cut.
			whole := []struct {
				name, method, target, body string
				status                     int
			}{
				{"PUT", http.MethodPut, itemTarget("p"), "v", http.StatusOK},
				{"HEAD", http.MethodHead, itemTarget("big"), "", http.StatusOK},
				{"DELETE", http.MethodDelete, itemTarget("p"), "", http.StatusNoContent},
				{"412", http.MethodPut, itemTarget("big") + "?add=true", "v", http.StatusPreconditionFailed},
			}
			before := fs.store.InjectedFaults()
			for _, rq := range whole {
				res := fs.do(t, rq.method, rq.target, nil, rq.body)
				if res.err != nil || res.readErr != nil {
					t.Errorf("%s: %v %v", rq.name, res.err, res.readErr)
				} else if res.resp.StatusCode != rq.status {
					t.Errorf("%s = %d, want %d", rq.name, res.resp.StatusCode, rq.status)
				}
			}
			if got := fs.store.InjectedFaults(); got != before {
				t.Errorf("InjectedFaults() = %+v after answers without a body, want %+v", got, before)
			}
		})
	}
}

// TestFaultSlowBody checks a slow body arrives whole, after at least one
// delay per piece; answers without a body are not delayed by it (not
// asserted: only lower bounds are).
func TestFaultSlowBody(t *testing.T) {
	t.Parallel()
	const delay = 20 * time.Millisecond
	value := strings.Repeat("v", 2*localstore.SlowBodyPiece+1) // three pieces
	for _, proto := range faultProtocols {
		t.Run(proto, func(t *testing.T) {
			t.Parallel()
			fs := newFaultServer(t, proto, localstore.Config{Faults: localstore.Faults{SlowBody: delay}})
			fs.must(t, http.MethodPut, itemTarget("k"), value, http.StatusOK)
			fs.must(t, http.MethodPut, itemTarget("k2"), "v", http.StatusOK)
			for _, rq := range []struct {
				name, target string
				want         string
				pieces       int
			}{
				{"GET", itemTarget("k"), value, 3},
				{"listing", listTarget, `{"data":["k","k2"],"meta":{"limit":1000}}`, 1},
			} {
				start := time.Now()
				res := fs.do(t, http.MethodGet, rq.target, nil, "")
				elapsed := time.Since(start)
				if res.err != nil || res.readErr != nil {
					t.Fatalf("%s: %v %v", rq.name, res.err, res.readErr)
				}
				if string(res.body) != rq.want {
					t.Errorf("%s: body is %d bytes %.40q, want %d bytes %.40q", rq.name, len(res.body), res.body, len(rq.want), rq.want)
				}
				if least := time.Duration(rq.pieces) * delay; elapsed < least {
					t.Errorf("%s took %v, less than %d pieces of %v", rq.name, elapsed, rq.pieces, delay)
				}
			}
			if got := fs.store.InjectedFaults(); got != (localstore.FaultCounts{}) {
				t.Errorf("InjectedFaults() = %+v, want none: a slow body is no failure", got)
			}
		})
	}
}

// TestFaultSlowBodyCancelled checks a handler sending a slow body stops
// when its client goes away, instead of waiting out every piece.
func TestFaultSlowBodyCancelled(t *testing.T) {
	t.Parallel()
	for _, proto := range faultProtocols {
		t.Run(proto, func(t *testing.T) {
			t.Parallel()
			fs := newFaultServer(t, proto, localstore.Config{})
			fs.must(t, http.MethodPut, itemTarget("k"), strings.Repeat("v", 10*localstore.SlowBodyPiece), http.StatusOK)
			fs.store.SetFaults(localstore.Faults{SlowBody: 2 * time.Minute})
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, fs.url+itemTarget("k"), nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := fs.client.Do(req)
			if err != nil {
				t.Fatalf("the headers should come at once: %v", err)
			}
			if resp.StatusCode != http.StatusOK {
				t.Errorf("status = %d", resp.StatusCode)
			}
			cancel()
			_, err = io.ReadAll(resp.Body)
			resp.Body.Close()
			if err == nil {
				t.Error("read the whole slow body after cancelling")
			}
			deadline := time.Now().Add(30 * time.Second)
			for fs.inFlight.Load() != 0 {
				if time.Now().After(deadline) {
					t.Fatal("the handler still trickles the body after its client went away")
				}
				time.Sleep(time.Millisecond)
			}
		})
	}
}

// TestFaultKinds checks Faults.Kinds through Store.Handler: with a 500 at
// rate 1 limited to one kind, every request of that kind fails and every
// other request is answered as usual.
func TestFaultKinds(t *testing.T) {
	t.Parallel()
	item := itemTarget("k")
	requests := []struct {
		method, target, body string
		kind                 localstore.RequestKind
	}{
		{http.MethodPut, item, "v", localstore.RequestPut},
		{http.MethodGet, item, "", localstore.RequestGet},
		{http.MethodHead, item, "", localstore.RequestHead},
		{http.MethodGet, listTarget, "", localstore.RequestList},
		{http.MethodGet, listTarget + "?prefix=k", "", localstore.RequestList},
		{http.MethodPut, batchTarget(storeID), line("b", "v"), localstore.RequestBatch},
		{http.MethodPut, batchTarget("elsewhere"), "", localstore.RequestBatch},
		{http.MethodGet, itemTarget("a#b"), "", localstore.RequestGet},
		{http.MethodGet, itemTarget("a/b/c"), "", localstore.RequestGet},
		{http.MethodDelete, item, "", localstore.RequestDelete},
		{http.MethodGet, batchTarget(storeID), "", localstore.RequestOther},
		{http.MethodPost, batchTarget(storeID), "x", localstore.RequestOther},
		{http.MethodPost, item, "x", localstore.RequestOther},
		{http.MethodGet, "/not/an/endpoint", "", localstore.RequestOther},
		{http.MethodGet, listTarget + "/a/../b", "", localstore.RequestOther},
		{http.MethodGet, listTarget + "/..", "", localstore.RequestOther},
		{http.MethodPut, listTarget, "x", localstore.RequestOther},
		{http.MethodGet, "/resources/stores/kv/" + storeID + "/keys/", "", localstore.RequestGet}, // an empty key
	}
	for kind := localstore.RequestOther; kind <= localstore.RequestBatch; kind++ {
		t.Run(kind.String(), func(t *testing.T) {
			t.Parallel()
			fs := newFaultServer(t, protoHTTP1, localstore.Config{
				Faults: localstore.Faults{ServerError: 1, Kinds: localstore.KindsOf(kind)},
			})
			var hits int64
			for _, rq := range requests {
				res := fs.do(t, rq.method, rq.target, nil, rq.body)
				if res.err != nil || res.readErr != nil {
					t.Fatalf("%s %s: %v %v", rq.method, rq.target, res.err, res.readErr)
				}
				failed := res.resp.StatusCode == http.StatusInternalServerError
				if want := rq.kind == kind; failed != want {
					t.Errorf("%s %s = %d; a %v request, faults limited to %v", rq.method, rq.target, res.resp.StatusCode, rq.kind, kind)
				}
				if rq.kind == kind {
					hits++
				}
			}
			if hits == 0 {
				t.Fatalf("no request of kind %v was sent", kind)
			}
			if got := fs.store.InjectedFaults().ServerError; got != hits {
				t.Errorf("InjectedFaults().ServerError = %d, want %d", got, hits)
			}
			if got := fs.store.Count(kind); got != hits {
				t.Errorf("Count(%v) = %d, want %d", kind, got, hits)
			}
		})
	}
}

// TestFaultsSeeded sends the same sequence of writes to stores with the
// same seed and checks they fail the same way, that another seed fails
// differently, that the mix is plausible for the rates, and that the
// counters and the store agree with what the client saw.
func TestFaultsSeeded(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		faults localstore.Faults
		n      int
	}{
		{"500 at 0.5", localstore.Faults{ServerError: 0.5}, 200},
		{"429 at 0.5", localstore.Faults{RateLimited: 0.5}, 200},
		{"drop at 0.5", localstore.Faults{DropBeforeResponse: 0.5}, 200},
		{"everything", localstore.Faults{
			DropBeforeHandling: 0.1, RateLimited: 0.1, Unavailable: 0.1, ServerError: 0.1,
			DropBeforeResponse: 0.1, DropMidBody: 0.1, Jitter: time.Millisecond,
		}, 300},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			run := func(seed uint64) []string {
				fs := newFaultServer(t, protoHTTP1, localstore.Config{})
				f := tt.faults
				f.Seed = seed
				fs.store.SetFaults(f)
				outcomes := make([]string, tt.n)
				seen := map[string]int64{}
				for i := range tt.n {
					res := fs.do(t, http.MethodPut, itemTarget(fmt.Sprintf("key-%03d", i)), nil, "v")
					switch {
					case res.err != nil:
						outcomes[i] = "dropped"
					case res.readErr != nil:
						t.Fatalf("request %d: %v", i, res.readErr)
					default:
						outcomes[i] = strconv.Itoa(res.resp.StatusCode)
					}
					seen[outcomes[i]]++
				}
				// PUTs answer without a body: DropMidBody passes them.
				c := fs.store.InjectedFaults()
				if c.RateLimited != seen["429"] || c.Unavailable != seen["503"] || c.ServerError != seen["500"] ||
					c.DroppedBeforeHandling+c.DroppedBeforeResponse != seen["dropped"] || c.DroppedMidBody != 0 {
					t.Errorf("seed %d: InjectedFaults() = %+v, but the client saw %v", seed, c, seen)
				}
				// Only the 200s and the drops after handling were applied.
				fs.store.SetFaults(localstore.Faults{})
				var keys struct{ Data []string }
				if err := json.Unmarshal(fs.must(t, http.MethodGet, listTarget, "", http.StatusOK), &keys); err != nil {
					t.Fatal(err)
				}
				if want := seen["200"] + c.DroppedBeforeResponse; int64(len(keys.Data)) != want {
					t.Errorf("seed %d: %d keys written, want %d (200s) + %d (dropped after handling)",
						seed, len(keys.Data), seen["200"], c.DroppedBeforeResponse)
				}
				// A plausible mix: every rate within a factor of two of
				// its share (deterministic for a fixed seed).
				rates := map[string]float64{
					"429":     tt.faults.RateLimited,
					"503":     tt.faults.Unavailable,
					"500":     tt.faults.ServerError,
					"dropped": tt.faults.DropBeforeHandling + tt.faults.DropBeforeResponse,
				}
				for o, p := range rates {
					want := p * float64(tt.n)
					if got := float64(seen[o]); got < want/2 || got > want*2 {
						t.Errorf("seed %d: %v of %d requests were %s, want about %v", seed, got, tt.n, o, want)
					}
				}
				return outcomes
			}
			first, again, other := run(42), run(42), run(43)
			if !slices.Equal(first, again) {
				t.Errorf("seed 42 gave two sequences:\n%v\n%v", first, again)
			}
			if slices.Equal(first, other) {
				t.Errorf("seeds 42 and 43 gave the same sequence %v", first)
			}
		})
	}
}

// TestFaultsConcurrent sends requests from many goroutines over one
// HTTP/2 connection, so that reset streams sit beside healthy ones, while
// the faults change under them; the counters must still match what the
// clients saw.
func TestFaultsConcurrent(t *testing.T) {
	t.Parallel()
	fs := newFaultServer(t, protoH2, localstore.Config{})
	fs.must(t, http.MethodPut, itemTarget("k"), strings.Repeat("v", 100), http.StatusOK)
	mixes := []localstore.Faults{
		{DropBeforeHandling: 0.1, RateLimited: 0.1, Unavailable: 0.1, ServerError: 0.1, DropBeforeResponse: 0.1, DropMidBody: 0.1},
		{ServerError: 0.5, Jitter: time.Millisecond},
		{},
		{DropMidBody: 0.5, SlowBody: time.Microsecond, Kinds: localstore.KindsOf(localstore.RequestGet)},
	}
	fs.store.SetFaults(mixes[0])
	var (
		mu   sync.Mutex
		seen = map[string]int64{}
		wg   sync.WaitGroup
	)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-t.Context().Done():
				return
			case <-time.After(time.Millisecond):
			}
			mu.Lock()
			n := seen["all"]
			mu.Unlock()
			if n >= 8*40 {
				return
			}
			fs.store.SetFaults(mixes[i%len(mixes)])
		}
	}()
	for g := range 8 {
		wg.Go(func() {
			for i := range 40 {
				method, body := http.MethodGet, ""
				if i%2 == 1 {
					method, body = http.MethodPut, "v"
				}
				target := itemTarget("k")
				if method == http.MethodPut {
					target = itemTarget(fmt.Sprintf("g%d-%d", g, i))
				}
				res := fs.do(t, method, target, nil, body)
				var o string
				switch {
				case res.err != nil:
					o = "dropped"
				case res.readErr != nil:
					o = "cut"
				default:
					o = strconv.Itoa(res.resp.StatusCode)
				}
				mu.Lock()
				seen[o]++
				seen["all"]++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	<-done
	c := fs.store.InjectedFaults()
	if c.RateLimited != seen["429"] || c.Unavailable != seen["503"] || c.ServerError != seen["500"] ||
		c.DroppedBeforeHandling+c.DroppedBeforeResponse != seen["dropped"] || c.DroppedMidBody != seen["cut"] {
		t.Errorf("InjectedFaults() = %+v, but the clients saw %v", c, seen)
	}
	if seen["200"] == 0 || seen["200"] == seen["all"] {
		t.Errorf("outcomes %v: want a mix", seen)
	}
}

// TestSetFaultsAtRunTime checks SetFaults takes effect for the next
// request, Kinds included, and that Faults returns what was set.
func TestSetFaultsAtRunTime(t *testing.T) {
	t.Parallel()
	fs := newFaultServer(t, protoH2C, localstore.Config{})
	fs.setUp(t)
	steps := []struct {
		faults           localstore.Faults
		getWant, putWant int
	}{
		{localstore.Faults{}, http.StatusOK, http.StatusOK},
		{localstore.Faults{ServerError: 1}, http.StatusInternalServerError, http.StatusInternalServerError},
		{localstore.Faults{RateLimited: 1, Kinds: localstore.KindsOf(localstore.RequestPut)}, http.StatusOK, http.StatusTooManyRequests},
		{localstore.Faults{Unavailable: 1, Kinds: localstore.KindsOf(localstore.RequestGet, localstore.RequestList)}, http.StatusServiceUnavailable, http.StatusOK},
		{localstore.Faults{}, http.StatusOK, http.StatusOK},
	}
	for i, st := range steps {
		fs.store.SetFaults(st.faults)
		if got := fs.store.Faults(); got != st.faults {
			t.Errorf("step %d: Faults() = %+v, want %+v", i, got, st.faults)
		}
		if res := fs.do(t, http.MethodGet, itemTarget("k"), nil, ""); res.err != nil || res.resp.StatusCode != st.getWant {
			t.Errorf("step %d: GET = %v %v, want %d", i, res.resp, res.err, st.getWant)
		}
		if res := fs.do(t, http.MethodPut, itemTarget("k"), nil, "a"); res.err != nil || res.resp.StatusCode != st.putWant {
			t.Errorf("step %d: PUT = %v %v, want %d", i, res.resp, res.err, st.putWant)
		}
	}
	want := localstore.FaultCounts{ServerError: 2, RateLimited: 1, Unavailable: 1}
	if got := fs.store.InjectedFaults(); got != want {
		t.Errorf("InjectedFaults() = %+v, want %+v", got, want)
	}
}

// TestJitter checks requests with jitter take at least the fixed latency
// and are answered normally.
func TestJitter(t *testing.T) {
	t.Parallel()
	const latency = 20 * time.Millisecond
	fs := newFaultServer(t, protoHTTP1, localstore.Config{})
	fs.setUp(t)
	fs.store.SetFaults(localstore.Faults{Latency: latency, Jitter: 20 * time.Millisecond, Seed: 7})
	for range 5 {
		start := time.Now()
		res := fs.do(t, http.MethodGet, itemTarget("k"), nil, "")
		if elapsed := time.Since(start); elapsed < latency {
			t.Errorf("request took %v, less than the latency %v", elapsed, latency)
		}
		if res.err != nil || res.resp.StatusCode != http.StatusOK || string(res.body) != "a" {
			t.Errorf("GET = %v %v %q", res.resp, res.err, res.body)
		}
	}
}
