package crossorigin_test

import (
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"

	kvv1 "github.com/kvgate/kvgate/gen/go/fastly/kv/v1"
	"github.com/kvgate/kvgate/internal/crossorigin"
	"github.com/kvgate/kvgate/internal/kvtest"
)

const (
	allowedOrigin = "http://app.example:5173"
	otherOrigin   = "http://evil.example"
	// requestHeaders is what Connect-Web and gRPC-Web clients ask to send.
	requestHeaders = "authorization,connect-protocol-version,connect-timeout-ms,content-type,grpc-timeout,x-grpc-web,x-user-agent"
)

// procedures lists the path of every RPC of the KV service.
func procedures() []string {
	svc := kvv1.File_fastly_kv_v1_kv_proto.Services().Get(0)
	var out []string
	for i := range svc.Methods().Len() {
		out = append(out, "/"+string(svc.FullName())+"/"+string(svc.Methods().Get(i).Name()))
	}
	return out
}

// do sends one request to the stack and returns the response, its body
// read.
func do(t *testing.T, hc *http.Client, method, url string, header http.Header, body string) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header = header
	res, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, res.Body)
	_ = res.Body.Close()
	return res
}

func preflightHeader(origin string) http.Header {
	return http.Header{
		"Origin":                         {origin},
		"Access-Control-Request-Method":  {http.MethodPost},
		"Access-Control-Request-Headers": {requestHeaders},
	}
}

// accessControl returns the response's Access-Control-* headers.
func accessControl(res *http.Response) http.Header {
	out := http.Header{}
	for k, v := range res.Header {
		if strings.HasPrefix(k, "Access-Control-") {
			out[k] = v
		}
	}
	return out
}

// TestPreflight sends the preflight a browser sends before each RPC, from
// an allowed origin and from another, over HTTP/1.1 and h2c.
func TestPreflight(t *testing.T) {
	t.Parallel()
	st := kvtest.Start(t, kvtest.Options{CORS: crossorigin.Config{Origins: []string{"http://APP.example:5173", "https://other.example"}}})
	clients := map[string]*http.Client{"http1": kvtest.HTTP1Client(), "h2c": kvtest.H2CClient()}
	for name, hc := range clients {
		for _, proc := range procedures() {
			t.Run(name+proc, func(t *testing.T) {
				t.Parallel()
				res := do(t, hc, http.MethodOptions, st.URL+proc, preflightHeader(allowedOrigin), "")
				if res.StatusCode != http.StatusNoContent {
					t.Errorf("allowed origin: status %d, want 204", res.StatusCode)
				}
				want := http.Header{
					"Access-Control-Allow-Origin":  {allowedOrigin},
					"Access-Control-Allow-Methods": {http.MethodPost},
					"Access-Control-Allow-Headers": {requestHeaders},
					"Access-Control-Max-Age":       {"7200"},
				}
				if got := accessControl(res); !equalHeaders(got, want) {
					t.Errorf("allowed origin: Access-Control headers %v, want %v", got, want)
				}
				wantVary(t, res, "Origin", "Access-Control-Request-Method", "Access-Control-Request-Headers")

				res = do(t, hc, http.MethodOptions, st.URL+proc, preflightHeader(otherOrigin), "")
				if res.StatusCode != http.StatusForbidden {
					t.Errorf("other origin: status %d, want 403", res.StatusCode)
				}
				if got := accessControl(res); len(got) != 0 {
					t.Errorf("other origin: Access-Control headers %v, want none", got)
				}
				wantVary(t, res, "Origin")
			})
		}
	}
	if n := st.Requests(); n != 0 {
		t.Errorf("preflights sent %d requests upstream, want 0", n)
	}
}

// TestActualRequest checks the headers of real RPC responses: an error
// (GetItem of a missing key) over Connect, from an allowed origin, from
// another and with credentials or any origin allowed.
func TestActualRequest(t *testing.T) {
	t.Parallel()
	exposed := "Grpc-Status, Grpc-Message, Grpc-Status-Details-Bin, X-Request-Id, Etag"
	cases := []struct {
		name   string
		cfg    crossorigin.Config
		origin string
		want   http.Header
	}{
		{
			name: "allowed", cfg: crossorigin.Config{Origins: []string{allowedOrigin}}, origin: allowedOrigin,
			want: http.Header{"Access-Control-Allow-Origin": {allowedOrigin}, "Access-Control-Expose-Headers": {exposed}},
		},
		{name: "other origin", cfg: crossorigin.Config{Origins: []string{allowedOrigin}}, origin: otherOrigin, want: http.Header{}},
		{name: "no CORS configured", origin: allowedOrigin, want: http.Header{}},
		{
			name: "credentials", cfg: crossorigin.Config{Origins: []string{allowedOrigin}, AllowCredentials: true}, origin: allowedOrigin,
			want: http.Header{
				"Access-Control-Allow-Origin": {allowedOrigin}, "Access-Control-Expose-Headers": {exposed},
				"Access-Control-Allow-Credentials": {"true"},
			},
		},
		{
			name: "any origin", cfg: crossorigin.Config{Origins: []string{"*"}}, origin: otherOrigin,
			want: http.Header{"Access-Control-Allow-Origin": {"*"}, "Access-Control-Expose-Headers": {exposed}},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			st := kvtest.Start(t, kvtest.Options{CORS: c.cfg})
			res := do(t, kvtest.HTTP1Client(), http.MethodPost, st.URL+"/fastly.kv.v1.KVStoreService/GetItem", http.Header{
				"Origin": {c.origin}, "Content-Type": {"application/json"}, "Connect-Protocol-Version": {"1"},
			}, `{"storeId":"demo","key":"missing"}`)
			if res.StatusCode != http.StatusNotFound {
				t.Errorf("status %d, want 404 (not_found)", res.StatusCode)
			}
			if got := accessControl(res); !equalHeaders(got, c.want) {
				t.Errorf("Access-Control headers %v, want %v", got, c.want)
			}
			if c.cfg.Enabled() {
				wantVary(t, res, "Origin")
			}
		})
	}
}

func equalHeaders(a, b http.Header) bool {
	return maps.EqualFunc(a, b, slices.Equal)
}

// wantVary checks that res varies on each of names, so that no cache
// serves one origin's answer to another.
func wantVary(t *testing.T, res *http.Response, names ...string) {
	t.Helper()
	var vary []string
	for _, v := range res.Header.Values("Vary") {
		for f := range strings.SplitSeq(v, ",") {
			vary = append(vary, http.CanonicalHeaderKey(strings.TrimSpace(f)))
		}
	}
	for _, n := range names {
		if !slices.Contains(vary, n) {
			t.Errorf("Vary %q lacks %s", vary, n)
		}
	}
}
