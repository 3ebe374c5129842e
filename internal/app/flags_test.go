package app

import (
	"flag"
	"fmt"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/kvgate/kvgate/internal/auth"
	"github.com/kvgate/kvgate/internal/httpserver"
	"github.com/kvgate/kvgate/internal/telemetry"
	"github.com/kvgate/kvgate/service"
	"github.com/kvgate/kvgate/upstream"
	"github.com/kvgate/kvgate/upstream/localstore"
)

// defaultGatewayConfig is the config kvgate runs with when no flag or
// environment variable is set.
func defaultGatewayConfig() Config {
	return Config{
		Listen:         "127.0.0.1:8080",
		FastlyURL:      upstream.DefaultBaseURL,
		DataDir:        "./data",
		MaxValueBytes:  upstream.DefaultMaxValueBytes,
		DefaultTimeout: 30 * time.Second,
		MaxTimeout:     time.Hour,
		Retry:          upstream.RetryPolicy{MaxAttempts: 4, BaseDelay: 100 * time.Millisecond, MaxDelay: 5 * time.Second},
		Batch:          service.BatchConfig{MaxLines: 1000, MaxBytes: 8 << 20, Concurrency: 4},
		Writes:         WriteConfig{DeleteConcurrency: 8},
		Server:         httpserver.Config{ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute, ShutdownTimeout: 10 * time.Second},
		Transport:      TransportConfig{Limits: httpserver.DefaultLimits()},
		LogFormat:      "text",
		Auth:           auth.Config{Health: auth.PolicyOpen, Reflection: auth.PolicyOpen},
		Telemetry:      telemetry.Config{ReadyProbeInterval: 10 * time.Second, ReadyProbeStore: "kvgate-readiness-probe"},
		WebApp:         true,

		GetItemsConcurrency:     16,
		Watch:                   service.WatchConfig{MinInterval: time.Second, MaxKeys: 10_000},
		CopyConcurrency:         service.DefaultCopyConcurrency,
		ListMetadataConcurrency: service.DefaultListMetadataConcurrency,
	}
}

// defaultLocalStoreConfig is the config kvlocal runs with when no flag or
// environment variable is set.
func defaultLocalStoreConfig() Config {
	return Config{
		Listen:        "127.0.0.1:8081",
		DataDir:       "./data",
		MaxValueBytes: upstream.DefaultMaxValueBytes,
		Server:        httpserver.Config{ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute, ShutdownTimeout: 10 * time.Second},
		LogFormat:     "text",
	}
}

