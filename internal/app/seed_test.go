package app

import (
	"context"
	"flag"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	kvv1 "github.com/kvgate/kvgate/gen/go/fastly/kv/v1"
	"github.com/kvgate/kvgate/upstream"
	"github.com/kvgate/kvgate/upstream/localstore"
)

// seedFiles writes a fastly.toml with both store forms, the files it
// names and an NDJSON file into a new directory, and returns it.
func seedFiles(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range map[string]string{
		"fastly.toml": `
name = "app"
[local_server.kv_stores]
inline = [
  { key = "a", data = "alpha", metadata = "ma" },
  { key = "b", file = "b.txt" },
]
from_json = { file = "kv.json", format = "json" }
`,
		"b.txt":         "bravo",
		"kv.json":       `{"c": "charlie", "d": {"file": "d.bin", "metadata": "md"}}`,
		"d.bin":         "delta",
		"items.ndjson":  `{"key":"e","value":"ZWNobw==","metadata":"me","time_to_live_sec":3600}` + "\n",
		"bad.ndjson":    `{"key":"ok","value":"aGk="}` + "\n" + `{"key":"x","value":"!"}` + "\n",
		"badkey.ndjson": `{"key":"ok","value":"aGk="}` + "\n\n" + `{"key":"bad#key","value":"aGk="}` + "\n",
		"both.toml":     "[local_server.kv_stores]\ns = [{ key = \"k\", data = \"d\", file = \"b.txt\" }]\n",
		"missing.toml":  "[local_server.kv_stores]\ns = [{ key = \"k\", file = \"nope.txt\" }]\n",
		"broken.toml":   "[local_server.kv_stores]\ns = [{ key = }]\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestParseSeed(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in      string
		want    Seed
		wantErr bool
	}{
		{"fastly.toml", Seed{Path: "fastly.toml"}, false},
		{"dir/fastly.toml", Seed{Path: "dir/fastly.toml"}, false},
		{"a=b/fastly.toml", Seed{Store: "a", Path: "b/fastly.toml"}, false},
		{"my store=items,1.ndjson", Seed{Store: "my store", Path: "items,1.ndjson"}, false},
		{"./x=y/fastly.toml", Seed{Path: "./x=y/fastly.toml"}, false},
		{"=items.ndjson", Seed{}, true},
		{"name=", Seed{}, true},
		{"", Seed{}, true},
	} {
		got, err := ParseSeed(tc.in)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("ParseSeed(%q) = %+v, %v; want %+v (error %v)", tc.in, got, err, tc.want, tc.wantErr)
		}
	}
}

func TestSeedFlag(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		env  string
		args []string
		want []Seed
	}{
		{"none", "", nil, nil},
		{"env", "fastly.toml:s=items.ndjson", nil, []Seed{{Path: "fastly.toml"}, {Store: "s", Path: "items.ndjson"}}},
		{"flags", "", []string{"-seed", "a.toml", "-seed", "s=b.ndjson"}, []Seed{{Path: "a.toml"}, {Store: "s", Path: "b.ndjson"}}},
		{"flags replace env", "env.toml", []string{"-seed", "flag.toml"}, []Seed{{Path: "flag.toml"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			for _, flags := range []func(*flag.FlagSet, func(string) string) (*Config, error){GatewayFlags, LocalStoreFlags} {
				fs := flag.NewFlagSet("x", flag.ContinueOnError)
				fs.SetOutput(io.Discard)
				cfg, err := flags(fs, func(k string) string {
					if k == "KVGATE_SEED" {
						return tc.env
					}
					return ""
				})
				if err != nil {
					t.Fatal(err)
				}
				if err := fs.Parse(tc.args); err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(cfg.Seeds, tc.want) {
					t.Errorf("seeds %+v, want %+v", cfg.Seeds, tc.want)
				}
			}
		})
	}
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	if _, err := GatewayFlags(fs, func(k string) string {
		if k == "KVGATE_SEED" {
			return "=x"
		}
		return ""
	}); err == nil || !strings.Contains(err.Error(), "KVGATE_SEED") {
		t.Errorf("a bad KVGATE_SEED: %v", err)
	}
}

// wantItem is an item a seeded store must hold.
type wantItem struct {
	store, key, value, metadata string
}

var seededItems = []wantItem{
	{"inline", "a", "alpha", "ma"},
	{"inline", "b", "bravo", ""},
	{"from_json", "c", "charlie", ""},
	{"from_json", "d", "delta", "md"},
	{"nd", "e", "echo", "me"},
}

