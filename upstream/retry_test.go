package upstream_test

// These tests drive the client's retry loop against test servers that
// script their answer per attempt and count the attempts that reached
// them: which calls are replayed on which failures, when a write's outcome
// is reported as unknown, how Retry-After and the caller's deadline bound
// the waiting.

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/kvgate/kvgate/upstream"
)

// rtPolicy is small so that every retry test is fast.
var rtPolicy = upstream.RetryPolicy{MaxAttempts: 4, BaseDelay: time.Millisecond, MaxDelay: 50 * time.Millisecond}

// rtValue is the value a scripted GET returns; rtListBody the list page.
const (
	rtValue    = "the whole value, every byte of it"
	rtListBody = `{"data":["a","b"],"meta":{"limit":1000}}`
)

var rtListKeys = []string{"a", "b"}

// rtKey is the key every item call uses; error messages must not carry it
// (keys may be personal data and errors end up in logs).
const rtKey = "user@example.com/secret"

// rtStep answers one attempt.
type rtStep func(w http.ResponseWriter, r *http.Request)

// rtAttempt is what the server saw of one attempt.
type rtAttempt struct {
	at         time.Time
	method     string
	requestURI string
	header     http.Header
	body       []byte
}

// rtServer answers attempt n with script[n], the last step repeating once
// the script runs out, and records every attempt that reached it.
type rtServer struct {
	srv    *httptest.Server
	script []rtStep
	mu     sync.Mutex
	seen   []rtAttempt
}

func newRTServer(t *testing.T, script ...rtStep) *rtServer {
	t.Helper()
	if len(script) == 0 {
		t.Fatal("newRTServer: empty script")
	}
	s := &rtServer{script: script}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body) // the whole request has arrived before any step runs
		s.mu.Lock()
		n := len(s.seen)
		s.seen = append(s.seen, rtAttempt{
			at: time.Now(), method: r.Method, requestURI: r.RequestURI, header: r.Header.Clone(), body: body,
		})
		s.mu.Unlock()
		s.script[min(n, len(s.script)-1)](w, r)
	}))
	t.Cleanup(s.srv.Close)
	return s
}

// attempts is how many attempts reached the server.
func (s *rtServer) attempts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.seen)
}

func (s *rtServer) attemptLog() []rtAttempt {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.seen)
}

// client returns a client for the server with the production transport and
// the given retry policy.
func (s *rtServer) client(t *testing.T, p upstream.RetryPolicy) *upstream.Client {
	t.Helper()
	hc := upstream.NewHTTPClient(4)
	t.Cleanup(hc.CloseIdleConnections)
	return s.clientWith(t, p, hc)
}

func (s *rtServer) clientWith(t *testing.T, p upstream.RetryPolicy, hc *http.Client) *upstream.Client {
	t.Helper()
	c, err := upstream.NewClient(upstream.ClientConfig{BaseURL: s.srv.URL, Token: wireToken, HTTPClient: hc, Retry: p})
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	return c
}

func rtIsList(r *http.Request) bool {
	return r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/keys")
}

