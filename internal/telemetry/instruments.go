package telemetry

import (
	"context"
	"net/http"
	"strconv"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/kvgate/kvgate/upstream"
)

// instruments are kvgate's own metrics, beside otelconnect's
// rpc.server.call.duration. The README lists them with their Prometheus
// names.
type instruments struct {
	meter            metric.Meter
	rpcRequests      metric.Int64Counter
	rpcInFlight      metric.Int64UpDownCounter
	upstreamRequests metric.Int64Counter
	upstreamRetries  metric.Int64Counter
	upstreamDuration metric.Float64Histogram
}

func newInstruments(m metric.Meter) (instruments, error) {
	inst := instruments{meter: m}
	var errs [5]error
	inst.rpcRequests, errs[0] = m.Int64Counter("kvgate.rpc.requests", metric.WithUnit("{request}"),
		metric.WithDescription("RPCs answered, by procedure and code, those refused before reaching the service included"))
	inst.rpcInFlight, errs[1] = m.Int64UpDownCounter("kvgate.rpc.in_flight", metric.WithUnit("{request}"),
		metric.WithDescription("RPCs open now, by procedure: each one HTTP stream; the streaming procedures' are the long-lived streams"))
	inst.upstreamRequests, errs[2] = m.Int64Counter("kvgate.upstream.requests", metric.WithUnit("{request}"),
		metric.WithDescription("upstream attempts, by call, method and HTTP status (none: no answer; not_sent: refused while Fastly's write budget was spent)"))
	inst.upstreamRetries, errs[3] = m.Int64Counter("kvgate.upstream.retries", metric.WithUnit("{request}"),
		metric.WithDescription("upstream attempts that were retries, by call"))
	inst.upstreamDuration, errs[4] = m.Float64Histogram("kvgate.upstream.request.duration", metric.WithUnit("s"),
		metric.WithDescription("time of one upstream attempt, answer read, by call"),
		metric.WithExplicitBucketBoundaries(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
	for _, err := range errs {
		if err != nil {
			return inst, err
		}
	}
	return inst, nil
}

// Gauges are the readings ObserveGauges reports on every collection. Any
// may be nil.
type Gauges struct {
	// BatchBytes is the batch bytes buffered (see
	// service.Service.BatchBytesInFlight).
	BatchBytes func() int64
	// WriteBudget is the write budget left (see
	// upstream.Client.WriteBudgetRemaining: the lower of Fastly's and
	// kvgate's own), reported only while known.
	WriteBudget func() (int64, bool)
	// QueuedWrites is the PutItem overwrites waiting for the batch PUT
	// that will carry them (see service.Service.QueuedWrites).
	QueuedWrites func() int64
	// WatchPollers is the WatchItems pollers running (see
	// service.Service.WatchPollers).
	WatchPollers func() int64
}

// ObserveGauges reports g's readings, and whether kvgate is ready, on
// every collection.
func (t *Telemetry) ObserveGauges(g Gauges) error {
	m := t.inst.meter
	for _, gauge := range []struct {
		name, unit, description string
		read                    func() int64
	}{
		{"kvgate.batch.buffered", "By", "bytes of batch PUT bodies held while being sent upstream", g.BatchBytes},
		{"kvgate.group_commit.queued", "{write}", "PutItem overwrites waiting for the batch PUT that will carry them (group commit)", g.QueuedWrites},
		{"kvgate.watch.pollers", "{poller}", "WatchItems pollers running, each shared by every watch of its keys or prefix", g.WatchPollers},
	} {
		if gauge.read == nil {
			continue
		}
		read := gauge.read
		if _, err := m.Int64ObservableGauge(gauge.name, metric.WithUnit(gauge.unit), metric.WithDescription(gauge.description),
			metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
				o.Observe(read())
				return nil
			})); err != nil {
			return err
		}
	}
	if writeBudget := g.WriteBudget; writeBudget != nil {
		if _, err := m.Int64ObservableGauge("kvgate.upstream.write_budget.remaining", metric.WithUnit("{request}"),
			metric.WithDescription("write requests left: the lower of Fastly's budget as its last write response said (Fastly-RateLimit-Remaining) "+
				"and kvgate's own -write-budget over the rolling hour; absent while neither is known"),
			metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
				if n, ok := writeBudget(); ok {
					o.Observe(n)
				}
				return nil
			})); err != nil {
			return err
		}
	}
	_, err := m.Int64ObservableGauge("kvgate.ready",
		metric.WithDescription("1 while /readyz answers ready, else 0"),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			if ok, _ := t.ready.state(); ok {
				o.Observe(1)
			} else {
				o.Observe(0)
			}
			return nil
		}))
	return err
}

