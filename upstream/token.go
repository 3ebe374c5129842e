package upstream

import "context"

// tokenKey is the context key of a per-call Fastly token.
type tokenKey struct{}

// WithToken returns a context whose upstream calls send token as
// Fastly-Key instead of the [ClientConfig] token: kvgate's pass-through
// mode calls Fastly with each caller's own token. An empty token leaves
// the client's own.
func WithToken(ctx context.Context, token string) context.Context {
	return context.WithValue(ctx, tokenKey{}, token)
}

// tokenFor is the Fastly-Key to send for a call made with ctx: the
// per-call token when [WithToken] set one, else the client's.
func (c *Client) tokenFor(ctx context.Context) string {
	if t, _ := ctx.Value(tokenKey{}).(string); t != "" {
		return t
	}
	return c.token
}

// TokenFrom returns the per-call token [WithToken] set on ctx, or "" when
// the call sends the client's own. Work that outlives a call (a poller
// shared by several callers) reads it to call with the same token later,
// and work done for several calls at once (a batch PUT carrying several
// RPCs' writes) groups only calls that send the same token.
func TokenFrom(ctx context.Context) string {
	t, _ := ctx.Value(tokenKey{}).(string)
	return t
}
