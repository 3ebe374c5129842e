// Package gateway is kvgate's Connect surface: one http.Handler serving
// the KV service over Connect, gRPC and gRPC-Web, with its interceptors
// (panic recovery, the RPC log, deadline bounds), codecs and
// per-procedure message limits, beside gRPC health and reflection. It does
// not serve: package httpserver runs the handler, and package app
// assembles the two with the service and its upstream.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"time"

	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connecthttp"
	"connectrpc.com/connect/v2/connectproto"
	"connectrpc.com/grpcreflect/v2"

	"github.com/kvgate/kvgate/gen/go/fastly/kv/v1/kvv1connect"
	"github.com/kvgate/kvgate/internal/auth"
	"github.com/kvgate/kvgate/internal/membudget"
)

// Limits bound what one RPC may carry and how long it may run.
type Limits struct {
	// MaxValueBytes is the largest item value. PutItem requests and
	// GetItem responses may carry one value plus the other fields.
	MaxValueBytes int64
	// DefaultTimeout is the deadline of a unary RPC whose caller set none;
	// DefaultLimits' when zero.
	DefaultTimeout time.Duration
	// MaxTimeout caps every RPC's deadline, and is the deadline of a
	// stream whose caller set none; DefaultLimits' when zero. Without a
	// cap a caller could hold upstream work open for as long as it likes.
	MaxTimeout time.Duration
	// Budget bounds the bytes held for values in flight across all RPCs
	// (see package membudget); nil for none.
	Budget *membudget.Budget
}

// DefaultLimits returns the deadline defaults: 30s for unary RPCs that
// come without a deadline, and a cap of 1h. MaxValueBytes is left zero:
// the value limit is the upstream's to set.
func DefaultLimits() Limits {
	return Limits{DefaultTimeout: 30 * time.Second, MaxTimeout: time.Hour}
}

func (l Limits) withDefaults() Limits {
	def := DefaultLimits()
	if l.DefaultTimeout <= 0 {
		l.DefaultTimeout = def.DefaultTimeout
	}
	if l.MaxTimeout <= 0 {
		l.MaxTimeout = def.MaxTimeout
	}
	l.DefaultTimeout = min(l.DefaultTimeout, l.MaxTimeout)
	return l
}

// envelopeSlack is room beside a value for the rest of a message: the key
// (1 KiB), metadata (2000 bytes), other fields and framing.
const envelopeSlack = 64 << 10

// compressMinBytes is the smallest response worth gzipping for callers
// that accept it: key listings compress well, small messages do not.
const compressMinBytes = 4 << 10

// batchMessageBytes bounds one batch message (BatchPutItems or PutItems)
// when a single value's limit is smaller, as proto/fastly/kv/v1 states.
const batchMessageBytes = 64 << 20

// defaultReadMaxBytes bounds requests that carry no value.
const defaultReadMaxBytes = 1 << 20

// NewHandler returns the HTTP handler serving svc, health and reflection.
// Cross-cutting behaviour that needs to know the RPC (its procedure, its
// messages) joins the interceptor chain here, outermost first; behaviour
// that needs only HTTP wraps the returned handler in app.NewGateway.
func NewHandler(svc kvv1connect.KVStoreServiceHandler, limits Limits, logger *slog.Logger, opts ...HandlerOption) http.Handler {
	limits = limits.withDefaults()
	var o handlerOptions
	for _, opt := range opts {
		opt(&o)
	}
	cacheControl := cacheRevalidate
	if o.privateResponses {
		cacheControl = cachePrivateRevalidate
	}
	chain := append([]connect.ServerInterceptor{conditionalGets(cacheControl)}, o.interceptors...)
	chain = append(chain, recoverPanics(logger), logRPCs(logger, o.rpcLogLevel), o.kvAccess, boundDeadlines(limits), cutOffBodyReads, bindBudget, nameInvalidUTF8)
	api := connect.NewServer(nonNil(chain)...)
	kvv1connect.RegisterKVStoreServiceHandler(api, svc)

	mux := http.NewServeMux()
	valueMessage := int(limits.MaxValueBytes) + envelopeSlack
	connecthttp.Mount(mux, api,
		// WithCodecs replaces the defaults: both codecs are listed.
		connecthttp.WithCodecs(binaryCodec{connectproto.NewBinaryCodec()}, jsonCodec{connectproto.NewJSONCodec()}),
		connecthttp.WithReadMaxBytes(defaultReadMaxBytes),
		connecthttp.WithSendMaxBytes(valueMessage),
		connecthttp.WithCompressMinBytes(compressMinBytes),
		connecthttp.WithConditionalOptions(func(spec connect.Spec) []connecthttp.Option {
			opts := []connecthttp.Option{connecthttp.WithReadMaxBytes(readMaxBytes(spec.Procedure, valueMessage))}
			switch spec.Procedure {
			case kvv1connect.KVStoreServiceGetItemProcedure, kvv1connect.KVStoreServiceGetItemsProcedure:
				// Values are opaque bytes, often already compressed; gzip
				// on them costs more CPU than the whole hop and rarely
				// saves bytes. Callers still may send compressed requests.
				opts = append(opts, connecthttp.WithCompressMinBytes(math.MaxInt))
			}
			return opts
		}),
	)

	// Reflection lives on its own server: it is bidirectional streaming
	// over HTTP/2 only, and its chatter does not belong in the RPC log.
	// Health checks share it, for the same reason.
	infra := connect.NewServer(nonNil([]connect.ServerInterceptor{o.infraAccess})...)
	registerHealth(infra, kvv1connect.KVStoreServiceName)
	grpcreflect.Register(infra, grpcreflect.WithNamer(grpcreflect.NamerFunc(ServiceNames)))
	connecthttp.Mount(mux, infra, connecthttp.WithReadMaxBytes(defaultReadMaxBytes))
	// A message declaring more than its procedure accepts is refused
	// before it is charged to the memory budget.
	return noStoreGETs(refuseOversizeMessages(chargeRequests(limits.Budget, limits, lendValueBuffers(mux)), valueMessage))
}