// rtOK answers like Fastly on success.
func rtOK(w http.ResponseWriter, r *http.Request) {
	switch {
	case rtIsList(r):
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, rtListBody)
	case r.Method == http.MethodGet:
		w.Header().Set("Generation", "42")
		w.Header()["Metadata"] = []string{""}
		w.Header().Set("Content-Length", strconv.Itoa(len(rtValue)))
		_, _ = io.WriteString(w, rtValue)
	case r.Method == http.MethodPut && strings.HasSuffix(r.URL.Path, "/batch"):
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"type":"","title":"success","errors":[]}`)
	case r.Method == http.MethodPut:
		w.Header().Set("Content-Length", "0")
	case r.Method == http.MethodDelete:
		w.WriteHeader(http.StatusNoContent)
	default:
		w.WriteHeader(http.StatusMethodNotAllowed)
	}
}

// rtWithHeaders runs step with extra response headers, in pairs.
func rtWithHeaders(step rtStep, kv ...string) rtStep {
	return func(w http.ResponseWriter, r *http.Request) {
		for i := 0; i+1 < len(kv); i += 2 {
			w.Header().Set(kv[i], kv[i+1])
		}
		step(w, r)
	}
}

// rtStatus answers with status, a legacy {"msg"} body (none for 412, as on
// the wire) and the given header pairs.
func rtStatus(status int, kv ...string) rtStep {
	return rtWithHeaders(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(status)
		if status != http.StatusPreconditionFailed {
			_, _ = io.WriteString(w, `{"msg":"scripted `+strconv.Itoa(status)+`"}`)
		}
	}, kv...)
}

// rtDrop closes the connection after the request arrived, without a word.
func rtDrop(w http.ResponseWriter, r *http.Request) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	_ = conn.Close()
}

// rtCutBody sends a success status and part of the body, then breaks the
// connection: by closing it (abort false) or by aborting the handler.
func rtCutBody(abort bool) rtStep {
	return func(w http.ResponseWriter, r *http.Request) {
		if rtIsList(r) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusOK)
			_, _ = io.WriteString(w, rtListBody[:len(rtListBody)/2])
		} else {
			w.Header().Set("Generation", "42")
			w.Header().Set("Content-Length", strconv.Itoa(len(rtValue)))
			w.WriteHeader(http.StatusOK)
			_, _ = io.WriteString(w, rtValue[:len(rtValue)/2])
		}
		_ = http.NewResponseController(w).Flush()
		if abort {
			panic(http.ErrAbortHandler)
		}
		rtDrop(w, r)
	}
}

// rtCall is one client call for the retry tables.
type rtCall struct {
	name string
	op   upstream.Op
	do   func(ctx context.Context, c *upstream.Client) error
}

func rtPut(name string, opts upstream.PutOptions) rtCall {
	return rtCall{name, upstream.OpPut, func(ctx context.Context, c *upstream.Client) error {
		return c.PutItem(ctx, "s", rtKey, []byte("v"), opts)
	}}
}

func rtDelete(name string, opts upstream.DeleteOptions) rtCall {
	return rtCall{name, upstream.OpDelete, func(ctx context.Context, c *upstream.Client) error {
		return c.DeleteItem(ctx, "s", rtKey, opts)
	}}
}

var (
	rtGet = rtCall{"get", upstream.OpGet, func(ctx context.Context, c *upstream.Client) error {
		_, err := c.GetItem(ctx, "s", rtKey)
		return err
	}}
	rtList = rtCall{"list", upstream.OpList, func(ctx context.Context, c *upstream.Client) error {
		_, err := c.ListKeys(ctx, "s", upstream.ListOptions{})
		return err
	}}
	rtBatch = rtCall{"batch", upstream.OpBatch, func(ctx context.Context, c *upstream.Client) error {
		body := upstream.AppendBatchLine(nil, upstream.BatchLine{Key: rtKey, Value: []byte("v")})
		body = upstream.AppendBatchLine(body, upstream.BatchLine{Key: "k2", Value: []byte("v2")})
		_, err := c.PutBatch(ctx, "s", body)
		return err
	}}
	rtPlainPut    = rtPut("put", upstream.PutOptions{})
	rtPlainDelete = rtDelete("delete", upstream.DeleteOptions{})
	rtAppend      = rtPut("put append", upstream.PutOptions{Mode: upstream.PutAppend})
)

// rtReadCalls are the reads; Fastly's write budget does not apply to them.
var rtReadCalls = []rtCall{rtGet, rtList}

// rtSafeCalls have the same effect sent twice: they are replayed.
var rtSafeCalls = []rtCall{
	rtGet,
	rtList,
	rtPlainPut,
	rtPut("put with metadata, ttl and background fetch", upstream.PutOptions{Metadata: "m", TimeToLive: time.Minute, BackgroundFetch: true}),
	rtPlainDelete,
	rtDelete("delete force", upstream.DeleteOptions{Force: true}),
	rtBatch,
}

// rtUnsafeCalls must not be applied twice, or would misreport if they were.
var rtUnsafeCalls = []rtCall{
	rtPut("put add", upstream.PutOptions{Mode: upstream.PutAdd}),
	rtAppend,
	rtPut("put prepend", upstream.PutOptions{Mode: upstream.PutPrepend}),
	rtPut("put if-generation-match", upstream.PutOptions{IfGenerationMatch: new(uint64(7))}),
	rtPut("put if-generation-match 0", upstream.PutOptions{IfGenerationMatch: new(uint64(0))}),
	rtDelete("delete if-generation-match", upstream.DeleteOptions{IfGenerationMatch: new(uint64(7))}),
	rtDelete("delete force if-generation-match", upstream.DeleteOptions{Force: true, IfGenerationMatch: new(uint64(7))}),
}

// rtWriteCalls are every kind of write, for the write budget.
var rtWriteCalls = []rtCall{
	rtPlainPut,
	rtAppend,
	rtPut("put add", upstream.PutOptions{Mode: upstream.PutAdd}),
	rtPut("put if-generation-match", upstream.PutOptions{IfGenerationMatch: new(uint64(7))}),
	rtPlainDelete,
	rtDelete("delete if-generation-match", upstream.DeleteOptions{IfGenerationMatch: new(uint64(7))}),
	rtBatch,
}

// rtFailure is a retryable failure of one attempt.
type rtFailure struct {
	name   string
	step   rtStep
	status int // 0 for a dropped connection
}

var rtRetryableFailures = []rtFailure{
	{"429", rtStatus(http.StatusTooManyRequests), 429},
	{"500", rtStatus(http.StatusInternalServerError), 500},
	{"502", rtStatus(http.StatusBadGateway), 502},
	{"503", rtStatus(http.StatusServiceUnavailable), 503},
	{"504", rtStatus(http.StatusGatewayTimeout), 504},
	{"dropped connection", rtDrop, 0},
}

// wantStatusError checks err is (or wraps) a *StatusError with status,
// op and attempts.
func wantStatusError(t *testing.T, err error, op upstream.Op, status, attempts int) *upstream.StatusError {
	t.Helper()
	se, ok := errors.AsType[*upstream.StatusError](err)
	if !ok {
		t.Fatalf("err = %v (%T), want a %d *upstream.StatusError", err, err, status)
	}
	if se.Status != status || se.Op != op || se.Attempts != attempts {
		t.Errorf("StatusError = {Status:%d Op:%q Attempts:%d}, want {%d %q %d}", se.Status, se.Op, se.Attempts, status, op, attempts)
	}
	return se
}

func wantKnownOutcome(t *testing.T, err error) {
	t.Helper()
	if ue, ok := errors.AsType[*upstream.UnknownOutcomeError](err); ok {
		t.Errorf("err = %v: an *UnknownOutcomeError (%v), want a plain failure", err, ue)
	}
}

// wantUnknownOutcome checks err is an *UnknownOutcomeError for op.
func wantUnknownOutcome(t *testing.T, err error, op upstream.Op) *upstream.UnknownOutcomeError {
	t.Helper()
	ue, ok := errors.AsType[*upstream.UnknownOutcomeError](err)
	if !ok {
		t.Fatalf("err = %v (%T), want *upstream.UnknownOutcomeError", err, err)
	}
	if ue.Op != op {
		t.Errorf("UnknownOutcomeError.Op = %q, want %q", ue.Op, op)
	}
	if !strings.Contains(ue.Error(), "outcome unknown") {
		t.Errorf("Error() = %q does not say the outcome is unknown", ue.Error())
	}
	return ue
}

func wantAttempts(t *testing.T, s *rtServer, want int) {
	t.Helper()
	if got := s.attempts(); got != want {
		t.Errorf("server saw %d attempts, want %d", got, want)
	}
}

// wantSameRequests checks every attempt sent the same request: a replay is
// the same call again, body included.
func wantSameRequests(t *testing.T, s *rtServer) {
	t.Helper()
	log := s.attemptLog()
	for i, a := range log[1:] {
		first := log[0]
		if a.method != first.method || a.requestURI != first.requestURI || string(a.body) != string(first.body) ||
			a.header.Get("If-Generation-Match") != first.header.Get("If-Generation-Match") ||
			a.header.Get("Fastly-Key") != wireToken {
			t.Errorf("attempt %d = %s %s %q (If-Generation-Match %q), want the first attempt's %s %s %q (%q) again",
				i+2, a.method, a.requestURI, a.body, a.header.Get("If-Generation-Match"),
				first.method, first.requestURI, first.body, first.header.Get("If-Generation-Match"))
		}
	}
}

// TestRetrySafeCallsRecover checks that a replay-safe call is sent again
// after each retryable failure and succeeds when a later attempt does.
func TestRetrySafeCallsRecover(t *testing.T) {
	t.Parallel()
	for _, c := range rtSafeCalls {
		for _, f := range rtRetryableFailures {
			t.Run(c.name+"/"+f.name, func(t *testing.T) {
				t.Parallel()
				s := newRTServer(t, f.step, f.step, rtOK)
				if err := c.do(t.Context(), s.client(t, rtPolicy)); err != nil {
					t.Fatalf("%s after two %s failures: %v, want success on the third attempt", c.name, f.name, err)
				}
				wantAttempts(t, s, 3)
				wantSameRequests(t, s)
			})
		}
	}
}

// TestRetrySafeCallsGiveUp checks that a replay-safe call stops after
// MaxAttempts and returns the last failure as it is, not as an unknown
// outcome.
func TestRetrySafeCallsGiveUp(t *testing.T) {
	t.Parallel()
	for _, c := range rtSafeCalls {
		for _, f := range rtRetryableFailures {
			t.Run(c.name+"/"+f.name, func(t *testing.T) {
				t.Parallel()
				s := newRTServer(t, f.step)
				err := c.do(t.Context(), s.client(t, rtPolicy))
				wantAttempts(t, s, rtPolicy.MaxAttempts)
				wantKnownOutcome(t, err)
				if f.status != 0 {
					wantStatusError(t, err, c.op, f.status, rtPolicy.MaxAttempts)
					return
				}
				assertTransportError(t, err, c.op, rtKey, s.srv.URL)
			})
		}
	}
}

// TestRetryMaxAttemptsOne checks that MaxAttempts 1 turns retries off.
func TestRetryMaxAttemptsOne(t *testing.T) {
	t.Parallel()
	for _, c := range rtSafeCalls {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			s := newRTServer(t, rtStatus(http.StatusServiceUnavailable), rtOK)
			p := rtPolicy
			p.MaxAttempts = 1
			err := c.do(t.Context(), s.client(t, p))
			wantStatusError(t, err, c.op, http.StatusServiceUnavailable, 1)
			wantAttempts(t, s, 1)
		})
	}
}

// TestRetryNotOnClientErrors checks that statuses a retry cannot change
// are returned after one attempt, for every kind of call, and are never an
// unknown outcome.
func TestRetryNotOnClientErrors(t *testing.T) {
	t.Parallel()
	statuses := []int{400, 401, 403, 404, 412, 413}
	for _, c := range slices.Concat(rtSafeCalls, rtUnsafeCalls) {
		for _, status := range statuses {
			t.Run(c.name+"/"+strconv.Itoa(status), func(t *testing.T) {
				t.Parallel()
				s := newRTServer(t, rtStatus(status), rtOK)
				err := c.do(t.Context(), s.client(t, rtPolicy))
				wantStatusError(t, err, c.op, status, 1)
				wantKnownOutcome(t, err)
				wantAttempts(t, s, 1)
			})
		}
	}
}

// TestRetryTruncatedBody checks that a success whose body breaks off is
// retried and the retry's whole answer returned, never the cut one.
func TestRetryTruncatedBody(t *testing.T) {
	t.Parallel()
	cuts := []struct {
		name  string
		abort bool
	}{{"connection closed", false}, {"handler aborted", true}}
	for _, cut := range cuts {
		t.Run("get/"+cut.name, func(t *testing.T) {
			t.Parallel()
			s := newRTServer(t, rtCutBody(cut.abort), rtOK)
			item, err := s.client(t, rtPolicy).GetItem(t.Context(), "s", rtKey)
			if err != nil {
				t.Fatalf("GetItem: %v, want the retry's value", err)
			}
			if string(item.Value) != rtValue || item.Generation != 42 {
				t.Errorf("item = {Value:%q Generation:%d}, want {%q 42}", item.Value, item.Generation, rtValue)
			}
			wantAttempts(t, s, 2)
		})
		t.Run("list/"+cut.name, func(t *testing.T) {
			t.Parallel()
			s := newRTServer(t, rtCutBody(cut.abort), rtOK)
			page, err := s.client(t, rtPolicy).ListKeys(t.Context(), "s", upstream.ListOptions{})
			if err != nil {
				t.Fatalf("ListKeys: %v, want the retry's page", err)
			}
			if !slices.Equal(page.Keys, rtListKeys) || page.NextCursor != "" {
				t.Errorf("page = %+v, want keys %q and no cursor", page, rtListKeys)
			}
			wantAttempts(t, s, 2)
		})
		t.Run("get always cut/"+cut.name, func(t *testing.T) {
			t.Parallel()
			s := newRTServer(t, rtCutBody(cut.abort))
			item, err := s.client(t, rtPolicy).GetItem(t.Context(), "s", rtKey)
			if item != nil {
				t.Errorf("GetItem returned %q from cut bodies", item.Value)
			}
			assertTransportError(t, err, upstream.OpGet, rtKey, s.srv.URL)
			wantAttempts(t, s, rtPolicy.MaxAttempts)
		})
	}
}

// TestRetryUnsafeWrites checks the writes that must not be replayed: a 429
// (certainly not applied) is retried; a server error or a connection that
// broke after the request was sent is not, and comes back as an unknown
// outcome wrapping the failure.
func TestRetryUnsafeWrites(t *testing.T) {
	t.Parallel()
	for _, c := range rtUnsafeCalls {
		t.Run(c.name+"/429 then success", func(t *testing.T) {
			t.Parallel()
			s := newRTServer(t, rtStatus(429), rtStatus(429), rtOK)
			if err := c.do(t.Context(), s.client(t, rtPolicy)); err != nil {
				t.Fatalf("%s: %v, want success after two 429s", c.name, err)
			}
			wantAttempts(t, s, 3)
			wantSameRequests(t, s)
		})
		t.Run(c.name+"/429 always", func(t *testing.T) {
			t.Parallel()
			s := newRTServer(t, rtStatus(429))
			err := c.do(t.Context(), s.client(t, rtPolicy))
			wantStatusError(t, err, c.op, 429, rtPolicy.MaxAttempts)
			wantKnownOutcome(t, err)
			wantAttempts(t, s, rtPolicy.MaxAttempts)
		})
		for _, status := range []int{500, 502, 503, 504} {
			t.Run(c.name+"/"+strconv.Itoa(status), func(t *testing.T) {
				t.Parallel()
				s := newRTServer(t, rtStatus(status), rtOK)
				err := c.do(t.Context(), s.client(t, rtPolicy))
				ue := wantUnknownOutcome(t, err, c.op)
				se, ok := errors.AsType[*upstream.StatusError](ue.Err)
				if !ok {
					t.Fatalf("UnknownOutcomeError wraps %v (%T), want *upstream.StatusError", ue.Err, ue.Err)
				}
				if se.Status != status || se.Attempts != 1 {
					t.Errorf("wrapped StatusError = {Status:%d Attempts:%d}, want {%d 1}", se.Status, se.Attempts, status)
				}
				wantAttempts(t, s, 1)
			})
		}
		t.Run(c.name+"/dropped connection", func(t *testing.T) {
			t.Parallel()
			s := newRTServer(t, rtDrop, rtOK)
			err := c.do(t.Context(), s.client(t, rtPolicy))
			ue := wantUnknownOutcome(t, err, c.op)
			if _, ok := errors.AsType[*upstream.TransportError](ue.Err); !ok {
				t.Errorf("UnknownOutcomeError wraps %v (%T), want *upstream.TransportError", ue.Err, ue.Err)
			}
			assertTransportError(t, err, c.op, rtKey, s.srv.URL)
			wantAttempts(t, s, 1)
		})
		t.Run(c.name+"/429 then 503", func(t *testing.T) {
			t.Parallel()
			s := newRTServer(t, rtStatus(429), rtStatus(503), rtOK)
			err := c.do(t.Context(), s.client(t, rtPolicy))
			wantUnknownOutcome(t, err, c.op)
			wantStatusError(t, err, c.op, 503, 2)
			wantAttempts(t, s, 2)
		})
		t.Run(c.name+"/429 then dropped connection", func(t *testing.T) {
			t.Parallel()
			s := newRTServer(t, rtStatus(429), rtDrop, rtOK)
			err := c.do(t.Context(), s.client(t, rtPolicy))
			wantUnknownOutcome(t, err, c.op)
			assertTransportError(t, err, c.op, rtKey, s.srv.URL)
			wantAttempts(t, s, 2)
		})
	}
}

// rtDialer dials addr, counting the dials, and fails the first failFirst
// of them with a refused connection.
type rtDialer struct {
	addr      string
	failFirst int32
	dials     atomic.Int32
}

func (d *rtDialer) dial(ctx context.Context, network, _ string) (net.Conn, error) {
	if d.dials.Add(1) <= d.failFirst {
		return nil, &net.OpError{Op: "dial", Net: network, Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	}
	var nd net.Dialer
	return nd.DialContext(ctx, network, d.addr)
}

func (d *rtDialer) httpClient(t *testing.T) *http.Client {
	tr := &http.Transport{DialContext: d.dial}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// TestRetryRefusedConnection checks that a connection that was never made
// is retried for every call, the unsafe writes included (nothing was
// sent), and finally reported as a plain *TransportError.
func TestRetryRefusedConnection(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close() // nothing listens on addr any more: dialing it is refused
	for _, c := range slices.Concat(rtSafeCalls, rtUnsafeCalls) {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			d := &rtDialer{addr: addr}
			cl, err := upstream.NewClient(upstream.ClientConfig{BaseURL: "http://" + addr, HTTPClient: d.httpClient(t), Retry: rtPolicy})
			if err != nil {
				t.Fatal(err)
			}
			err = c.do(t.Context(), cl)
			assertTransportError(t, err, c.op, rtKey, "http://"+addr)
			wantKnownOutcome(t, err)
			if oe, ok := errors.AsType[*net.OpError](err); !ok || oe.Op != "dial" {
				t.Errorf("err = %v, want it to wrap the dial failure", err)
			}
			if got := d.dials.Load(); got != int32(rtPolicy.MaxAttempts) {
				t.Errorf("dialed %d times, want %d (one per attempt)", got, rtPolicy.MaxAttempts)
			}
		})
	}
}

// TestRetryRefusedThenAnswered checks that an unsafe write whose first
// connection was refused is sent on the next attempt and its answer used.
func TestRetryRefusedThenAnswered(t *testing.T) {
	t.Parallel()
	for _, c := range rtUnsafeCalls {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			s := newRTServer(t, rtOK)
			d := &rtDialer{addr: s.srv.Listener.Addr().String(), failFirst: 2}
			if err := c.do(t.Context(), s.clientWith(t, rtPolicy, d.httpClient(t))); err != nil {
				t.Fatalf("%s: %v, want success once the connection is made", c.name, err)
			}
			wantAttempts(t, s, 1)
			if got := d.dials.Load(); got != 3 {
				t.Errorf("dialed %d times, want 3", got)
			}
		})
	}
}

// rtDeleteThenDrop deletes (as far as the test is concerned) and then
// loses the answer.
func rtDeleteThenDrop(applied *atomic.Bool) rtStep {
	return func(w http.ResponseWriter, r *http.Request) {
		applied.Store(true)
		rtDrop(w, r)
	}
}

// TestRetryDeleteNotFound checks how a plain DELETE reads a 404: after an
// attempt that may have deleted the key, the key is gone either way and
// the delete succeeded; when no earlier attempt can have deleted it (none
// was made, or Fastly refused it with a 429 or it was never sent) the key
// was not there and the 404 stands.
func TestRetryDeleteNotFound(t *testing.T) {
	t.Parallel()
	notFound := rtStatus(http.StatusNotFound)
	t.Run("applied, answer lost, retry finds it gone", func(t *testing.T) {
		t.Parallel()
		var applied atomic.Bool
		s := newRTServer(t, rtDeleteThenDrop(&applied), notFound)
		if err := rtPlainDelete.do(t.Context(), s.client(t, rtPolicy)); err != nil {
			t.Fatalf("DeleteItem: %v, want success: the first attempt deleted the key", err)
		}
		if !applied.Load() {
			t.Error("the first attempt never reached the server")
		}
		wantAttempts(t, s, 2)
	})
	t.Run("force, applied, answer lost, retry finds it gone", func(t *testing.T) {
		t.Parallel()
		var applied atomic.Bool
		s := newRTServer(t, rtDeleteThenDrop(&applied), notFound)
		err := s.client(t, rtPolicy).DeleteItem(t.Context(), "s", rtKey, upstream.DeleteOptions{Force: true})
		if err != nil {
			t.Fatalf("DeleteItem: %v, want success", err)
		}
		wantAttempts(t, s, 2)
	})
	t.Run("503 then 404", func(t *testing.T) {
		t.Parallel()
		// A 503 may have been applied: the 404 proves nothing either way.
		s := newRTServer(t, rtStatus(503), notFound)
		if err := rtPlainDelete.do(t.Context(), s.client(t, rtPolicy)); err != nil {
			t.Fatalf("DeleteItem: %v, want success", err)
		}
		wantAttempts(t, s, 2)
	})
	t.Run("first attempt 404", func(t *testing.T) {
		t.Parallel()
		s := newRTServer(t, notFound, rtOK)
		err := rtPlainDelete.do(t.Context(), s.client(t, rtPolicy))
		wantStatusError(t, err, upstream.OpDelete, http.StatusNotFound, 1)
		wantAttempts(t, s, 1)
	})
	t.Run("429 then 404", func(t *testing.T) {
		t.Parallel()
		// Fastly refused the first attempt: nothing was deleted, so the
		// key was not there and the caller must see NotFound.
		s := newRTServer(t, rtStatus(429), notFound)
		err := rtPlainDelete.do(t.Context(), s.client(t, rtPolicy))
		wantStatusError(t, err, upstream.OpDelete, http.StatusNotFound, 2)
		wantAttempts(t, s, 2)
	})
	t.Run("refused connection then 404", func(t *testing.T) {
		t.Parallel()
		// The first attempt never left: the 404 is the only answer.
		s := newRTServer(t, notFound)
		d := &rtDialer{addr: s.srv.Listener.Addr().String(), failFirst: 1}
		err := rtPlainDelete.do(t.Context(), s.clientWith(t, rtPolicy, d.httpClient(t)))
		wantStatusError(t, err, upstream.OpDelete, http.StatusNotFound, 2)
		wantAttempts(t, s, 1)
	})
	t.Run("if-generation-match, answer lost", func(t *testing.T) {
		t.Parallel()
		var applied atomic.Bool
		s := newRTServer(t, rtDeleteThenDrop(&applied), notFound)
		err := s.client(t, rtPolicy).DeleteItem(t.Context(), "s", rtKey, upstream.DeleteOptions{IfGenerationMatch: new(uint64(7))})
		wantUnknownOutcome(t, err, upstream.OpDelete)
		wantAttempts(t, s, 1)
	})
}

// TestRetryAfterIsWaited checks that a Retry-After within MaxDelay is
// waited out before the next attempt.
func TestRetryAfterIsWaited(t *testing.T) {
	t.Parallel()
	tests := []struct {
		call   rtCall
		status int
	}{
		{rtGet, http.StatusServiceUnavailable},
		{rtPlainPut, http.StatusTooManyRequests},
		{rtAppend, http.StatusTooManyRequests},
		{rtBatch, http.StatusServiceUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.call.name+"/"+strconv.Itoa(tt.status), func(t *testing.T) {
			t.Parallel()
			s := newRTServer(t, rtStatus(tt.status, "Retry-After", "1"), rtOK)
			p := rtPolicy
			p.MaxDelay = 2 * time.Second
			if err := tt.call.do(t.Context(), s.client(t, p)); err != nil {
				t.Fatalf("%s: %v, want success after waiting", tt.call.name, err)
			}
			log := s.attemptLog()
			if len(log) != 2 {
				t.Fatalf("server saw %d attempts, want 2", len(log))
			}
			if gap := log[1].at.Sub(log[0].at); gap < 900*time.Millisecond {
				t.Errorf("second attempt came %v after the first, want at least the 1s Retry-After", gap)
			}
		})
	}
}

// TestRetryAfterBeyondMaxDelay checks that a Retry-After longer than
// MaxDelay is not waited out but handed to the caller at once.
func TestRetryAfterBeyondMaxDelay(t *testing.T) {
	t.Parallel()
	tests := []struct {
		call   rtCall
		status int
	}{
		{rtGet, http.StatusServiceUnavailable},
		{rtList, http.StatusTooManyRequests},
		{rtPlainPut, http.StatusTooManyRequests},
		{rtAppend, http.StatusTooManyRequests},
		{rtPlainDelete, http.StatusServiceUnavailable},
		{rtBatch, http.StatusTooManyRequests},
	}
	for _, tt := range tests {
		t.Run(tt.call.name+"/"+strconv.Itoa(tt.status), func(t *testing.T) {
			t.Parallel()
			s := newRTServer(t, rtStatus(tt.status, "Retry-After", "5"), rtOK)
			err := tt.call.do(t.Context(), s.client(t, rtPolicy))
			se := wantStatusError(t, err, tt.call.op, tt.status, 1)
			if se.RetryAfter != 5*time.Second {
				t.Errorf("RetryAfter = %v, want 5s", se.RetryAfter)
			}
			wantAttempts(t, s, 1)
		})
	}
}

// TestRetryServerErrorWithBudgetLeft checks that a server error on a write
// whose response reports write budget left is retried: the window's reset
// time is not a wait when the budget is not spent. Fastly sends
// Fastly-RateLimit-* on every write response of the endpoints that carry
// them (reference §1), with a reset up to an hour ahead.
func TestRetryServerErrorWithBudgetLeft(t *testing.T) {
	t.Parallel()
	for _, c := range []rtCall{rtPlainPut, rtPlainDelete, rtBatch} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			s := newRTServer(t, func(w http.ResponseWriter, r *http.Request) {
				rtStatus(http.StatusServiceUnavailable,
					"Fastly-RateLimit-Remaining", "900",
					"Fastly-RateLimit-Reset", strconv.FormatInt(time.Now().Add(30*time.Minute).Unix(), 10))(w, r)
			}, rtOK)
			if err := c.do(t.Context(), s.client(t, rtPolicy)); err != nil {
				t.Fatalf("%s: %v, want success on the retry", c.name, err)
			}
			wantAttempts(t, s, 2)
		})
	}
}

// rtRecordingClient returns an HTTP client whose transport records when
// each attempt's headers arrived (or its request failed), and signals done
// once the attempt is over: its body closed, or its request failed.
func rtRecordingClient(t *testing.T, headersAt *atomic.Int64, done chan<- struct{}) *http.Client {
	base := upstream.NewHTTPClient(1)
	t.Cleanup(base.CloseIdleConnections)
	signal := func() {
		if done == nil {
			return
		}
		select {
		case done <- struct{}{}:
		default:
		}
	}
	return &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		resp, err := base.Transport.RoundTrip(r)
		if headersAt != nil {
			headersAt.Store(time.Now().UnixNano())
		}
		if err != nil {
			signal()
			return nil, err
		}
		resp.Body = rtSignalBody{ReadCloser: resp.Body, closed: signal}
		return resp, nil
	})}
}

type rtSignalBody struct {
	io.ReadCloser
	closed func()
}

func (b rtSignalBody) Close() error {
	err := b.ReadCloser.Close()
	b.closed()
	return err
}

// TestRetryDeadline checks that a wait that would end past the caller's
// deadline is not started: the call returns the failure it has instead of
// sleeping into a DeadlineExceeded, and no second attempt is made.
func TestRetryDeadline(t *testing.T) {
	t.Parallel()
	slow := upstream.RetryPolicy{MaxAttempts: 4, BaseDelay: 10 * time.Second, MaxDelay: 20 * time.Second}
	tests := []struct {
		name       string
		call       rtCall
		policy     upstream.RetryPolicy
		step       rtStep
		status     int
		retryAfter time.Duration
	}{
		{"get backoff", rtGet, slow, rtStatus(503), 503, 0},
		{"list backoff", rtList, slow, rtStatus(502), 502, 0},
		{"put backoff", rtPlainPut, slow, rtStatus(429), 429, 0},
		{"append backoff", rtAppend, slow, rtStatus(429), 429, 0},
		{"delete backoff", rtPlainDelete, slow, rtStatus(500), 500, 0},
		{"batch backoff", rtBatch, slow, rtStatus(504), 504, 0},
		{"get Retry-After", rtGet, upstream.RetryPolicy{MaxAttempts: 4, BaseDelay: time.Millisecond, MaxDelay: 5 * time.Second},
			rtStatus(503, "Retry-After", "3"), 503, 3 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newRTServer(t, tt.step, rtOK)
			var headersAt atomic.Int64
			c := s.clientWith(t, tt.policy, rtRecordingClient(t, &headersAt, nil))
			ctx, cancel := context.WithTimeout(t.Context(), time.Second)
			defer cancel()
			deadline, _ := ctx.Deadline()
			err := tt.call.do(ctx, c)
			switch {
			case errors.Is(err, context.DeadlineExceeded):
				// Acceptable only if the deadline passed during the
				// request itself, not in a wait started after the answer.
				if at := headersAt.Load(); at != 0 && time.Unix(0, at).Before(deadline.Add(-300*time.Millisecond)) {
					t.Errorf("err = %v although the answer arrived %v before the deadline: the client waited instead of returning it",
						err, deadline.Sub(time.Unix(0, at)))
				}
			default:
				se := wantStatusError(t, err, tt.call.op, tt.status, 1)
				if se.RetryAfter != tt.retryAfter {
					t.Errorf("RetryAfter = %v, want %v", se.RetryAfter, tt.retryAfter)
				}
			}
			wantAttempts(t, s, 1)
		})
	}
}

// TestRetryCancelledDuringBackoff checks that cancelling the caller's
// context while the client waits between attempts ends the wait at once
// with context.Canceled itself.
func TestRetryCancelledDuringBackoff(t *testing.T) {
	t.Parallel()
	slow := upstream.RetryPolicy{MaxAttempts: 4, BaseDelay: time.Minute, MaxDelay: 2 * time.Minute}
	tests := []struct {
		call rtCall
		step rtStep
	}{
		{rtGet, rtStatus(503)},
		{rtList, rtDrop},
		{rtPlainPut, rtStatus(500)},
		{rtAppend, rtStatus(429)},
		{rtBatch, rtStatus(503)},
	}
	for _, tt := range tests {
		t.Run(tt.call.name, func(t *testing.T) {
			t.Parallel()
			s := newRTServer(t, tt.step, rtOK)
			answered := make(chan struct{}, 1)
			c := s.clientWith(t, slow, rtRecordingClient(t, nil, answered))
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			errc := make(chan error, 1)
			go func() { errc <- tt.call.do(ctx, c) }()
			select {
			case <-answered:
			case <-time.After(10 * time.Second):
				t.Fatal("the first attempt never ended")
			}
			cancel()
			select {
			case err := <-errc:
				if err != context.Canceled {
					t.Errorf("err = %v (%T), want context.Canceled itself", err, err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the call kept waiting after its context was cancelled")
			}
			wantAttempts(t, s, 1)
		})
	}
}
