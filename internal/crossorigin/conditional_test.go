package crossorigin_test

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/kvgate/kvgate/internal/crossorigin"
	"github.com/kvgate/kvgate/internal/kvtest"
	"github.com/kvgate/kvgate/upstream"
)

// TestConditionalGetAcrossOrigins checks what a page needs to revalidate
// a GetItem it keeps: a preflight for a Connect GET carrying If-None-Match
// is allowed, and the answer (a 304 for the generation the page holds)
// exposes ETag to the page's script.
func TestConditionalGetAcrossOrigins(t *testing.T) {
	t.Parallel()
	st := kvtest.Start(t, kvtest.Options{CORS: crossorigin.Config{Origins: []string{allowedOrigin}}})
	hc := kvtest.HTTP1Client()
	if err := st.Client.PutItem(t.Context(), "cors", "k", []byte("v"), upstream.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	target := st.URL + "/fastly.kv.v1.KVStoreService/GetItem?connect=v1&encoding=json&message=" +
		url.QueryEscape(`{"storeId":"cors","key":"k"}`)

	res := do(t, hc, http.MethodOptions, target, http.Header{
		"Origin":                         {allowedOrigin},
		"Access-Control-Request-Method":  {http.MethodGet},
		"Access-Control-Request-Headers": {"connect-protocol-version,if-none-match"},
	}, "")
	if res.StatusCode != http.StatusNoContent {
		t.Fatalf("preflight: status %d, want 204", res.StatusCode)
	}
	if got := res.Header.Get("Access-Control-Allow-Headers"); got != "connect-protocol-version,if-none-match" {
		t.Errorf("preflight: Access-Control-Allow-Headers %q, want both headers allowed", got)
	}

	first := do(t, hc, http.MethodGet, target, http.Header{"Origin": {allowedOrigin}, "Connect-Protocol-Version": {"1"}}, "")
	etag := first.Header.Get("ETag")
	if first.StatusCode != http.StatusOK || etag == "" {
		t.Fatalf("GET: status %d, ETag %q; want 200 with an ETag", first.StatusCode, etag)
	}
	again := do(t, hc, http.MethodGet, target, http.Header{
		"Origin": {allowedOrigin}, "Connect-Protocol-Version": {"1"}, "If-None-Match": {etag},
	}, "")
	if again.StatusCode != http.StatusNotModified || again.Header.Get("ETag") != etag {
		t.Errorf("revalidation: status %d, ETag %q; want 304 with ETag %s", again.StatusCode, again.Header.Get("ETag"), etag)
	}
	for _, r := range []*http.Response{first, again} {
		var exposed []string
		for f := range strings.SplitSeq(r.Header.Get("Access-Control-Expose-Headers"), ",") {
			exposed = append(exposed, http.CanonicalHeaderKey(strings.TrimSpace(f)))
		}
		if !slices.Contains(exposed, "Etag") || r.Header.Get("Access-Control-Allow-Origin") != allowedOrigin {
			t.Errorf("status %d: Access-Control-Expose-Headers %q, Allow-Origin %q; want ETag exposed to %s",
				r.StatusCode, exposed, r.Header.Get("Access-Control-Allow-Origin"), allowedOrigin)
		}
	}
}
