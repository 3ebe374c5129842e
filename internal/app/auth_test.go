package app

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connecthttp"

	kvv1 "github.com/kvgate/kvgate/gen/go/fastly/kv/v1"
	"github.com/kvgate/kvgate/gen/go/fastly/kv/v1/kvv1connect"
	"github.com/kvgate/kvgate/internal/testutil"
	"github.com/kvgate/kvgate/upstream/localstore"
)

// TestNoOpenDoorByDefault checks that kvgate refuses to serve a
// non-loopback address to anyone unless told so, and starts as before on
// loopback.
func TestNoOpenDoorByDefault(t *testing.T) {
	t.Parallel()
	tokens := filepath.Join(t.TempDir(), "tokens.yaml")
	cases := []struct {
		name    string
		env     map[string]string
		args    []string
		wantErr string // empty when kvgate may start
	}{
		{name: "default loopback"},
		{name: "every interface", args: []string{"-listen", "0.0.0.0:0"}, wantErr: "-allow-unauthenticated"},
		{name: "every interface from the environment", env: map[string]string{"KVGATE_LISTEN": ":8080"}, wantErr: "-allow-unauthenticated"},
		{name: "explicitly open", args: []string{"-listen", "0.0.0.0:0", "-allow-unauthenticated"}},
		{name: "explicitly open from the environment", env: map[string]string{"KVGATE_ALLOW_UNAUTHENTICATED": "true"}, args: []string{"-listen", "0.0.0.0:0"}},
		{name: "tokens", args: []string{"-listen", "0.0.0.0:0", "-tokens", tokens}},
		{name: "tokens from the environment", env: map[string]string{"KVGATE_TOKENS": tokens}, args: []string{"-listen", "0.0.0.0:0"}},
		{name: "pass-through", env: map[string]string{"KVGATE_FASTLY_TOKEN_PASSTHROUGH": "1"}, args: []string{"-listen", "0.0.0.0:0"}},
		{name: "pass-through with a Fastly token", env: map[string]string{"FASTLY_API_TOKEN": "x"}, args: []string{"-fastly-token-passthrough"}, wantErr: "FASTLY_API_TOKEN"},
		{name: "health behind tokens without tokens", args: []string{"-auth-health", "token"}, wantErr: "-tokens"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := gatewayConfig(tc.env, tc.args)
			if tc.wantErr == "" {
				if err != nil {
					t.Errorf("refused: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Validate = %v, want an error naming %s", err, tc.wantErr)
			}
			// Run refuses before it listens.
			if err := Run(context.Background(), *cfg, slog.New(slog.DiscardHandler)); err == nil {
				t.Error("Run started")
			}
		})
	}
	fs := flag.NewFlagSet("kvgate", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	if _, err := GatewayFlags(fs, func(string) string { return "" }); err != nil {
		t.Fatal(err)
	}
	if err := fs.Parse([]string{"-auth-reflection", "closed"}); err == nil {
		t.Error("-auth-reflection closed accepted")
	}
	if _, err := GatewayFlags(flag.NewFlagSet("kvgate", flag.ContinueOnError), func(k string) string { return map[string]string{"KVGATE_AUTH_HEALTH": "shut"}[k] }); err == nil {
		t.Error("KVGATE_AUTH_HEALTH=shut accepted")
	}
}

// TestRunWithTokensAndFastlyToken runs kvgate as its main does, with a
// token file and a Fastly token of its own, against a local store standing
// in for Fastly: callers' calls reach it with kvgate's Fastly token; SIGHUP
// reloads the token file; and neither kvgate's Fastly token nor any
// caller's token appears in anything kvgate logged.
func TestRunWithTokensAndFastlyToken(t *testing.T) {
	t.Parallel()
	const (
		fastlyToken = "kvg-test-run-fastly-d00d"
		first       = "kvg-test-run-first-1111"
		second      = "kvg-test-run-second-2222"
		wrong       = "kvg-test-run-wrong-3333"
	)
	var (
		mu       sync.Mutex
		upstream []string
	)
	store, err := localstore.Open(localstore.Config{OnRequest: func(r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		upstream = append(upstream, r.Header.Get("Fastly-Key"))
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	fastly := httptest.NewServer(store.Handler())
	t.Cleanup(fastly.Close)

	tokens := filepath.Join(t.TempDir(), "tokens.yaml")
	writeTokenFile(t, tokens, "first", first)
	fs := flag.NewFlagSet("kvgate", flag.ContinueOnError)
	env := map[string]string{"FASTLY_API_TOKEN": fastlyToken, "FASTLY_API_URL": fastly.URL, "KVGATE_TOKENS": tokens}
	cfg, err := GatewayFlags(fs, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	cfg.Listen, cfg.DataDir = "127.0.0.1:0", ""
	cfg.Auth.PollInterval = time.Hour // only SIGHUP reloads
	var log testutil.LockedBuffer
	addr := startRun(t, cfg, slog.New(slog.NewTextHandler(&log, &slog.HandlerOptions{Level: slog.LevelDebug})))

	call := func(token string) connect.Code {
		hc := &http.Client{Transport: &http.Transport{}}
		defer hc.CloseIdleConnections()
		c := kvv1connect.NewKVStoreServiceClient(connect.NewClient(connecthttp.NewTransport(hc, "http://"+addr.String())))
		ctx, info := connect.NewClientContext(context.Background())
		info.RequestHeader().Set("Authorization", "Bearer "+token)
		_, err := c.PutItem(ctx, &kvv1.PutItemRequest{StoreId: "s", Key: "k", Value: []byte("v")})
		if err == nil {
			return 0
		}
		return connect.CodeOf(err)
	}
	if code := call(first); code != 0 {
		t.Fatalf("PutItem with a good token: %v", code)
	}
	if code := call(wrong); code != connect.CodeUnauthenticated {
		t.Errorf("PutItem with a wrong token: %v", code)
	}
	writeTokenFile(t, tokens, "second", second)
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for call(second) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the token file was not reloaded on SIGHUP")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if code := call(first); code != connect.CodeUnauthenticated {
		t.Errorf("a token dropped from the file: %v", code)
	}
	mu.Lock()
	for _, k := range upstream {
		if k != fastlyToken {
			t.Errorf("the upstream saw Fastly-Key %q, want kvgate's", k)
		}
	}
	mu.Unlock()
	for _, secret := range []string{fastlyToken, first, second, wrong} {
		if strings.Contains(log.String(), secret) {
			t.Errorf("the log holds the secret %q", secret)
		}
	}
}

// writeTokenFile writes a token file holding one token with every right
// on every store.
func writeTokenFile(t *testing.T, path, name, token string) {
	t.Helper()
	sum := sha256.Sum256([]byte(token))
	content := fmt.Sprintf("tokens:\n  - name: %s\n    sha256: %s\n    stores: [\"*\"]\n    allow: [read, write, delete]\n",
		name, hex.EncodeToString(sum[:]))
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// startRun runs kvgate with cfg until the test ends and returns its
// address once it serves.
func startRun(t *testing.T, cfg *Config, logger *slog.Logger) net.Addr {
	t.Helper()
	ready := make(chan net.Addr, 1)
	cfg.Ready = func(addr net.Addr) { ready <- addr }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, *cfg, logger) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	select {
	case addr := <-ready:
		return addr
	case err := <-done:
		t.Fatalf("Run returned before serving: %v", err)
	case <-time.After(time.Minute):
		t.Fatal("kvgate did not become ready")
	}
	return nil
}
