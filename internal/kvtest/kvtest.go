// Package kvtest starts kvgate for tests the way it runs in production: the
// local store served over real HTTP on a loopback port, and the gateway,
// assembled by app.NewGateway as kvgate assembles it, serving on another
// loopback listener that speaks HTTP/1.1 and cleartext HTTP/2.
package kvtest

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connecthttp"

	"github.com/kvgate/kvgate/gen/go/fastly/kv/v1/kvv1connect"
	"github.com/kvgate/kvgate/internal/app"
	"github.com/kvgate/kvgate/internal/auth"
	"github.com/kvgate/kvgate/internal/crossorigin"
	"github.com/kvgate/kvgate/internal/httpserver"
	"github.com/kvgate/kvgate/internal/membudget"
	"github.com/kvgate/kvgate/internal/telemetry"
	"github.com/kvgate/kvgate/service"
	"github.com/kvgate/kvgate/upstream"
	"github.com/kvgate/kvgate/upstream/localstore"
)

// Options adjusts the stack a test starts.
type Options struct {
	// Upstream, when set, replaces the local store: kvgate calls this
	// handler (for statuses the local store never produces).
	Upstream http.Handler
	// Store configures the local store; its Dir is empty (memory) unless set.
	Store localstore.Config
	// MaxValueBytes is kvgate's value limit; the default when zero.
	MaxValueBytes int64
	// Batch bounds batch writes; the defaults when zero.
	Batch service.BatchConfig
	// ListMetadataConcurrency bounds the HEADs of a listing with
	// include_metadata; the default when zero.
	ListMetadataConcurrency int
	// Writes are DeleteKeys' concurrency and kvgate's own write budget;
	// the defaults (no budget of its own) when zero.
	Writes app.WriteConfig
	// GroupCommit says how PutItem overwrites are committed together; on,
	// with no linger, when zero, as in kvgate.
	GroupCommit service.GroupCommitConfig
	// DefaultTimeout and MaxTimeout bound RPC deadlines; the defaults when
	// zero.
	DefaultTimeout, MaxTimeout time.Duration
	// Retry is the upstream retry policy. Tests that want no retries set
	// MaxAttempts to 1; the zero value keeps the defaults.
	Retry upstream.RetryPolicy
	// ShutdownTimeout is kvgate's grace period on Shutdown, and
	// ReadHeaderTimeout its server's; the defaults when zero.
	ShutdownTimeout, ReadHeaderTimeout time.Duration
	// Transport is kvgate's TLS and limits; cleartext with the default
	// limits when zero. With TLS the stack's URL is https.
	Transport app.TransportConfig
	// Logger receives kvgate's logs; discarded (or sent to the test log in
	// verbose runs) when nil.
	Logger *slog.Logger
	// CORS says which browser origins may call kvgate; none when zero.
	CORS crossorigin.Config
	// Auth decides who may call; everyone when zero.
	Auth auth.Config
	// Telemetry configures what operators see. With AdminListen set (say
	// to 127.0.0.1:0) the stack serves the admin endpoints there, at
	// Stack.AdminURL, and probes the upstream for /readyz.
	Telemetry telemetry.Config
	// MemoryBudget bounds kvgate's values in flight; derived from the
	// machine when zero.
	MemoryBudget app.MemoryBudgetConfig
	// CopyConcurrency is CopyItems' GETs in flight per call; the default
	// when zero.
	CopyConcurrency int
	// WebApp serves the browser app at /; off when false.
	WebApp bool
	// GetItemsConcurrency bounds the reads of one GetItems call; the
	// default when zero.
	GetItemsConcurrency int
	// Watch configures WatchItems (tests set a short interval floor); the
	// defaults when zero.
	Watch service.WatchConfig
}

// Stack is a running kvgate with its upstream.
type Stack struct {
	// URL is kvgate's base URL, such as http://127.0.0.1:PORT.
	URL string
	// Addr is kvgate's host:port.
	Addr string
	// Store is the local store, nil when Options.Upstream was set.
	Store *localstore.Store
	// UpstreamURL is the base URL of the upstream kvgate calls.
	UpstreamURL string
	// Client calls the upstream directly, bypassing kvgate.
	Client *upstream.Client
	// Gateway is the running gateway.
	Gateway *app.Gateway
	// AdminURL is the base URL of the admin endpoints, empty unless
	// Options.Telemetry.AdminListen was set.
	AdminURL string
	// MemoryBudget is kvgate's budget for values in flight, to read its
	// Stats.
	MemoryBudget *membudget.Budget

	shutdown func() error
}

// Shutdown shuts kvgate down gracefully, as SIGTERM does, and waits until
// it has; the upstream keeps running. It is safe to call more than once.
func (s *Stack) Shutdown() error { return s.shutdown() }

