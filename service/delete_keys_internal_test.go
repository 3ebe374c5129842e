package service

import (
	"errors"
	"testing"
)

func TestDeleteCursor(t *testing.T) {
	t.Parallel()
	keys := []string{"a", "b", "c"}
	keysScope := deleteScope("s", "", keys, false, false)
	prefixScope := deleteScope("s", "p", nil, false, false)
	for _, tc := range []struct {
		name    string
		cursor  string
		scope   string
		listLen int
		want    deletePosition
		wantErr error
	}{
		{name: "start", cursor: "", scope: keysScope, listLen: 3},
		{name: "list index", cursor: encodeDeleteCursor(deleteCursor{Index: 2, Scope: keysScope}), scope: keysScope, listLen: 3,
			want: deletePosition{index: 2}},
		{name: "list index at the end", cursor: encodeDeleteCursor(deleteCursor{Index: 3, Scope: keysScope}), scope: keysScope, listLen: 3,
			wantErr: errDeleteCursor},
		{name: "list index zero", cursor: encodeDeleteCursor(deleteCursor{Scope: keysScope}), scope: keysScope, listLen: 3,
			wantErr: errDeleteCursor},
		{name: "listing position", cursor: encodeDeleteCursor(deleteCursor{Upstream: "u", After: "p1", Scope: prefixScope}), scope: prefixScope,
			want: deletePosition{pos: position{upstream: "u", after: "p1"}}},
		{name: "listing position on a list", cursor: encodeDeleteCursor(deleteCursor{After: "b", Scope: keysScope}), scope: keysScope, listLen: 3,
			wantErr: errDeleteCursor},
		{name: "index on a listing", cursor: encodeDeleteCursor(deleteCursor{Index: 1, After: "p1", Scope: prefixScope}), scope: prefixScope,
			wantErr: errDeleteCursor},
		{name: "another scope", cursor: encodeDeleteCursor(deleteCursor{Index: 1, Scope: keysScope}), scope: deleteScope("s", "", keys, false, true), listLen: 3,
			wantErr: errDeleteCursorScope},
		{name: "a listing cursor", cursor: encodeCursor("s", "p", position{upstream: "u", after: "p1"}), scope: prefixScope,
			wantErr: errDeleteCursor},
		{name: "not base64", cursor: "%%", scope: prefixScope, wantErr: errDeleteCursor},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := decodeDeleteCursor(tc.cursor, tc.scope, tc.listLen)
			if !errors.Is(err, tc.wantErr) || (err == nil && got != tc.want) {
				t.Errorf("decode = %+v, %v; want %+v, %v", got, err, tc.want, tc.wantErr)
			}
		})
	}
	// Scopes tell apart what a call selects.
	scopes := map[string]bool{}
	for _, s := range []string{
		deleteScope("s", "p", nil, false, false),
		deleteScope("s", "p", nil, false, true),
		deleteScope("t", "p", nil, false, false),
		deleteScope("s", "", nil, true, false),
		deleteScope("s", "", []string{"ab"}, false, false),
		deleteScope("s", "", []string{"a", "b"}, false, false),
		deleteScope("s", "", []string{"b", "a"}, false, false),
	} {
		if scopes[s] {
			t.Errorf("scope %s repeats", s)
		}
		scopes[s] = true
	}
}