// UpstreamObserver is the [upstream.Observer] that records every upstream
// attempt as a client span (when traces are recorded) and in the upstream
// metrics. It labels by call (get_item, put_item, ...) and never by URL,
// so that keys and store ids stay out of metrics and traces and the
// labels stay few.
func (t *Telemetry) UpstreamObserver() upstream.Observer {
	return &upstreamObserver{
		tracer:  t.tracer.Tracer(meterName),
		tracing: t.tracing,
		inst:    &t.inst,
		requestAttrs: newAttrSets(func(k requestLabels) []attribute.KeyValue {
			return []attribute.KeyValue{attribute.String("op", opLabel(k.op)),
				attribute.String("method", k.method), attribute.String("status", k.status)}
		}),
		opAttrs: newAttrSets(func(op upstream.Op) []attribute.KeyValue {
			return []attribute.KeyValue{attribute.String("op", opLabel(op))}
		}),
	}
}

type upstreamObserver struct {
	tracer trace.Tracer
	// tracing is set when spans are recorded; without, none are started.
	tracing      bool
	inst         *instruments
	requestAttrs *attrSets[requestLabels]
	opAttrs      *attrSets[upstream.Op]
}

// requestLabels are the labels of kvgate.upstream.requests.
type requestLabels struct {
	op             upstream.Op
	method, status string
}

func (o *upstreamObserver) StartAttempt(ctx context.Context, a upstream.Attempt) (context.Context, func(upstream.AttemptOutcome)) {
	var span trace.Span
	if o.tracing {
		op := opLabel(a.Op)
		ctx, span = o.tracer.Start(ctx, "upstream "+op, trace.WithSpanKind(trace.SpanKindClient),
			trace.WithAttributes(
				attribute.String("kvgate.upstream.op", op),
				attribute.String("http.request.method", a.Method),
				attribute.Int("kvgate.upstream.attempt", a.Number),
			))
	}
	return ctx, func(out upstream.AttemptOutcome) {
		status := statusLabel(out)
		if span != nil {
			endSpan(span, out, status)
		}
		o.inst.upstreamRequests.Add(ctx, 1, o.requestAttrs.get(requestLabels{a.Op, a.Method, status}))
		opAttr := o.opAttrs.get(a.Op)
		o.inst.upstreamDuration.Record(ctx, out.Duration.Seconds(), opAttr)
		if a.Number > 1 {
			o.inst.upstreamRetries.Add(ctx, 1, opAttr)
		}
	}
}

// endSpan ends an attempt's span with its outcome.
func endSpan(span trace.Span, out upstream.AttemptOutcome, status string) {
	if out.Status != 0 {
		span.SetAttributes(attribute.Int("http.response.status_code", out.Status))
	}
	if out.Kind != upstream.KindNone {
		span.SetAttributes(attribute.String("kvgate.upstream.kind", out.Kind.String()))
	}
	if out.Status == 0 || out.Status >= 500 {
		span.SetStatus(codes.Error, status)
	}
	span.End()
}

// opLabel turns an [upstream.Op] ("get item") into a label value
// ("get_item").
func opLabel(op upstream.Op) string { return strings.ReplaceAll(string(op), " ", "_") }

// statusLabel is an attempt's status label: its HTTP status, not_sent, or
// none when no answer came.
func statusLabel(out upstream.AttemptOutcome) string {
	switch {
	case out.NotSent:
		return "not_sent"
	case out.Status == 0:
		return "none"
	case out.Status == http.StatusOK:
		return "200" // the common case, without formatting
	}
	return strconv.Itoa(out.Status)
}
