package localstore_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/kvgate/kvgate/upstream/localstore"
)

// TestOpenStoreNamed checks how a store is found by name or created: with
// the name as its id when that id is free, else with a new id.
func TestOpenStoreNamed(t *testing.T) {
	t.Parallel()
	h := newHarness(t, localstore.Config{StrictStoreIDs: true})
	created := h.createStore(t, "made-by-post")
	renamed := h.createStore(t, "before")
	if resp, body := h.call(t, "PUT", storeTarget(renamed.ID), `{"name":"after"}`); resp.StatusCode != 200 {
		t.Fatalf("rename: %d %s", resp.StatusCode, body)
	}
	for _, tc := range []struct {
		name        string
		wantID      string // empty: a new id of Fastly's form
		wantCreated bool
	}{
		{"made-by-post", created.ID, false},
		{"after", renamed.ID, false},
		{"fresh", "fresh", true},
		{"fresh", "fresh", false},
		// A name that is another store's id: the new store gets its own id.
		{created.ID, "", true},
	} {
		id, isNew, err := h.store.OpenStoreNamed(tc.name)
		okID := id == tc.wantID || tc.wantID == "" && id != tc.name && storeIDPattern.MatchString(id)
		if err != nil || !okID || isNew != tc.wantCreated {
			t.Errorf("OpenStoreNamed(%q) = %q, %v, %v; want %q, %v", tc.name, id, isNew, err, tc.wantID, tc.wantCreated)
		}
		if err == nil {
			if status, got := h.getStore(t, id); status != 200 || got.Name != tc.name {
				t.Errorf("store %q: status %d, %+v", id, status, got)
			}
		}
	}
	if _, _, err := h.store.OpenStoreNamed(""); err == nil {
		t.Error(`OpenStoreNamed("") succeeded`)
	}
}

// TestPutItems checks that PutItems overwrites, sets metadata and TTL, and
// refuses a bad item with its index and key, writing nothing.
func TestPutItems(t *testing.T) {
	t.Parallel()
	h := newHarness(t, localstore.Config{MaxValueBytes: 8})
	ctx := context.Background()
	items := []localstore.Item{
		{Key: "a", Value: []byte("1"), Metadata: "m"},
		{Key: "b", Value: []byte("2"), TTL: time.Hour},
	}
	for range 2 { // the second time overwrites with the same values
		if err := h.store.PutItems("s", items); err != nil {
			t.Fatal(err)
		}
		it, err := h.c.GetItem(ctx, "s", "a")
		if err != nil || string(it.Value) != "1" || it.Metadata != "m" {
			t.Fatalf("a: %+v, %v", it, err)
		}
	}
	for _, tc := range []struct {
		item localstore.Item
		want string
	}{
		{localstore.Item{Key: "bad#key"}, `item 1 (key "bad#key"): invalid key`},
		{localstore.Item{Key: "k", Metadata: "a\nb"}, `item 1 (key "k"): invalid metadata`},
		{localstore.Item{Key: "k", Value: []byte("123456789")}, `item 1 (key "k"): value is 9 bytes; the limit is 8`},
	} {
		err := h.store.PutItems("s", []localstore.Item{{Key: "c", Value: []byte("3")}, tc.item})
		var ie *localstore.ItemError
		if !errors.As(err, &ie) || ie.Index != 1 || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("PutItems(%+v): %v, want %q", tc.item, err, tc.want)
		}
	}
	if _, err := h.c.GetItem(ctx, "s", "c"); err == nil {
		t.Error("a refused PutItems wrote its good items")
	}
}
