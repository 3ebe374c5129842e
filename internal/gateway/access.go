package gateway

import "connectrpc.com/connect/v2"

// Option adjusts the handler [NewHandler] builds.
type Option func(*handlerOptions)

type handlerOptions struct {
	// kvAccess and infraAccess decide who may call the KV service, and
	// health and reflection; nil lets everyone.
	kvAccess, infraAccess connect.ServerInterceptor
}

// WithAccessControl guards the KV service with kv and health and
// reflection with infra. kv runs inside the RPC log, so that refused calls
// are logged too, and before every other interceptor, so that nothing
// else works for a caller it refuses.
func WithAccessControl(kv, infra connect.ServerInterceptor) Option {
	return func(o *handlerOptions) { o.kvAccess, o.infraAccess = kv, infra }
}

// interceptors returns the non-nil ones of ics, in order.
func interceptors(ics ...connect.ServerInterceptor) []connect.ServerInterceptor {
	var out []connect.ServerInterceptor
	for _, ic := range ics {
		if ic != nil {
			out = append(out, ic)
		}
	}
	return out
}
