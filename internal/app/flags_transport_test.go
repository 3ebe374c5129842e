package app

import (
	"strings"
	"testing"
	"time"

	"github.com/kvgate/kvgate/internal/httpserver"
)

func TestTransportFlags(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		env     map[string]string
		args    []string
		want    TransportConfig
		server  httpserver.Config
		wantErr string // in GatewayFlags' or Validate's error
	}{
		{
			name: "environment",
			env: map[string]string{
				"KVGATE_TLS_CERT": "c.pem", "KVGATE_TLS_KEY": "k.pem", "KVGATE_TLS_CLIENT_CA": "ca.pem",
				"KVGATE_MAX_CONNS": "10", "KVGATE_MAX_CONCURRENT_STREAMS": "5", "KVGATE_MAX_HEADER_BYTES": "4096",
				"KVGATE_BODY_STALL_TIMEOUT": "3s", "KVGATE_READ_HEADER_TIMEOUT": "2s", "KVGATE_IDLE_TIMEOUT": "1m",
			},
			want: TransportConfig{
				TLS:    httpserver.TLSFiles{CertFile: "c.pem", KeyFile: "k.pem", ClientCAFile: "ca.pem"},
				Limits: httpserver.Limits{MaxConns: 10, MaxConcurrentStreams: 5, MaxHeaderBytes: 4096, BodyStallTimeout: 3 * time.Second},
			},
			server: httpserver.Config{ReadHeaderTimeout: 2 * time.Second, IdleTimeout: time.Minute, ShutdownTimeout: 10 * time.Second},
		},
		{
			name: "flags",
			args: []string{"-tls-cert", "c", "-tls-key", "k", "-max-conns", "1", "-max-concurrent-streams", "2",
				"-max-header-bytes", "3", "-body-stall-timeout", "4s", "-read-header-timeout", "5s", "-idle-timeout", "6s"},
			want: TransportConfig{
				TLS:    httpserver.TLSFiles{CertFile: "c", KeyFile: "k"},
				Limits: httpserver.Limits{MaxConns: 1, MaxConcurrentStreams: 2, MaxHeaderBytes: 3, BodyStallTimeout: 4 * time.Second},
			},
			server: httpserver.Config{ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 6 * time.Second, ShutdownTimeout: 10 * time.Second},
		},
		{name: "certificate without key", args: []string{"-tls-cert", "c"}, wantErr: "-tls-key"},
		{name: "key without certificate", env: map[string]string{"KVGATE_TLS_KEY": "k"}, wantErr: "-tls-cert"},
		{name: "client CA without TLS", args: []string{"-tls-client-ca", "ca"}, wantErr: "need TLS"},
		{name: "negative limit", args: []string{"-max-conns", "-1"}, wantErr: "negative"},
		{name: "malformed stall timeout", env: map[string]string{"KVGATE_BODY_STALL_TIMEOUT": "5"}, wantErr: "KVGATE_BODY_STALL_TIMEOUT"},
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
			if cfg.Transport != tc.want || cfg.Server != tc.server {
				t.Errorf("got %+v %+v, want %+v %+v", cfg.Transport, cfg.Server, tc.want, tc.server)
			}
		})
	}
}

// TestGatewayRefusesBadTLSFiles checks that a missing or mismatched pair
// fails at assembly, not at the first handshake.
func TestGatewayRefusesBadTLSFiles(t *testing.T) {
	t.Parallel()
	_, err := NewGateway(GatewayConfig{UpstreamURL: "http://127.0.0.1:1", Transport: TransportConfig{
		TLS: httpserver.TLSFiles{CertFile: t.TempDir() + "/missing.pem", KeyFile: t.TempDir() + "/missing.key"},
	}})
	if err == nil || !strings.Contains(err.Error(), "TLS certificate") {
		t.Fatalf("NewGateway with missing TLS files: %v", err)
	}
}
