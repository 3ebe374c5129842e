// Package auth decides who may call kvgate. Callers present a bearer token
// (Authorization: Bearer <token>) that a token file lists by its SHA-256
// hash, with the stores it may use and its rights (read, write, delete)
// and, optionally, a request rate; or, in pass-through mode, their own
// Fastly API token (the Fastly-Key header), which kvgate sends upstream
// in place of one of its own. Both may be combined.
//
// A [Guard] holds the current token set and swaps it atomically when the
// file changes or [Guard.Reload] is called. It works in two layers: an HTTP
// middleware ([Guard.Middleware]) reads the credentials of every request
// once, so that every later layer (the RPC log among them) knows the
// caller by its name; Connect interceptors ([Guard.KVInterceptor],
// [Guard.InfraInterceptor]) refuse the RPC before any work starts, and
// check the store a request names as its first message is received.
package auth

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"time"
)

// Policy says who may call a service that has a policy of its own
// (health checks, reflection).
type Policy string

const (
	// PolicyOpen lets anyone call, so that load balancers and grpcurl
	// work without credentials.
	PolicyOpen Policy = "open"
	// PolicyToken asks for a bearer token from the token file; any token
	// will do, whatever its stores and rights.
	PolicyToken Policy = "token"
)

// ParsePolicy reads a policy by its name, open or token.
func ParsePolicy(s string) (Policy, error) {
	switch p := Policy(s); p {
	case PolicyOpen, PolicyToken:
		return p, nil
	}
	return "", fmt.Errorf("policy must be open or token, not %q", s)
}

// DefaultPollInterval is how often a [Guard] looks at its token file.
const DefaultPollInterval = time.Second

// Config says how kvgate decides who may call. The zero value lets
// everyone call, which kvgate allows on loopback only (see
// [Config.Validate]).
type Config struct {
	// TokensFile is the token file; empty means no bearer tokens.
	TokensFile string
	// FastlyTokenPassthrough makes every caller send its own Fastly API
	// token in the Fastly-Key header; kvgate sends it upstream for that
	// caller's calls and holds no token of its own.
	FastlyTokenPassthrough bool
	// AllowUnauthenticated lets kvgate serve a non-loopback address with
	// neither tokens nor pass-through.
	AllowUnauthenticated bool
	// Health and Reflection are the policies of grpc.health.v1 and of
	// reflection; open when empty.
	Health, Reflection Policy
	// PollInterval is how often the token file is looked at for changes;
	// DefaultPollInterval when zero.
	PollInterval time.Duration
}

// Enabled reports whether callers must present credentials of some kind.
func (c Config) Enabled() bool { return c.TokensFile != "" || c.FastlyTokenPassthrough }

// Validate reports settings that contradict each other, and refuses to
// let kvgate serve listen to anyone who reaches it when auth is off and
// listen is not a loopback address, unless AllowUnauthenticated says so.
// haveFastlyToken says whether kvgate was given a Fastly token of its own.
func (c Config) Validate(listen string, haveFastlyToken bool) error {
	for name, p := range map[string]Policy{"health": c.Health, "reflection": c.Reflection} {
		if p != "" && p != PolicyOpen && p != PolicyToken {
			return fmt.Errorf("%s policy must be open or token, not %q", name, p)
		}
		if p == PolicyToken && c.TokensFile == "" {
			return fmt.Errorf("the %s policy token needs a token file (-tokens)", name)
		}
	}
	if c.FastlyTokenPassthrough && haveFastlyToken {
		return errors.New("Fastly token pass-through sends each caller's own Fastly token: unset FASTLY_API_TOKEN")
	}
	if c.Enabled() || c.AllowUnauthenticated || IsLoopback(listen) {
		return nil
	}
	return fmt.Errorf("refusing to serve %s to anyone who reaches it: set -tokens or -fastly-token-passthrough, "+
		"listen on a loopback address, or set -allow-unauthenticated", listen)
}

// IsLoopback reports whether listen (host:port) only accepts connections
// from this machine: a 127.0.0.0/8 or ::1 address, or localhost. An empty
// host listens on every interface.
func IsLoopback(listen string) bool {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		host = listen
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
