package app

import (
	"context"
	"encoding/json"
	"flag"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestRunLocalStoreStoreIDs runs kvlocal in this process with and without
// -store-strict-ids: by default an item write to a store id never created
// succeeds, as kvgate's one-command start needs; with the flag it answers
// 404, as Fastly does, until the store is created.
func TestRunLocalStoreStoreIDs(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name       string
		args       []string
		wantStatus int
	}{
		{"default", nil, http.StatusOK},
		{"strict", []string{"-store-strict-ids"}, http.StatusNotFound},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fs := flag.NewFlagSet("kvlocal", flag.ContinueOnError)
			cfg, err := LocalStoreFlags(fs, func(string) string { return "" })
			if err != nil {
				t.Fatal(err)
			}
			if err := fs.Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			cfg.Listen, cfg.DataDir = "127.0.0.1:0", ""
			ready := make(chan net.Addr, 1)
			cfg.Ready = func(addr net.Addr) { ready <- addr }
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- RunLocalStore(ctx, *cfg, slog.New(slog.NewTextHandler(io.Discard, nil))) }()
			t.Cleanup(func() {
				cancel()
				if err := <-done; err != nil {
					t.Errorf("RunLocalStore: %v", err)
				}
			})
			var base string
			select {
			case addr := <-ready:
				base = "http://" + addr.String()
			case err := <-done:
				t.Fatalf("RunLocalStore returned before serving: %v", err)
			case <-time.After(time.Minute):
				t.Fatal("kvlocal did not become ready")
			}
			hc := &http.Client{Transport: &http.Transport{}}
			t.Cleanup(hc.CloseIdleConnections)
			do := func(method, path, body string) (int, []byte) {
				t.Helper()
				req, err := http.NewRequestWithContext(t.Context(), method, base+path, strings.NewReader(body))
				if err != nil {
					t.Fatal(err)
				}
				resp, err := hc.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				b, err := io.ReadAll(resp.Body)
				if err != nil {
					t.Fatal(err)
				}
				return resp.StatusCode, b
			}

			if code, body := do(http.MethodPut, "/resources/stores/kv/never-created/keys/k", "v"); code != tc.wantStatus {
				t.Errorf("PUT into a store never created = %d (%s), want %d", code, body, tc.wantStatus)
			}
			code, body := do(http.MethodPost, "/resources/stores/kv", `{"name":"made"}`)
			if code != http.StatusCreated {
				t.Fatalf("creating a store = %d (%s)", code, body)
			}
			var store struct {
				ID string `json:"id"`
			}
			if err := json.Unmarshal(body, &store); err != nil {
				t.Fatal(err)
			}
			if code, body := do(http.MethodPut, "/resources/stores/kv/"+store.ID+"/keys/k", "v"); code != http.StatusOK {
				t.Errorf("PUT into a created store = %d (%s)", code, body)
			}
		})
	}
}
