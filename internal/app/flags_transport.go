package app

import (
	"flag"
	"log/slog"

	"github.com/kvgate/kvgate/internal/httpserver"
)

// TransportConfig is how kvgate's public port is served: TLS and the caps
// on what clients may hold open.
type TransportConfig struct {
	// TLS names the certificate, key and client CA files; cleartext when
	// empty.
	TLS httpserver.TLSFiles
	// Limits caps connections, streams, header bytes and body stalls; each
	// zero field takes its httpserver.DefaultLimits value.
	Limits httpserver.Limits
}

// Validate reports TLS files that do not go together and negative limits.
func (t TransportConfig) Validate() error {
	if err := t.TLS.Validate(); err != nil {
		return err
	}
	return t.Limits.Validate()
}

// limitsWithDefaults returns l with each zero field set to its default.
func limitsWithDefaults(l httpserver.Limits) httpserver.Limits {
	def := httpserver.DefaultLimits()
	if l.MaxConns == 0 {
		l.MaxConns = def.MaxConns
	}
	if l.MaxConcurrentStreams == 0 {
		l.MaxConcurrentStreams = def.MaxConcurrentStreams
	}
	if l.MaxHeaderBytes == 0 {
		l.MaxHeaderBytes = def.MaxHeaderBytes
	}
	if l.BodyStallTimeout == 0 {
		l.BodyStallTimeout = def.BodyStallTimeout
	}
	return l
}

// registerTransportFlags registers TLS, the connection, stream and header
// caps, and the header, idle and body stall timeouts of kvgate's port.
func registerTransportFlags(fs *flag.FlagSet, env *envReader, cfg *Config) {
	t := &cfg.Transport
	def := httpserver.DefaultLimits()
	fs.StringVar(&t.TLS.CertFile, "tls-cert", env.string("KVGATE_TLS_CERT", ""),
		"PEM certificate chain to serve TLS with (HTTP/2 by ALPN); reloaded when the file changes; needs -tls-key (env KVGATE_TLS_CERT)")
	fs.StringVar(&t.TLS.KeyFile, "tls-key", env.string("KVGATE_TLS_KEY", ""),
		"PEM private key of -tls-cert; reloaded when the file changes (env KVGATE_TLS_KEY)")
	fs.StringVar(&t.TLS.ClientCAFile, "tls-client-ca", env.string("KVGATE_TLS_CLIENT_CA", ""),
		"PEM CA certificates; when set every client must present a certificate they signed (mutual TLS) (env KVGATE_TLS_CLIENT_CA)")
	fs.IntVar(&t.Limits.MaxConns, "max-conns", int(env.int("KVGATE_MAX_CONNS", int64(def.MaxConns))),
		"connections served at once; more wait to be accepted (env KVGATE_MAX_CONNS)")
	fs.IntVar(&t.Limits.MaxConcurrentStreams, "max-concurrent-streams", int(env.int("KVGATE_MAX_CONCURRENT_STREAMS", int64(def.MaxConcurrentStreams))),
		"RPCs in flight on one HTTP/2 connection (env KVGATE_MAX_CONCURRENT_STREAMS)")
	fs.IntVar(&t.Limits.MaxHeaderBytes, "max-header-bytes", int(env.int("KVGATE_MAX_HEADER_BYTES", int64(def.MaxHeaderBytes))),
		"largest request header block in bytes, HTTP/1.1 and HTTP/2 (env KVGATE_MAX_HEADER_BYTES)")
	fs.DurationVar(&t.Limits.BodyStallTimeout, "body-stall-timeout", env.duration("KVGATE_BODY_STALL_TIMEOUT", def.BodyStallTimeout),
		"longest wait for the next bytes of a request body (an idle bound: streams that keep sending are not cut) (env KVGATE_BODY_STALL_TIMEOUT)")
	fs.DurationVar(&cfg.Server.ReadHeaderTimeout, "read-header-timeout", env.duration("KVGATE_READ_HEADER_TIMEOUT", cfg.Server.ReadHeaderTimeout),
		"longest time to read a request's headers, TLS handshake included, on HTTP/1.1 and HTTP/2 (env KVGATE_READ_HEADER_TIMEOUT)")
	fs.DurationVar(&cfg.Server.IdleTimeout, "idle-timeout", env.duration("KVGATE_IDLE_TIMEOUT", cfg.Server.IdleTimeout),
		"closes connections idle this long (env KVGATE_IDLE_TIMEOUT)")
}

// transportServing is how the gateway's port is served: the httpserver
// options for TLS and the limits.
type transportServing struct {
	options []httpserver.Option
	tls     bool
}

// transportOptions returns what serves t: its limits, defaults filled in,
// and TLS when t names certificate files (read now, so that a bad pair
// fails at startup).
func transportOptions(t TransportConfig, logger *slog.Logger) (transportServing, error) {
	if err := t.Validate(); err != nil {
		return transportServing{}, err
	}
	ts := transportServing{options: []httpserver.Option{httpserver.WithLimits(limitsWithDefaults(t.Limits))}}
	if !t.TLS.Enabled() {
		return ts, nil
	}
	tlsConfig, err := httpserver.LoadTLS(t.TLS, logger)
	if err != nil {
		return transportServing{}, err
	}
	ts.options = append(ts.options, httpserver.WithTLS(tlsConfig))
	ts.tls = true
	return ts, nil
}

// Transports names the protocols the gateway's port speaks, for the
// startup log.
func (g *Gateway) Transports() string {
	if g.serve.tls {
		return "TLS (HTTP/2 by ALPN, HTTP/1.1)"
	}
	return "HTTP/1.1 and h2c"
}
