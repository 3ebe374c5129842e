// Package telemetry is what operators see of kvgate: OpenTelemetry traces
// and metrics of every RPC (through otelconnect) and of every upstream
// attempt (through [upstream.Observer]), a Prometheus rendering of those
// metrics, request ids on every RPC and its log lines and upstream
// requests, and the admin endpoints /metrics, /healthz and /readyz.
//
// Nothing here touches OpenTelemetry's global state: providers are built
// per [Telemetry] and handed to what needs them, so that tests can run in
// parallel, each with its own.
package telemetry

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// The defaults of the readiness probe.
const (
	// DefaultReadyProbeInterval is how often the upstream is probed.
	DefaultReadyProbeInterval = 10 * time.Second
	// DefaultReadyProbeStore is the store id the probe lists keys of. It
	// need not exist: Fastly answering 404 proves it answers.
	DefaultReadyProbeStore = "kvgate-readiness-probe"
)

// Config configures what operators see.
type Config struct {
	// AdminListen is the admin listener's address (/metrics, /healthz,
	// /readyz); empty serves none. It must not be the public address.
	AdminListen string
	// AdminPprof adds Go's profiling endpoints (/debug/pprof/) to the
	// admin listener, to find where the process spends CPU and memory
	// under load. Off by default: a profile shows call stacks and can
	// cost seconds of CPU.
	AdminPprof bool
	// RPCLogLevel keeps the RPC log lines at this level or above
	// (gateway.RPCLogLevelOf says which level a line has);
	// gateway.RPCLogOff writes none. The zero value, Info, logs every RPC.
	RPCLogLevel slog.Level
	// ReadyProbeInterval is how often /readyz's probe calls the upstream;
	// DefaultReadyProbeInterval when zero.
	ReadyProbeInterval time.Duration
	// ReadyProbeStore is the store id the probe lists one key of;
	// DefaultReadyProbeStore when empty.
	ReadyProbeStore string
	// Getenv reads the standard OTEL_* variables that decide OTLP export
	// (see [ExportFromEnv]); nil exports nothing.
	Getenv func(string) string
	// TracerProvider, when set, is used instead of the one the OTEL_*
	// variables describe: tests hand in an in-memory one.
	TracerProvider trace.TracerProvider
}

func (c Config) withDefaults() Config {
	if c.ReadyProbeInterval <= 0 {
		c.ReadyProbeInterval = DefaultReadyProbeInterval
	}
	if c.ReadyProbeStore == "" {
		c.ReadyProbeStore = DefaultReadyProbeStore
	}
	return c
}

// Telemetry holds one kvgate's providers, instruments and readiness.
type Telemetry struct {
	cfg    Config
	logger *slog.Logger
	tracer trace.TracerProvider
	// tracing is set when spans are recorded (exported or handed in).
	tracing  bool
	meter    *sdkmetric.MeterProvider
	registry *prometheus.Registry
	inst     instruments
	ready    readiness
	// shutdown flushes and stops the exporters, last first.
	shutdown []func(context.Context) error
}

// meterName is the instrumentation scope of kvgate's own instruments.
const meterName = "github.com/kvgate/kvgate"

// New builds the providers cfg describes: metrics always go to a
// Prometheus registry of their own (served on /metrics) and, when the
// OTEL_* variables ask for it, over OTLP; traces are recorded only when
// exported (or handed in), and are a no-op otherwise.
func New(ctx context.Context, cfg Config, logger *slog.Logger) (*Telemetry, error) {
	cfg = cfg.withDefaults()
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	t := &Telemetry{cfg: cfg, logger: logger, registry: prometheus.NewRegistry()}
	promReader, err := otelprom.New(otelprom.WithRegisterer(t.registry), otelprom.WithoutScopeInfo())
	if err != nil {
		return nil, err
	}
	exports := ExportFromEnv(cfg.Getenv)
	res, err := newResource(ctx)
	if err != nil {
		return nil, err
	}
	meterOpts := []sdkmetric.Option{sdkmetric.WithReader(promReader), sdkmetric.WithResource(res)}
	if exports.Metrics {
		reader, err := newOTLPMetricReader(ctx)
		if err != nil {
			return nil, err
		}
		meterOpts = append(meterOpts, sdkmetric.WithReader(reader))
	}
	t.meter = sdkmetric.NewMeterProvider(meterOpts...)
	t.shutdown = append(t.shutdown, t.meter.Shutdown)

	t.tracing = cfg.TracerProvider != nil || exports.Traces
	switch {
	case cfg.TracerProvider != nil:
		t.tracer = cfg.TracerProvider
	case exports.Traces:
		tp, err := newOTLPTracerProvider(ctx, res)
		if err != nil {
			_ = t.Shutdown(ctx)
			return nil, err
		}
		t.tracer = tp
		t.shutdown = append(t.shutdown, tp.Shutdown)
	default:
		t.tracer = noop.NewTracerProvider()
	}
	if t.inst, err = newInstruments(t.meter.Meter(meterName)); err != nil {
		_ = t.Shutdown(ctx)
		return nil, err
	}
	if exports.Traces || exports.Metrics {
		logger.Info("exporting telemetry over OTLP", "traces", exports.Traces, "metrics", exports.Metrics)
	}
	return t, nil
}

// Config is the configuration t was built with, defaults filled.
func (t *Telemetry) Config() Config { return t.cfg }

// TracerProvider is where t's spans go.
func (t *Telemetry) TracerProvider() trace.TracerProvider { return t.tracer }

// MeterProvider is where t's metrics go.
func (t *Telemetry) MeterProvider() metric.MeterProvider { return t.meter }

// Shutdown flushes what is left to export and stops the exporters.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	var errs []error
	for i := len(t.shutdown) - 1; i >= 0; i-- {
		errs = append(errs, t.shutdown[i](ctx))
	}
	t.shutdown = nil
	return errors.Join(errs...)
}
