package gateway

import "connectrpc.com/connect/v2"

// WithAccessControl guards the KV service with kv and health and
// reflection with infra. kv runs inside the RPC log, so that refused calls
// are logged too, and before every other interceptor of the service, so
// that nothing else works for a caller it refuses.
func WithAccessControl(kv, infra connect.ServerInterceptor) HandlerOption {
	return func(o *handlerOptions) { o.kvAccess, o.infraAccess = kv, infra }
}

// nonNil returns the non-nil interceptors of ics, in order.
func nonNil(ics []connect.ServerInterceptor) []connect.ServerInterceptor {
	var out []connect.ServerInterceptor
	for _, ic := range ics {
		if ic != nil {
			out = append(out, ic)
		}
	}
	return out
}
