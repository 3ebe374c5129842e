package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/kvgate/kvgate/internal/auth"
	"github.com/kvgate/kvgate/internal/crossorigin"
	"github.com/kvgate/kvgate/internal/gateway"
	"github.com/kvgate/kvgate/internal/httpserver"
	"github.com/kvgate/kvgate/internal/membudget"
	"github.com/kvgate/kvgate/internal/telemetry"
	"github.com/kvgate/kvgate/internal/valuepool"
	"github.com/kvgate/kvgate/service"
	"github.com/kvgate/kvgate/upstream"
	"github.com/kvgate/kvgate/web"
)

// LocalStoreName is how error messages name the embedded local store.
const LocalStoreName = "the local store"

// GatewayConfig configures the KV gateway stack: the upstream client, the
// service on top of it and the Connect surface serving that.
type GatewayConfig struct {
	// UpstreamURL is the Fastly-compatible API the gateway calls;
	// upstream.DefaultBaseURL when empty.
	UpstreamURL string
	// UpstreamName names the upstream in the messages callers see:
	// "Fastly" when empty, LocalStoreName for the embedded local store.
	UpstreamName string
	// Token is sent to the upstream as Fastly-Key.
	Token string
	// HTTPClient calls the upstream; when nil NewGateway builds one with
	// upstream.NewHTTPClient(upstream.DefaultMaxIdleConns).
	HTTPClient *http.Client
	// MaxValueBytes is the largest item value;
	// upstream.DefaultMaxValueBytes when zero.
	MaxValueBytes int64
	// Retry is the upstream retry policy; its defaults when zero.
	Retry upstream.RetryPolicy
	// Batch bounds the batch PUTs of batch writes; its defaults when zero.
	Batch service.BatchConfig
	// ListMetadataConcurrency is how many HEADs a listing with
	// include_metadata keeps in flight;
	// service.DefaultListMetadataConcurrency when zero.
	ListMetadataConcurrency int
	// Writes are DeleteKeys' concurrency (its default when zero) and
	// kvgate's own hourly write budget (none when zero).
	Writes WriteConfig
	// GroupCommit says how PutItem overwrites are committed together; on,
	// with no linger, when zero.
	GroupCommit service.GroupCommitConfig
	// DefaultTimeout and MaxTimeout bound RPC deadlines, as
	// gateway.Limits describes; gateway.DefaultLimits() when zero.
	DefaultTimeout, MaxTimeout time.Duration
	// Server holds the HTTP server's timeouts, used as given;
	// httpserver.DefaultConfig() when the whole struct is zero.
	Server httpserver.Config
	// Transport is TLS (cleartext when its files are empty) and the caps
	// of the gateway's port, each zero limit taking its default.
	Transport TransportConfig
	// Logger receives the RPC log and the server's logs; discarded when
	// nil. Lines logged for an RPC carry its request id.
	Logger *slog.Logger
	// CORS says which browser origins may call the gateway; none when
	// zero.
	CORS crossorigin.Config
	// Auth decides who may call; everyone when zero.
	Auth auth.Config
	// Telemetry says what operators see: traces, metrics, request ids,
	// the RPC log level and readiness.
	Telemetry telemetry.Config
	// MemoryBudget bounds the bytes held for values in flight; derived
	// from the machine when zero.
	MemoryBudget MemoryBudgetConfig
	// WebApp serves the browser app (package web) for GET and HEAD of / and
	// its assets; off when false.
	WebApp bool
	// GetItemsConcurrency is how many reads one GetItems call keeps in
	// flight; service.DefaultGetItemsConcurrency when zero.
	GetItemsConcurrency int
	// Watch configures WatchItems; its defaults when zero.
	Watch service.WatchConfig
	// CopyConcurrency is how many GETs one CopyItems call keeps in
	// flight; service.DefaultCopyConcurrency when zero.
	CopyConcurrency int
}

