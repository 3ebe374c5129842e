package service

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
)

// deleteCursor is the state behind a DeleteKeys cursor. Clients treat it as
// opaque.
type deleteCursor struct {
	// Upstream and After are the listing position after the last key
	// settled (see listCursor); unset for a list of keys.
	Upstream string `json:"u,omitempty"`
	After    string `json:"a,omitempty"`
	// Index is the position in the list of the first key not settled;
	// unset for a listing.
	Index uint64 `json:"i,omitempty"`
	// Scope binds the cursor to one store, selection and dry_run: a dry
	// run's cursor cannot skip keys of a deletion it never deleted.
	Scope string `json:"d"`
}

// deleteScope is a digest of what a DeleteKeys call selects.
func deleteScope(store, prefix string, keys []string, all, dryRun bool) string {
	h := sha256.New()
	field := func(s string) {
		var n [binary.MaxVarintLen64]byte
		h.Write(n[:binary.PutUvarint(n[:], uint64(len(s)))])
		h.Write([]byte(s))
	}
	field("delete keys")
	field(store)
	switch {
	case all:
		field("all")
	case len(keys) > 0:
		field("keys")
		for _, k := range keys {
			field(k)
		}
	default:
		field("prefix")
		field(prefix)
	}
	if dryRun {
		field("dry run")
	}
	return hex.EncodeToString(h.Sum(nil)[:8])
}

var (
	errDeleteCursor      = errors.New("is not a DeleteKeys cursor kvgate issued")
	errDeleteCursorScope = errors.New("was issued for another store_id, selection (prefix, keys or all_keys) or dry_run")
)

func encodeDeleteCursor(c deleteCursor) string {
	b, _ := json.Marshal(c)
	return base64.RawURLEncoding.EncodeToString(b)
}

// decodeDeleteCursor returns where cursor resumes a call of scope; listLen
// is the length of its list of keys, 0 for a listing. "" is the start.
func decodeDeleteCursor(cursor, scope string, listLen int) (deletePosition, error) {
	if cursor == "" {
		return deletePosition{}, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(cursor)
	if err != nil {
		return deletePosition{}, errDeleteCursor
	}
	var c deleteCursor
	if err := json.Unmarshal(b, &c); err != nil || c.Scope == "" {
		return deletePosition{}, errDeleteCursor
	}
	if c.Scope != scope {
		return deletePosition{}, errDeleteCursorScope
	}
	listing := c.Upstream != "" || c.After != ""
	switch {
	case listLen > 0 && (listing || c.Index == 0 || c.Index >= uint64(listLen)):
		return deletePosition{}, errDeleteCursor
	case listLen == 0 && (!listing || c.Index != 0):
		return deletePosition{}, errDeleteCursor
	}
	return deletePosition{index: c.Index, pos: position{upstream: c.Upstream, after: c.After}}, nil
}
