package auth

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect/v2"

	kvv1 "github.com/kvgate/kvgate/gen/go/fastly/kv/v1"
)

// hashOf is the token file's sha256 of token.
func hashOf(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

func TestParseTokensRefusesBadFiles(t *testing.T) {
	t.Parallel()
	good := hashOf("good")
	cases := []struct {
		name, file string
		// wantErr are parts the error must contain (the entry's position
		// and name, and what is wrong).
		wantErr []string
	}{
		{"empty file", "", []string{"empty"}},
		{"no tokens list", "other: 1\n", []string{"other"}},
		{"tokens missing", "# nothing\n{}\n", []string{"no tokens"}},
		{"unknown field", "tokens:\n  - name: a\n    sha256: " + good + "\n    stores: [s]\n    allow: [read]\n    scope: x\n", []string{"scope"}},
		{"no name", "tokens:\n  - sha256: " + good + "\n    stores: [s]\n    allow: [read]\n", []string{"token 1", "name is required"}},
		{"short hash", "tokens:\n  - name: ci\n    sha256: abc\n    stores: [s]\n    allow: [read]\n", []string{`token 1 ("ci")`, "64 hex digits"}},
		{"not hex", "tokens:\n  - name: ci\n    sha256: " + strings.Repeat("z", 64) + "\n    stores: [s]\n    allow: [read]\n", []string{`"ci"`, "64 hex digits"}},
		{"no stores", "tokens:\n  - name: ci\n    sha256: " + good + "\n    allow: [read]\n", []string{`"ci"`, "stores"}},
		{"empty store", "tokens:\n  - name: ci\n    sha256: " + good + "\n    stores: [\"\"]\n    allow: [read]\n", []string{`"ci"`, "empty"}},
		{"star inside", "tokens:\n  - name: ci\n    sha256: " + good + "\n    stores: [\"a*b\"]\n    allow: [read]\n", []string{`"ci"`, "only at its end"}},
		{"unknown right", "tokens:\n  - name: ci\n    sha256: " + good + "\n    stores: [s]\n    allow: [read, admin]\n", []string{`"ci"`, "admin"}},
		{"no rights", "tokens:\n  - name: ci\n    sha256: " + good + "\n    stores: [s]\n", []string{`"ci"`, "allow"}},
		{"burst without rate", "tokens:\n  - name: ci\n    sha256: " + good + "\n    stores: [s]\n    allow: [read]\n    burst: 3\n", []string{`"ci"`, "burst needs a rate"}},
		{"negative rate", "tokens:\n  - name: ci\n    sha256: " + good + "\n    stores: [s]\n    allow: [read]\n    rate: -1\n", []string{`"ci"`, "negative"}},
		{"second entry", "tokens:\n  - name: a\n    sha256: " + good + "\n    stores: [s]\n    allow: [read]\n  - name: b\n    sha256: " + good[:10] + "\n    stores: [s]\n    allow: [read]\n", []string{`token 2 ("b")`}},
		{"duplicate name", "tokens:\n  - name: a\n    sha256: " + good + "\n    stores: [s]\n    allow: [read]\n  - name: a\n    sha256: " + hashOf("other") + "\n    stores: [s]\n    allow: [read]\n", []string{"token 2", "name"}},
		{"duplicate hash", "tokens:\n  - name: a\n    sha256: " + good + "\n    stores: [s]\n    allow: [read]\n  - name: b\n    sha256: " + good + "\n    stores: [s]\n    allow: [read]\n", []string{"token 2", `same sha256 as token "a"`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := parseTokens([]byte(tc.file))
			if err == nil {
				t.Fatal("accepted")
			}
			for _, want := range tc.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
			if strings.Contains(err.Error(), good) {
				t.Errorf("error %q quotes a sha256", err)
			}
		})
	}
}

func TestParseTokens(t *testing.T) {
	t.Parallel()
	file := `
tokens:
  - name: ci-writer            # shown in logs and metrics instead of the token
    sha256: "` + strings.ToUpper(hashOf("w")) + `"
    stores: ["demo", "staging-*"]
    allow: [read, write, delete]
  - name: reader
    sha256: "` + hashOf("r") + `"
    stores: ["*"]
    allow: [read]
    rate: 2.5
`
	set, err := parseTokens([]byte(file))
	if err != nil {
		t.Fatal(err)
	}
	if e := set.lookup("w"); e == nil || e.name != "ci-writer" || e.rights != rightRead|rightWrite|rightDelete || e.rate != 0 {
		t.Errorf("lookup(w) = %+v", e)
	}
	if e := set.lookup("r"); e == nil || e.name != "reader" || e.rights != rightRead || e.rate != 2.5 || e.burst != 3 {
		t.Errorf("lookup(r) = %+v", e)
	}
	for _, token := range []string{"", "x", "W", hashOf("w")} {
		if e := set.lookup(token); e != nil {
			t.Errorf("lookup(%q) = %s, want none", token, e.name)
		}
	}
}

func TestStoreScopes(t *testing.T) {
	t.Parallel()
	e := &tokenEntry{}
	for _, s := range []string{"demo", "staging-*", "a*"} {
		p, err := parseStorePattern(s)
		if err != nil {
			t.Fatal(err)
		}
		e.stores = append(e.stores, p)
	}
	for store, want := range map[string]bool{
		"demo": true, "demo2": false, "dem": false, "": false,
		"staging-": true, "staging-eu": true, "staging": false, "xstaging-eu": false,
		"a": true, "abc": true, "b": false,
	} {
		if got := e.mayUse(store); got != want {
			t.Errorf("mayUse(%q) = %v, want %v", store, got, want)
		}
	}
	all := &tokenEntry{stores: []storePattern{{prefix: true}}}
	if !all.mayUse("anything") {
		t.Error(`"*" does not cover every store`)
	}
}

// TestRights checks the right every KV procedure needs, and that the
// table covers every method the service has: a method missing from it
// would be refused to every token.
func TestRights(t *testing.T) {
	t.Parallel()
	want := map[string]right{
		"GetItem": rightRead, "ListKeys": rightRead, "StreamKeys": rightRead,
		"PutItem": rightWrite, "PutItems": rightWrite, "BatchPutItems": rightWrite,
		"DeleteItem": rightDelete,
		"CopyItems":  rightRead | rightWrite,
	}
	methods := kvv1.File_fastly_kv_v1_kv_proto.Services().ByName("KVStoreService").Methods()
	if methods.Len() != len(want) || len(procedureRights) != len(want) {
		t.Fatalf("the service has %d methods, the rights table %d, this test %d", methods.Len(), len(procedureRights), len(want))
	}
	for i := range methods.Len() {
		m := methods.Get(i)
		procedure := "/" + string(m.Parent().FullName()) + "/" + string(m.Name())
		got, ok := procedureRights[procedure]
		if !ok || got != want[string(m.Name())] {
			t.Errorf("%s needs %v (listed %v), want %v", procedure, got, ok, want[string(m.Name())])
		}
	}
	for _, tc := range []struct {
		rights right
		need   right
		want   bool
	}{
		{rightRead, rightRead, true},
		{rightRead, rightWrite, false},
		{rightRead | rightWrite, rightDelete, false},
		{rightRead | rightWrite | rightDelete, rightDelete, true},
		{rightWrite, rightRead, false},
	} {
		if got := (&tokenEntry{rights: tc.rights}).may(tc.need); got != tc.want {
			t.Errorf("rights %b may %v = %v, want %v", tc.rights, tc.need, got, tc.want)
		}
	}
}

// TestRateCarriesOverReload checks that a reload keeps a token's spent
// rate when the token and its rate are unchanged, and starts afresh when
// the rate changed.
func TestRateCarriesOverReload(t *testing.T) {
	t.Parallel()
	file := func(rate string) []byte {
		return []byte("tokens:\n  - name: a\n    sha256: " + hashOf("a") + "\n    stores: [s]\n    allow: [read]\n    rate: " + rate + "\n")
	}
	now := time.Now()
	first, _ := parseTokens(file("0.001"))
	first.startLimiters(nil)
	if w := first.entries[0].wait(now); w != 0 {
		t.Fatalf("first request waits %v", w)
	}
	if w := first.entries[0].wait(now); w <= 0 {
		t.Fatal("second request within the burst of one was allowed")
	}
	same, _ := parseTokens(file("0.001"))
	same.startLimiters(first)
	if w := same.entries[0].wait(now); w <= 0 {
		t.Error("a reload with the same rate handed out a fresh burst")
	}
	changed, _ := parseTokens(file("0.002"))
	changed.startLimiters(same)
	if w := changed.entries[0].wait(now); w != 0 {
		t.Errorf("a reload with a new rate still waits %v", w)
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		cfg      Config
		listen   string
		haveKey  bool
		wantFail bool
	}{
		{"loopback v4", Config{}, "127.0.0.1:8080", false, false},
		{"loopback 127/8", Config{}, "127.1.2.3:8080", false, false},
		{"loopback v6", Config{}, "[::1]:8080", false, false},
		{"localhost", Config{}, "localhost:8080", false, false},
		{"every interface", Config{}, "0.0.0.0:8080", false, true},
		{"every interface, no host", Config{}, ":8080", false, true},
		{"v6 any", Config{}, "[::]:8080", false, true},
		{"a public name", Config{}, "example.com:8080", false, true},
		{"tokens", Config{TokensFile: "t.yaml"}, "0.0.0.0:8080", false, false},
		{"pass-through", Config{FastlyTokenPassthrough: true}, "0.0.0.0:8080", false, false},
		{"explicitly open", Config{AllowUnauthenticated: true}, "0.0.0.0:8080", false, false},
		{"pass-through and a Fastly token", Config{FastlyTokenPassthrough: true}, "127.0.0.1:1", true, true},
		{"token policy without tokens", Config{Health: PolicyToken}, "127.0.0.1:1", false, true},
		{"token policy with tokens", Config{TokensFile: "t", Reflection: PolicyToken}, "127.0.0.1:1", false, false},
		{"unknown policy", Config{Health: "closed"}, "127.0.0.1:1", false, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if err := tc.cfg.Validate(tc.listen, tc.haveKey); (err != nil) != tc.wantFail {
				t.Errorf("Validate(%q) = %v, want failure %v", tc.listen, err, tc.wantFail)
			}
		})
	}
}

// TestUnlistedProcedureRefused checks that a KV procedure missing from the
// rights table is refused to every token, whatever its rights.
func TestUnlistedProcedureRefused(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "tokens.yaml")
	file := "tokens:\n  - name: all\n    sha256: " + hashOf("tok") + "\n    stores: [\"*\"]\n    allow: [read, write, delete]\n"
	if err := os.WriteFile(path, []byte(file), 0o600); err != nil {
		t.Fatal(err)
	}
	g, err := NewGuard(Config{TokensFile: path}, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := g.identify(func(string) string { return "Bearer tok" })
	if c.entry == nil {
		t.Fatal("the token was not found")
	}
	ctx := context.WithValue(context.Background(), callerKey{}, c)
	called := false
	serve := g.KVInterceptor()(func(context.Context, connect.Spec, connect.ServerStream) error {
		called = true
		return nil
	})
	err = serve(ctx, connect.Spec{Procedure: "/fastly.kv.v1.KVStoreService/DropStore"}, nil)
	if connect.CodeOf(err) != connect.CodePermissionDenied || called {
		t.Errorf("an unlisted procedure: %v (handler called: %v), want permission denied", err, called)
	}
}
