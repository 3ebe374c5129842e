package httpserver

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// certCheckInterval is how often, at most, handshakes look at whether the
// certificate or key file changed.
var certCheckInterval = time.Second

// TLSFiles names the PEM files TLS is served from.
type TLSFiles struct {
	// CertFile and KeyFile hold the server's certificate chain and its
	// private key. Both or neither: TLS is off when both are empty.
	CertFile, KeyFile string
	// ClientCAFile, when set, holds the CAs that client certificates must
	// chain to; every client must then present one (mutual TLS).
	ClientCAFile string
}

// Enabled reports whether f asks for TLS.
func (f TLSFiles) Enabled() bool { return f.CertFile != "" || f.KeyFile != "" }

// Validate reports a certificate without its key, a key without its
// certificate, and a client CA without either.
func (f TLSFiles) Validate() error {
	if (f.CertFile == "") != (f.KeyFile == "") {
		return errors.New("a TLS certificate and key go together: set both -tls-cert and -tls-key")
	}
	if f.ClientCAFile != "" && !f.Enabled() {
		return errors.New("client certificates (-tls-client-ca) need TLS: set -tls-cert and -tls-key too")
	}
	return nil
}

// LoadTLS returns the TLS configuration for f: HTTP/2 and HTTP/1.1 offered
// by ALPN, TLS 1.2 at least, and client certificates required and
// verified when f names a client CA. The certificate and key are read
// now, and read again on a later handshake once either file has changed;
// a pair that fails to load then is logged and the previous pair kept.
func LoadTLS(f TLSFiles, logger *slog.Logger) (*tls.Config, error) {
	if err := f.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	certs := &certReloader{certFile: f.CertFile, keyFile: f.KeyFile, logger: logger}
	if err := certs.load(); err != nil {
		return nil, err
	}
	cfg := &tls.Config{
		MinVersion:     tls.VersionTLS12,
		NextProtos:     []string{"h2", "http/1.1"},
		GetCertificate: certs.getCertificate,
	}
	if f.ClientCAFile != "" {
		pem, err := os.ReadFile(f.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("reading the client CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("client CA file %s holds no PEM certificate", f.ClientCAFile)
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

// WithTLS serves TLS with cfg (from [LoadTLS]) instead of cleartext.
func WithTLS(cfg *tls.Config) Option {
	return func(o *options) { o.tls = cfg }
}

// fileStamp tells whether the certificate or key file changed.
type fileStamp struct {
	certMod, keyMod   time.Time
	certSize, keySize int64
}

// certReloader hands out the current certificate pair and reloads it when
// its files change.
type certReloader struct {
	certFile, keyFile string
	logger            *slog.Logger

	cert atomic.Pointer[tls.Certificate]

	mu        sync.Mutex // guards the fields below; one check at a time
	lastCheck time.Time
	stamp     fileStamp // of the files last loaded or tried
}

func (r *certReloader) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.maybeReload()
	return r.cert.Load(), nil
}

// load reads the pair at startup, where failing is fatal.
func (r *certReloader) load() error {
	st, err := r.statFiles()
	if err != nil {
		return err
	}
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return fmt.Errorf("loading the TLS certificate and key: %w", err)
	}
	r.cert.Store(&cert)
	r.stamp, r.lastCheck = st, time.Now()
	return nil
}

// maybeReload reloads the pair when a file changed since the last check,
// checking at most once per certCheckInterval; handshakes meanwhile keep
// the current pair rather than wait.
func (r *certReloader) maybeReload() {
	if !r.mu.TryLock() {
		return
	}
	defer r.mu.Unlock()
	if time.Since(r.lastCheck) < certCheckInterval {
		return
	}
	r.lastCheck = time.Now()
	st, err := r.statFiles()
	if err != nil || st == r.stamp {
		// A file missing for a moment (replaced by rename) is not a new
		// pair yet; the next check sees the new one.
		return
	}
	r.stamp = st
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		r.logger.Warn("TLS certificate reload failed; keeping the previous certificate", "error", err)
		return
	}
	r.cert.Store(&cert)
	r.logger.Info("TLS certificate reloaded", "serial", cert.Leaf.SerialNumber.String(), "not_after", cert.Leaf.NotAfter)
}

func (r *certReloader) statFiles() (fileStamp, error) {
	c, err := os.Stat(r.certFile)
	if err != nil {
		return fileStamp{}, fmt.Errorf("TLS certificate: %w", err)
	}
	k, err := os.Stat(r.keyFile)
	if err != nil {
		return fileStamp{}, fmt.Errorf("TLS key: %w", err)
	}
	return fileStamp{certMod: c.ModTime(), keyMod: k.ModTime(), certSize: c.Size(), keySize: k.Size()}, nil
}

// tlsListener terminates TLS on each accepted connection (the handshake
// runs on the connection's first read, under the server's header
// deadline, not in Accept) and hands net/http the decrypted stream. kvgate
// watches HTTP/2 frames above TLS (see watchHeaderBlocks), which it could
// not do on a connection net/http took over as *tls.Conn. A client that
// negotiated h2 by ALPN opens with the HTTP/2 preface, which net/http
// serves as HTTP/2; the others speak HTTP/1.1.
type tlsListener struct {
	net.Listener
	config *tls.Config
}

func (l tlsListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return tls.Server(c, l.config), nil
}

// tlsConnKey carries a connection's *tls.Conn in its context.
type tlsConnKey struct{}

// rememberTLSConn is the server's ConnContext: it keeps the connection's
// TLS layer, if it has one, for requestTLSState.
func rememberTLSConn(ctx context.Context, c net.Conn) context.Context {
	for c != nil {
		if tc, ok := c.(*tls.Conn); ok {
			return context.WithValue(ctx, tlsConnKey{}, tc)
		}
		u, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			break
		}
		c = u.NetConn()
	}
	return ctx
}

// requestTLSState sets Request.TLS, as net/http does for connections it
// terminates TLS on itself, so handlers see the client's certificate.
func requestTLSState(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if tc, ok := r.Context().Value(tlsConnKey{}).(*tls.Conn); ok && r.TLS == nil {
			state := tc.ConnectionState()
			r = r.WithContext(r.Context()) // a shallow copy
			r.TLS = &state
		}
		next.ServeHTTP(w, r)
	})
}
