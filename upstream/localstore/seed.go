package localstore

import (
	"errors"
	"fmt"
	"time"

	"github.com/kvgate/kvgate/upstream"
)

// OpenStoreNamed returns the id of the store named name, creating the
// store when there is none: with name as its id too when no store has
// that id, as a store created by its first write is named after its id,
// so that callers that address stores by id can use the name; else with a
// new id, as POST /resources/stores/kv makes them.
func (s *Store) OpenStoreNamed(name string) (id string, created bool, err error) {
	if name == "" {
		return "", false, errors.New("a store name must not be empty")
	}
	page, _, _, err := s.backend.listStores(name, "", 1)
	if err != nil {
		return "", false, err
	}
	if len(page) > 0 {
		return page[0].ID, false, nil
	}
	now := s.now().UTC()
	info := storeInfo{ID: name, Name: name, Created: now, Updated: now}
	err = s.backend.saveStore(info, true)
	for range 3 {
		if !errors.Is(err, errStoreExists) {
			break
		}
		info.ID = newStoreID()
		err = s.backend.saveStore(info, true)
	}
	if err != nil {
		return "", false, err
	}
	return info.ID, true, nil
}

// Item is an item for [Store.PutItems].
type Item struct {
	Key      string
	Value    []byte
	Metadata string
	// TTL is the time to live; zero for none.
	TTL time.Duration
}

// ItemError is an item [Store.PutItems] refused: its index in the items,
// its key and why.
type ItemError struct {
	Index int
	Key   string
	Err   error
}

func (e *ItemError) Error() string {
	return fmt.Sprintf("item %d (key %q): %v", e.Index, e.Key, e.Err)
}

func (e *ItemError) Unwrap() error { return e.Err }

// PutItems writes items into store in one transaction, each replacing any
// item of its key, metadata and time to live included, as a batch write
// does. Every item is checked against Fastly's key, metadata and value
// size rules first; an item that breaks one is an *ItemError and nothing
// is written.
func (s *Store) PutItems(store string, items []Item) error {
	batch := make([]batchItem, len(items))
	for i, it := range items {
		if err := upstream.CheckKey(it.Key); err != nil {
			return &ItemError{i, it.Key, fmt.Errorf("invalid key: key %w", err)}
		}
		if err := upstream.CheckMetadata(it.Metadata); err != nil {
			return &ItemError{i, it.Key, fmt.Errorf("invalid metadata: metadata %w", err)}
		}
		if int64(len(it.Value)) > s.maxValue {
			return &ItemError{i, it.Key, fmt.Errorf("value is %d bytes; the limit is %d", len(it.Value), s.maxValue)}
		}
		if it.TTL < 0 {
			return &ItemError{i, it.Key, errBadTTL}
		}
		batch[i] = batchItem{key: it.Key, metadata: it.Metadata, value: it.Value, ttl: min(it.TTL, maxTTLSeconds*time.Second)}
	}
	return s.putBatch(store, batch)
}
