package localstore_test

import (
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/kvgate/kvgate/internal/cassette"
	"github.com/kvgate/kvgate/internal/kvtest"
	"github.com/kvgate/kvgate/upstream/localstore"
)

// onlyInteraction loads a recording of a single call.
func onlyInteraction(t *testing.T, name string) cassette.Interaction {
	t.Helper()
	rec := kvtest.LoadRecording(t, name)
	if len(rec.Interactions) != 1 {
		t.Fatalf("%s has %d interactions, want 1", name, len(rec.Interactions))
	}
	return rec.Interactions[0]
}

// compareStoreCall compares the local store's answer to a store-level call
// with Fastly's: the status line, the headers clients read, and the body
// byte for byte once the recorded id and times are replaced by the local
// ones (replace holds recorded, local pairs).
func compareStoreCall(t *testing.T, rec cassette.Response, got localResponse, replace ...string) {
	t.Helper()
	if got.status != rec.Status {
		t.Fatalf("status %q (body %q), recorded %q", got.status, got.body, rec.Status)
	}
	for _, name := range []string{"Content-Type", "Cache-Control", "Generation", "Metadata"} {
		want, inRec := rec.Headers[name]
		have, inLocal := got.header[name]
		if inRec != inLocal || !slices.Equal(have, want) {
			t.Errorf("header %s = %q (present %t), recorded %q (present %t)", name, have, inLocal, want, inRec)
		}
	}
	if want := strings.NewReplacer(replace...).Replace(rec.Body); got.body != want {
		t.Errorf("body\n%s\nwant (recorded, with the local id and times)\n%s", got.body, want)
	}
}

// detailsReplacements maps a recorded store's id and times to a local one's.
func detailsReplacements(t *testing.T, recBody, localBody string) []string {
	t.Helper()
	rec := decodeAs[storeDetails](t, []byte(recBody))
	local := decodeAs[storeDetails](t, []byte(localBody))
	if !storeIDPattern.MatchString(local.ID) {
		t.Errorf("id %q is not of the recorded form (%s, like %s)", local.ID, storeIDPattern, rec.ID)
	}
	for _, ts := range []string{local.CreatedAt, local.UpdatedAt} {
		if !storeTimePattern.MatchString(ts) {
			t.Errorf("time %q is not of the recorded form (like %q)", ts, rec.CreatedAt)
		}
	}
	return []string{
		`"id":"` + rec.ID + `"`, `"id":"` + local.ID + `"`,
		`"created_at":"` + rec.CreatedAt + `"`, `"created_at":"` + local.CreatedAt + `"`,
		`"updated_at":"` + rec.UpdatedAt + `"`, `"updated_at":"` + local.UpdatedAt + `"`,
	}
}

// TestLocalStoreSessionFidelity replays go-fastly's whole recorded session,
// store calls included, against a local store with strict store ids, as
// Fastly has them: list the (empty) stores, create one, describe it, run
// every item step against the created id, delete the emptied store, and
// list nothing again.
func TestLocalStoreSessionFidelity(t *testing.T) {
	t.Parallel()
	rp := newReplayer(startLocalStoreWith(t, localstore.Config{StrictStoreIDs: true}))

	list := onlyInteraction(t, "list-store")
	t.Run("list-store", func(t *testing.T) {
		compareStoreCall(t, list.Response, rp.replay(t, list.Request))
	})

	var replace []string
	if !t.Run("create-store", func(t *testing.T) {
		in := onlyInteraction(t, "create-store")
		got := rp.replay(t, in.Request)
		if got.code != in.Response.Code {
			t.Fatalf("status %q (body %q), recorded %q", got.status, got.body, in.Response.Status)
		}
		replace = detailsReplacements(t, in.Response.Body, got.body)
		compareStoreCall(t, in.Response, got, replace...)
		rp.storeID = decodeAs[storeDetails](t, []byte(got.body)).ID
	}) {
		t.Fatal("create-store failed; stopping the session")
	}

	t.Run("get-store", func(t *testing.T) {
		in := onlyInteraction(t, "get-store")
		compareStoreCall(t, in.Response, rp.replay(t, in.Request), replace...)
	})

	replaySequence(t, rp)

	t.Run("cleanup store", func(t *testing.T) {
		rec := kvtest.LoadRecording(t, "cleanup")
		var found bool
		for _, in := range rec.Interactions {
			u, err := in.Request.ParsedURL()
			if err != nil {
				t.Fatal(err)
			}
			if u.EscapedPath() != "/resources/stores/kv/"+recordedStore {
				continue
			}
			found = true
			compareStoreCall(t, in.Response, rp.replay(t, in.Request))
		}
		if !found {
			t.Fatal("cleanup recording deletes no store")
		}
	})

	t.Run("list-store after cleanup", func(t *testing.T) {
		compareStoreCall(t, list.Response, rp.replay(t, list.Request))
	})
}

// TestLocalStoreStoreRecordingsShape checks the store recordings have the
// shapes the local store copies, so a new recording that changes them
// fails here rather than passing by substitution.
func TestLocalStoreStoreRecordingsShape(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, method, path string
		status             int
	}{
		{"list-store", http.MethodGet, "/resources/stores/kv", http.StatusOK},
		{"create-store", http.MethodPost, "/resources/stores/kv", http.StatusCreated},
		{"get-store", http.MethodGet, "/resources/stores/kv/" + recordedStore, http.StatusOK},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			in := onlyInteraction(t, tc.name)
			u, err := in.Request.ParsedURL()
			if err != nil {
				t.Fatal(err)
			}
			if in.Request.Method != tc.method || u.EscapedPath() != tc.path || in.Response.Code != tc.status {
				t.Errorf("recorded %s %s → %d, want %s %s → %d",
					in.Request.Method, u.EscapedPath(), in.Response.Code, tc.method, tc.path, tc.status)
			}
			if tc.name == "list-store" {
				return
			}
			d := decodeAs[storeDetails](t, []byte(in.Response.Body))
			if d.ID != recordedStore || !storeIDPattern.MatchString(d.ID) || !storeTimePattern.MatchString(d.CreatedAt) {
				t.Errorf("recorded details %+v", d)
			}
		})
	}
}
