package app

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/kvgate/kvgate/internal/gateway"
	"github.com/kvgate/kvgate/internal/httpserver"
	"github.com/kvgate/kvgate/internal/membudget"
	"github.com/kvgate/kvgate/service"
	"github.com/kvgate/kvgate/upstream"
)

// GatewayConfig configures the KV gateway stack: the upstream client, the
// service on top of it and the Connect surface serving that.
type GatewayConfig struct {
	// UpstreamURL is the Fastly-compatible API the gateway calls;
	// upstream.DefaultBaseURL when empty.
	UpstreamURL string
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
	// DefaultTimeout and MaxTimeout bound RPC deadlines, as
	// gateway.Limits describes; gateway.DefaultLimits() when zero.
	DefaultTimeout, MaxTimeout time.Duration
	// Server holds the HTTP server's timeouts, used as given;
	// httpserver.DefaultConfig() when the whole struct is zero.
	Server httpserver.Config
	// Logger receives the RPC log and the server's logs; discarded when
	// nil.
	Logger *slog.Logger
	// MemoryBudget bounds the bytes held for values in flight; derived
	// from the machine when zero.
	MemoryBudget MemoryBudgetConfig
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
	logger  *slog.Logger
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
		ReserveValue:  membudget.ReserveResponseValue,
	})
	if err != nil {
		return nil, err
	}
	svc := service.New(kv, service.Config{MaxValueBytes: maxValue, Batch: cfg.Batch})
	handler := gateway.NewHandler(svc, gateway.Limits{
		MaxValueBytes: maxValue, DefaultTimeout: cfg.DefaultTimeout, MaxTimeout: cfg.MaxTimeout,
		Budget: budget,
	}, logger)
	server := cfg.Server
	if server == (httpserver.Config{}) {
		server = httpserver.DefaultConfig()
	}
	return &Gateway{kv: kv, hc: hc, svc: svc, handler: handler, server: server, logger: logger, budget: budget}, nil
}

// MemoryBudget is the budget the gateway's RPCs hold values in flight
// under.
func (g *Gateway) MemoryBudget() *membudget.Budget { return g.budget }

// Handler is the gateway's HTTP handler, for serving it some other way
// than Serve.
func (g *Gateway) Handler() http.Handler { return g.handler }

// Upstream is the client the gateway calls its upstream with.
func (g *Gateway) Upstream() *upstream.Client { return g.kv }

// Serve serves the gateway on ln until ctx ends, then shuts down
// gracefully: streams are told to wind up as soon as shutdown starts, and
// once the server has stopped the upstream's idle connections are closed.
func (g *Gateway) Serve(ctx context.Context, ln net.Listener) error {
	err := httpserver.Run(ctx, g.logger, ln, g.handler,
		httpserver.WithConfig(g.server),
		httpserver.WithOnShutdown(g.svc.Drain))
	// No RPC uses the upstream any more; idle pooled connections would
	// hold up the upstream's own shutdown (the local store's, when it runs
	// in the same process) for its whole grace period.
	g.hc.CloseIdleConnections()
	return err
}
