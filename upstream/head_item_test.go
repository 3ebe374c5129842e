package upstream_test

import (
	"bytes"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/kvgate/kvgate/upstream"
	"github.com/kvgate/kvgate/upstream/localstore"
)

// TestHeadItemAgainstLocalStore reads items with HeadItem from the local
// store over HTTP and compares each answer with GetItem's: the same
// metadata, generation and last-modified time, the value's size, and no
// value; a missing item is KindNotFound. The store counts the requests,
// which shows a HEAD went out and no GET.
func TestHeadItemAgainstLocalStore(t *testing.T) {
	t.Parallel()
	store, err := localstore.Open(localstore.Config{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	srv := httptest.NewServer(store.Handler())
	t.Cleanup(srv.Close)
	c, err := upstream.NewClient(upstream.ClientConfig{BaseURL: srv.URL, HTTPClient: srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	const sid = "head"
	cases := []struct {
		name, key string
		value     []byte
		metadata  string
	}{
		{"empty value", "empty", nil, ""},
		{"small with metadata", "small", []byte("hello"), `{"a":1}`},
		{"binary", "bin", []byte{0, 0xff, 1, 2}, "m"},
		{"large", "large", bytes.Repeat([]byte("x"), 1<<20), ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if err := c.PutItem(t.Context(), sid, tc.key, tc.value, upstream.PutOptions{Metadata: tc.metadata}); err != nil {
				t.Fatal(err)
			}
			gets, heads := store.Count(localstore.RequestGet), store.Count(localstore.RequestHead)
			head, err := c.HeadItem(t.Context(), sid, tc.key)
			if err != nil {
				t.Fatal(err)
			}
			if g, h := store.Count(localstore.RequestGet)-gets, store.Count(localstore.RequestHead)-heads; g != 0 || h != 1 {
				t.Errorf("HeadItem sent %d GETs and %d HEADs; want one HEAD", g, h)
			}
			full, err := c.GetItem(t.Context(), sid, tc.key)
			if err != nil {
				t.Fatal(err)
			}
			if head.Value != nil || head.Size != int64(len(tc.value)) || full.Size != int64(len(tc.value)) {
				t.Errorf("HeadItem: %d value bytes, size %d; GetItem size %d; want no value and size %d", len(head.Value), head.Size, full.Size, len(tc.value))
			}
			if head.Metadata != tc.metadata || head.Generation == 0 || head.Generation != full.Generation ||
				head.LastModified.IsZero() || !head.LastModified.Equal(full.LastModified) {
				t.Errorf("HeadItem = metadata %q, generation %d, last-modified %v; GetItem = %q, %d, %v; want %q and the same generation and time",
					head.Metadata, head.Generation, head.LastModified, full.Metadata, full.Generation, full.LastModified, tc.metadata)
			}
		})
	}

	_, err = c.HeadItem(t.Context(), sid, "missing")
	var se *upstream.StatusError
	if upstream.KindOf(err) != upstream.KindNotFound || !errors.As(err, &se) || se.Op != upstream.OpHead || se.Status != http.StatusNotFound {
		t.Errorf("HeadItem of a missing key: %v (kind %v); want a head item 404, KindNotFound", err, upstream.KindOf(err))
	}
}
