package localstore

import (
	"strings"
	"sync"
	"time"

	"github.com/google/btree"
)

type memEntry struct {
	key string
	rec *record
}

func lessEntry(a, b memEntry) bool { return a.key < b.key }

// memBackend keeps items in ordered B-trees, one per store, for tests and
// throwaway runs.
type memBackend struct {
	mu      sync.RWMutex
	stores  map[string]*btree.BTreeG[memEntry]
	lastGen uint64
}

func newMemBackend() *memBackend {
	return &memBackend{stores: make(map[string]*btree.BTreeG[memEntry])}
}

func (m *memBackend) get(store, key string) (*record, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	t := m.stores[store]
	if t == nil {
		return nil, nil
	}
	e, ok := t.Get(memEntry{key: key})
	if !ok {
		return nil, nil
	}
	return e.rec, nil
}

func (m *memBackend) update(store, key string, fn func(*record, uint64) (*record, error)) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	t := m.stores[store]
	var cur *record
	if t != nil {
		if e, ok := t.Get(memEntry{key: key}); ok {
			cur = e.rec
		}
	}
	next, err := fn(cur, m.lastGen)
	if err != nil {
		return err
	}
	if next == nil {
		if t != nil {
			t.Delete(memEntry{key: key})
		}
		return nil
	}
	if t == nil {
		t = btree.NewG(32, lessEntry)
		m.stores[store] = t
	}
	t.ReplaceOrInsert(memEntry{key: key, rec: next})
	m.lastGen = max(m.lastGen, next.Generation)
	return nil
}

func (m *memBackend) putBatch(store string, keys []string, build func(int, uint64) *record) error {
	if len(keys) == 0 {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	t := m.stores[store]
	if t == nil {
		t = btree.NewG(32, lessEntry)
		m.stores[store] = t
	}
	for i, key := range keys {
		rec := build(i, m.lastGen)
		t.ReplaceOrInsert(memEntry{key: key, rec: rec})
		m.lastGen = max(m.lastGen, rec.Generation)
	}
	return nil
}

func (m *memBackend) list(store, prefix, after string, limit int, now time.Time) ([]string, bool, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	t := m.stores[store]
	if t == nil {
		return nil, false, nil
	}
	var keys []string
	more := false
	t.AscendGreaterOrEqual(memEntry{key: max(prefix, after)}, func(e memEntry) bool {
		if e.key == after {
			return true
		}
		if !strings.HasPrefix(e.key, prefix) {
			return false
		}
		if e.rec.expired(now) {
			return true
		}
		if len(keys) == limit {
			more = true
			return false
		}
		keys = append(keys, e.key)
		return true
	})
	return keys, more, nil
}

func (m *memBackend) hasStore(store string) (bool, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	_, ok := m.stores[store]
	return ok, nil
}

func (m *memBackend) close() error { return nil }
