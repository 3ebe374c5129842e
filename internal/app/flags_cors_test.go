package app

import (
	"strings"
	"testing"

	"github.com/kvgate/kvgate/internal/crossorigin"
)

func TestCORSFlags(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name        string
		env         map[string]string
		args        []string
		want        crossorigin.Config
		wantErrPart string // from GatewayFlags or Validate; empty when valid
	}{
		{name: "none by default"},
		{
			name: "environment",
			env:  map[string]string{"KVGATE_CORS_ORIGINS": " https://a.example, http://127.0.0.1:5173,,", "KVGATE_CORS_ALLOW_CREDENTIALS": "true"},
			want: crossorigin.Config{Origins: []string{"https://a.example", "http://127.0.0.1:5173"}, AllowCredentials: true},
		},
		{
			name: "flags override the environment",
			env:  map[string]string{"KVGATE_CORS_ORIGINS": "https://a.example", "KVGATE_CORS_ALLOW_CREDENTIALS": "1"},
			args: []string{"-cors-origins", "*", "-cors-allow-credentials=false"},
			want: crossorigin.Config{Origins: []string{"*"}},
		},
		{
			name:        "any origin with credentials",
			args:        []string{"-cors-origins", "*", "-cors-allow-credentials"},
			wantErrPart: "cannot be combined with allowing credentials",
		},
		{name: "malformed origin", env: map[string]string{"KVGATE_CORS_ORIGINS": "https://a.example/"}, wantErrPart: "no path"},
		{name: "malformed credentials", env: map[string]string{"KVGATE_CORS_ALLOW_CREDENTIALS": "sure"}, wantErrPart: "KVGATE_CORS_ALLOW_CREDENTIALS"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := gatewayConfig(tc.env, tc.args)
			if tc.wantErrPart != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErrPart) {
					t.Fatalf("got error %v, want one containing %q", err, tc.wantErrPart)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := defaultGatewayConfig()
			want.CORS = tc.want
			if diff := configDiff(*cfg, want); diff != "" {
				t.Errorf("config differs (got, want):\n%s", diff)
			}
		})
	}
}