func mustParseFaults(t *testing.T, spec string) localstore.Faults {
	t.Helper()
	f, err := localstore.ParseFaults(spec)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestFlags(t *testing.T) {
	t.Parallel()
	type flagsFunc = func(*flag.FlagSet, func(string) string) (*Config, error)
	cases := []struct {
		name    string
		flags   flagsFunc // GatewayFlags when nil
		env     map[string]string
		args    []string
		want    func(*Config)
		base    func() Config // defaultGatewayConfig when nil
		wantErr bool
	}{
		{name: "defaults", want: func(*Config) {}},
		{
			name: "environment",
			env: map[string]string{
				"FASTLY_API_TOKEN": "tok", "FASTLY_API_URL": "http://x", "KVGATE_LISTEN": ":9",
				"KVGATE_DATA": "/d", "KVGATE_MAX_VALUE_BYTES": "1024", "KVGATE_SHUTDOWN_TIMEOUT": "3s",
				"KVGATE_BATCH_LINES": "10", "KVGATE_BATCH_BYTES": "2048", "KVGATE_BATCH_CONCURRENCY": "2",
				"KVGATE_DEFAULT_TIMEOUT": "5s", "KVGATE_MAX_TIMEOUT": "1m",
				"KVGATE_RETRY_ATTEMPTS": "1", "KVGATE_RETRY_BASE": "1ms", "KVGATE_RETRY_MAX": "2ms",
				"KVGATE_LOG_FORMAT": "json",
			},
			want: func(c *Config) {
				c.FastlyToken, c.FastlyURL, c.Listen, c.DataDir = "tok", "http://x", ":9", "/d"
				c.MaxValueBytes, c.Server.ShutdownTimeout = 1024, 3*time.Second
				c.Batch = service.BatchConfig{MaxLines: 10, MaxBytes: 2048, Concurrency: 2}
				c.DefaultTimeout, c.MaxTimeout = 5*time.Second, time.Minute
				c.Retry = upstream.RetryPolicy{MaxAttempts: 1, BaseDelay: time.Millisecond, MaxDelay: 2 * time.Millisecond}
				c.LogFormat = "json"
			},
		},
		{
			name: "flags override the environment",
			env:  map[string]string{"KVGATE_LISTEN": ":9", "KVGATE_DATA": "/d", "KVGATE_RETRY_ATTEMPTS": "7"},
			args: []string{"-listen", ":10", "-data", "", "-retry-attempts", "2", "-log-format", "json"},
			want: func(c *Config) { c.Listen, c.DataDir, c.Retry.MaxAttempts, c.LogFormat = ":10", "", 2, "json" },
		},
		{
			name: "Fastly's endpoint by the Fastly CLI's variable",
			env:  map[string]string{"FASTLY_API_ENDPOINT": "http://cli"},
			want: func(c *Config) { c.FastlyURL = "http://cli" },
		},
		{
			name: "FASTLY_API_URL wins over FASTLY_API_ENDPOINT",
			env:  map[string]string{"FASTLY_API_ENDPOINT": "http://cli", "FASTLY_API_URL": "http://go"},
			want: func(c *Config) { c.FastlyURL = "http://go" },
		},
		{name: "browser app off by flag", args: []string{"-web=false"}, want: func(c *Config) { c.WebApp = false }},
		{name: "browser app off by environment", env: map[string]string{"KVGATE_WEB": "false"}, want: func(c *Config) { c.WebApp = false }},
		{name: "browser app flag overrides the environment", env: map[string]string{"KVGATE_WEB": "0"}, args: []string{"-web"}, want: func(*Config) {}},
		{name: "malformed KVGATE_WEB", env: map[string]string{"KVGATE_WEB": "maybe"}, wantErr: true},
		{
			name: "store faults",
			env:  map[string]string{"KVGATE_STORE_FAULTS": "429=0.1,seed=3", "KVGATE_STORE_LATENCY": "20ms"},
			args: []string{"-store-faults", "latency=5ms,503=0.2"},
			want: func(c *Config) { c.StoreFaults = mustParseFaults(t, "latency=5ms,503=0.2") },
		},
		{
			name: "store latency from the environment",
			env:  map[string]string{"KVGATE_STORE_FAULTS": "429=0.1,seed=3", "KVGATE_STORE_LATENCY": "20ms"},
			want: func(c *Config) { c.StoreFaults = mustParseFaults(t, "429=0.1,seed=3,latency=20ms") },
		},
		{
			name:  "kvlocal defaults",
			flags: LocalStoreFlags,
			base:  defaultLocalStoreConfig,
			// kvlocal has no upstream: it does not read Fastly's settings.
			env:  map[string]string{"FASTLY_API_TOKEN": "tok", "KVGATE_RETRY_ATTEMPTS": "x"},
			want: func(*Config) {},
		},
		{
			name:  "kvlocal flags",
			flags: LocalStoreFlags,
			base:  defaultLocalStoreConfig,
			env:   map[string]string{"KVGATE_LISTEN": ":9"},
			args:  []string{"-data", "", "-max-value-bytes", "10", "-shutdown-timeout", "1s", "-store-latency", "3ms", "-log-format", "json"},
			want: func(c *Config) {
				c.Listen, c.DataDir, c.MaxValueBytes, c.Server.ShutdownTimeout = ":9", "", 10, time.Second
				c.StoreFaults.Latency, c.LogFormat = 3*time.Millisecond, "json"
			},
		},
		{name: "strict store ids by flag", args: []string{"-store-strict-ids"}, want: func(c *Config) { c.StoreStrictIDs = true }},
		{name: "strict store ids by environment", env: map[string]string{"KVGATE_STORE_STRICT_IDS": "true"}, want: func(c *Config) { c.StoreStrictIDs = true }},
		{
			name:  "kvlocal strict store ids",
			flags: LocalStoreFlags,
			base:  defaultLocalStoreConfig,
			env:   map[string]string{"KVGATE_STORE_STRICT_IDS": "1"},
			want:  func(c *Config) { c.StoreStrictIDs = true },
		},
		{
			name:  "kvlocal check data",
			flags: LocalStoreFlags,
			base:  defaultLocalStoreConfig,
			args:  []string{"-check-data"},
			want:  func(c *Config) { c.CheckData = true },
		},
		{name: "malformed KVGATE_STORE_STRICT_IDS", env: map[string]string{"KVGATE_STORE_STRICT_IDS": "sometimes"}, wantErr: true},
		{name: "malformed store faults", env: map[string]string{"KVGATE_STORE_FAULTS": "429=2"}, wantErr: true},
		{name: "malformed size", env: map[string]string{"KVGATE_MAX_VALUE_BYTES": "25MiB"}, wantErr: true},
		{name: "malformed duration", env: map[string]string{"KVGATE_SHUTDOWN_TIMEOUT": "10"}, wantErr: true},
		{name: "malformed retry", env: map[string]string{"KVGATE_RETRY_BASE": "soon"}, wantErr: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			flags, base := tc.flags, tc.base
			if flags == nil {
				flags = GatewayFlags
			}
			if base == nil {
				base = defaultGatewayConfig
			}
			fs := flag.NewFlagSet("test", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			cfg, err := flags(fs, func(k string) string { return tc.env[k] })
			if (err != nil) != tc.wantErr {
				t.Fatalf("flags error = %v, want error %v", err, tc.wantErr)
			}
			if tc.wantErr {
				return
			}
			if err := fs.Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			want := base()
			tc.want(&want)
			if diff := configDiff(*cfg, want); diff != "" {
				t.Errorf("config differs (got, want):\n%s", diff)
			}
		})
	}
}

// TestLocalStoreFlagsRefuseGatewayFlags checks that kvlocal neither lists
// nor accepts the flags only kvgate reads.
func TestLocalStoreFlagsRefuseGatewayFlags(t *testing.T) {
	t.Parallel()
	var usage strings.Builder
	fs := flag.NewFlagSet("kvlocal", flag.ContinueOnError)
	fs.SetOutput(&usage)
	if _, err := LocalStoreFlags(fs, func(string) string { return "" }); err != nil {
		t.Fatal(err)
	}
	if err := fs.Parse([]string{"-retry-attempts", "2"}); err == nil {
		t.Error("kvlocal accepted -retry-attempts")
	}
	for _, name := range []string{"retry-attempts", "retry-base", "retry-max", "batch-lines", "batch-bytes",
		"batch-concurrency", "default-timeout", "max-timeout"} {
		if fs.Lookup(name) != nil {
			t.Errorf("kvlocal registers -%s", name)
		}
	}
	for _, name := range []string{"listen", "data", "max-value-bytes", "shutdown-timeout", "store-faults", "store-latency", "log-format"} {
		if fs.Lookup(name) == nil {
			t.Errorf("kvlocal lacks -%s", name)
		}
	}
}

// configDiff names each field of got that differs from want, with both
// values; it is empty when they are equal.
func configDiff(got, want Config) string {
	var b strings.Builder
	gv, wv := reflect.ValueOf(got), reflect.ValueOf(want)
	for i := range gv.NumField() {
		name := gv.Type().Field(i).Name
		if gv.Field(i).Kind() == reflect.Func {
			if !gv.Field(i).IsNil() || !wv.Field(i).IsNil() {
				fmt.Fprintf(&b, "%s: functions cannot be compared\n", name)
			}
			continue
		}
		if g, w := gv.Field(i).Interface(), wv.Field(i).Interface(); !reflect.DeepEqual(g, w) {
			fmt.Fprintf(&b, "%s: %+v, want %+v\n", name, g, w)
		}
	}
	return b.String()
}

func TestValidate(t *testing.T) {
	t.Parallel()
	for _, size := range []int64{0, -1, upstream.FastlyMaxValueBytes + 1} {
		c := Config{Listen: "127.0.0.1:0", MaxValueBytes: size}
		if c.Validate() == nil {
			t.Errorf("max value size %d accepted", size)
		}
	}
	if c := (Config{Listen: "127.0.0.1:0", MaxValueBytes: upstream.FastlyMaxValueBytes}); c.Validate() != nil {
		t.Errorf("Fastly's largest value size refused: %v", c.Validate())
	}
}

// gatewayConfig reads kvgate's flags from env and args as kvgate does,
// then validates the result as Run does.
func gatewayConfig(env map[string]string, args []string) (*Config, error) {
	fs := flag.NewFlagSet("kvgate", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	cfg, err := GatewayFlags(fs, func(k string) string { return env[k] })
	if err == nil {
		err = fs.Parse(args)
	}
	if err == nil {
		err = cfg.Validate()
	}
	return cfg, err
}
