package app

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/kvgate/kvgate/internal/gateway"
	"github.com/kvgate/kvgate/internal/httpserver"
	"github.com/kvgate/kvgate/internal/logbuf"
	"github.com/kvgate/kvgate/service"
	"github.com/kvgate/kvgate/upstream"
	"github.com/kvgate/kvgate/upstream/localstore"
)

// The default listen addresses: kvlocal listens beside a kvgate on its
// default port.
const (
	DefaultListen           = "127.0.0.1:8080"
	DefaultLocalStoreListen = "127.0.0.1:8081"
)

// GatewayFlags registers kvgate's flags on fs, each defaulting to its
// environment variable when set, and returns the config they fill: the
// flags common to both binaries and those only kvgate reads (Fastly,
// batch writes, retries and RPC deadlines). A malformed environment
// variable is an error, not silently ignored.
func GatewayFlags(fs *flag.FlagSet, getenv func(string) string) (*Config, error) {
	cfg := &Config{}
	env := envReader{getenv: getenv}
	registerCommonFlags(fs, &env, cfg, DefaultListen)
	registerGatewayFlags(fs, &env, cfg)
	return cfg, env.err()
}

// LocalStoreFlags registers kvlocal's flags on fs, as GatewayFlags does
// kvgate's: only the common ones, since the local store on its own has no
// upstream, batches or RPCs.
func LocalStoreFlags(fs *flag.FlagSet, getenv func(string) string) (*Config, error) {
	cfg := &Config{}
	env := envReader{getenv: getenv}
	registerCommonFlags(fs, &env, cfg, DefaultLocalStoreListen)
	// No environment variable: a variable left set would turn a server
	// into a one-off check.
	fs.BoolVar(&cfg.CheckData, "check-data", false,
		"check the integrity of the data file under -data, print the stores, items, bytes and every problem found, "+
			"and exit without serving: 0 when sound, 1 when damaged")
	return cfg, env.err()
}

