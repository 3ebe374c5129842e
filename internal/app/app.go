// Package app assembles kvgate and runs its binaries. NewGateway builds the
// KV stack once (upstream client, service, Connect handler) and serves it
// through package httpserver; kvgate, the test stacks of package kvtest
// and the benchmarks all start it that way. Run serves the gateway, on
// Fastly or on the embedded local store; RunLocalStore serves the local
// store alone; GatewayFlags and LocalStoreFlags read each binary's flags
// and environment, and Main runs a binary until SIGINT or SIGTERM.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/kvgate/kvgate/internal/auth"
	"github.com/kvgate/kvgate/internal/crossorigin"
	"github.com/kvgate/kvgate/internal/httpserver"
	"github.com/kvgate/kvgate/internal/telemetry"
	"github.com/kvgate/kvgate/service"
	"github.com/kvgate/kvgate/upstream"
	"github.com/kvgate/kvgate/upstream/localstore"
)

// Config is kvgate's configuration.
type Config struct {
	// Listen is the address kvgate serves on.
	Listen string
	// FastlyToken selects Fastly when set; when empty kvgate runs the
	// embedded local store.
	FastlyToken string
	// FastlyURL is Fastly's API endpoint.
	FastlyURL string
	// DataDir is the local store's data directory; empty keeps it in memory.
	DataDir string
	// MaxValueBytes is the largest item value.
	MaxValueBytes int64
	// DefaultTimeout is the deadline of unary RPCs that come without one;
	// MaxTimeout caps every deadline (and bounds streams that come
	// without one).
	DefaultTimeout, MaxTimeout time.Duration
	// Retry is the upstream retry policy.
	Retry upstream.RetryPolicy
	// Batch bounds the batch PUTs of batch writes.
	Batch service.BatchConfig
	// ListMetadataConcurrency is how many HEADs a listing with
	// include_metadata keeps in flight.
	ListMetadataConcurrency int
	// Writes are DeleteKeys' concurrency and kvgate's own write budget.
	Writes WriteConfig
	// GroupCommit says how PutItem overwrites are committed together.
	GroupCommit service.GroupCommitConfig
	// StoreFaults is the trouble the local store injects (latency), for
	// benchmarks and tests; it does not apply to Fastly.
	StoreFaults localstore.Faults
	// StoreStrictIDs makes the local store answer item calls on a store id
	// that was never created with 404, as Fastly does; by default the
	// first write creates the store.
	StoreStrictIDs bool
	// Server holds the HTTP server timeouts, the gateway's and the local
	// store's.
	Server httpserver.Config
	// Transport holds TLS and the caps of kvgate's public port.
	Transport TransportConfig
	// LogFormat is the log format, text or json.
	LogFormat string
	// CORS says which browser origins may call kvgate.
	CORS crossorigin.Config
	// Auth decides who may call kvgate.
	Auth auth.Config
	// Telemetry says what operators see: the admin listener, the RPC log
	// level, readiness probing and (from the OTEL_* variables) export.
	Telemetry telemetry.Config
	// Ready, when set, receives kvgate's listening address once it serves.
	Ready func(addr net.Addr)
	// MemoryBudget bounds the bytes held for values in flight.
	MemoryBudget MemoryBudgetConfig
	// CopyConcurrency is how many GETs one CopyItems call keeps in flight.
	CopyConcurrency int
	// WebApp serves the browser app at / on kvgate's port.
	WebApp bool
	// Watch configures WatchItems: the poll interval floor and the most
	// keys a prefix watch covers.
	Watch service.WatchConfig
	// Seeds are the seed files written into the local store before it
	// serves; kvgate refuses them when it uses Fastly.
	Seeds []Seed
	// GetItemsConcurrency is how many reads one GetItems call keeps in
	// flight.
	GetItemsConcurrency int
	// CheckData makes kvlocal check the data file under DataDir, print
	// what it found and exit, instead of serving.
	CheckData bool
}

