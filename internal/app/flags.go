package app

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"time"

	"github.com/kvgate/kvgate/internal/gateway"
	"github.com/kvgate/kvgate/upstream"
	"github.com/kvgate/kvgate/upstream/localstore"
)

// Flags registers kvgate's flags on fs, each defaulting to its environment
// variable when set, and returns the config they fill and the log format.
// A malformed environment variable is an error, not silently ignored.
func Flags(fs *flag.FlagSet, getenv func(string) string) (*Config, *string, error) {
	var errs []error
	envInt := func(name string, def int64) int64 {
		v, err := parseEnv(getenv, name, def, func(s string) (int64, error) { return strconv.ParseInt(s, 10, 64) })
		errs = append(errs, err)
		return v
	}
	envDuration := func(name string, def time.Duration) time.Duration {
		v, err := parseEnv(getenv, name, def, time.ParseDuration)
		errs = append(errs, err)
		return v
	}
	cfg := &Config{
		FastlyToken: getenv("FASTLY_API_TOKEN"),
		FastlyURL:   envOr(getenv, "FASTLY_API_URL", upstream.DefaultBaseURL),
		Server:      gateway.DefaultServerConfig(),
	}
	fs.StringVar(&cfg.Listen, "listen", envOr(getenv, "KVGATE_LISTEN", "127.0.0.1:8080"),
		"address to serve on (env KVGATE_LISTEN)")
	fs.StringVar(&cfg.DataDir, "data", envOr(getenv, "KVGATE_DATA", "./data"),
		"local store data directory, used when FASTLY_API_TOKEN is unset; empty keeps data in memory (env KVGATE_DATA)")
	fs.Int64Var(&cfg.MaxValueBytes, "max-value-bytes", envInt("KVGATE_MAX_VALUE_BYTES", upstream.DefaultMaxValueBytes),
		"largest item value in bytes, up to Fastly's 104857600 (env KVGATE_MAX_VALUE_BYTES)")
	fs.DurationVar(&cfg.Server.ShutdownTimeout, "shutdown-timeout", envDuration("KVGATE_SHUTDOWN_TIMEOUT", cfg.Server.ShutdownTimeout),
		"grace period for in-flight RPCs on SIGINT/SIGTERM (env KVGATE_SHUTDOWN_TIMEOUT)")
	fs.IntVar(&cfg.Batch.MaxLines, "batch-lines", int(envInt("KVGATE_BATCH_LINES", 1000)),
		"most items in one batch PUT (env KVGATE_BATCH_LINES)")
	fs.IntVar(&cfg.Batch.MaxBytes, "batch-bytes", int(envInt("KVGATE_BATCH_BYTES", 8<<20)),
		"most bytes in one batch PUT body, base64 values included (env KVGATE_BATCH_BYTES)")
	fs.IntVar(&cfg.Batch.Concurrency, "batch-concurrency", int(envInt("KVGATE_BATCH_CONCURRENCY", 4)),
		"PUTs one batch write keeps in flight (env KVGATE_BATCH_CONCURRENCY)")
	fs.DurationVar(&cfg.DefaultTimeout, "default-timeout", envDuration("KVGATE_DEFAULT_TIMEOUT", 30*time.Second),
		"deadline of unary RPCs whose caller sets none (env KVGATE_DEFAULT_TIMEOUT)")
	fs.DurationVar(&cfg.MaxTimeout, "max-timeout", envDuration("KVGATE_MAX_TIMEOUT", time.Hour),
		"cap on every RPC's deadline, and the deadline of streams whose caller sets none (env KVGATE_MAX_TIMEOUT)")
	fs.IntVar(&cfg.Retry.MaxAttempts, "retry-attempts", int(envInt("KVGATE_RETRY_ATTEMPTS", 4)),
		"tries of an upstream call that is safe to retry, the first included; 1 disables retries (env KVGATE_RETRY_ATTEMPTS)")
	fs.DurationVar(&cfg.Retry.BaseDelay, "retry-base", envDuration("KVGATE_RETRY_BASE", 100*time.Millisecond),
		"first retry backoff; doubles per attempt, with jitter (env KVGATE_RETRY_BASE)")
	fs.DurationVar(&cfg.Retry.MaxDelay, "retry-max", envDuration("KVGATE_RETRY_MAX", 5*time.Second),
		"cap on one backoff and on a Retry-After kvgate waits out itself (env KVGATE_RETRY_MAX)")
	if spec := getenv("KVGATE_STORE_FAULTS"); spec != "" {
		f, err := localstore.ParseFaults(spec)
		errs = append(errs, err)
		cfg.StoreFaults = f
	}
	fs.Func("store-faults", "trouble the local store injects, e.g. latency=20ms,jitter=5ms,429=0.05,503=0.05,drop=0.01,seed=1 "+
		"(keys: latency jitter 429 500 503 drop drop-before drop-mid-body slow-body retry-after kinds seed) (env KVGATE_STORE_FAULTS)",
		func(spec string) error {
			f, err := localstore.ParseFaults(spec)
			if err != nil {
				return err
			}
			cfg.StoreFaults = f
			return nil
		})
	fs.Func("store-latency", "latency the local store adds to every request, to see kvgate against a distant upstream; "+
		"short for -store-faults latency=D (env KVGATE_STORE_LATENCY)", func(v string) error {
		d, err := time.ParseDuration(v)
		if err != nil {
			return err
		}
		cfg.StoreFaults.Latency = d
		return nil
	})
	if v := getenv("KVGATE_STORE_LATENCY"); v != "" {
		d, err := time.ParseDuration(v)
		errs = append(errs, err)
		cfg.StoreFaults.Latency = d
	}
	logFormat := fs.String("log-format", envOr(getenv, "KVGATE_LOG_FORMAT", "text"), "log format: text or json (env KVGATE_LOG_FORMAT)")
	return cfg, logFormat, errors.Join(errs...)
}

// NewLogger returns a slog logger writing format ("text" or "json") to
// stderr.
func NewLogger(format string) (*slog.Logger, error) {
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, nil)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, nil)), nil
	}
	return nil, fmt.Errorf("log format must be text or json, not %q", format)
}

func envOr(getenv func(string) string, name, def string) string {
	if v := getenv(name); v != "" {
		return v
	}
	return def
}

// parseEnv parses the environment variable name, returning def when unset.
func parseEnv[T any](getenv func(string) string, name string, def T, parse func(string) (T, error)) (T, error) {
	raw := getenv(name)
	if raw == "" {
		return def, nil
	}
	v, err := parse(raw)
	if err != nil {
		return def, fmt.Errorf("environment variable %s=%q: %w", name, raw, err)
	}
	return v, nil
}