// logRPCs writes one line per RPC whose level is at least minLevel:
// procedure, code and duration, and for failures the cause kept from the
// caller, and the caller's name when auth knows it. Never values, metadata
// or tokens: messages are not looked at. The line's level is
// [RPCLogLevelOf] its outcome.
func logRPCs(logger *slog.Logger, minLevel slog.Level) connect.ServerInterceptor {
	return func(next connect.ServerFunc) connect.ServerFunc {
		return func(ctx context.Context, spec connect.Spec, stream connect.ServerStream) error {
			start := time.Now()
			err := next(ctx, spec, stream)
			level := RPCLogLevelOf(err)
			if level < minLevel {
				return err
			}
			attrs := []slog.Attr{
				slog.String("procedure", spec.Procedure),
				slog.String("code", codeName(err)),
				slog.Duration("duration", time.Since(start)),
			}
			if name := auth.CallerName(ctx); name != "" {
				attrs = append(attrs, slog.String("caller", name))
			}
			if err != nil {
				if cause := errors.Unwrap(err); cause != nil {
					attrs = append(attrs, slog.String("cause", cause.Error()))
				}
			}
			logger.LogAttrs(ctx, level, "rpc", attrs...)
			return err
		}
	}
}

func codeName(err error) string {
	if err == nil {
		return "ok"
	}
	return connect.CodeOf(err).String()
}

// RPCLogLevelOf is the level of an RPC's log line given its outcome:
// Error for failures that point at kvgate itself (internal, unknown, data
// loss: a bug, or an upstream answer it could not understand), Warn for an
// upstream that is unavailable, Info for successes and for failures the
// caller's request caused.
func RPCLogLevelOf(err error) slog.Level {
	if err == nil {
		return slog.LevelInfo
	}
	switch connect.CodeOf(err) {
	case connect.CodeInternal, connect.CodeUnknown, connect.CodeDataLoss:
		return slog.LevelError
	case connect.CodeUnavailable:
		return slog.LevelWarn
	}
	return slog.LevelInfo
}

// boundDeadlines applies DefaultTimeout to unary RPCs that came without a
// deadline, MaxTimeout to streams that came without one, and caps every
// deadline at MaxTimeout. The handlers pass the context to the upstream
// calls, so the deadline bounds those too, retries included.
func boundDeadlines(limits Limits) connect.ServerInterceptor {
	return func(next connect.ServerFunc) connect.ServerFunc {
		return func(ctx context.Context, spec connect.Spec, stream connect.ServerStream) error {
			limit := limits.MaxTimeout
			deadline, has := ctx.Deadline()
			if !has && spec.StreamType == connect.StreamTypeUnary {
				limit = limits.DefaultTimeout
			}
			if !has || time.Until(deadline) > limit {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, limit)
				defer cancel()
			}
			return next(ctx, spec, stream)
		}
	}
}

// recoverPanics turns a handler panic into an Internal error, so one bad
// request cannot take the process down.
func recoverPanics(logger *slog.Logger) connect.ServerInterceptor {
	return func(next connect.ServerFunc) connect.ServerFunc {
		return func(ctx context.Context, spec connect.Spec, stream connect.ServerStream) (err error) {
			defer func() {
				if r := recover(); r != nil {
					logger.ErrorContext(ctx, "handler panic", "procedure", spec.Procedure, "panic", fmt.Sprint(r))
					err = connect.NewError(connect.CodeInternal, "internal error")
				}
			}()
			return next(ctx, spec, stream)
		}
	}
}
