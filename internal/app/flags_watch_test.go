package app

import (
	"flag"
	"io"
	"testing"
	"time"

	"github.com/kvgate/kvgate/service"
)

func TestWatchFlags(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name        string
		env         map[string]string
		args        []string
		wantMin     time.Duration
		wantMaxKeys int
		wantErr     bool
	}{
		{name: "defaults", wantMin: time.Second, wantMaxKeys: service.DefaultWatchMaxKeys},
		{name: "environment", env: map[string]string{"KVGATE_WATCH_MIN_INTERVAL": "250ms", "KVGATE_WATCH_MAX_KEYS": "500"},
			wantMin: 250 * time.Millisecond, wantMaxKeys: 500},
		{name: "flags over environment", env: map[string]string{"KVGATE_WATCH_MIN_INTERVAL": "250ms"},
			args: []string{"-watch-min-interval", "5s", "-watch-max-keys", "20000"}, wantMin: 5 * time.Second, wantMaxKeys: 20000},
		{name: "malformed interval in environment", env: map[string]string{"KVGATE_WATCH_MIN_INTERVAL": "soon"}, wantErr: true},
		{name: "malformed max keys in environment", env: map[string]string{"KVGATE_WATCH_MAX_KEYS": "many"}, wantErr: true},
		{name: "malformed flag", args: []string{"-watch-min-interval", "1"}, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fs := flag.NewFlagSet("kvgate", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			cfg, err := GatewayFlags(fs, func(name string) string { return tc.env[name] })
			if err == nil {
				err = fs.Parse(tc.args)
			}
			if (err != nil) != tc.wantErr {
				t.Fatalf("error = %v, want error %v", err, tc.wantErr)
			}
			if tc.wantErr {
				return
			}
			if cfg.Watch.MinInterval != tc.wantMin || cfg.Watch.MaxKeys != tc.wantMaxKeys {
				t.Errorf("watch = %+v; want min interval %v, max keys %d", cfg.Watch, tc.wantMin, tc.wantMaxKeys)
			}
		})
	}
}

func TestWatchValidate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		watch service.WatchConfig
		ok    bool
	}{
		{service.WatchConfig{}, true},
		{service.WatchConfig{MinInterval: time.Millisecond, MaxKeys: 1}, true},
		{service.WatchConfig{MinInterval: -time.Second}, false},
		{service.WatchConfig{MaxKeys: -1}, false},
	} {
		c := Config{Listen: "127.0.0.1:0", MaxValueBytes: 1 << 20, Watch: tc.watch}
		if err := c.Validate(); (err == nil) != tc.ok {
			t.Errorf("watch %+v: Validate = %v, want ok %v", tc.watch, err, tc.ok)
		}
	}
}
