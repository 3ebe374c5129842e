package app

import (
	"flag"
	"fmt"
	"log/slog"
	"strings"

	"github.com/kvgate/kvgate/internal/gateway"
	"github.com/kvgate/kvgate/internal/telemetry"
)

// registerObservabilityFlags registers what operators see: the admin
// listener, the RPC log level and the readiness probe. OTLP export is
// configured by the standard OTEL_* variables alone.
func registerObservabilityFlags(fs *flag.FlagSet, env *envReader, cfg *Config) {
	t := &cfg.Telemetry
	fs.StringVar(&t.AdminListen, "admin-listen", env.string("KVGATE_ADMIN_LISTEN", ""),
		"address of the admin endpoints /metrics, /healthz and /readyz, e.g. 127.0.0.1:9090; empty serves none; never the -listen address (env KVGATE_ADMIN_LISTEN)")
	fs.BoolVar(&t.AdminPprof, "admin-pprof", env.bool("KVGATE_ADMIN_PPROF", false),
		"also serve Go's profiling endpoints /debug/pprof/ on the admin listener (env KVGATE_ADMIN_PPROF)")
	level := env.string("KVGATE_RPC_LOG_LEVEL", "info")
	lvl, err := ParseRPCLogLevel(level)
	if err != nil {
		env.errs = append(env.errs, fmt.Errorf("environment variable KVGATE_RPC_LOG_LEVEL=%q: %w", level, err))
	}
	t.RPCLogLevel = lvl
	fs.Func("rpc-log-level", "which RPCs get a log line: info (every RPC), warn (failures that point at the upstream or kvgate), "+
		"error (failures that point at kvgate), off (default "+level+") (env KVGATE_RPC_LOG_LEVEL)", func(v string) error {
		lvl, err := ParseRPCLogLevel(v)
		t.RPCLogLevel = lvl
		return err
	})
	fs.DurationVar(&t.ReadyProbeInterval, "ready-probe-interval",
		env.duration("KVGATE_READY_PROBE_INTERVAL", telemetry.DefaultReadyProbeInterval),
		"how often /readyz's probe lists one key upstream, with the admin listener on (env KVGATE_READY_PROBE_INTERVAL)")
	fs.StringVar(&t.ReadyProbeStore, "ready-probe-store", env.string("KVGATE_READY_PROBE_STORE", telemetry.DefaultReadyProbeStore),
		"store id the readiness probe lists; it need not exist, a 404 proves Fastly answers (env KVGATE_READY_PROBE_STORE)")
}

// ParseRPCLogLevel reads an -rpc-log-level value: info, warn, error or off.
func ParseRPCLogLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case "info":
		return slog.LevelInfo, nil
	case "warn":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	case "off":
		return gateway.RPCLogOff, nil
	}
	return slog.LevelInfo, fmt.Errorf("RPC log level must be info, warn, error or off, not %q", s)
}