// TestSeedLocalStore seeds a store kept on disk twice, reopening it in
// between: the stores keep their ids and the items their values.
func TestSeedLocalStore(t *testing.T) {
	t.Parallel()
	dir := seedFiles(t)
	data := t.TempDir()
	seeds := []Seed{{Path: filepath.Join(dir, "fastly.toml")}, {Store: "nd", Path: filepath.Join(dir, "items.ndjson")}}
	for round := range 2 {
		store, err := localstore.Open(localstore.Config{Dir: data, StrictStoreIDs: true})
		if err != nil {
			t.Fatal(err)
		}
		if err := seedLocalStore(store, seeds, slog.New(slog.NewTextHandler(io.Discard, nil))); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		srv := &http.Server{Handler: store.Handler()}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go func() { _ = srv.Serve(ln) }()
		c, err := upstream.NewClient(upstream.ClientConfig{BaseURL: "http://" + ln.Addr().String(), Token: "x"})
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range seededItems {
			// Each store's id is its name: none had it before.
			it, err := c.GetItem(context.Background(), w.store, w.key)
			if err != nil || string(it.Value) != w.value || it.Metadata != w.metadata {
				t.Errorf("round %d: %s/%s = %+v, %v; want %q, %q", round, w.store, w.key, it, err, w.value, w.metadata)
			}
		}
		keys, err := c.ListKeys(context.Background(), "inline", upstream.ListOptions{})
		if err != nil || len(keys.Keys) != 2 {
			t.Errorf("round %d: inline keys %+v, %v", round, keys, err)
		}
		_ = srv.Close()
		if err := store.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestSeedErrors(t *testing.T) {
	t.Parallel()
	dir := seedFiles(t)
	for _, tc := range []struct {
		name string
		seed Seed
		want string
	}{
		{"bad toml", Seed{Path: filepath.Join(dir, "broken.toml")}, filepath.Join(dir, "broken.toml") + ": toml: line 2"},
		{"data and file", Seed{Path: filepath.Join(dir, "both.toml")}, filepath.Join(dir, "both.toml") + `: store "s": key "k": want exactly one of "data" and "file"`},
		{"missing file", Seed{Path: filepath.Join(dir, "missing.toml")}, filepath.Join(dir, "missing.toml") + `: store "s": key "k": open ` + filepath.Join(dir, "nope.txt")},
		{"missing toml", Seed{Path: filepath.Join(dir, "none.toml")}, filepath.Join(dir, "none.toml")},
		{"bad base64", Seed{Store: "s", Path: filepath.Join(dir, "bad.ndjson")}, filepath.Join(dir, "bad.ndjson") + ":2: value is not standard base64"},
		{"key the store refuses", Seed{Store: "s", Path: filepath.Join(dir, "badkey.ndjson")}, filepath.Join(dir, "badkey.ndjson") + `:3: key "bad#key": invalid key`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			store, err := localstore.Open(localstore.Config{})
			if err != nil {
				t.Fatal(err)
			}
			defer store.Close()
			err = seedLocalStore(store, []Seed{tc.seed}, slog.New(slog.NewTextHandler(io.Discard, nil)))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// TestRunSeeded starts kvgate and kvlocal in this process with -seed and
// reads the seeded items back; a bad seed file stops the start.
func TestRunSeeded(t *testing.T) {
	t.Parallel()
	dir := seedFiles(t)
	seeds := []string{"-seed", filepath.Join(dir, "fastly.toml"), "-seed", "nd=" + filepath.Join(dir, "items.ndjson")}

	t.Run("kvgate", func(t *testing.T) {
		t.Parallel()
		client, stop := runKvgate(t, func(cfg *Config) {
			cfg.Seeds = []Seed{{Path: filepath.Join(dir, "fastly.toml")}, {Store: "nd", Path: filepath.Join(dir, "items.ndjson")}}
		})
		defer stop()
		for _, w := range seededItems {
			res, err := client.GetItem(context.Background(), &kvv1.GetItemRequest{StoreId: w.store, Key: w.key})
			if err != nil || string(res.GetItem().GetValue()) != w.value || res.GetItem().GetMetadata() != w.metadata {
				t.Errorf("%s/%s = %v, %v", w.store, w.key, res.GetItem(), err)
			}
		}
	})

	t.Run("kvlocal", func(t *testing.T) {
		t.Parallel()
		fs := flag.NewFlagSet("kvlocal", flag.ContinueOnError)
		cfg, err := LocalStoreFlags(fs, func(string) string { return "" })
		if err != nil {
			t.Fatal(err)
		}
		if err := fs.Parse(append([]string{"-listen", "127.0.0.1:0", "-data", ""}, seeds...)); err != nil {
			t.Fatal(err)
		}
		ready := make(chan net.Addr, 1)
		cfg.Ready = func(addr net.Addr) { ready <- addr }
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- RunLocalStore(ctx, *cfg, slog.New(slog.NewTextHandler(io.Discard, nil))) }()
		defer func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("RunLocalStore: %v", err)
			}
		}()
		var addr net.Addr
		select {
		case addr = <-ready:
		case err := <-done:
			t.Fatalf("RunLocalStore returned before serving: %v", err)
		case <-time.After(time.Minute):
			t.Fatal("kvlocal did not become ready")
		}
		hc := &http.Client{Transport: &http.Transport{}}
		defer hc.CloseIdleConnections()
		c, err := upstream.NewClient(upstream.ClientConfig{BaseURL: "http://" + addr.String(), HTTPClient: hc, Token: "x"})
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range seededItems {
			it, err := c.GetItem(ctx, w.store, w.key)
			if err != nil || string(it.Value) != w.value || it.Metadata != w.metadata {
				t.Errorf("%s/%s = %+v, %v", w.store, w.key, it, err)
			}
		}
	})

	t.Run("bad seed stops the start", func(t *testing.T) {
		t.Parallel()
		for _, run := range []func(context.Context, Config, *slog.Logger) error{Run, RunLocalStore} {
			fs := flag.NewFlagSet("kvgate", flag.ContinueOnError)
			cfg, err := GatewayFlags(fs, func(string) string { return "" })
			if err != nil {
				t.Fatal(err)
			}
			cfg.Listen, cfg.DataDir = "127.0.0.1:0", ""
			cfg.Seeds = []Seed{{Store: "s", Path: filepath.Join(dir, "bad.ndjson")}}
			err = run(context.Background(), *cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
			if err == nil || !strings.Contains(err.Error(), "bad.ndjson:2:") {
				t.Errorf("start with a bad seed: %v", err)
			}
		}
	})

	t.Run("kvgate on Fastly refuses -seed", func(t *testing.T) {
		t.Parallel()
		cfg := Config{Listen: "127.0.0.1:0", MaxValueBytes: 1, FastlyToken: "t", Seeds: []Seed{{Path: "fastly.toml"}}}
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "-seed") {
			t.Errorf("Validate: %v", err)
		}
	})
}
