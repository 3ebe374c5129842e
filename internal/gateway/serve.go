package gateway

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"time"

	"golang.org/x/sync/errgroup"
)

// ServerConfig holds the HTTP server's timeouts.
type ServerConfig struct {
	// ReadHeaderTimeout bounds reading a request's headers.
	ReadHeaderTimeout time.Duration
	// IdleTimeout closes keep-alive connections left idle this long.
	IdleTimeout time.Duration
	// ShutdownTimeout is how long in-flight RPCs get to finish after ctx
	// ends, before their contexts are cancelled and connections closed.
	ShutdownTimeout time.Duration
}

// DefaultServerConfig returns timeouts suited to long streams: there is no
// read or write timeout, which would cut a stream off mid-flight, and per-RPC
// deadlines bound each call instead.
func DefaultServerConfig() ServerConfig {
	return ServerConfig{
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ShutdownTimeout:   10 * time.Second,
	}
}

// NewServer returns an http.Server for handler that speaks HTTP/1.1 and
// cleartext HTTP/2 (which gRPC clients need) on one port.
func NewServer(handler http.Handler, cfg ServerConfig, logger *slog.Logger) *http.Server {
	protocols := new(http.Protocols)
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	return &http.Server{
		Handler:           endReadsOnCancel(handler),
		Protocols:         protocols,
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
}

// Serve serves srv on ln until ctx ends, then shuts down gracefully: new
// connections stop and the functions registered with
// srv.RegisterOnShutdown run; RPCs in flight get half of
// cfg.ShutdownTimeout to finish on their own; then the contexts of those
// still running (streams, mostly) are cancelled, so that they wind up and
// answer within the other half (http.Server.Shutdown alone would wait on a
// stream forever); whatever is left then is closed.
func Serve(ctx context.Context, ln net.Listener, srv *http.Server, cfg ServerConfig, logger *slog.Logger) error {
	// Request contexts derive from base, which is cancelled only after the
	// grace period, so streams see ctx.Done() and end.
	base, cancelBase := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelBase()
	srv.BaseContext = func(net.Listener) context.Context { return base }

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
		logger.Info("shutdown starting", "addr", ln.Addr().String())
		shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownTimeout)
		defer cancel()
		drain := time.AfterFunc(cfg.ShutdownTimeout/2, cancelBase)
		defer drain.Stop()
		err := srv.Shutdown(shutdownCtx)
		if err != nil {
			// The grace period is over: end the streams still running.
			cancelBase()
			err = srv.Close()
		}
		logger.Info("shutdown finished", "addr", ln.Addr().String(), "duration", time.Since(start))
		return err
	})
	return eg.Wait()
}

// endReadsOnCancel ends a request's blocked body reads once its context is
// cancelled. A client stream waiting for the client's next message would
// otherwise not notice that kvgate is shutting down until the connection
// is closed, too late to answer with what it did.
func endReadsOnCancel(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		ended := make(chan struct{})
		stop := context.AfterFunc(r.Context(), func() {
			defer close(ended)
			_ = rc.SetReadDeadline(time.Now())
		})
		defer func() {
			// w must not be touched once the handler has returned: wait
			// for a SetReadDeadline already under way.
			if !stop() {
				<-ended
			}
		}()
		next.ServeHTTP(w, r)
	})
}
