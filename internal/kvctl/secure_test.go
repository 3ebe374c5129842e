package kvctl_test

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"

	"github.com/kvgate/kvgate/internal/auth"
	"github.com/kvgate/kvgate/internal/kvctl"
	"github.com/kvgate/kvgate/internal/kvtest"
	"github.com/kvgate/kvgate/internal/testutil"
)

// tokenFile writes a token file in dir granting secret every operation on
// every store, and returns its path.
func tokenFile(t *testing.T, dir, secret string) string {
	t.Helper()
	sum := sha256.Sum256([]byte(secret))
	body := fmt.Sprintf("tokens:\n  - name: ops\n    sha256: %q\n    stores: [\"*\"]\n    allow: [read, write, delete]\n",
		hex.EncodeToString(sum[:]))
	return testutil.WriteFile(t, dir, "tokens.yaml", []byte(body))
}

// TestToken checks that --token and $KVCTL_TOKEN are sent as the bearer
// token, and that a missing or wrong token exits 1 with a message naming
// the refusal.
func TestToken(t *testing.T) {
	t.Parallel()
	const secret = "kvg-kvctl-test-5e1f"
	st := kvtest.Start(t, kvtest.Options{Auth: auth.Config{TokensFile: tokenFile(t, t.TempDir(), secret)}})
	cases := []struct {
		name     string
		envToken string
		args     []string
		code     int
	}{
		{"flag", "", []string{"--token", secret}, kvctl.ExitOK},
		{"env", secret, nil, kvctl.ExitOK},
		{"flag beats env", "wrong", []string{"--token", secret}, kvctl.ExitOK},
		{"none", "", nil, kvctl.ExitFailure},
		{"wrong flag", "", []string{"--token", "wrong"}, kvctl.ExitFailure},
		{"wrong env", "wrong", nil, kvctl.ExitFailure},
	}
	for _, tc := range cases {
		for _, proto := range []string{"connect", "grpc", "grpcweb"} {
			t.Run(tc.name+"/"+proto, func(t *testing.T) {
				t.Parallel()
				env := map[string]string{"KVCTL_ADDR": st.URL, "KVCTL_TOKEN": tc.envToken}
				s := "tok-" + proto + "-" + strings.ReplaceAll(tc.name, " ", "-")
				args := append([]string{"--protocol", proto, "-s", s}, tc.args...)
				put := kvctlEnv(t, env, "", append(args, "put", "k", "v")...)
				get := kvctlEnv(t, env, "", append(args, "--json", "get", "k")...)
				for _, got := range []result{put, get} {
					if got.code != tc.code {
						t.Fatalf("exit %d (stdout %q stderr %q); want %d", got.code, got.stdout, got.stderr, tc.code)
					}
				}
				if tc.code == kvctl.ExitOK {
					if !jsonMatches(t, get.stdout, `{"key":"k","value":"dg==","size":1,"metadata":"","generation":"*","last_modified":"*"}`) {
						t.Fatalf("get: %q", get.stdout)
					}
					return
				}
				if !strings.HasPrefix(put.stderr, "kvctl: unauthenticated") || !strings.Contains(put.stderr, "--token or set KVCTL_TOKEN") {
					t.Errorf("put stderr %q: want kvctl: unauthenticated and the --token hint", put.stderr)
				}
				if !jsonMatches(t, get.stdout, `{"error":{"code":"unauthenticated","message":"*","exit":1}}`) {
					t.Errorf("get --json stdout %q", get.stdout)
				}
			})
		}
	}
}
