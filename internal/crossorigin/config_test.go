package crossorigin

import (
	"slices"
	"strings"
	"testing"
)

func TestConfigOrigins(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name        string
		cfg         Config
		want        []string
		wantErrPart string // empty: valid
	}{
		{name: "none", cfg: Config{}, want: []string{}},
		{
			name: "as browsers spell them",
			cfg: Config{Origins: []string{
				"https://App.Example.com", "http://127.0.0.1:5173", "https://example.com:443",
				"http://example.com:80", "http://[::1]:3000", "https://*.example.net", "http://localhost:8443",
			}},
			want: []string{
				"https://app.example.com", "http://127.0.0.1:5173", "https://example.com",
				"http://example.com", "http://[::1]:3000", "https://*.example.net", "http://localhost:8443",
			},
		},
		{name: "any", cfg: Config{Origins: []string{"*"}}, want: []string{"*"}},
		{name: "credentials with listed origins", cfg: Config{Origins: []string{"https://a.example"}, AllowCredentials: true}, want: []string{"https://a.example"}},
		{name: "any with credentials", cfg: Config{Origins: []string{"*"}, AllowCredentials: true}, wantErrPart: "cannot be combined with allowing credentials"},
		{name: "any among others", cfg: Config{Origins: []string{"*", "https://a.example"}}, wantErrPart: "cannot be listed with others"},
		{name: "trailing slash", cfg: Config{Origins: []string{"https://a.example/"}}, wantErrPart: "no path"},
		{name: "path", cfg: Config{Origins: []string{"https://a.example/app"}}, wantErrPart: "no path"},
		{name: "query", cfg: Config{Origins: []string{"https://a.example?x=1"}}, wantErrPart: "no path, query"},
		{name: "no scheme", cfg: Config{Origins: []string{"a.example:3000"}}, wantErrPart: "want http://host[:port]"},
		{name: "other scheme", cfg: Config{Origins: []string{"ftp://a.example"}}, wantErrPart: "want http://host[:port]"},
		{name: "null", cfg: Config{Origins: []string{"null"}}, wantErrPart: "want http://host[:port]"},
		{name: "user", cfg: Config{Origins: []string{"https://u:p@a.example"}}, wantErrPart: "no user information"},
		{name: "bad port", cfg: Config{Origins: []string{"https://a.example:99999"}}, wantErrPart: "port must be"},
		{name: "empty port", cfg: Config{Origins: []string{"https://a.example:"}}, wantErrPart: "empty port"},
		{name: "wildcard inside a name", cfg: Config{Origins: []string{"https://app*.example"}}, wantErrPart: "optionally starting with *."},
		{name: "every error reported", cfg: Config{Origins: []string{"https://a/", "ftp://b"}}, wantErrPart: `"ftp://b"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			got, err := c.cfg.normalizedOrigins()
			if c.wantErrPart != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErrPart) {
					t.Fatalf("got %v, %v; want an error containing %q", got, err, c.wantErrPart)
				}
				if c.cfg.Validate() == nil {
					t.Error("Validate accepted it")
				}
				if _, err := Middleware(c.cfg); err == nil {
					t.Error("Middleware accepted it")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, c.want) {
				t.Errorf("got %q, want %q", got, c.want)
			}
		})
	}
}

func TestHeaderLists(t *testing.T) {
	t.Parallel()
	// The request headers the issue names, which Connect-Web and gRPC-Web
	// clients send, and the gRPC-Web status headers.
	for _, h := range []string{"Content-Type", "Connect-Protocol-Version", "Connect-Timeout-Ms", "Grpc-Timeout", "X-Grpc-Web", "X-User-Agent", "Authorization"} {
		if !slices.Contains(AllowedHeaders(), h) {
			t.Errorf("AllowedHeaders() lacks %s", h)
		}
	}
	for _, h := range []string{"Grpc-Status", "Grpc-Message", "Grpc-Status-Details-Bin"} {
		if !slices.Contains(ExposedHeaders(), h) {
			t.Errorf("ExposedHeaders() lacks %s", h)
		}
	}
}
