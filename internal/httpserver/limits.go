package httpserver

import (
	"errors"
	"net"
	"net/http"
	"time"

	"golang.org/x/net/netutil"
)

// The default caps: generous for a gateway behind a load balancer, small
// enough that one client cannot exhaust the process.
const (
	// DefaultMaxConns caps the connections served at once.
	DefaultMaxConns = 4096
	// DefaultMaxConcurrentStreams caps the requests in flight on one
	// HTTP/2 connection, as net/http's own default does.
	DefaultMaxConcurrentStreams = 250
	// DefaultMaxHeaderBytes caps a request's header block: its HTTP/1.1
	// header lines, or its decoded HTTP/2 header list.
	DefaultMaxHeaderBytes = 64 << 10
	// DefaultBodyStallTimeout bounds how long a request body may deliver
	// nothing while the handler waits for it.
	DefaultBodyStallTimeout = 30 * time.Second
)

// Limits caps what clients may hold open. Run uses them as given: a zero
// field sets no limit (MaxHeaderBytes: net/http's default of 1 MiB).
type Limits struct {
	// MaxConns caps the connections served at once; further connections
	// wait in the listen queue until one closes.
	MaxConns int
	// MaxConcurrentStreams caps the requests in flight on one HTTP/2
	// connection.
	MaxConcurrentStreams int
	// MaxHeaderBytes caps a request's header block.
	MaxHeaderBytes int
	// BodyStallTimeout bounds the time a body read may wait for the client
	// to send anything: an idle bound, not a total one, so streams that
	// keep sending run as long as their deadline allows. A stalled read
	// fails with [ErrBodyStalled].
	BodyStallTimeout time.Duration
}

// DefaultLimits returns DefaultMaxConns, DefaultMaxConcurrentStreams,
// DefaultMaxHeaderBytes and DefaultBodyStallTimeout.
func DefaultLimits() Limits {
	return Limits{
		MaxConns:             DefaultMaxConns,
		MaxConcurrentStreams: DefaultMaxConcurrentStreams,
		MaxHeaderBytes:       DefaultMaxHeaderBytes,
		BodyStallTimeout:     DefaultBodyStallTimeout,
	}
}

// Validate reports negative limits.
func (l Limits) Validate() error {
	if l.MaxConns < 0 || l.MaxConcurrentStreams < 0 || l.MaxHeaderBytes < 0 || l.BodyStallTimeout < 0 {
		return errors.New("connection, stream, header and body stall limits must not be negative")
	}
	return nil
}

// WithLimits caps connections, streams, headers and body stalls; without
// it Run sets none of these caps.
func WithLimits(l Limits) Option {
	return func(o *options) { o.limits = l }
}

// applyLimits sets the caps the http.Server enforces itself.
func applyLimits(srv *http.Server, l Limits) {
	srv.MaxHeaderBytes = l.MaxHeaderBytes
	srv.HTTP2 = http2Config(l.MaxConcurrentStreams)
}

// limitConns holds accepts beyond maxConns until a served connection
// closes; the kernel's listen queue keeps the waiting ones.
func limitConns(ln net.Listener, maxConns int) net.Listener {
	if maxConns <= 0 {
		return ln
	}
	return netutil.LimitListener(ln, maxConns)
}
