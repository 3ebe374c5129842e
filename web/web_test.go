package web_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	kvv1 "github.com/kvgate/kvgate/gen/go/fastly/kv/v1"
	"github.com/kvgate/kvgate/internal/kvtest"
)

// TestServedAtRoot checks the app's page and assets on kvgate's port, and
// that the RPC routes beside them still answer.
func TestServedAtRoot(t *testing.T) {
	t.Parallel()
	st := kvtest.Start(t, kvtest.Options{WebApp: true})
	cases := []struct {
		method, path    string
		wantStatus      int
		wantContentType string
		wantBodyPart    string
	}{
		{"GET", "/", http.StatusOK, "text/html; charset=utf-8", `<script type="module" src="/app.js">`},
		{"HEAD", "/", http.StatusOK, "text/html; charset=utf-8", ""},
		{"GET", "/app.js", http.StatusOK, "text/javascript; charset=utf-8", "streamKeys"},
		{"GET", "/app.css", http.StatusOK, "text/css; charset=utf-8", ":focus-visible"},
		{"GET", "/index.html", http.StatusNotFound, "", ""},
		{"POST", "/", http.StatusNotFound, "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			t.Parallel()
			res, body := fetch(t, tc.method, st.URL+tc.path)
			if res.StatusCode != tc.wantStatus {
				t.Fatalf("status %d, want %d", res.StatusCode, tc.wantStatus)
			}
			if tc.wantStatus != http.StatusOK {
				return
			}
			h := res.Header
			if got := h.Get("Content-Type"); got != tc.wantContentType {
				t.Errorf("Content-Type %q, want %q", got, tc.wantContentType)
			}
			if got := h.Get("X-Content-Type-Options"); got != "nosniff" {
				t.Errorf("X-Content-Type-Options %q, want nosniff", got)
			}
			csp := h.Get("Content-Security-Policy")
			for _, part := range []string{"default-src 'none'", "script-src 'self'", "connect-src 'self'", "frame-ancestors 'none'"} {
				if !strings.Contains(csp, part) {
					t.Errorf("Content-Security-Policy %q lacks %q", csp, part)
				}
			}
			if !strings.Contains(body, tc.wantBodyPart) {
				t.Errorf("body lacks %q", tc.wantBodyPart)
			}
		})
	}
	t.Run("RPCs", func(t *testing.T) {
		t.Parallel()
		c := st.NewClient(kvtest.H2CClient())
		ctx := t.Context()
		if _, err := c.PutItem(ctx, &kvv1.PutItemRequest{StoreId: "web", Key: "k", Value: []byte("v")}); err != nil {
			t.Fatal(err)
		}
		res, err := c.GetItem(ctx, &kvv1.GetItemRequest{StoreId: "web", Key: "k"})
		if err != nil || string(res.GetItem().GetValue()) != "v" {
			t.Fatalf("GetItem: %v, %v", res, err)
		}
	})
}

// TestOff checks that with the app off nothing is served at /.
func TestOff(t *testing.T) {
	t.Parallel()
	st := kvtest.Start(t, kvtest.Options{})
	for _, path := range []string{"/", "/app.js"} {
		if res, _ := fetch(t, "GET", st.URL+path); res.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: status %d with the app off, want 404", path, res.StatusCode)
		}
	}
}

func fetch(t *testing.T, method, url string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res, string(body)
}
