package gofastly_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/kvgate/kvgate/upstream/localstore"
)

// TestAccountsProbe makes the request Fastly's CLI makes to its accounts
// endpoint before any command that needs a token, and checks the answer
// passes the CLI's own checks: a status below 500 and a JSON body that
// decodes into its OpenID Connect metadata. With it, the CLI can be pointed
// at kvlocal for its accounts endpoint as well as its API endpoint.
func TestAccountsProbe(t *testing.T) {
	t.Parallel()
	store, err := localstore.Open(localstore.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	srv := httptest.NewServer(store.Handler())
	t.Cleanup(srv.Close)

	resp, err := http.Get(srv.URL + "/realms/fastly/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= http.StatusInternalServerError {
		t.Fatalf("status %d; the CLI gives up on 5xx", resp.StatusCode)
	}
	// The fields the CLI reads; it refuses a body they do not decode from.
	var metadata struct {
		Auth  string `json:"authorization_endpoint"`
		Certs string `json:"jwks_uri"`
		Token string `json:"token_endpoint"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&metadata); err != nil {
		t.Fatalf("body is not the JSON the CLI decodes: %v", err)
	}
}
