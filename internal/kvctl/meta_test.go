package kvctl_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/kvgate/kvgate/internal/kvctl"
	"github.com/kvgate/kvgate/internal/kvtest"
	"github.com/kvgate/kvgate/upstream"
	"github.com/kvgate/kvgate/upstream/localstore"
)

// TestGetMetaMovesNoValue checks that get --meta reads with a HEAD alone
// and still prints the value's size, in text and JSON, while -o, which
// needs the value, still reads it.
func TestGetMetaMovesNoValue(t *testing.T) {
	t.Parallel()
	st := kvtest.Start(t, kvtest.Options{})
	value := strings.Repeat("v", 10_000)
	if err := st.Client.PutItem(t.Context(), "meta", "k", []byte(value), upstream.PutOptions{Metadata: "m"}); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		args      []string
		gets      int64
		wantInOut string
	}{
		{[]string{"get", "-s", "meta", "--meta", "k"}, 0, "size: 10000\nmetadata: m\n"},
		{[]string{"get", "-s", "meta", "--meta", "--json", "k"}, 0, `"size":10000`},
		{[]string{"get", "-s", "meta", "--meta", "-o", t.TempDir() + "/v", "k"}, 1, "size: 10000\n"},
	}
	for _, tc := range cases {
		gets, heads := st.Store.Count(localstore.RequestGet), st.Store.Count(localstore.RequestHead)
		got := kvctlAt(t, st.URL, "", tc.args...)
		if got.code != kvctl.ExitOK || !strings.Contains(got.stdout, tc.wantInOut) {
			t.Errorf("kvctl %s: exit %d, stdout %q, stderr %q; want %q printed", strings.Join(tc.args, " "), got.code, got.stdout, got.stderr, tc.wantInOut)
		}
		if strings.Contains(strings.Join(tc.args, " "), "--json") {
			var item map[string]any
			if err := json.Unmarshal([]byte(got.stdout), &item); err != nil || item["value"] != nil {
				t.Errorf("get --meta --json: %q (%v); want JSON without the value", got.stdout, err)
			}
		}
		g, h := st.Store.Count(localstore.RequestGet)-gets, st.Store.Count(localstore.RequestHead)-heads
		if g != tc.gets || (tc.gets == 0 && h != 1) {
			t.Errorf("kvctl %s sent %d GETs and %d HEADs upstream; want %d GETs (and a HEAD when none)", strings.Join(tc.args, " "), g, h, tc.gets)
		}
	}
}
