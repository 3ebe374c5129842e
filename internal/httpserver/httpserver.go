// Package httpserver serves one http.Handler on one listener, speaking
// HTTP/1.1 and cleartext HTTP/2 on the same port, and shuts it down
// gracefully when the context ends. It is generic: it knows no RPC
// service, and kvgate uses it both for the gateway and for the local store.
//
// HTTP middleware (request ids, metrics, CORS, authentication) does not
// belong here. It composes around the handler in the one function that
// assembles the gateway, app.NewGateway, in this order from the outside
// in: request ids (so every later layer can log them), metrics (so they
// count what CORS and authentication refuse), CORS (so preflights are
// answered without credentials), the browser app's page and assets
// (package web, when served), authentication, and last the Connect
// surface of package gateway. Run adds layers of its own outside all of
// them: on a loopback listener, the refusal of requests whose Host is not
// a loopback name (against DNS rebinding); the one that sets Request.TLS
// on connections it terminates TLS on; and the one that bounds body reads
// (ended at shutdown, at [EndBodyReadsWhenDone]'s deadline, and when the
// client stalls).
//
// Run can also serve TLS ([LoadTLS], [WithTLS]) and cap connections,
// streams, header bytes and body stalls ([WithLimits]). Its listener
// bounds what net/http leaves unbounded on HTTP/2: a header block that
// never ends is cut off after the header timeout, as HTTP/1.1 headers are.
package httpserver

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"time"

	"golang.org/x/sync/errgroup"
)

// The defaults suit long streams: there is no read or write timeout, which
// would cut a stream off mid-flight; per-request deadlines bound each call
// instead.
const (
	// DefaultShutdownTimeout is the grace period requests in flight get
	// once the server starts shutting down.
	DefaultShutdownTimeout = 10 * time.Second
	// DefaultReadHeaderTimeout bounds reading a request's headers.
	DefaultReadHeaderTimeout = 10 * time.Second
	// DefaultIdleTimeout closes keep-alive connections left idle this long.
	DefaultIdleTimeout = 2 * time.Minute
)

// Config holds the server's timeouts. Run uses them as given: a zero
// ShutdownTimeout closes connections at once, a zero ReadHeaderTimeout or
// IdleTimeout sets no limit.
type Config struct {
	// ReadHeaderTimeout bounds reading a request's headers.
	ReadHeaderTimeout time.Duration
	// IdleTimeout closes keep-alive connections left idle this long.
	IdleTimeout time.Duration
	// ShutdownTimeout is how long requests in flight get to finish after
	// the context ends, before their contexts are cancelled and their
	// connections closed.
	ShutdownTimeout time.Duration
}

// DefaultConfig returns DefaultReadHeaderTimeout, DefaultIdleTimeout and
// DefaultShutdownTimeout.
func DefaultConfig() Config {
	return Config{
		ReadHeaderTimeout: DefaultReadHeaderTimeout,
		IdleTimeout:       DefaultIdleTimeout,
		ShutdownTimeout:   DefaultShutdownTimeout,
	}
}

// Option adjusts Run.
type Option func(*options)

type options struct {
	config     Config
	limits     Limits
	tls        *tls.Config
	onShutdown []func()
}

// WithConfig sets the server's timeouts; DefaultConfig() without it.
func WithConfig(cfg Config) Option {
	return func(o *options) { o.config = cfg }
}

// WithOnShutdown registers fn to run, in its own goroutine, as soon as
// shutdown starts: for example to tell long streams to wind up.
func WithOnShutdown(fn func()) Option {
	return func(o *options) { o.onShutdown = append(o.onShutdown, fn) }
}

// Run serves handler on ln until ctx ends, then shuts down gracefully: new
// connections stop and the WithOnShutdown functions run; requests in
// flight get half of the shutdown timeout to finish on their own; then the
// contexts of those still running (streams, mostly) are cancelled, so
// that they wind up and answer within the other half (http.Server.Shutdown
// alone would wait on a stream forever); whatever is left then is closed.
// Run returns nil after a graceful shutdown; a nil logger discards the
// server's logs. On a loopback listener it refuses requests whose Host is
// not a loopback name, as the package doc says.
func Run(ctx context.Context, logger *slog.Logger, ln net.Listener, handler http.Handler, opts ...Option) error {
	o := options{config: DefaultConfig()}
	for _, opt := range opts {
		opt(&o)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	cfg := o.config

	// Request contexts derive from base, which is cancelled only after
	// half the grace period, so streams see ctx.Done() and end.
	base, cancelBase := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelBase()
	srv := newServer(loopbackHostsOnly(ln.Addr(), logger, handler), cfg, o.limits, logger)
	srv.BaseContext = func(net.Listener) context.Context { return base }
	addr := ln.Addr().String()
	ln = limitConns(ln, o.limits.MaxConns)
	if o.tls != nil {
		ln = tlsListener{Listener: ln, config: o.tls}
	}
	ln = watchHeaderBlocks(ln, cfg.ReadHeaderTimeout, logger)
	for _, fn := range o.onShutdown {
		srv.RegisterOnShutdown(fn)
	}

	eg, egCtx := errgroup.WithContext(ctx)
	eg.Go(func() error {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	eg.Go(func() error {
		<-egCtx.Done()
		start := time.Now()
		logger.Info("shutdown starting", "addr", addr)
		shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownTimeout)
		defer cancel()
		endRequests := time.AfterFunc(cfg.ShutdownTimeout/2, cancelBase)
		defer endRequests.Stop()
		err := srv.Shutdown(shutdownCtx)
		if err != nil {
			// The grace period is over: end the requests still running.
			cancelBase()
			err = srv.Close()
		}
		logger.Info("shutdown finished", "addr", addr, "duration", time.Since(start))
		return err
	})
	return eg.Wait()
}

// newServer returns an http.Server for handler that speaks HTTP/1.1 and
// cleartext HTTP/2 (which gRPC clients need) on one port, and HTTP/2 on
// the decrypted stream of the connections its listener terminates TLS on.
func newServer(handler http.Handler, cfg Config, limits Limits, logger *slog.Logger) *http.Server {
	protocols := new(http.Protocols)
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	srv := &http.Server{
		Handler:           growStackForHTTP2(requestTLSState(guardBodies(handler, limits.BodyStallTimeout))),
		Protocols:         protocols,
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		ConnContext:       rememberTLSConn,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	applyLimits(srv, limits)
	return srv
}