// Validate reports configuration errors before anything starts.
func (c *Config) Validate() error {
	if c.MaxValueBytes <= 0 || c.MaxValueBytes > upstream.FastlyMaxValueBytes {
		return fmt.Errorf("max value size must be between 1 and %d bytes (Fastly's largest), not %d",
			upstream.FastlyMaxValueBytes, c.MaxValueBytes)
	}
	if c.Batch.MaxLines < 0 || c.Batch.MaxBytes < 0 || c.Batch.Concurrency < 0 {
		return errors.New("batch lines, bytes and concurrency must not be negative")
	}
	if err := c.validateCallConcurrency(); err != nil {
		return err
	}
	if c.GroupCommit.Linger < 0 {
		return errors.New("the group commit linger must not be negative")
	}
	if c.DefaultTimeout < 0 || c.MaxTimeout < 0 || c.Retry.MaxAttempts < 0 || c.Retry.BaseDelay < 0 || c.Retry.MaxDelay < 0 {
		return errors.New("timeouts and retry settings must not be negative")
	}
	if err := c.Writes.validate(); err != nil {
		return err
	}
	if c.Listen == "" {
		return errors.New("listen address must not be empty")
	}
	if err := c.CORS.Validate(); err != nil {
		return err
	}
	if c.Telemetry.ReadyProbeInterval < 0 {
		return errors.New("the readiness probe interval must not be negative")
	}
	if c.Telemetry.AdminListen != "" && c.Telemetry.AdminListen == c.Listen {
		return errors.New("the admin listener must not be the public listen address")
	}
	if c.Telemetry.AdminPprof && c.Telemetry.AdminListen == "" {
		return errors.New("-admin-pprof needs an admin listener (-admin-listen)")
	}
	if len(c.Seeds) > 0 && (c.FastlyToken != "" || c.Auth.FastlyTokenPassthrough) {
		return errors.New("-seed seeds the local store, which kvgate does not use with FASTLY_API_TOKEN or Fastly token pass-through")
	}
	if err := c.Transport.Validate(); err != nil {
		return err
	}
	if c.Watch.MinInterval < 0 || c.Watch.MaxKeys < 0 {
		return errors.New("-watch-min-interval and -watch-max-keys must not be negative")
	}
	if err := c.MemoryBudget.validate(c.MaxValueBytes); err != nil {
		return err
	}
	return c.Auth.Validate(c.Listen, c.FastlyToken != "")
}

