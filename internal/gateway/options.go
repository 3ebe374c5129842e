package gateway

import (
	"log/slog"

	"connectrpc.com/connect/v2"

	"github.com/kvgate/kvgate/gen/go/fastly/kv/v1/kvv1connect"
)

// HandlerOption adjusts NewHandler.
type HandlerOption func(*handlerOptions)

type handlerOptions struct {
	interceptors []connect.ServerInterceptor
	rpcLogLevel  slog.Level
	// kvAccess and infraAccess decide who may call the KV service, and
	// health and reflection; nil lets everyone.
	kvAccess, infraAccess connect.ServerInterceptor
	// privateResponses marks cacheable responses private.
	privateResponses bool
}

// WithPrivateResponses marks the GET responses that HTTP caches may keep
// (GetItem's) private, for a kvgate that checks its callers' credentials:
// shared caches then store none of them.
func WithPrivateResponses() HandlerOption {
	return func(o *handlerOptions) { o.privateResponses = true }
}

// WithInterceptors puts interceptors at the outside of the KV service's
// chain, in the order given, ahead of panic recovery: telemetry there sees
// every RPC's final outcome, a recovered panic's included.
func WithInterceptors(interceptors ...connect.ServerInterceptor) HandlerOption {
	return func(o *handlerOptions) { o.interceptors = append(o.interceptors, interceptors...) }
}

// WithRPCLogLevel keeps only the RPC log lines at level or above (see
// [RPCLogLevelOf]); [RPCLogOff] writes none. slog.LevelInfo, the default,
// logs every RPC.
func WithRPCLogLevel(level slog.Level) HandlerOption {
	return func(o *handlerOptions) { o.rpcLogLevel = level }
}

// RPCLogOff is the RPC log level that writes no line.
const RPCLogOff = slog.Level(1 << 20)

// ServiceNames are the services NewHandler serves, for telemetry that
// labels RPCs by procedure.
func ServiceNames() []string {
	return []string{
		kvv1connect.KVStoreServiceName,
		healthServiceName,
		"grpc.reflection.v1.ServerReflection",
		"grpc.reflection.v1alpha.ServerReflection",
	}
}
