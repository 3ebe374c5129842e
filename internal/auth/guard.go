package auth

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect/v2"

	"github.com/kvgate/kvgate/internal/httpserver"
	"github.com/kvgate/kvgate/upstream"
)

// FastlyKeyHeader carries a caller's own Fastly API token in pass-through
// mode: the header Fastly's API itself reads.
const FastlyKeyHeader = "Fastly-Key"

// passThroughName names callers in the log when only pass-through
// identifies them: their Fastly token is theirs, and never logged.
const passThroughName = "pass-through"

// Guard decides who may call, from its [Config] and the token set it
// holds. It is safe for concurrent use; the token set is swapped
// atomically, so calls in flight keep the token they started with.
type Guard struct {
	cfg    Config
	logger *slog.Logger
	tokens atomic.Pointer[tokenSet]

	// mu serialises reading the token file; sum is the SHA-256 of the
	// content last read and readFailing whether the last read failed, so
	// that an unchanged file is neither parsed nor logged again.
	mu          sync.Mutex
	sum         [32]byte
	readFailing bool
}

// NewGuard returns the guard for cfg, with the token file loaded. A token
// file that cannot be read or parsed is an error: kvgate does not start
// without the tokens it was told to use.
func NewGuard(cfg Config, logger *slog.Logger) (*Guard, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Health == "" {
		cfg.Health = PolicyOpen
	}
	if cfg.Reflection == "" {
		cfg.Reflection = PolicyOpen
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = DefaultPollInterval
	}
	g := &Guard{cfg: cfg, logger: logger}
	if cfg.TokensFile != "" {
		if err := g.load(true); err != nil {
			return nil, err
		}
	}
	return g, nil
}

// caller is what a request's credentials say about its caller.
type caller struct {
	// entry is the bearer token's entry, nil without a valid one.
	entry *tokenEntry
	// bearer says whether the request carried a bearer token at all.
	bearer bool
	// fastlyKey is the caller's own Fastly token, in pass-through mode.
	fastlyKey string
}

// name is how logs name the caller: its token's name, else
// passThroughName when its Fastly token identifies it, else nothing.
func (c *caller) name() string {
	switch {
	case c.entry != nil:
		return c.entry.name
	case c.fastlyKey != "":
		return passThroughName
	}
	return ""
}

type callerKey struct{}

// CallerName is the name of the caller of the request ctx belongs to, as
// [Guard.Middleware] found it: the token file's name of its token, or
// "pass-through". It is empty for unknown callers and when auth is off.
func CallerName(ctx context.Context) string {
	if c, ok := ctx.Value(callerKey{}).(*caller); ok {
		return c.name()
	}
	return ""
}

// identify reads the credentials of a request whose headers get returns.
func (g *Guard) identify(get func(string) string) *caller {
	c := &caller{}
	if g.cfg.TokensFile != "" {
		scheme, token, _ := strings.Cut(get("Authorization"), " ")
		token = strings.TrimSpace(token)
		if strings.EqualFold(scheme, "Bearer") && token != "" {
			c.bearer = true
			c.entry = g.tokens.Load().lookup(token)
		}
	}
	if g.cfg.FastlyTokenPassthrough {
		c.fastlyKey = get(FastlyKeyHeader)
	}
	return c
}

// Middleware reads every request's credentials once and keeps what they
// say in the request's context, for the interceptors and for
// [CallerName]. It refuses nothing: the interceptors answer refusals in
// each RPC protocol's own form.
func (g *Guard) Middleware(next http.Handler) http.Handler {
	if !g.cfg.Enabled() {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := g.identify(r.Header.Get)
		next.ServeHTTP(w, httpserver.SetValue(r, callerKey{}, c))
	})
}

// callerFor is the caller of the RPC ctx belongs to: as the middleware
// found it or, when the handler is served without it, from the RPC's own
// headers.
func (g *Guard) callerFor(ctx context.Context) *caller {
	if c, ok := ctx.Value(callerKey{}).(*caller); ok {
		return c
	}
	if info, ok := connect.CallInfoForServerContext(ctx); ok {
		return g.identify(info.RequestHeader().Get)
	}
	return &caller{}
}