// Run serves kvgate until ctx ends, then shuts down gracefully.
func Run(ctx context.Context, cfg Config, logger *slog.Logger) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", cfg.Listen, err)
	}
	defer ln.Close()

	baseURL := cfg.FastlyURL
	// The local store outlives the gateway's shutdown, so RPCs still in
	// flight during the grace period can finish against it.
	storeCtx, stopStore := context.WithCancel(context.WithoutCancel(ctx))
	defer stopStore()
	var eg errgroup.Group
	upstreamName := "" // Fastly
	// Pass-through callers bring Fastly tokens, so they always mean Fastly.
	if cfg.FastlyToken == "" && !cfg.Auth.FastlyTokenPassthrough {
		upstreamName = LocalStoreName
		store, err := openLocalStore(cfg, logger)
		if err != nil {
			return err
		}
		defer store.Close()
		storeLn, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return fmt.Errorf("listening for the local store: %w", err)
		}
		baseURL = "http://" + storeLn.Addr().String()
		logger.Info("no FASTLY_API_TOKEN set: using the embedded local store",
			"data_dir", dataDirName(cfg.DataDir), "store_addr", storeLn.Addr().String())
		eg.Go(func() error {
			return httpserver.Run(storeCtx, logger.With("component", "localstore"), storeLn, store.Handler(),
				httpserver.WithConfig(cfg.Server))
		})
	} else {
		logger.Info("using Fastly", "api_url", baseURL)
	}

	gw, err := NewGateway(GatewayConfig{
		UpstreamURL:    baseURL,
		UpstreamName:   upstreamName,
		Token:          cfg.FastlyToken,
		MaxValueBytes:  cfg.MaxValueBytes,
		Retry:          cfg.Retry,
		Batch:          cfg.Batch,
		Writes:         cfg.Writes,
		GroupCommit:    cfg.GroupCommit,
		DefaultTimeout: cfg.DefaultTimeout,
		MaxTimeout:     cfg.MaxTimeout,
		Server:         cfg.Server,
		Transport:      cfg.Transport,
		Logger:         logger,
		CORS:           cfg.CORS,
		Auth:           cfg.Auth,
		Telemetry:      telemetryFromEnv(cfg.Telemetry),
		MemoryBudget:   cfg.MemoryBudget,
		WebApp:         cfg.WebApp,

		GetItemsConcurrency:     cfg.GetItemsConcurrency,
		Watch:                   cfg.Watch,
		CopyConcurrency:         cfg.CopyConcurrency,
		ListMetadataConcurrency: cfg.ListMetadataConcurrency,
	})
	if err != nil {
		stopStore()
		_ = eg.Wait()
		return err
	}
	if cfg.Telemetry.AdminListen != "" {
		adminLn, err := net.Listen("tcp", cfg.Telemetry.AdminListen)
		if err != nil {
			stopStore()
			return errors.Join(fmt.Errorf("listening on %s for the admin endpoints: %w", cfg.Telemetry.AdminListen, err), eg.Wait())
		}
		logger.Info("admin endpoints serving", "addr", adminLn.Addr().String(), "paths", "/metrics /healthz /readyz")
		eg.Go(func() error { return gw.ServeAdmin(ctx, adminLn) })
	}
	limitRuntimeMemory(gw.MemoryBudget(), logger)
	stopReloading := reloadTokensOnHangup(gw, cfg.Auth, logger)
	logger.Info("kvgate serving", "addr", ln.Addr().String(), "protocols", "connect, grpc, grpc-web over "+gw.Transports())
	if cfg.Ready != nil {
		cfg.Ready(ln.Addr())
	}
	serveErr := gw.Serve(ctx, ln)
	stopReloading()
	stopStore()
	return errors.Join(serveErr, eg.Wait())
}

// RunLocalStore serves only the local store on cfg.Listen until ctx ends,
// so that any Fastly client can be pointed at it. With cfg.CheckData it
// checks the data file instead (see CheckData) and returns.
func RunLocalStore(ctx context.Context, cfg Config, logger *slog.Logger) error {
	if cfg.CheckData {
		return CheckData(os.Stdout, cfg.DataDir)
	}
	store, err := openLocalStore(cfg, logger)
	if err != nil {
		return err
	}
	defer store.Close()
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", cfg.Listen, err)
	}
	defer ln.Close()
	logger.Info("local store serving the Fastly KV REST API", "addr", ln.Addr().String(), "data_dir", dataDirName(cfg.DataDir))
	if cfg.Ready != nil {
		cfg.Ready(ln.Addr())
	}
	return httpserver.Run(ctx, logger, ln, store.Handler(), httpserver.WithConfig(cfg.Server))
}

// openLocalStore opens the local store cfg describes and writes cfg's
// seed files into it.
func openLocalStore(cfg Config, logger *slog.Logger) (*localstore.Store, error) {
	store, err := localstore.Open(localstore.Config{
		Dir: cfg.DataDir, MaxValueBytes: cfg.MaxValueBytes, Logger: logger,
		Faults: cfg.StoreFaults, StrictStoreIDs: cfg.StoreStrictIDs,
	})
	if err != nil {
		return nil, err
	}
	if err := seedLocalStore(store, cfg.Seeds, logger); err != nil {
		_ = store.Close()
		return nil, err
	}
	return store, nil
}

func dataDirName(dir string) string {
	if dir == "" {
		return "(memory)"
	}
	return dir
}

// telemetryFromEnv lets the process environment's OTEL_* variables decide
// OTLP export, unless the config reads them some other way.
func telemetryFromEnv(cfg telemetry.Config) telemetry.Config {
	if cfg.Getenv == nil {
		cfg.Getenv = os.Getenv
	}
	return cfg
}
