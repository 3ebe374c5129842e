// Package seedfile reads the files Fastly developers already keep KV items
// in: Fastly's batch NDJSON, Viceroy's local-store JSON object, and the
// [local_server.kv_stores] section of a Compute app's fastly.toml. Each
// reader yields neutral [Item]s; what to write them into is the caller's.
//
// The readers check each format's shape only. Whether a key, a value's
// size or metadata is acceptable is for the store that takes the item to
// say, so that every writer keeps one set of rules.
package seedfile

import (
	"fmt"
	"strconv"
	"time"
)

// Item is one item read from a seed file.
type Item struct {
	Key      string
	Value    []byte
	Metadata string
	// TTL is the item's time to live; zero for none.
	TTL time.Duration
	// BackgroundFetch is the batch format's background_fetch flag; no
	// other format has it.
	BackgroundFetch bool
	// Line is the NDJSON line the item was read from; zero in the other
	// formats, whose items are named by their key.
	Line int
}

// Error is a seed file that could not be read, or one item of it that
// could not: it names the file and, when it is about one item, the
// NDJSON line or the key (and, in a fastly.toml, the store).
type Error struct {
	File string
	// Line is the 1-based NDJSON line; zero otherwise.
	Line int
	// Store is the fastly.toml store the item belongs to; empty otherwise.
	Store string
	// Key is the JSON or TOML item's key; empty otherwise.
	Key string
	// Err is the reason.
	Err error
}

func (e *Error) Error() string {
	s := e.File
	if e.Line > 0 {
		s += ":" + strconv.Itoa(e.Line)
	}
	if e.Store != "" {
		s += fmt.Sprintf(": store %q", e.Store)
	}
	if e.Key != "" {
		s += fmt.Sprintf(": key %q", e.Key)
	}
	return s + ": " + e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }
