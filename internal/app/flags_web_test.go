package app

import (
	"strings"
	"testing"
)

func TestWebFlag(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name        string
		env         map[string]string
		args        []string
		want        bool
		wantErrPart string
	}{
		{name: "on by default", want: true},
		{name: "flag off", args: []string{"-web=false"}, want: false},
		{name: "environment off", env: map[string]string{"KVGATE_WEB": "false"}, want: false},
		{name: "flag overrides the environment", env: map[string]string{"KVGATE_WEB": "0"}, args: []string{"-web"}, want: true},
		{name: "malformed environment", env: map[string]string{"KVGATE_WEB": "maybe"}, wantErrPart: "KVGATE_WEB"},
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
			if cfg.WebApp != tc.want {
				t.Errorf("WebApp = %v, want %v", cfg.WebApp, tc.want)
			}
		})
	}
}
