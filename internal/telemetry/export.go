package telemetry

import (
	"context"
	"strings"

	"go.opentelemetry.io/contrib/exporters/autoexport"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// Exports says which signals go out over OTLP (or another exporter the
// OTEL_*_EXPORTER variables name).
type Exports struct {
	Traces, Metrics bool
}

// ExportFromEnv reads the standard OpenTelemetry variables through getenv:
// a signal is exported when OTEL_<SIGNAL>_EXPORTER names an exporter other
// than "none", or when OTEL_EXPORTER_OTLP_ENDPOINT or
// OTEL_EXPORTER_OTLP_<SIGNAL>_ENDPOINT is set; OTEL_SDK_DISABLED=true
// exports nothing. Nothing set, nothing exported: the SDK's own default
// would send OTLP to localhost:4318 whether or not anything listens there.
func ExportFromEnv(getenv func(string) string) Exports {
	if getenv == nil || strings.EqualFold(getenv("OTEL_SDK_DISABLED"), "true") {
		return Exports{}
	}
	wanted := func(signal string) bool {
		if exp := strings.TrimSpace(getenv("OTEL_" + signal + "_EXPORTER")); exp != "" {
			return exp != "none"
		}
		return getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || getenv("OTEL_EXPORTER_OTLP_"+signal+"_ENDPOINT") != ""
	}
	return Exports{Traces: wanted("TRACES"), Metrics: wanted("METRICS")}
}

// newResource describes this process: service.name kvgate unless
// OTEL_SERVICE_NAME or OTEL_RESOURCE_ATTRIBUTES say otherwise.
func newResource(ctx context.Context) (*resource.Resource, error) {
	return resource.New(ctx,
		resource.WithAttributes(attribute.String("service.name", "kvgate")),
		resource.WithTelemetrySDK(),
		resource.WithFromEnv(),
	)
}

// newOTLPMetricReader is the reader OTEL_METRICS_EXPORTER describes
// (OTLP over the protocol OTEL_EXPORTER_OTLP_PROTOCOL names by default),
// pushing on OTEL_METRIC_EXPORT_INTERVAL.
func newOTLPMetricReader(ctx context.Context) (sdkmetric.Reader, error) {
	return autoexport.NewMetricReader(ctx)
}

// newOTLPTracerProvider batches spans to the exporter OTEL_TRACES_EXPORTER
// describes, sampled as OTEL_TRACES_SAMPLER says (parent-based, always on,
// by default).
func newOTLPTracerProvider(ctx context.Context, res *resource.Resource) (*sdktrace.TracerProvider, error) {
	exp, err := autoexport.NewSpanExporter(ctx)
	if err != nil {
		return nil, err
	}
	return sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res)), nil
}
