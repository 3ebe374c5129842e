package httpserver

import (
	"context"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// server is one Run on a loopback listener.
type server struct {
	url      string
	stop     context.CancelFunc
	done     chan struct{} // closed when Run has returned
	err      error         // Run's result
	shutdown chan struct{} // closed by the WithOnShutdown hook
}

func startServer(t *testing.T, shutdownTimeout time.Duration, handler http.Handler) *server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &server{url: "http://" + ln.Addr().String(), stop: cancel, done: make(chan struct{}), shutdown: make(chan struct{})}
	cfg := DefaultConfig()
	cfg.ShutdownTimeout = shutdownTimeout
	go func() {
		defer close(s.done)
		s.err = Run(ctx, nil, ln, handler, WithConfig(cfg), WithOnShutdown(func() { close(s.shutdown) }))
	}()
	t.Cleanup(func() {
		cancel()
		<-s.done
	})
	return s
}

// wait returns Run's result once it has returned.
func (s *server) wait(t *testing.T) error {
	t.Helper()
	select {
	case <-s.done:
		return s.err
	case <-time.After(time.Minute):
		t.Fatal("Run did not return")
		return nil
	}
}

func h2cClient(t *testing.T) *http.Client {
	p := new(http.Protocols)
	p.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: p}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

func http1Client(t *testing.T) *http.Client {
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

type result struct {
	body string
	err  error
}

// send sends req and reads the response body.
func send(hc *http.Client, req *http.Request) <-chan result {
	out := make(chan result, 1)
	go func() {
		res, err := hc.Do(req)
		if err != nil {
			out <- result{err: err}
			return
		}
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		out <- result{body: string(b), err: err}
	}()
	return out
}

func get(t *testing.T, hc *http.Client, url string) <-chan result {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return send(hc, req)
}

func receive(t *testing.T, ch <-chan result) result {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(time.Minute):
		t.Fatal("no response")
		return result{}
	}
}

// checkAnswerThenStop checks that res answers want and that Run then
// returns nil.
func (s *server) checkAnswerThenStop(t *testing.T, res <-chan result, want string) {
	t.Helper()
	if r := receive(t, res); r.err != nil || r.body != want {
		t.Errorf("response %q, %v; want %q", r.body, r.err, want)
	}
	if err := s.wait(t); err != nil {
		t.Errorf("Run: %v", err)
	}
}

func TestServesHTTP1AndH2C(t *testing.T) {
	t.Parallel()
	s := startServer(t, time.Second, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, r.Proto)
	}))
	for client, want := range map[*http.Client]string{http1Client(t): "HTTP/1.1", h2cClient(t): "HTTP/2.0"} {
		if r := receive(t, get(t, client, s.url)); r.err != nil || r.body != want {
			t.Errorf("response %q, %v; want %q", r.body, r.err, want)
		}
	}
	s.stop()
	if err := s.wait(t); err != nil {
		t.Errorf("Run: %v", err)
	}
}

// A request in flight when shutdown starts finishes undisturbed, and the
// shutdown hook runs.
func TestShutdownLetsRequestsInFlightFinish(t *testing.T) {
	t.Parallel()
	entered, release := make(chan struct{}), make(chan struct{})
	s := startServer(t, time.Minute, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-release
		if err := r.Context().Err(); err != nil {
			_, _ = io.WriteString(w, "cancelled")
			return
		}
		_, _ = io.WriteString(w, "finished")
	}))
	res := get(t, http1Client(t), s.url)
	<-entered
	s.stop()
	select {
	case <-s.shutdown:
	case <-time.After(time.Minute):
		t.Fatal("the shutdown hook did not run")
	}
	close(release)
	s.checkAnswerThenStop(t, res, "finished")
}

// A request still running after half the grace period has its context
// cancelled, and can still answer within the other half.
func TestShutdownCancelsRequestsAfterHalfTheGracePeriod(t *testing.T) {
	t.Parallel()
	entered := make(chan struct{})
	s := startServer(t, 4*time.Second, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-r.Context().Done()
		_, _ = io.WriteString(w, "wound up")
	}))
	res := get(t, http1Client(t), s.url)
	<-entered
	start := time.Now()
	s.stop()
	s.checkAnswerThenStop(t, res, "wound up")
	// The cancellation must wait for the first half of the grace period;
	// only the lower bound is asserted, a loaded machine may be slow.
	if d := time.Since(start); d < 2*time.Second {
		t.Errorf("request cancelled %v after shutdown started, before half the grace period", d)
	}
}

// A request blocked reading its body (a client stream waiting for the
// next message) sees the read end when its context is cancelled, and can
// still answer.
func TestShutdownEndsBlockedBodyReads(t *testing.T) {
	t.Parallel()
	entered := make(chan struct{})
	s := startServer(t, 4*time.Second, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		_, err := io.ReadAll(r.Body)
		if err == nil {
			_, _ = io.WriteString(w, "read the whole body")
			return
		}
		_, _ = io.WriteString(w, "read ended")
	}))
	body, bodyWriter := io.Pipe()
	defer bodyWriter.Close()
	req, err := http.NewRequest(http.MethodPost, s.url, body)
	if err != nil {
		t.Fatal(err)
	}
	res := send(h2cClient(t), req)
	if _, err := bodyWriter.Write([]byte("first message")); err != nil {
		t.Fatal(err)
	}
	<-entered
	s.stop()
	s.checkAnswerThenStop(t, res, "read ended")
}

// Past the whole grace period, connections are closed.
func TestShutdownClosesWhatOutlastsTheGracePeriod(t *testing.T) {
	t.Parallel()
	entered, release := make(chan struct{}), make(chan struct{})
	defer close(release)
	s := startServer(t, 200*time.Millisecond, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-release // ignores its context
	}))
	res := get(t, http1Client(t), s.url)
	<-entered
	s.stop()
	_ = s.wait(t)
	if r := receive(t, res); r.err == nil {
		t.Errorf("response %q, want a closed connection", r.body)
	}
}
