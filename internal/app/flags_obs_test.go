package app

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/kvgate/kvgate/internal/gateway"
)

// TestObservabilityFlags reads the admin, RPC log and readiness flags from
// the environment and the command line, and refuses malformed ones with an
// error naming the setting, before anything starts.
func TestObservabilityFlags(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		env      map[string]string
		args     []string
		wantErr  string
		wantLog  slog.Level
		wantPoll time.Duration
	}{
		{name: "defaults", wantLog: slog.LevelInfo, wantPoll: 10 * time.Second},
		{name: "environment", env: map[string]string{"KVGATE_RPC_LOG_LEVEL": "warn", "KVGATE_READY_PROBE_INTERVAL": "2s"},
			wantLog: slog.LevelWarn, wantPoll: 2 * time.Second},
		{name: "flag over environment", env: map[string]string{"KVGATE_RPC_LOG_LEVEL": "warn"}, args: []string{"-rpc-log-level", "off"},
			wantLog: gateway.RPCLogOff, wantPoll: 10 * time.Second},
		{name: "malformed level in the environment", env: map[string]string{"KVGATE_RPC_LOG_LEVEL": "loud"}, wantErr: "KVGATE_RPC_LOG_LEVEL"},
		{name: "malformed level flag", args: []string{"-rpc-log-level", "debug"}, wantErr: "info, warn, error or off"},
		{name: "malformed probe interval", env: map[string]string{"KVGATE_READY_PROBE_INTERVAL": "10"}, wantErr: "KVGATE_READY_PROBE_INTERVAL"},
		{name: "negative probe interval", args: []string{"-ready-probe-interval", "-1s"}, wantErr: "must not be negative"},
		{name: "admin on the public address", args: []string{"-listen", "127.0.0.1:9", "-admin-listen", "127.0.0.1:9"}, wantErr: "admin listener"},
		{name: "malformed KVGATE_ADMIN_PPROF", env: map[string]string{"KVGATE_ADMIN_PPROF": "maybe"}, wantErr: "KVGATE_ADMIN_PPROF"},
		{name: "pprof without an admin listener", args: []string{"-admin-pprof"}, wantErr: "-admin-listen"},
		{name: "pprof on the admin listener", env: map[string]string{"KVGATE_ADMIN_PPROF": "true"}, args: []string{"-admin-listen", "127.0.0.1:0"},
			wantLog: slog.LevelInfo, wantPoll: 10 * time.Second},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := gatewayConfig(tc.env, tc.args)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want one mentioning %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Telemetry.RPCLogLevel != tc.wantLog || cfg.Telemetry.ReadyProbeInterval != tc.wantPoll {
				t.Errorf("log level %v, probe interval %v; want %v, %v",
					cfg.Telemetry.RPCLogLevel, cfg.Telemetry.ReadyProbeInterval, tc.wantLog, tc.wantPoll)
			}
		})
	}
}
