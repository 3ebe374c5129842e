package telemetry

import (
	"net/http"
	"testing"
)

func TestTraceIDOf(t *testing.T) {
	t.Parallel()
	cases := []struct {
		in, want string
		ok       bool
	}{
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "4bf92f3577b34da6a3ce929d0e0e4736", true},
		{"00-00000000000000000000000000000000-00f067aa0ba902b7-01", "", false},
		{"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", "", false},
		{"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "", false},
		{"00-zzf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "", false},
		{"garbage", "", false},
		{"", "", false},
	}
	for _, tc := range cases {
		if got, ok := traceIDOf(tc.in); got != tc.want || ok != tc.ok {
			t.Errorf("traceIDOf(%q) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestRefusalCode(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		header http.Header
		status int
		want   string
	}{
		{"connect 401", http.Header{}, http.StatusUnauthorized, "unauthenticated"},
		{"connect 403", http.Header{}, http.StatusForbidden, "permission_denied"},
		{"grpc trailers-only", http.Header{"Grpc-Status": {"16"}}, http.StatusOK, "unauthenticated"},
		{"grpc trailer", http.Header{"Trailer:Grpc-Status": {"7"}}, http.StatusOK, "permission_denied"},
		{"preflight", http.Header{}, http.StatusNoContent, "ok"},
		{"teapot", http.Header{}, http.StatusTeapot, "unknown"},
	}
	for _, tc := range cases {
		if got := refusalCode(tc.header, tc.status); got != tc.want {
			t.Errorf("%s: refusalCode = %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestExportFromEnv(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		env  map[string]string
		want Exports
	}{
		{"nothing set", nil, Exports{}},
		{"endpoint", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, Exports{Traces: true, Metrics: true}},
		{"traces endpoint", map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318"}, Exports{Traces: true}},
		{"exporter names", map[string]string{"OTEL_METRICS_EXPORTER": "otlp", "OTEL_TRACES_EXPORTER": "none"}, Exports{Metrics: true}},
		{"none beats endpoint", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c", "OTEL_TRACES_EXPORTER": "none"}, Exports{Metrics: true}},
		{"sdk disabled", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c", "OTEL_SDK_DISABLED": "true"}, Exports{}},
	}
	for _, tc := range cases {
		if got := ExportFromEnv(func(k string) string { return tc.env[k] }); got != tc.want {
			t.Errorf("%s: ExportFromEnv = %+v, want %+v", tc.name, got, tc.want)
		}
	}
	if got := ExportFromEnv(nil); got != (Exports{}) {
		t.Errorf("ExportFromEnv(nil) = %+v, want nothing", got)
	}
}
