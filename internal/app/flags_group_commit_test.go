package app

import (
	"strings"
	"testing"
	"time"
)

// TestGroupCommitFlags reads -group-commit and -group-commit-linger from
// the environment and the command line: on with no linger by default, and
// refuses malformed or negative values with the setting named.
func TestGroupCommitFlags(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name         string
		env          map[string]string
		args         []string
		wantErr      string
		wantDisabled bool
		wantLinger   time.Duration
	}{
		{name: "defaults"},
		{name: "off by flag", args: []string{"-group-commit=false"}, wantDisabled: true},
		{name: "off by environment", env: map[string]string{"KVGATE_GROUP_COMMIT": "false"}, wantDisabled: true},
		{name: "flag over environment", env: map[string]string{"KVGATE_GROUP_COMMIT": "false"}, args: []string{"-group-commit"}},
		{name: "linger by environment", env: map[string]string{"KVGATE_GROUP_COMMIT_LINGER": "2ms"}, wantLinger: 2 * time.Millisecond},
		{name: "linger by flag", env: map[string]string{"KVGATE_GROUP_COMMIT_LINGER": "2ms"}, args: []string{"-group-commit-linger", "5ms"},
			wantLinger: 5 * time.Millisecond},
		{name: "malformed KVGATE_GROUP_COMMIT", env: map[string]string{"KVGATE_GROUP_COMMIT": "sometimes"}, wantErr: "KVGATE_GROUP_COMMIT"},
		{name: "malformed -group-commit", args: []string{"-group-commit=sometimes"}, wantErr: "group-commit"},
		{name: "malformed KVGATE_GROUP_COMMIT_LINGER", env: map[string]string{"KVGATE_GROUP_COMMIT_LINGER": "5"}, wantErr: "KVGATE_GROUP_COMMIT_LINGER"},
		{name: "negative linger", args: []string{"-group-commit-linger", "-1ms"}, wantErr: "linger must not be negative"},
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
			if cfg.GroupCommit.Disabled != tc.wantDisabled || cfg.GroupCommit.Linger != tc.wantLinger {
				t.Errorf("group commit disabled %v, linger %v; want %v, %v",
					cfg.GroupCommit.Disabled, cfg.GroupCommit.Linger, tc.wantDisabled, tc.wantLinger)
			}
		})
	}
}
