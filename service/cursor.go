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
	// Upstream is Fastly's next_cursor.
	Upstream string `json:"u"`
	// Scope binds the cursor to one store id and prefix, so a cursor cannot
	// silently resume a different listing.
	Scope string `json:"s"`
}

func listScope(storeID, prefix string) string {
	sum := sha256.Sum256([]byte(storeID + "\x00" + prefix))
	return hex.EncodeToString(sum[:8])
}

// encodeCursor wraps Fastly's cursor for the listing of prefix in storeID;
// the empty upstream cursor (the end of the listing) stays empty.
func encodeCursor(storeID, prefix, upstreamCursor string) string {
	if upstreamCursor == "" {
		return ""
	}
	b, _ := json.Marshal(listCursor{Upstream: upstreamCursor, Scope: listScope(storeID, prefix)})
	return base64.RawURLEncoding.EncodeToString(b)
}

var (
	errForeignCursor = errors.New("is not a cursor kvgate issued")
	errCursorScope   = errors.New("was issued for another store_id or prefix")
)

// decodeCursor returns Fastly's cursor inside a kvgate cursor ("" for "").
func decodeCursor(storeID, prefix, cursor string) (string, error) {
	if cursor == "" {
		return "", nil
	}
	b, err := base64.RawURLEncoding.DecodeString(cursor)
	if err != nil {
		return "", errForeignCursor
	}
	var c listCursor
	if err := json.Unmarshal(b, &c); err != nil || c.Upstream == "" || c.Scope == "" {
		return "", errForeignCursor
	}
	if c.Scope != listScope(storeID, prefix) {
		return "", errCursorScope
	}
	return c.Upstream, nil
}