// Gateway is the assembled KV gateway: an upstream client, the KV service
// calling it and the Connect handler serving the service. It is built
// once, by NewGateway, for kvgate itself, the test stacks and the
// benchmarks alike.
type Gateway struct {
	kv      *upstream.Client
	hc      *http.Client
	svc     *service.Service
	handler http.Handler
	server  httpserver.Config
	serve   transportServing
	logger  *slog.Logger
	guard   *auth.Guard
	tel     *telemetry.Telemetry
	budget  *membudget.Budget
}

// NewGateway assembles the gateway stack for cfg.
//
// HTTP middleware, when kvgate has some, wraps the Connect handler here,
// in the order package httpserver documents.
func NewGateway(cfg GatewayConfig) (*Gateway, error) {
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = slog.New(telemetry.LogHandler(logger.Handler()))
	tel, err := telemetry.New(context.Background(), cfg.Telemetry, logger)
	if err != nil {
		return nil, fmt.Errorf("telemetry: %w", err)
	}
	hc := cfg.HTTPClient
	if hc == nil {
		hc = upstream.NewHTTPClient(upstream.DefaultMaxIdleConns)
	}
	maxValue := cfg.MaxValueBytes
	if maxValue <= 0 {
		maxValue = upstream.DefaultMaxValueBytes
	}
	budget := cfg.MemoryBudget.budget(maxValue)
	kv, err := upstream.NewClient(upstream.ClientConfig{
		HTTPClient:    hc,
		BaseURL:       cfg.UpstreamURL,
		Token:         cfg.Token,
		MaxValueBytes: maxValue,
		Retry:         cfg.Retry,
		Observer:      tel.UpstreamObserver(),
		ReserveValue:  membudget.ReserveResponseValue,
		ValueBuffer:   valuepool.Buffer,
		WriteBudget:   cfg.Writes.BudgetPerHour,
	})
	if err != nil {
		return nil, err
	}
	guard, err := auth.NewGuard(cfg.Auth, logger)
	if err != nil {
		return nil, err
	}
	svc := service.New(kv, service.Config{
		MaxValueBytes: maxValue, Batch: cfg.Batch, UpstreamName: cfg.UpstreamName,
		GetItemsConcurrency:     cfg.GetItemsConcurrency,
		Watch:                   cfg.Watch,
		CopyConcurrency:         cfg.CopyConcurrency,
		ListMetadataConcurrency: cfg.ListMetadataConcurrency,
		DeleteConcurrency:       cfg.Writes.DeleteConcurrency,
		GroupCommit:             cfg.GroupCommit,
	})
	withCORS, err := crossorigin.Middleware(cfg.CORS)
	if err != nil {
		return nil, err
	}
	interceptors, err := tel.Interceptors()
	if err == nil {
		err = tel.ObserveGauges(telemetry.Gauges{
			BatchBytes:   svc.BatchBytesInFlight,
			WriteBudget:  kv.WriteBudgetRemaining,
			QueuedWrites: func() int64 { return int64(svc.QueuedWrites()) },
			WatchPollers: func() int64 { return int64(svc.WatchPollers()) },
		})
	}
	if err != nil {
		return nil, fmt.Errorf("telemetry: %w", err)
	}
	gwOpts := []gateway.HandlerOption{
		gateway.WithInterceptors(interceptors...),
		gateway.WithRPCLogLevel(cfg.Telemetry.RPCLogLevel),
		gateway.WithAccessControl(guard.KVInterceptor(), guard.InfraInterceptor()),
	}
	if cfg.Auth.Enabled() {
		// What a caller reads depends on its credentials.
		gwOpts = append(gwOpts, gateway.WithPrivateResponses())
	}
	var handler http.Handler = gateway.NewHandler(svc, gateway.Limits{
		MaxValueBytes: maxValue, DefaultTimeout: cfg.DefaultTimeout, MaxTimeout: cfg.MaxTimeout,
		Budget: budget,
	}, logger, gwOpts...)
	// HTTP middleware, innermost first, in the order package httpserver
	// documents: authentication, the browser app (its page and assets need
	// no credentials; its calls do), CORS (so preflights need no credentials),
	// metrics (so they count what the layers inside refuse), and request
	// ids outermost, there for every layer's logs.
	handler = guard.Middleware(handler)
	if cfg.WebApp {
		handler = web.Mount(handler)
	}
	handler = withCORS(handler)
	handler = tel.Metrics(handler, gateway.ServiceNames()...)
	handler = telemetry.RequestIDs(handler)
	server := cfg.Server
	if server == (httpserver.Config{}) {
		server = httpserver.DefaultConfig()
	}
	serve, err := transportOptions(cfg.Transport, logger)
	if err != nil {
		return nil, err
	}
	return &Gateway{kv: kv, hc: hc, svc: svc, handler: handler, server: server, serve: serve, logger: logger, guard: guard, tel: tel, budget: budget}, nil
}

