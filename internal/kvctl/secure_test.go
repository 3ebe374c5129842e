package kvctl_test

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kvgate/kvgate/internal/app"
	"github.com/kvgate/kvgate/internal/auth"
	"github.com/kvgate/kvgate/internal/httpserver"
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

// TestTLS checks --ca, --insecure-skip-verify and --cert/--key against
// kvgate serving TLS, and mutual TLS, in every protocol.
func TestTLS(t *testing.T) {
	t.Parallel()
	ca := testutil.NewTestCA(t)
	dir := t.TempDir()
	certPEM, keyPEM := ca.Issue(t, 7, false)
	clientCert, clientKey := ca.Issue(t, 8, true)
	caFile := testutil.WriteFile(t, dir, "ca.pem", ca.PEM)
	server := httpserver.TLSFiles{
		CertFile: testutil.WriteFile(t, dir, "cert.pem", certPEM),
		KeyFile:  testutil.WriteFile(t, dir, "key.pem", keyPEM),
	}
	mutual := server
	mutual.ClientCAFile = caFile
	plain := kvtest.Start(t, kvtest.Options{Transport: app.TransportConfig{TLS: server}})
	mtls := kvtest.Start(t, kvtest.Options{Transport: app.TransportConfig{TLS: mutual}})
	clientFiles := []string{
		"--cert", testutil.WriteFile(t, dir, "client.pem", clientCert),
		"--key", testutil.WriteFile(t, dir, "client-key.pem", clientKey),
	}
	cases := []struct {
		name string
		st   *kvtest.Stack
		args []string
		code int
		msg  string // in stderr when the call fails
	}{
		{"ca", plain, []string{"--ca", caFile}, kvctl.ExitOK, ""},
		{"insecure skip verify", plain, []string{"--insecure-skip-verify"}, kvctl.ExitOK, ""},
		{"no ca", plain, nil, kvctl.ExitFailure, "certificate signed by unknown authority"},
		{"missing ca file", plain, []string{"--ca", filepath.Join(dir, "nope.pem")}, kvctl.ExitFailure, "--ca:"},
		{"mtls", mtls, append([]string{"--ca", caFile}, clientFiles...), kvctl.ExitOK, ""},
		// Under TLS 1.3 the server refuses after the client's side of the
		// handshake is done, so the client sees the refusal as whatever
		// the next read or write meets (broken pipe, a closed connection,
		// the server's alert); only the exit code is certain.
		{"mtls without client certificate", mtls, []string{"--ca", caFile}, kvctl.ExitFailure, ""},
		{"cert without key", mtls, []string{"--ca", caFile, clientFiles[0], clientFiles[1]}, kvctl.ExitUsage, "--cert and --key go together"},
	}
	for _, tc := range cases {
		for _, proto := range []string{"connect", "grpc", "grpcweb"} {
			t.Run(tc.name+"/"+proto, func(t *testing.T) {
				t.Parallel()
				if !strings.HasPrefix(tc.st.URL, "https://") {
					t.Fatalf("stack URL %s is not https", tc.st.URL)
				}
				s := "tls-" + proto + "-" + strings.ReplaceAll(tc.name, " ", "-")
				args := append([]string{"--protocol", proto, "-s", s}, tc.args...)
				put := kvctlAt(t, tc.st.URL, "", append(args, "put", "k", "v")...)
				if put.code != tc.code || !strings.Contains(put.stderr, tc.msg) {
					t.Fatalf("put: exit %d stderr %q; want exit %d and %q", put.code, put.stderr, tc.code, tc.msg)
				}
				if tc.code != kvctl.ExitOK {
					return
				}
				if get := kvctlAt(t, tc.st.URL, "", append(args, "get", "k")...); get.code != 0 || get.stdout != "v" {
					t.Fatalf("get: %+v", get)
				}
			})
		}
	}
}
