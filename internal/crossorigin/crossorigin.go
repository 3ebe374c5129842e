// Package crossorigin lets browser pages from other origins call kvgate:
// CORS for the Connect and gRPC-Web protocols, from an allowlist of
// origins. The protocol's methods and headers come from the Connect
// project's own lists (connectrpc.com/cors), and github.com/rs/cors
// answers preflights and decorates responses.
//
// An origin that is not on the list gets no Access-Control-* header, and
// its preflight is refused with 403, so the browser never sends the call.
package crossorigin

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	connectcors "connectrpc.com/cors"
	"github.com/rs/cors"

	"github.com/kvgate/kvgate/internal/auth"
)

// MaxAge is how long, in seconds, a browser may cache a preflight's
// answer: two hours, the most Chromium honours.
const MaxAge = 2 * 60 * 60

// AnyOrigin, alone in [Config.Origins], allows every origin.
const AnyOrigin = "*"

// Config says which browser origins may call kvgate.
type Config struct {
	// Origins are the allowed origins, each scheme://host[:port] with no
	// path (the form a browser's Origin header has). A host may start
	// with "*." to allow its subdomains; AnyOrigin alone allows every
	// origin. Empty allows none: only pages served from kvgate's own
	// address can call it.
	Origins []string
	// AllowCredentials lets pages send what the browser holds for
	// kvgate's address on its own (cookies, HTTP authentication, TLS
	// client certificates): Access-Control-Allow-Credentials. Bearer
	// tokens set by the page's script in Authorization do not need it.
	// It cannot be combined with AnyOrigin.
	AllowCredentials bool
}

// Enabled reports whether any origin is allowed.
func (c Config) Enabled() bool { return len(c.Origins) > 0 }

// Validate reports a malformed origin, or AnyOrigin with credentials.
func (c Config) Validate() error {
	_, err := c.normalizedOrigins()
	return err
}

// normalizedOrigins returns the origins as browsers spell them: lower
// case, without a scheme's default port.
func (c Config) normalizedOrigins() ([]string, error) {
	if slices.Contains(c.Origins, AnyOrigin) {
		if len(c.Origins) > 1 {
			return nil, errors.New("CORS origins: * allows every origin and cannot be listed with others")
		}
		if c.AllowCredentials {
			return nil, errors.New("CORS origins: * cannot be combined with allowing credentials: " +
				"any web page could then act with the credentials a visitor's browser holds for kvgate; list the origins instead")
		}
		return []string{AnyOrigin}, nil
	}
	out := make([]string, 0, len(c.Origins))
	var errs []error
	for _, o := range c.Origins {
		n, err := normalizeOrigin(o)
		if err != nil {
			errs = append(errs, fmt.Errorf("CORS origin %q: %w", o, err))
			continue
		}
		out = append(out, n)
	}
	return out, errors.Join(errs...)
}

// normalizeOrigin checks that origin is scheme://host[:port] and returns
// it as a browser sends it.
func normalizeOrigin(origin string) (string, error) {
	u, err := url.Parse(origin)
	if err != nil {
		return "", errors.New("not a URL; want scheme://host[:port]")
	}
	scheme := strings.ToLower(u.Scheme)
	switch {
	case scheme != "http" && scheme != "https":
		return "", errors.New("want http://host[:port] or https://host[:port]")
	case u.Opaque != "" || u.Host == "":
		return "", errors.New("no host; want scheme://host[:port]")
	case u.User != nil:
		return "", errors.New("an origin has no user information")
	case u.Path != "" || u.RawQuery != "" || u.Fragment != "" || u.ForceQuery:
		return "", errors.New("an origin has no path, query or fragment (not even a trailing /); want scheme://host[:port]")
	}
	host, port := u.Hostname(), u.Port()
	if host == "" || strings.Contains(strings.TrimPrefix(host, "*."), "*") {
		return "", errors.New("the host must be a name or address, optionally starting with *. for its subdomains")
	}
	if strings.Contains(u.Host, ":") && port == "" && !strings.HasSuffix(u.Host, "]") {
		return "", errors.New("empty port")
	}
	if port != "" {
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 {
			return "", errors.New("the port must be a number from 1 to 65535")
		}
		if (scheme == "http" && n == 80) || (scheme == "https" && n == 443) {
			port = "" // browsers leave the default port out of Origin
		}
	}
	host = strings.ToLower(host)
	if port != "" || strings.Contains(host, ":") {
		// JoinHostPort brackets IPv6 literals; strip the ":" it adds
		// for an empty port.
		host = strings.TrimSuffix(net.JoinHostPort(host, port), ":")
	}
	return scheme + "://" + host, nil
}

// AllowedHeaders are the request headers allowed across origins: those
// the Connect and gRPC-Web clients send, Authorization for bearer tokens,
// Fastly-Key for callers' own Fastly tokens in pass-through mode,
// X-Request-Id so a page can correlate its calls with kvgate's logs, and
// If-None-Match so a page's script can revalidate a GetItem it keeps
// (the browser's own cache sends it without asking).
func AllowedHeaders() []string {
	return append(connectcors.AllowedHeaders(), "Authorization", auth.FastlyKeyHeader, "X-Request-Id", "If-None-Match")
}

// ExposedHeaders are the response headers a page's script may read: the
// gRPC-Web status headers (without them an error that comes as headers
// only reads as "missing trailer"), X-Request-Id, and ETag, the generation
// a GetItem over Connect GET answers with, to send back in If-None-Match.
// A Connect unary response carries its trailers as Trailer-* headers;
// kvgate sets no custom trailers, so there is none to expose.
func ExposedHeaders() []string {
	return append(connectcors.ExposedHeaders(), "X-Request-Id", "ETag")
}

// Middleware returns the CORS layer for cfg, or an error when cfg is not
// valid. With no origins configured it returns the handler unchanged, so
// a preflight gets 405 as before.
func Middleware(cfg Config) (func(http.Handler) http.Handler, error) {
	origins, err := cfg.normalizedOrigins()
	if err != nil {
		return nil, err
	}
	if len(origins) == 0 {
		return func(next http.Handler) http.Handler { return next }, nil
	}
	c := cors.New(cors.Options{
		AllowedOrigins:   origins,
		AllowedMethods:   connectcors.AllowedMethods(),
		AllowedHeaders:   AllowedHeaders(),
		ExposedHeaders:   ExposedHeaders(),
		AllowCredentials: cfg.AllowCredentials,
		MaxAge:           MaxAge,
	})
	return func(next http.Handler) http.Handler {
		withCORS := c.Handler(next)
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if isPreflight(r) && !c.OriginAllowed(r) {
				// rs/cors would answer 204 without CORS headers, which
				// browsers refuse too; 403 says so to people with curl.
				w.Header().Add("Vary", "Origin, Access-Control-Request-Method, Access-Control-Request-Headers")
				http.Error(w, "origin not allowed", http.StatusForbidden)
				return
			}
			withCORS.ServeHTTP(w, r)
		})
	}, nil
}

// isPreflight reports whether r is a CORS preflight, as rs/cors decides.
func isPreflight(r *http.Request) bool {
	return r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != ""
}
