package service

import (
	"encoding/base64"
	"errors"
	"testing"
)

func TestCursorRoundTrip(t *testing.T) {
	for _, pos := range []position{
		{upstream: "page-2"},
		{upstream: "page-2", after: "k/17"},
		{after: "k/3"}, // resuming inside the first page
	} {
		c := encodeCursor("store", "k/", pos)
		if c == "" {
			t.Fatalf("encodeCursor(%+v) is empty", pos)
		}
		got, err := decodeCursor("store", "k/", c)
		if err != nil || got != pos {
			t.Errorf("decodeCursor(encodeCursor(%+v)) = %+v, %v", pos, got, err)
		}
	}
}

func TestCursorEnds(t *testing.T) {
	if c := encodeCursor("store", "", position{end: true}); c != "" {
		t.Errorf("the end of a listing encodes as %q; want the empty cursor", c)
	}
	if pos, err := decodeCursor("store", "", ""); err != nil || pos != (position{}) {
		t.Errorf(`decodeCursor("") = %+v, %v; want the start`, pos, err)
	}
}

func TestCursorRefused(t *testing.T) {
	b64 := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	issued := encodeCursor("store", "a/", position{upstream: "u"})
	cases := []struct {
		name, store, prefix, cursor string
		want                        error
	}{
		{"not base64", "store", "a/", "!!!", errForeignCursor},
		{"padded base64", "store", "a/", base64.URLEncoding.EncodeToString([]byte(`{"u":"x","s":"y"}`)) + "=", errForeignCursor},
		{"not JSON", "store", "a/", b64("fastly-cursor"), errForeignCursor},
		{"no position", "store", "a/", b64(`{"s":"abc"}`), errForeignCursor},
		{"no scope", "store", "a/", b64(`{"u":"x"}`), errForeignCursor},
		{"other store", "other", "a/", issued, errCursorScope},
		{"other prefix", "store", "a/b", issued, errCursorScope},
	}
	for _, c := range cases {
		if _, err := decodeCursor(c.store, c.prefix, c.cursor); !errors.Is(err, c.want) {
			t.Errorf("%s: decodeCursor = %v; want %v", c.name, err, c.want)
		}
	}
}
