package web_test

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/kvgate/kvgate/internal/auth"
	"github.com/kvgate/kvgate/internal/kvtest"
	"github.com/kvgate/kvgate/upstream"
)

// TestBrowserAppToken drives the app against kvgate that asks for bearer
// tokens: opening a store without one shows the refusal
// (unauthenticated); after the person enters the token the store's keys
// are listed.
func TestBrowserAppToken(t *testing.T) {
	t.Parallel()
	d := newDriver(t)
	const store, secret = "web-token", "kvg-test-web-3c51a9"
	sum := sha256.Sum256([]byte(secret))
	tokens := filepath.Join(t.TempDir(), "tokens.yaml")
	file := fmt.Sprintf("tokens:\n  - name: web\n    sha256: %q\n    stores: [%q]\n    allow: [read, write, delete]\n",
		hex.EncodeToString(sum[:]), store)
	if err := os.WriteFile(tokens, []byte(file), 0o600); err != nil {
		t.Fatal(err)
	}
	st := kvtest.Start(t, kvtest.Options{WebApp: true, Auth: auth.Config{TokensFile: tokens}})
	// Seeded straight into the store, past kvgate's token check.
	if err := st.Client.PutItem(t.Context(), store, "seen/with-token", []byte("x"), upstream.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	d.run(t, st.URL+"/", store, []string{"DRIVE=token", "TOKEN=" + secret}, nil)
}
