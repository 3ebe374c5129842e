package localstore

import "time"

// backend holds the stores' items. Implementations serialise update calls
// against each other; get and list may run concurrently with them.
type backend interface {
	// get returns the record under key, or nil when there is none.
	get(store, key string) (*record, error)
	// update reads the current record (nil when absent), and stores what fn
	// returns: a record to write, or nil to delete. The generation of the
	// previous write is passed to fn so it can pick a larger one. An error
	// from fn aborts the update and is returned.
	update(store, key string, fn func(cur *record, lastGen uint64) (*record, error)) error
	// putBatch writes len(keys) records into store in one transaction (one
	// lock, one commit), in order: build(i, lastGen) makes the record
	// stored under keys[i], given the largest generation handed out before
	// it, earlier records of the batch included. A key that appears twice
	// keeps its later record. The store is created if it does not exist.
	// Either every record is written or, on error, none is.
	putBatch(store string, keys []string, build func(i int, lastGen uint64) *record) error
	// list returns up to limit live keys of store that start with prefix and
	// sort after after (all keys when after is empty), in byte order, and
	// whether more such keys follow.
	list(store, prefix, after string, limit int, now time.Time) (keys []string, more bool, err error)
	// hasStore reports whether store was ever written to.
	hasStore(store string) (bool, error)
	close() error
}