// Start starts a stack and stops it when the test ends.
func Start(tb testing.TB, opts Options) *Stack {
	tb.Helper()
	st := &Stack{}
	up := opts.Upstream
	if up == nil {
		store, err := localstore.Open(opts.Store)
		if err != nil {
			tb.Fatalf("opening local store: %v", err)
		}
		tb.Cleanup(func() { _ = store.Close() })
		st.Store = store
		up = store.Handler()
	}
	upSrv := httptest.NewServer(up)
	tb.Cleanup(upSrv.Close)
	st.UpstreamURL = upSrv.URL

	logger := opts.Logger
	switch {
	case logger != nil:
	case testing.Verbose():
		logger = slog.New(slog.NewTextHandler(tWriter{tb}, nil))
	default:
		logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	server := httpserver.DefaultConfig()
	if opts.ShutdownTimeout > 0 {
		server.ShutdownTimeout = opts.ShutdownTimeout
	}
	if opts.ReadHeaderTimeout > 0 {
		server.ReadHeaderTimeout = opts.ReadHeaderTimeout
	}
	gw, err := app.NewGateway(app.GatewayConfig{
		UpstreamURL:    upSrv.URL,
		MaxValueBytes:  opts.MaxValueBytes,
		Retry:          opts.Retry,
		Batch:          opts.Batch,
		Writes:         opts.Writes,
		GroupCommit:    opts.GroupCommit,
		DefaultTimeout: opts.DefaultTimeout,
		MaxTimeout:     opts.MaxTimeout,
		Server:         server,
		Transport:      opts.Transport,
		Logger:         logger,
		CORS:           opts.CORS,
		Auth:           opts.Auth,
		Telemetry:      opts.Telemetry,
		MemoryBudget:   opts.MemoryBudget,
		WebApp:         opts.WebApp,

		GetItemsConcurrency:     opts.GetItemsConcurrency,
		Watch:                   opts.Watch,
		CopyConcurrency:         opts.CopyConcurrency,
		ListMetadataConcurrency: opts.ListMetadataConcurrency,
	})
	if err != nil {
		tb.Fatalf("assembling kvgate: %v", err)
	}
	st.Client = gw.Upstream()
	st.Gateway = gw
	st.MemoryBudget = gw.MemoryBudget()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("listen: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- gw.Serve(ctx, ln) }()
	if opts.Telemetry.AdminListen != "" {
		st.AdminURL = serveAdmin(tb, ctx, gw, opts.Telemetry.AdminListen)
	}
	var once sync.Once
	var serveErr error
	st.shutdown = func() error {
		once.Do(func() {
			cancel()
			serveErr = <-done
		})
		return serveErr
	}
	tb.Cleanup(func() {
		if err := st.Shutdown(); err != nil {
			tb.Errorf("serve: %v", err)
		}
	})
	st.Addr = ln.Addr().String()
	st.URL = "http://" + st.Addr
	if opts.Transport.TLS.Enabled() {
		st.URL = "https://" + st.Addr
	}
	return st
}

// Requests is how many requests the local store has received.
func (s *Stack) Requests() int64 { return s.Store.Requests() }

// HTTP1Client is an HTTP/1.1-only client.
func HTTP1Client() *http.Client {
	p := new(http.Protocols)
	p.SetHTTP1(true)
	return &http.Client{Transport: &http.Transport{Protocols: p}}
}

// H2CClient speaks cleartext HTTP/2 with prior knowledge, as gRPC clients do.
func H2CClient() *http.Client {
	p := new(http.Protocols)
	p.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: &http.Transport{Protocols: p}}
}

// NewClient returns a generated KV client over hc with opts (for example
// connecthttp.WithGRPC()).
func (s *Stack) NewClient(hc *http.Client, opts ...connecthttp.Option) kvv1connect.KVStoreServiceClient {
	return kvv1connect.NewKVStoreServiceClient(connect.NewClient(connecthttp.NewTransport(hc, s.URL, opts...)))
}

// tWriter sends server logs to the test log in verbose runs.
type tWriter struct{ tb testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.tb.Log(string(p))
	return len(p), nil
}

// serveAdmin serves gw's admin endpoints on addr until ctx ends, and
// returns their base URL.
func serveAdmin(tb testing.TB, ctx context.Context, gw *app.Gateway, addr string) string {
	tb.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		tb.Fatalf("admin listen: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- gw.ServeAdmin(ctx, ln) }()
	tb.Cleanup(func() {
		if err := <-done; err != nil {
			tb.Errorf("serve admin: %v", err)
		}
	})
	return "http://" + ln.Addr().String()
}