// registerCommonFlags registers the flags both binaries read: where to
// listen, the local store's data, value size, faults and store ids, the shutdown
// grace period and the log format.
func registerCommonFlags(fs *flag.FlagSet, env *envReader, cfg *Config, defaultListen string) {
	cfg.Server = httpserver.DefaultConfig()
	fs.StringVar(&cfg.Listen, "listen", env.string("KVGATE_LISTEN", defaultListen),
		"address to serve on (env KVGATE_LISTEN)")
	fs.StringVar(&cfg.DataDir, "data", env.string("KVGATE_DATA", "./data"),
		"local store data directory (kvgate uses the local store when FASTLY_API_TOKEN is unset); empty keeps data in memory (env KVGATE_DATA)")
	fs.Int64Var(&cfg.MaxValueBytes, "max-value-bytes", env.int("KVGATE_MAX_VALUE_BYTES", upstream.DefaultMaxValueBytes),
		"largest item value in bytes, up to Fastly's 104857600 (env KVGATE_MAX_VALUE_BYTES)")
	fs.DurationVar(&cfg.Server.ShutdownTimeout, "shutdown-timeout", env.duration("KVGATE_SHUTDOWN_TIMEOUT", cfg.Server.ShutdownTimeout),
		"grace period for in-flight RPCs on SIGINT/SIGTERM (env KVGATE_SHUTDOWN_TIMEOUT)")
	if spec := env.getenv("KVGATE_STORE_FAULTS"); spec != "" {
		f, err := localstore.ParseFaults(spec)
		env.errs = append(env.errs, err)
		cfg.StoreFaults = f
	}
	fs.Func("store-faults", "trouble the local store injects, e.g. latency=20ms,jitter=5ms,429=0.05,503=0.05,drop=0.01,seed=1 "+
		"(keys: "+strings.Join(localstore.FaultSpecKeys(), " ")+") (env KVGATE_STORE_FAULTS)",
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
	if v := env.getenv("KVGATE_STORE_LATENCY"); v != "" {
		d, err := time.ParseDuration(v)
		env.errs = append(env.errs, err)
		cfg.StoreFaults.Latency = d
	}
	fs.BoolVar(&cfg.StoreStrictIDs, "store-strict-ids", env.bool("KVGATE_STORE_STRICT_IDS", false),
		"local store: item calls on a store id never created by POST /resources/stores/kv answer 404, as on Fastly; "+
			"by default the first item write creates the store (env KVGATE_STORE_STRICT_IDS)")
	seeds, err := seedEnv(env)
	env.errs = append(env.errs, err)
	cfg.Seeds = seeds
	fs.Var(&seedFlag{seeds: &cfg.Seeds, fromEnv: len(seeds) > 0}, "seed",
		"load items into the local store before serving, repeatable: path/fastly.toml (every store of its "+
			"[local_server.kv_stores]) or NAME=items.ndjson (Fastly's batch format, into the store named NAME); "+
			"a store is found by name or created (env KVGATE_SEED, separated by '"+string(filepath.ListSeparator)+"')")
	fs.StringVar(&cfg.LogFormat, "log-format", env.string("KVGATE_LOG_FORMAT", "text"), "log format: text or json (env KVGATE_LOG_FORMAT)")
}

// registerGatewayFlags registers the flags only kvgate reads.
func registerGatewayFlags(fs *flag.FlagSet, env *envReader, cfg *Config) {
	cfg.FastlyToken = env.getenv("FASTLY_API_TOKEN")
	// FASTLY_API_ENDPOINT is the name Fastly's CLI reads; FASTLY_API_URL,
	// go-fastly's, wins when both are set.
	cfg.FastlyURL = env.string("FASTLY_API_URL", env.string("FASTLY_API_ENDPOINT", upstream.DefaultBaseURL))
	limits := gateway.DefaultLimits()
	batch := service.DefaultBatchConfig()
	retry := upstream.DefaultRetryPolicy()
	registerTransportFlags(fs, env, cfg)
	fs.IntVar(&cfg.Batch.MaxLines, "batch-lines", int(env.int("KVGATE_BATCH_LINES", int64(batch.MaxLines))),
		"most items in one batch PUT (env KVGATE_BATCH_LINES)")
	fs.IntVar(&cfg.Batch.MaxBytes, "batch-bytes", int(env.int("KVGATE_BATCH_BYTES", int64(batch.MaxBytes))),
		"most bytes in one batch PUT body, base64 values included (env KVGATE_BATCH_BYTES)")
	fs.IntVar(&cfg.Batch.Concurrency, "batch-concurrency", int(env.int("KVGATE_BATCH_CONCURRENCY", int64(batch.Concurrency))),
		"PUTs one batch write keeps in flight (env KVGATE_BATCH_CONCURRENCY)")
	fs.DurationVar(&cfg.DefaultTimeout, "default-timeout", env.duration("KVGATE_DEFAULT_TIMEOUT", limits.DefaultTimeout),
		"deadline of unary RPCs whose caller sets none (env KVGATE_DEFAULT_TIMEOUT)")
	fs.DurationVar(&cfg.MaxTimeout, "max-timeout", env.duration("KVGATE_MAX_TIMEOUT", limits.MaxTimeout),
		"cap on every RPC's deadline, and the deadline of streams whose caller sets none (env KVGATE_MAX_TIMEOUT)")
	fs.IntVar(&cfg.Retry.MaxAttempts, "retry-attempts", int(env.int("KVGATE_RETRY_ATTEMPTS", int64(retry.MaxAttempts))),
		"tries of an upstream call that is safe to retry, the first included; 1 disables retries (env KVGATE_RETRY_ATTEMPTS)")
	fs.DurationVar(&cfg.Retry.BaseDelay, "retry-base", env.duration("KVGATE_RETRY_BASE", retry.BaseDelay),
		"first retry backoff; doubles per attempt, with jitter (env KVGATE_RETRY_BASE)")
	fs.DurationVar(&cfg.Retry.MaxDelay, "retry-max", env.duration("KVGATE_RETRY_MAX", retry.MaxDelay),
		"cap on one backoff and on a Retry-After kvgate waits out itself (env KVGATE_RETRY_MAX)")
	registerGroupCommitFlags(fs, env, cfg)
	registerCORSFlags(fs, env, cfg)
	registerAuthFlags(fs, env, cfg)
	registerObservabilityFlags(fs, env, cfg)
	registerMemoryBudgetFlags(fs, env, cfg)
	registerWebFlags(fs, env, cfg)
	registerCallConcurrencyFlags(fs, env, cfg)
	registerWatchFlags(fs, env, cfg)
	registerWriteFlags(fs, env, cfg)
}

// NewLogger returns a slog logger writing format ("text" or "json") to
// out through a [logbuf.Writer]: lines below Warn (one per RPC that went
// well) are gathered and written together within logbuf.DefaultDelay, and
// a Warn or Error line is written at once with everything before it. Call
// flush before the process exits.
func NewLogger(format string, out io.Writer) (logger *slog.Logger, flush func() error, err error) {
	w := logbuf.New(out, 0, 0)
	var h slog.Handler
	switch format {
	case "text":
		h = slog.NewTextHandler(w, nil)
	case "json":
		h = slog.NewJSONHandler(w, nil)
	default:
		return nil, nil, fmt.Errorf("log format must be text or json, not %q", format)
	}
	return slog.New(logbuf.FlushAbove(h, w, slog.LevelWarn)), w.Flush, nil
}

// envReader reads flag defaults from the environment and collects the
// errors of malformed values.
type envReader struct {
	getenv func(string) string
	errs   []error
}

func (e *envReader) err() error { return errors.Join(e.errs...) }

// string returns the environment variable name, or def when unset.
func (e *envReader) string(name, def string) string {
	if v := e.getenv(name); v != "" {
		return v
	}
	return def
}

func (e *envReader) int(name string, def int64) int64 {
	return parseEnv(e, name, def, func(s string) (int64, error) { return strconv.ParseInt(s, 10, 64) })
}

func (e *envReader) bool(name string, def bool) bool {
	return parseEnv(e, name, def, strconv.ParseBool)
}

func (e *envReader) duration(name string, def time.Duration) time.Duration {
	return parseEnv(e, name, def, time.ParseDuration)
}

// parseEnv parses the environment variable name, returning def when unset
// or malformed; a malformed value is recorded as an error.
func parseEnv[T any](e *envReader, name string, def T, parse func(string) (T, error)) T {
	raw := e.getenv(name)
	if raw == "" {
		return def
	}
	v, err := parse(raw)
	if err != nil {
		e.errs = append(e.errs, fmt.Errorf("environment variable %s=%q: %w", name, raw, err))
		return def
	}
	return v
}