// MemoryBudget is the budget the gateway's RPCs hold values in flight
// under.
func (g *Gateway) MemoryBudget() *membudget.Budget { return g.budget }

// Handler is the gateway's HTTP handler, for serving it some other way
// than Serve. It has no loopback Host check: httpserver.Run adds that.
func (g *Gateway) Handler() http.Handler { return g.handler }

// ReloadTokens reads the token file again, as SIGHUP does; a file that
// fails to parse keeps the tokens in use.
func (g *Gateway) ReloadTokens() error { return g.guard.Reload() }

// QueuedWrites is how many PutItem overwrites wait for the batch PUT that
// will carry them to be sent (group commit).
func (g *Gateway) QueuedWrites() int { return g.svc.QueuedWrites() }

// Upstream is the client the gateway calls its upstream with.
func (g *Gateway) Upstream() *upstream.Client { return g.kv }

// Serve serves the gateway on ln until ctx ends, then shuts down
// gracefully: streams are told to wind up as soon as shutdown starts, and
// once the server has stopped the upstream's idle connections are closed.
func (g *Gateway) Serve(ctx context.Context, ln net.Listener) error {
	// The token file is watched while the gateway serves.
	watchCtx, stopWatch := context.WithCancel(ctx)
	watching := make(chan struct{})
	go func() { defer close(watching); g.guard.Watch(watchCtx) }()
	defer func() { stopWatch(); <-watching }()
	opts := append([]httpserver.Option{
		httpserver.WithConfig(g.server),
		httpserver.WithOnShutdown(g.svc.Drain),
		httpserver.WithOnShutdown(func() { g.tel.NotReady("kvgate is shutting down") }),
	}, g.serve.options...)
	err := httpserver.Run(ctx, g.logger, ln, g.handler, opts...)
	// No RPC uses the upstream any more; idle pooled connections would
	// hold up the upstream's own shutdown (the local store's, when it runs
	// in the same process) for its whole grace period.
	g.hc.CloseIdleConnections()
	// Flush the spans and metrics not yet exported, within a bound of its
	// own: the serve context has ended already.
	flushCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	return errors.Join(err, g.tel.Shutdown(flushCtx))
}

// ServeAdmin serves the admin endpoints (/metrics, /healthz, /readyz) on
// ln and probes the upstream for /readyz until ctx ends.
func (g *Gateway) ServeAdmin(ctx context.Context, ln net.Listener) error {
	probeCtx, stopProbe := context.WithCancel(ctx)
	defer stopProbe()
	go g.tel.RunReadiness(probeCtx, telemetry.UpstreamProbe(g.kv, g.tel.Config().ReadyProbeStore))
	return httpserver.Run(ctx, g.logger.With("component", "admin"), ln, g.tel.AdminHandler(),
		httpserver.WithConfig(httpserver.Config{ReadHeaderTimeout: httpserver.DefaultReadHeaderTimeout,
			IdleTimeout: httpserver.DefaultIdleTimeout, ShutdownTimeout: time.Second}))
}
