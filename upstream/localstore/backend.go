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
	// hasStore reports whether store exists: it was created, or written
	// to, and not deleted since.
	hasStore(store string) (bool, error)

	// A store's details are kept beside its items. update and putBatch
	// create the details of a store they write to first (named after its
	// id, created at the record's Modified time), so that every store
	// that holds items can be listed and described.

	// getStore returns the details of store id, or nil when there is none.
	getStore(id string) (*storeInfo, error)
	// listStores returns up to limit stores whose id sorts after after (all
	// when after is empty), in id order, whether more follow, and how many
	// stores there are in all. A non-empty name keeps only the stores of
	// that name, both in the page and in the count.
	listStores(name, after string, limit int) (page []storeInfo, more bool, total int, err error)
	// saveStore writes info. With create, info is a new store: an id in
	// use is errStoreExists. Without, info replaces the details of an
	// existing store: a missing one is errNotFound. Either way a name
	// another store has is errNameTaken.
	saveStore(info storeInfo, create bool) error
	// deleteStore removes store id with its details: errNotFound when there
	// is none, errNotEmpty when it holds an item that is live at now.
	// Expired items go with the store.
	deleteStore(id string, now time.Time) error
	close() error
}