// authenticate refuses a caller without the credentials g asks for.
func (g *Guard) authenticate(ctx context.Context, c *caller) error {
	if g.cfg.TokensFile != "" && c.entry == nil {
		return g.refuseBearer(ctx, c)
	}
	if g.cfg.FastlyTokenPassthrough && c.fastlyKey == "" {
		return errNoFastlyKey()
	}
	return nil
}

// refuseBearer is the UNAUTHENTICATED answer to a caller without a valid
// bearer token, with the challenge saying which scheme to use.
func (g *Guard) refuseBearer(ctx context.Context, c *caller) error {
	if info, ok := connect.CallInfoForServerContext(ctx); ok {
		info.ResponseHeader().Set("WWW-Authenticate", "Bearer")
	}
	if c.bearer {
		return errBadCredentials()
	}
	return errNoCredentials()
}

// KVInterceptor guards the KV service. Before the handler runs it refuses
// callers without valid credentials (UNAUTHENTICATED), tokens without the
// procedure's right (PERMISSION_DENIED) and tokens over their rate
// (RESOURCE_EXHAUSTED); it checks the store of the first request message
// as the handler receives it, before the handler can act on it. In
// pass-through mode it makes the caller's Fastly token the one the
// upstream calls send.
func (g *Guard) KVInterceptor() connect.ServerInterceptor {
	return func(next connect.ServerFunc) connect.ServerFunc {
		if !g.cfg.Enabled() {
			return next
		}
		return func(ctx context.Context, spec connect.Spec, stream connect.ServerStream) error {
			c := g.callerFor(ctx)
			if err := g.authenticate(ctx, c); err != nil {
				return err
			}
			if c.fastlyKey != "" {
				ctx = upstream.WithToken(ctx, c.fastlyKey)
			}
			if c.entry == nil {
				// Pass-through alone: Fastly decides what the token may do.
				return next(ctx, spec, stream)
			}
			need, known := procedureRights[spec.Procedure]
			if !known || !c.entry.may(need) {
				return errRightMissing(need)
			}
			if wait := c.entry.wait(time.Now()); wait > 0 {
				return errTokenRateLimited(wait)
			}
			return next(ctx, spec, &scopedStream{ServerStream: stream, entry: c.entry})
		}
	}
}

// storeRequest is every KV request message naming one store.
type storeRequest interface{ GetStoreId() string }

// copyRequest is a KV request message naming two stores (CopyItems'):
// the token must cover both.
type copyRequest interface {
	GetSourceStoreId() string
	GetTargetStoreId() string
}

// scopedStream refuses a first request message naming a store outside
// the token's stores. Later messages of a client stream cannot change the
// store: the service refuses that itself.
type scopedStream struct {
	connect.ServerStream
	entry   *tokenEntry
	checked bool
}

func (s *scopedStream) Receive(msg any) error {
	if err := s.ServerStream.Receive(msg); err != nil || s.checked {
		return err
	}
	s.checked = true
	if req, ok := msg.(copyRequest); ok {
		if !s.entry.mayUse(req.GetSourceStoreId()) || !s.entry.mayUse(req.GetTargetStoreId()) {
			return errStoreOutOfScope()
		}
		return nil
	}
	req, ok := msg.(storeRequest)
	if !ok || !s.entry.mayUse(req.GetStoreId()) {
		return errStoreOutOfScope()
	}
	return nil
}

// InfraInterceptor guards health checks and reflection by their policies:
// open to anyone, or to any valid bearer token.
func (g *Guard) InfraInterceptor() connect.ServerInterceptor {
	return func(next connect.ServerFunc) connect.ServerFunc {
		return func(ctx context.Context, spec connect.Spec, stream connect.ServerStream) error {
			if g.policyFor(spec.Procedure) == PolicyToken {
				if c := g.callerFor(ctx); c.entry == nil {
					return g.refuseBearer(ctx, c)
				}
			}
			return next(ctx, spec, stream)
		}
	}
}

// policyFor is the policy of an infrastructure procedure; procedures of
// neither health nor reflection are open only when no token file is set.
func (g *Guard) policyFor(procedure string) Policy {
	switch {
	case strings.HasPrefix(procedure, "/grpc.health.v1."):
		return g.cfg.Health
	case strings.HasPrefix(procedure, "/grpc.reflection."):
		return g.cfg.Reflection
	case g.cfg.TokensFile != "":
		return PolicyToken
	}
	return PolicyOpen
}
