package auth_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kvgate/kvgate/internal/auth"
	"github.com/kvgate/kvgate/internal/kvtest"
	"github.com/kvgate/kvgate/internal/telemetry"
	"github.com/kvgate/kvgate/internal/testutil"
)

// TestSecretsStaySecret makes every RPC over every protocol with a good
// bearer token, a wrong one, none, and callers' own Fastly tokens, with
// kvgate logging everything it logs, then scans every byte kvgate wrote to
// its log, to its callers (headers, bodies, trailers) and to its metrics
// endpoint for the secrets.
func TestSecretsStaySecret(t *testing.T) {
	t.Parallel()
	path := tokensPath(t)
	good := token{name: "good", secret: "kvg-test-secret-good-4b9e", stores: []string{"s"}, allow: []string{"read", "write"}}
	const (
		bad       = "kvg-test-secret-bad-c81d"
		fastlyKey = "kvg-test-secret-fastly-f00f"
	)
	writeTokens(t, path, good)
	var log, seen testutil.LockedBuffer
	st := kvtest.Start(t, kvtest.Options{
		Auth:      auth.Config{TokensFile: path, FastlyTokenPassthrough: true, PollInterval: 10 * time.Millisecond},
		Telemetry: telemetry.Config{AdminListen: "127.0.0.1:0"},
		Logger:    logTo(&log),
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, proto := range protocols {
		for _, creds := range []credentials{
			{bearer: good.secret, fastlyKey: fastlyKey},
			{bearer: good.secret},
			{bearer: bad, fastlyKey: fastlyKey},
			{fastlyKey: fastlyKey},
			{authorization: "Basic " + good.secret},
			{},
		} {
			c := newClient(t, st, proto, creds, &seen)
			for _, r := range rpcs {
				for _, store := range []string{"s", "other"} {
					_ = r.call(ctx, c, store)
				}
			}
		}
	}
	// A rejected file is logged too: here an operator pasted the token
	// itself where its hash belongs.
	writeFile(t, path, "tokens:\n  - name: pasted\n    sha256: "+good.secret+"\n    stores: [s]\n    allow: [read]\n")
	waitFor(t, "the broken file is rejected", func() bool { return strings.Contains(log.String(), "token file rejected") })

	if !strings.Contains(log.String(), "caller=good") {
		t.Errorf("the log does not name the token:\n%s", log.String())
	}
	metrics := scrape(t, st.AdminURL+"/metrics")
	if !strings.Contains(metrics, "kvgate_rpc_requests_total") {
		t.Fatalf("the metrics show no RPC:\n%s", metrics)
	}
	for what, written := range map[string]string{"the log": log.String(), "the responses": seen.String(), "the metrics": metrics} {
		if written == "" {
			t.Fatalf("%s are empty: nothing was scanned", what)
		}
		for _, secret := range []string{good.secret, bad, fastlyKey} {
			if strings.Contains(written, secret) {
				t.Errorf("%s hold the secret %q", what, secret)
			}
		}
	}
}

// scrape returns the body of a GET of url.
func scrape(t *testing.T, url string) string {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v", url, res.StatusCode, err)
	}
	return string(body)
}
