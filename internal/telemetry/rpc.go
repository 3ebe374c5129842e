package telemetry

import (
	"context"
	"net/http"
	"strconv"

	"connectrpc.com/connect/v2"
	"connectrpc.com/otelconnect"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/kvgate/kvgate/internal/httpserver"
	"github.com/kvgate/kvgate/upstream"
)

// Interceptors are the RPC-aware part of telemetry, to put at the outside
// of the service's interceptor chain: otelconnect's span and
// rpc.server.call.duration for every RPC, then one that notes the RPC's
// code for [Telemetry.Metrics] and its request id on the span.
func (t *Telemetry) Interceptors() ([]connect.ServerInterceptor, error) {
	otel, err := otelconnect.NewServerInterceptor(
		otelconnect.WithTracerProvider(t.tracer),
		otelconnect.WithMeterProvider(t.meter),
		otelconnect.WithPropagator(propagation.TraceContext{}),
	)
	if err != nil {
		return nil, err
	}
	return []connect.ServerInterceptor{otel, noteOutcome}, nil
}

// noteOutcome records the RPC's code where [Telemetry.Metrics] reads it,
// and tags the RPC's span with its request id.
func noteOutcome(next connect.ServerFunc) connect.ServerFunc {
	return func(ctx context.Context, spec connect.Spec, stream connect.ServerStream) error {
		if span := trace.SpanFromContext(ctx); span.IsRecording() {
			if id := upstream.RequestID(ctx); id != "" {
				span.SetAttributes(attribute.String("kvgate.request_id", id))
			}
		}
		err := next(ctx, spec, stream)
		if o, ok := ctx.Value(outcomeKey{}).(*outcome); ok {
			o.code = codeLabel(err)
		}
		return err
	}
}

type outcomeKey struct{}

// outcome is the code of an RPC that reached the Connect surface.
type outcome struct{ code string }

func codeLabel(err error) string {
	if err == nil {
		return "ok"
	}
	return connect.CodeOf(err).String()
}

// Metrics is the HTTP middleware that counts RPCs by procedure and code
// (kvgate.rpc.requests) and keeps the RPCs open (kvgate.rpc.in_flight).
// It sits outside CORS and authentication, so that it counts what they
// refuse too: for those the code is read from the response (its
// Grpc-Status, else its HTTP status). Procedures kvgate does not serve
// count as "other", so that callers cannot grow the label set.
func (t *Telemetry) Metrics(next http.Handler, services ...string) http.Handler {
	known := knownProcedures(services)
	inst := &t.inst
	inFlightAttrs := newAttrSets(func(procedure string) []attribute.KeyValue {
		return []attribute.KeyValue{attribute.String("procedure", procedure)}
	})
	requestAttrs := newAttrSets(func(k [2]string) []attribute.KeyValue {
		return []attribute.KeyValue{attribute.String("procedure", k[0]), attribute.String("code", k[1])}
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodOptions {
			// A CORS preflight asks about an RPC; it is not one.
			next.ServeHTTP(w, r)
			return
		}
		procedure := r.URL.Path
		if !known[procedure] {
			procedure = "other"
		}
		attr := inFlightAttrs.get(procedure)
		ctx := r.Context()
		inst.rpcInFlight.Add(ctx, 1, attr)
		defer inst.rpcInFlight.Add(ctx, -1, attr)
		o := &outcome{}
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, httpserver.SetValue(r, outcomeKey{}, o))
		code := o.code
		if code == "" {
			code = refusalCode(w.Header(), sw.status)
		}
		inst.rpcRequests.Add(ctx, 1, requestAttrs.get([2]string{procedure, code}))
	})
}

// knownProcedures lists the procedures of services, as the protobuf
// registry describes them.
func knownProcedures(services []string) map[string]bool {
	known := make(map[string]bool)
	for _, name := range services {
		d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(name))
		if err != nil {
			continue
		}
		if sd, ok := d.(protoreflect.ServiceDescriptor); ok {
			for i := range sd.Methods().Len() {
				known["/"+name+"/"+string(sd.Methods().Get(i).Name())] = true
			}
		}
	}
	return known
}

// refusalCode is the code of a response the Connect surface did not
// write: a gRPC status when the response carries one, else the code whose
// Connect HTTP status it has; "ok" for successes such as preflights.
func refusalCode(h http.Header, status int) string {
	for _, key := range []string{"Grpc-Status", http.TrailerPrefix + "Grpc-Status"} {
		if v := h.Get(key); v != "" {
			if n, err := strconv.Atoi(v); err == nil {
				if n == 0 {
					return "ok"
				}
				return connect.Code(n).String()
			}
		}
	}
	switch {
	case status == 0 || (status >= 200 && status < 300):
		return "ok"
	}
	if code, ok := httpStatusCodes[status]; ok {
		return code.String()
	}
	return connect.CodeUnknown.String()
}

// httpStatusCodes inverts the Connect protocol's code-to-status table.
var httpStatusCodes = map[int]connect.Code{
	http.StatusBadRequest:                  connect.CodeInvalidArgument,
	http.StatusUnauthorized:                connect.CodeUnauthenticated,
	http.StatusForbidden:                   connect.CodePermissionDenied,
	http.StatusNotFound:                    connect.CodeNotFound,
	http.StatusMethodNotAllowed:            connect.CodeUnimplemented,
	http.StatusConflict:                    connect.CodeAborted,
	http.StatusPreconditionFailed:          connect.CodeFailedPrecondition,
	http.StatusRequestEntityTooLarge:       connect.CodeResourceExhausted,
	http.StatusUnsupportedMediaType:        connect.CodeInternal,
	http.StatusTooManyRequests:             connect.CodeResourceExhausted,
	http.StatusRequestHeaderFieldsTooLarge: connect.CodeResourceExhausted,
	499:                                    connect.CodeCanceled,
	http.StatusInternalServerError:         connect.CodeInternal,
	http.StatusNotImplemented:              connect.CodeUnimplemented,
	http.StatusServiceUnavailable:          connect.CodeUnavailable,
	http.StatusGatewayTimeout:              connect.CodeDeadlineExceeded,
}

// statusWriter notes the status a response was sent with. It passes
// flushes on and unwraps, so that streams and http.ResponseController
// work through it.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(p)
}

func (w *statusWriter) Flush() {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
