package service

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
)

// listCursor is the state behind a kvgate list cursor: Fastly's own cursor
// and the listing it belongs to. Clients treat it as opaque.
type listCursor struct {
	// Upstream is the Fastly cursor of the page to continue in; empty for
	// the first page.
	Upstream string `json:"u,omitempty"`
	// After, when set, skips the keys up to and including it in that page:
	// a stream that stopped inside a page resumes right after its last key.
	After string `json:"a,omitempty"`
	// Scope binds the cursor to one store id and prefix, so a cursor cannot
	// silently resume a different listing.
	Scope string `json:"s"`
}

func listScope(storeID, prefix string) string {
	sum := sha256.Sum256([]byte(storeID + "\x00" + prefix))
	return hex.EncodeToString(sum[:8])
}

// position is a place in a listing: the page to fetch and the keys of it
// already delivered. The zero position is the start; see end.
type position struct {
	upstream string
	after    string
	// end marks the end of the listing, where nothing follows.
	end bool
}

// encodeCursor wraps pos for the listing of prefix in storeID; the end of
// the listing is the empty cursor.
func encodeCursor(storeID, prefix string, pos position) string {
	if pos.end {
		return ""
	}
	b, _ := json.Marshal(listCursor{Upstream: pos.upstream, After: pos.after, Scope: listScope(storeID, prefix)})
	return base64.RawURLEncoding.EncodeToString(b)
}

var (
	errForeignCursor = errors.New("is not a cursor kvgate issued")
	errCursorScope   = errors.New("was issued for another store_id or prefix")
)

// decodeCursor returns the position a kvgate cursor names; "" is the start.
func decodeCursor(storeID, prefix, cursor string) (position, error) {
	if cursor == "" {
		return position{}, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(cursor)
	if err != nil {
		return position{}, errForeignCursor
	}
	var c listCursor
	if err := json.Unmarshal(b, &c); err != nil || (c.Upstream == "" && c.After == "") || c.Scope == "" {
		return position{}, errForeignCursor
	}
	if c.Scope != listScope(storeID, prefix) {
		return position{}, errCursorScope
	}
	return position{upstream: c.Upstream, after: c.After}, nil
}
